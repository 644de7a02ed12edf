"""What the Airflow DAGs in dags/ do, as plain functions: the DAG files stay thin and these stay
testable without a scheduler. One module per concern:

- assets:          the assets the DAGs are chained by, and the landing folder's watcher settings
- lineage:         the warehouse tables and files tasks declare as inlets and outlets
- dag_defaults:    what every EWI DAG shares (schedule start, one run at a time, retries, callbacks)
- ingest_tasks:    ewi_ingest: which files a run takes, chunks, write-audit-publish, announcements
- transform_tasks: ewi_transform and ewi_dashboard_refresh: debounce, dbt build, dashboard refresh
- callbacks:       failures and retries recorded in audit.pipeline_events and notified
- notify:          the notifiers of pipeline failures (log, SMTP, webhook)
- people_notices:  messages to people: new signals to coordinators, quarantines to data engineers
- landing:         when a delivery in the landing folder is ready, and where ingested files go
- triggers:        the landing folder's event trigger (run by the triggerer)
- airflow_env, local_airflow: a local Airflow for EWI (`ewi airflow ...`)

Source names and the delivery file-name pattern come from ewi.sources, the one place that
defines them. Importing a module of this package must stay cheap (DAG files import them at parse
time) and must not need Airflow (the `ewi` CLI imports them): Airflow objects are built on first
access, and psycopg, Great Expectations and dbt are imported inside the functions that need them.
"""
