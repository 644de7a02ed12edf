-- Retention and erasure (issue 17): what was deleted, recorded as counts, never content.
-- audit.retention_runs   one row per `ewi retention apply` (not for a dry run): the week from which
--                        pseudonymous rows are kept, and the policy in force;
-- audit.erasures         one row per `ewi erase`: when, who, a case reference, counts. Never the
--                        pseudonym nor any hash of it (docs/decisions.md, "Issue 17: retention and erasure");
-- audit.deletions        one row per table, partition, batch or file group a run or an erasure removed:
--                        rows, files, bytes.
-- All three are append-only (serial id + timestamp): no role may update or delete a row, so the audit
-- trail's hash chain can cover them.
create table audit.retention_runs (
    id             bigserial primary key,
    ran_at         timestamptz not null default clock_timestamp(),
    kept_from      date not null,          -- Monday of the first week whose pseudonymous rows are kept
    policy         jsonb not null,         -- the settings in force (weeks, days); numbers only
    rows_deleted   bigint not null,
    files_deleted  integer not null,
    bytes_freed    bigint not null
);

create table audit.erasures (
    id             bigserial primary key,
    erased_at      timestamptz not null default clock_timestamp(),
    erased_by      text not null,
    reference      text check (reference ~ '^[A-Za-z0-9_./-]{1,40}$'),  -- a case number; never 64 hex
    rows_deleted   bigint not null,
    files_changed  integer not null,
    rebuild        text not null check (rebuild in ('published', 'failed', 'deferred', 'not_needed'))
);

create table audit.deletions (
    id             bigserial primary key,
    deleted_at     timestamptz not null default clock_timestamp(),
    retention_run  bigint references audit.retention_runs (id),
    erasure        bigint references audit.erasures (id),
    target         text not null,          -- a table (schema.name) or a folder under EWI_HOME
    item           text,                   -- partition, batch id, week or file name; never content
    action         text not null check (action in ('drop_partition', 'drop_table', 'delete_rows',
                                                   'delete_files', 'rewrite_files')),
    rows           bigint not null default 0,
    files          integer not null default 0,
    bytes          bigint not null default 0,
    check ((retention_run is null) <> (erasure is null))
);
create index on audit.deletions (retention_run);
create index on audit.deletions (erasure);

create function audit.retention_append_only() returns trigger language plpgsql as $$
begin
    raise exception 'audit.% is append-only', tg_table_name;
end
$$;

create trigger append_only before update or delete on audit.retention_runs
    for each row execute function audit.retention_append_only();
create trigger append_only before update or delete on audit.erasures
    for each row execute function audit.retention_append_only();
create trigger append_only before update or delete on audit.deletions
    for each row execute function audit.retention_append_only();
create trigger append_only_truncate before truncate on audit.retention_runs
    for each statement execute function audit.retention_append_only();
create trigger append_only_truncate before truncate on audit.erasures
    for each statement execute function audit.retention_append_only();
create trigger append_only_truncate before truncate on audit.deletions
    for each statement execute function audit.retention_append_only();
