"""What the Airflow DAGs in dags/ do, as plain functions: the DAG files stay thin and these stay
testable without a scheduler.

The assets are defined here and nowhere else. One asset per source stands for its published raw
table (an event means "a batch of this source was published"); one asset stands for the marts in
the `published` schema (an event means "a build passed its tests and was swapped in").

Importing this module must stay cheap (DAG files import it at parse time) and must not need
Airflow (the `ewi` CLI imports it): the Asset objects and the retry policy are built on first
access (module __getattr__); psycopg, Great Expectations and dbt are imported inside the functions
that need them.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime, timedelta
from itertools import groupby
from pathlib import Path
from typing import Any

from ewi import config

log = logging.getLogger(__name__)

SOURCE_NAMES: tuple[str, ...] = ("school_absence", "referrals", "contacts")

#: asset name -> URI. Names are what the Airflow UI shows; URIs are what events are keyed on.
SOURCE_ASSET_URIS: dict[str, str] = {name: f"ewi://warehouse/raw/{name}" for name in SOURCE_NAMES}
PUBLISHED_ASSET_URI = "ewi://warehouse/published"
ASSET_GROUP = "ewi"

# Same pattern as ewi.sources.FILE_NAME_RE; repeated (not imported) so parsing a DAG file does not
# load the source registry. tests/test_dags.py checks the two agree.
_FILE_NAME_RE = re.compile(
    r"^(?P<source>school_absence|referrals|contacts)_(?P<period>[0-9]{4}-W[0-9]{2})_"
    r"(?P<delivered>[0-9]{8}T[0-9]{4})\.csv$"
)

#: Files per mapped ingest task. A task instance costs about a second of Airflow overhead, so
#: one task per file would double the demo's 312-file ingest; a chunk is still small enough that a
#: retry (which finds its already-published files to be duplicates) is cheap.
DEFAULT_CHUNK_SIZE = 26


def _source_assets():
    from airflow.sdk import Asset

    return {
        name: Asset(name=f"raw.{name}", uri=uri, group=ASSET_GROUP)
        for name, uri in SOURCE_ASSET_URIS.items()
    }


def _published_asset():
    from airflow.sdk import Asset

    return Asset(name="published", uri=PUBLISHED_ASSET_URI, group=ASSET_GROUP)


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
                ],
                action=RetryAction.RETRY,
                reason="transient warehouse error",
            ),
        ],
        default=RetryAction.FAIL,
    )


_LAZY = {
    "SOURCE_ASSETS": _source_assets,
    "PUBLISHED_ASSET": _published_asset,
    "TRANSIENT_WAREHOUSE_ERRORS": _transient_warehouse_errors,
}


def __getattr__(name: str):
    # SOURCE_ASSETS (dict source -> Asset), PUBLISHED_ASSET, TRANSIENT_WAREHOUSE_ERRORS
    if name in _LAZY:
        value = _LAZY[name]()
        globals()[name] = value
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
        "on_failure_callback": record_task_failure,
        "on_retry_callback": record_task_retry,
    }


# --- ingest -----------------------------------------------------------------------------------


def delivered_files(paths: list[str] | None, landing: str | None) -> list[Path]:
    """The files a run should ingest: the explicit `paths`, else every *.csv in `landing`, else
    every *.csv in the configured landing folder."""
    if paths:
        return [Path(p).resolve() for p in paths]
    folder = Path(landing).resolve() if landing else config.landing_dir()
    if not folder.is_dir():
        raise FileNotFoundError(f"landing folder does not exist: {folder}")
    return sorted(p.resolve() for p in folder.glob("*.csv"))


def _delivery_key(path: Path) -> tuple[str, str, str, str]:
    m = _FILE_NAME_RE.match(path.name)
    if not m:
        # Unrecognised names still go through ingest, which rejects and records them.
        return ("~", "", "", path.name)
    return (m["source"], m["period"], m["delivered"], path.name)


def plan_chunks(files: list[Path], chunk_size: int = DEFAULT_CHUNK_SIZE) -> list[list[str]]:
    """Split deliveries into chunks for mapped ingest tasks.

    A later delivery for the same source and period replaces the earlier one, so all deliveries of
    one source+period stay in one chunk, in delivery order; chunks never mix sources. Chunks of
    different periods may then run in any order or in parallel.
    """
    chunks: list[list[str]] = []
    ordered = sorted(files, key=_delivery_key)
    for _source, by_source in groupby(ordered, key=lambda p: _delivery_key(p)[0]):
        current: list[str] = []
        for _period, group in groupby(by_source, key=lambda p: _delivery_key(p)[1]):
            deliveries = [str(p) for p in group]
            if current and len(current) + len(deliveries) > chunk_size:
                chunks.append(current)
                current = []
            current.extend(deliveries)
        if current:
            chunks.append(current)
    return chunks


def chunk_label(paths: list[str]) -> str:
    """A readable name for a chunk in the Airflow UI (map_index_template): source and periods."""
    keys = [_delivery_key(Path(p)) for p in paths]
    if not keys:
        return "empty"
    first, last = keys[0], keys[-1]
    if first[0] == "~":
        return f"unrecognised file names ({len(keys)})"
    span = first[1] if first[1] == last[1] else f"{first[1]}..{last[1]}"
    return f"{first[0]} {span} ({len(keys)} files)"


def ingest_chunk(paths: list[str]) -> list[dict[str, Any]]:
    """Write-audit-publish each file of a chunk, in order. Returns the results as dicts (XCom).

    A quarantined or rejected delivery is the gate working, not a task failure: the task succeeds
    and the outcome is in the results and in audit.batches.
    """
    from ewi.ingest import ingest_files

    results = ingest_files([Path(p) for p in paths])
    for r in results:
        log.info("%s %s %s rows=%s", r.status, r.source, r.period, r.rows)
    return [r.as_dict() for r in results]


def published_batches(source: str, file_names: list[str], since: datetime) -> list[dict[str, Any]]:
    """Batches of `source` among `file_names` that were published at or after `since`.

    audit.batches, not the ingest tasks' return values, decides whether an asset event is due:
    after a retry an already-published file comes back as a duplicate, and a chunk that failed
    half-way has no return value at all, yet its published batches did change raw.<source>.
    Superseded counts too: it was published in this window before a correction replaced it.
    """
    import psycopg

    from ewi import warehouse

    if not file_names:
        return []
    with psycopg.connect(warehouse.dsn()) as conn:
        rows = conn.execute(
            """select batch_id, period from audit.batches
               where source = %s and file_name = any(%s)
                 and status in ('published', 'superseded')
                 and coalesce(decided_at, received_at) >= %s
               order by period, batch_id""",
            (source, file_names, since),
        ).fetchall()
    return [{"batch_id": b, "period": p} for b, p in rows]


def file_names_by_source(chunks: list[list[str]]) -> dict[str, list[str]]:
    names: dict[str, list[str]] = {s: [] for s in SOURCE_NAMES}
    for chunk in chunks:
        for p in chunk:
            source = _delivery_key(Path(p))[0]
            if source in names:
                names[source].append(Path(p).name)
    return names


def summarise(results: list[dict[str, Any]]) -> dict[str, int]:
    counts = {"published": 0, "quarantined": 0, "rejected": 0, "duplicate": 0}
    for r in results:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    return counts


# --- transform and dashboard ------------------------------------------------------------------


def build_marts() -> dict[str, Any]:
    from ewi import transform

    summary = transform.build()
    log.info("dbt build: %s %s published=%s", summary.get("status"), summary.get("counts"),
             summary.get("published"))
    return summary


def refresh_dashboard() -> str:
    """Refresh what the dashboard caches, and leave a marker of when that happened."""
    try:
        from ewi import dashboard
    except ModuleNotFoundError as exc:
        if exc.name not in ("ewi.dashboard",):
            raise
        dashboard = None
    refresh = getattr(dashboard, "refresh", None)
    if callable(refresh):
        refresh()
    else:
        log.info("the dashboard has no cache to refresh (ewi.dashboard.refresh is missing)")
    now = datetime.now(UTC).isoformat(timespec="seconds")
    marker = config.ewi_home() / "dashboard" / "refreshed_at"
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(now + "\n", encoding="utf-8")
    return now


# --- callbacks --------------------------------------------------------------------------------


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
    # Only the exception's type: messages from the database or a file parser can quote row values,
    # and no pseudonym or identifier may reach the audit table or the logs.
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


def _record_from_context(context: dict[str, Any], event: str) -> None:
    ti = context.get("ti") or context.get("task_instance")
    dag_id = getattr(ti, "dag_id", None) or getattr(context.get("dag"), "dag_id", "?")
    task_id = getattr(ti, "task_id", None)
    run_id = context.get("run_id") or getattr(ti, "run_id", None)
    detail = _safe_detail(context)
    log.error("EWI pipeline %s: dag=%s task=%s run=%s (%s)", event, dag_id, task_id, run_id, detail)
    try:
        record_pipeline_event(dag_id, task_id, run_id, event, detail)
    except Exception as exc:  # the warehouse may be what failed; the log line above remains
        log.error("could not record the %s in audit.pipeline_events: %s", event, type(exc).__name__)


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
    log.error("EWI pipeline dag_run_failed: dag=%s run=%s (%s)", dag_id, run_id, detail)
    try:
        record_pipeline_event(dag_id, None, run_id, "dag_run_failed", detail)
    except Exception as exc:
        log.error("could not record the failed run in audit.pipeline_events: %s", type(exc).__name__)
