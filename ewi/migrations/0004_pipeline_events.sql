-- Orchestration events the audit trail needs beside the batches: a task that failed or is being
-- retried (written by the Airflow DAGs' callbacks). detail holds an exception type and try
-- number, never an exception message, which could quote row values.
create table audit.pipeline_events (
    event_id    bigint generated always as identity primary key,
    occurred_at timestamptz not null default now(),
    dag_id      text not null,
    task_id     text,
    run_id      text,
    event       text not null,
    detail      text
);
create index on audit.pipeline_events (occurred_at);

grant select on audit.pipeline_events to ewi_auditor;
