"""What every EWI DAG shares, defined once: the DAG files pass only what differs (id, schedule,
tags, params, docs).

Every DAG: starts in 2024 with no catch-up (runs are started by asset events, not by dates), one
run at a time (a run's chunks keep deliveries in order, and a build must not race the next one),
its failures recorded in audit.pipeline_events and notified. Every task: two retries with
exponential backoff for transient warehouse errors only.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from ewi.orchestration import callbacks
from ewi.settings import get_settings


def _transient_warehouse_errors():
    from airflow.sdk import ExceptionRetryPolicy, RetryAction, RetryRule

    # Only a lost or refused connection is worth waiting for; a failed check or a bug fails at once.
    return ExceptionRetryPolicy(
        rules=[
            RetryRule(
                exception=[
                    "psycopg.OperationalError",
                    "psycopg2.OperationalError",
                    "sqlalchemy.exc.OperationalError",
                    "builtins.ConnectionError",
                    "builtins.TimeoutError",
                    # the embedded server's crash recovery outlasted the wait: it goes on meanwhile
                    "ewi.errors.WarehouseUnavailable",
                ],
                action=RetryAction.RETRY,
                reason="transient warehouse error",
            ),
        ],
        default=RetryAction.FAIL,
    )


def __getattr__(name: str):
    # TRANSIENT_WAREHOUSE_ERRORS is built on first access: importing this module needs no Airflow.
    if name == "TRANSIENT_WAREHOUSE_ERRORS":
        value = globals()[name] = _transient_warehouse_errors()
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def default_task_args() -> dict[str, Any]:
    """default_args for every EWI DAG: two retries with exponential backoff for transient
    warehouse errors, and every failure recorded in audit.pipeline_events."""
    return {
        "owner": "ewi",
        "retries": 2,
        "retry_delay": timedelta(seconds=15),
        "retry_exponential_backoff": 2.0,
        "max_retry_delay": timedelta(minutes=5),
        "retry_policy": __getattr__("TRANSIENT_WAREHOUSE_ERRORS"),
        "on_failure_callback": callbacks.record_task_failure,
        "on_retry_callback": callbacks.record_task_retry,
    }


def dag_arguments(dag_id: str, *, schedule: Any, tags: list[str], doc: str | None,
                  **specific: Any) -> dict[str, Any]:
    """The keyword arguments of an EWI DAG's @dag: the shared ones, plus `specific` (params, say)."""
    import pendulum

    # A setting with a value EWI cannot use fails the DAG file's import here, naming the variable
    # (the DAG processor shows it as the file's import error), not later inside some task.
    get_settings()
    return {
        "dag_id": dag_id,
        "schedule": schedule,
        "start_date": pendulum.datetime(2024, 1, 1, tz="UTC"),
        "catchup": False,
        "max_active_runs": 1,
        "default_args": default_task_args(),
        "on_failure_callback": callbacks.record_dag_failure,
        "tags": ["ewi", *tags],
        "doc_md": doc,
        **specific,
    }
