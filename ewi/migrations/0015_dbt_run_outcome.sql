-- A build is recorded as it starts ('running') and closed as it ends, so a build that never ends
-- normally (its process killed, the warehouse gone) is still in the record: the next command marks
-- it 'killed' or 'failed' with a reason in words (ewi/build_runs.py). holder_pid/holder_started
-- name the database session the build holds while it runs: when that session is gone, so is the
-- build.
alter table audit.dbt_runs
    alter column finished_at drop not null,
    alter column elapsed_s drop not null,
    add column status text,
    add column reason text,
    add column holder_pid integer,
    add column holder_started timestamptz;
update audit.dbt_runs set status = case when success then 'success' else 'failed' end;
alter table audit.dbt_runs
    alter column status set not null,
    add constraint dbt_runs_status_check check (status in ('running', 'success', 'failed', 'killed'));
create index dbt_runs_running_idx on audit.dbt_runs (started_at) where status = 'running';
