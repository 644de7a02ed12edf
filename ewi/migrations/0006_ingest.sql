-- COPY cannot set a constant column, so pending rows take their batch id from a transaction-local
-- setting that the loader sets just before COPY.
alter table pending.school_absence alter column batch_id set default current_setting('ewi.batch_id');
alter table pending.referrals alter column batch_id set default current_setting('ewi.batch_id');
alter table pending.contacts alter column batch_id set default current_setting('ewi.batch_id');
alter table quarantine.school_absence add column quarantined_at timestamptz not null default now();
alter table quarantine.referrals add column quarantined_at timestamptz not null default now();
alter table quarantine.contacts add column quarantined_at timestamptz not null default now();
