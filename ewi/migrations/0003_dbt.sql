-- What dbt needs beyond the foundation: a publication timestamp on raw rows (source freshness and
-- incremental reprocessing of corrected weeks), the schemas dbt builds into, and a record of every
-- dbt build and its test results for the auditors.
alter table raw.school_absence add column if not exists published_at timestamptz not null default now();
alter table raw.referrals add column if not exists published_at timestamptz not null default now();
alter table raw.contacts add column if not exists published_at timestamptz not null default now();
create index if not exists school_absence_published_at_idx on raw.school_absence (published_at);
create index if not exists referrals_published_at_idx on raw.referrals (published_at);
create index if not exists contacts_published_at_idx on raw.contacts (published_at);

-- Pseudonymous dbt schemas: nobody but the owner reads them. published_next holds a build's marts
-- until its tests pass (write-audit-publish); it is not readable by the dashboard roles either.
create schema if not exists seeds;
create schema if not exists staging;
create schema if not exists intermediate;
create schema if not exists published_next;
revoke all on schema seeds, staging, intermediate, published_next from public;

create table audit.dbt_runs (
    run_id       text primary key,
    started_at   timestamptz not null,
    finished_at  timestamptz not null,
    success      boolean not null,
    published    boolean not null,
    command      text not null,
    counts       jsonb not null default '{}',
    elapsed_s    double precision not null
);

create table audit.dbt_test_results (
    run_id          text not null references audit.dbt_runs (run_id),
    unique_id       text not null,
    test_name       text not null,
    model           text,
    status          text not null,
    failures        integer,
    message         text,
    execution_time  double precision,
    completed_at    timestamptz not null default now(),
    primary key (run_id, unique_id)
);
create index on audit.dbt_test_results (status);

grant select on audit.dbt_runs, audit.dbt_test_results to ewi_auditor;
