"""Failure and retry callbacks: each failure or retry is recorded in audit.pipeline_events and a
failure is sent to the configured notifier (ewi.orchestration.notify).

What they record is orchestration facts only (DAG, task, run, the exception's type, the try):
messages from the database or a file parser can quote row values, and no pseudonym or
identifier may reach the audit table, the logs or a notice.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)


def record_pipeline_event(dag_id: str, task_id: str | None, run_id: str | None, event: str,
                          detail: str | None) -> None:
    import psycopg

    from ewi import warehouse

    with psycopg.connect(warehouse.dsn(), autocommit=True) as conn:
        conn.execute(
            "insert into audit.pipeline_events (dag_id, task_id, run_id, event, detail) "
            "values (%s, %s, %s, %s, %s)",
            (dag_id, task_id, run_id, event, detail),
        )


def _safe_detail(context: dict[str, Any]) -> str:
    # Only the exception's type: messages from the database or a file parser can quote row values.
    exc = context.get("exception")
    ti = context.get("ti") or context.get("task_instance")
    parts = []
    if exc is not None:
        parts.append(f"{type(exc).__module__}.{type(exc).__qualname__}")
    if ti is not None and getattr(ti, "try_number", None) is not None:
        parts.append(f"try {ti.try_number}")
    map_index = getattr(ti, "map_index", -1) if ti is not None else -1
    if map_index is not None and map_index >= 0:
        parts.append(f"map_index {map_index}")
    return ", ".join(parts) or "no detail"


def _record(dag_id: str, task_id: str | None, run_id: str | None, event: str, detail: str) -> None:
    """Log, record and (for failures) notify one event; the log line stays if the warehouse is
    what failed."""
    log.error("EWI pipeline %s: dag=%s task=%s run=%s (%s)", event, dag_id, task_id, run_id, detail)
    try:
        record_pipeline_event(dag_id, task_id, run_id, event, detail)
    except Exception as exc:
        log.error("could not record the %s in audit.pipeline_events: %s", event, type(exc).__name__)
    if event != "task_retry":
        _notify(event, dag_id, task_id, run_id, detail)


def _record_from_context(context: dict[str, Any], event: str) -> None:
    ti = context.get("ti") or context.get("task_instance")
    dag_id = getattr(ti, "dag_id", None) or getattr(context.get("dag"), "dag_id", "?")
    task_id = getattr(ti, "task_id", None)
    run_id = context.get("run_id") or getattr(ti, "run_id", None)
    _record(dag_id, task_id, run_id, event, _safe_detail(context))


def _notify(event: str, dag_id: str, task_id: str | None, run_id: str | None, detail: str) -> None:
    from ewi.orchestration import notify

    notify.send(notify.Notice(event=event, dag_id=dag_id, task_id=task_id, run_id=run_id, detail=detail))


def record_task_failure(context: dict[str, Any]) -> None:
    _record_from_context(context, "task_failed")


def record_task_retry(context: dict[str, Any]) -> None:
    _record_from_context(context, "task_retry")


def record_dag_failure(context: dict[str, Any]) -> None:
    """DAG-level on_failure_callback (run by the DAG processor, or in-process by `dags test`)."""
    dag_run = context.get("dag_run")
    dag_id = getattr(dag_run, "dag_id", None) or getattr(context.get("dag"), "dag_id", "?")
    run_id = getattr(dag_run, "run_id", None) or context.get("run_id")
    # Airflow's reason is its own text (e.g. "task_failure"), not data from a delivery.
    detail = str(context.get("reason") or "run failed")[:200]
    _record(dag_id, None, run_id, "dag_run_failed", detail)
