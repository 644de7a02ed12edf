"""What the Airflow DAGs in dags/ do, as plain functions: the DAG files stay thin and these stay
testable without a scheduler.

The assets are defined here and nowhere else. The `landing` asset stands for the landing folder;
its AssetWatcher (ewi.triggers.LandingFolderTrigger, run by the triggerer) emits one event per
delivery that is ready, which schedules ewi_ingest. One asset per source stands for its published
raw table (an event means "a batch of this source was published"); one asset stands for the marts
in the `published` schema (an event means "a build passed its tests and was swapped in").

Importing this module must stay cheap (DAG files import it at parse time) and must not need
Airflow (the `ewi` CLI imports it): the Asset objects and the retry policy are built on first
access (module __getattr__); psycopg, Great Expectations and dbt are imported inside the functions
that need them.
"""

from __future__ import annotations

import logging
import os
import re
import time
from datetime import UTC, datetime, timedelta
from itertools import groupby
from pathlib import Path
from typing import Any

from ewi import config, landing

log = logging.getLogger(__name__)

SOURCE_NAMES: tuple[str, ...] = ("school_absence", "referrals", "contacts")

#: asset name -> URI. Names are what the Airflow UI shows; URIs are what events are keyed on.
SOURCE_ASSET_URIS: dict[str, str] = {name: f"ewi://warehouse/raw/{name}" for name in SOURCE_NAMES}
PUBLISHED_ASSET_URI = "ewi://warehouse/published"
LANDING_ASSET_URI = "ewi://landing/"
ASSET_GROUP = "ewi"

# Same pattern as ewi.sources.FILE_NAME_RE; repeated in ewi.landing (not imported from the registry)
# so parsing a DAG file does not load the source registry. tests/test_dags.py checks they agree.
_FILE_NAME_RE: re.Pattern = landing.DELIVERY_NAME_RE

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


def landing_trigger_kwargs() -> dict[str, Any]:
    """The landing watcher's settings, read when the DAG file is parsed (by the DAG processor)."""
    rules = landing.Rules.from_env()
    return {
        "directory": str(config.landing_dir()),
        "poll_interval": float(os.environ.get("EWI_LANDING_POLL_SECONDS", "2")),
        "settle_seconds": rules.settle_seconds,
        "manifest_sources": list(rules.manifest_sources),
        "manifest_wait_seconds": rules.manifest_wait_seconds,
        "retry_after_seconds": float(os.environ.get("EWI_LANDING_RETRY_AFTER_SECONDS", "900")),
    }


def _landing_asset():
    from airflow.sdk import Asset, AssetWatcher

    from ewi.triggers import LandingFolderTrigger

    watcher = AssetWatcher(name="landing_folder", trigger=LandingFolderTrigger(**landing_trigger_kwargs()))
    return Asset(name="landing", uri=LANDING_ASSET_URI, group=ASSET_GROUP, watchers=[watcher])


# --- lineage ------------------------------------------------------------------------------------
# Declared as inlets/outlets (airflow's lineage Table entity, which the OpenLineage provider turns
# into datasets `<namespace>` / `<database>.<schema>.<table>`): TaskFlow tasks have no extractor
# of their own, so the provider falls back to these.

MART_TABLES = ("area_weekly_indicators", "area_trends", "municipality_weekly", "load_status", "area_alerts")


def lineage_namespace() -> str:
    return os.environ.get("EWI_LINEAGE_NAMESPACE") or "postgres://ewi-warehouse"


def lineage_tables(*names: str) -> list:
    from airflow.providers.common.compat.lineage.entities import Table

    return [Table(database=config.warehouse_database(), cluster=lineage_namespace(), name=n) for n in names]


def lineage_landing() -> list:
    from airflow.providers.common.compat.lineage.entities import File

    return [File(url=config.landing_dir().as_uri())]


RAW_TABLES = tuple(f"raw.{s}" for s in SOURCE_NAMES)
PUBLISHED_TABLES = tuple(f"published.{m}" for m in MART_TABLES)


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


_LAZY = {
    "LANDING_ASSET": _landing_asset,
    "SOURCE_ASSETS": _source_assets,
    "PUBLISHED_ASSET": _published_asset,
    "TRANSIENT_WAREHOUSE_ERRORS": _transient_warehouse_errors,
}


def __getattr__(name: str):
    # LANDING_ASSET, SOURCE_ASSETS (dict source -> Asset), PUBLISHED_ASSET, TRANSIENT_WAREHOUSE_ERRORS
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


def delivered_files(paths: list[str] | None, landing_folder: str | None) -> list[Path]:
    """The files a run asked for by conf: the explicit `paths`, else every *.csv in
    `landing_folder`, else the ready deliveries in the configured landing folder."""
    if paths:
        return [Path(p).resolve() for p in paths]
    if not landing_folder:
        return landing.ready_files(config.landing_dir())
    folder = Path(landing_folder).resolve()
    if not folder.is_dir():
        raise FileNotFoundError(f"landing folder does not exist: {folder}")
    return sorted(p.resolve() for p in folder.glob("*.csv"))


def files_to_ingest(paths: list[str] | None, landing_folder: str | None,
                    payloads: list[dict[str, Any]]) -> tuple[list[Path], dict[str, int]]:
    """The files an ingest run takes, and how it came to them.

    A run started by hand (conf `paths` or `landing`) takes what it was given. A run started by the
    landing watcher takes the files named in its triggering events' payloads that are still in the
    folder, plus every other ready delivery there: the scheduler does not always give a run every
    event that was queued before it was created (an event that arrives while the run is being
    created waits for the next event), so the sweep makes sure no ready file waits for a later
    delivery. Runs of ewi_ingest never overlap (max_active_runs=1) and each moves what it ingested
    to processed/, so every file is ingested by exactly one run; a named file that is gone was
    taken by an earlier run's sweep.
    """
    if paths or landing_folder:
        files = delivered_files(paths, landing_folder)
        return files, {"requested": len(files)}
    folder = config.landing_dir().resolve()
    named = []
    for payload in payloads:
        name = Path(str(payload.get("file", ""))).name  # a bare name: never a path out of the folder
        if landing.is_delivery_name(name):
            named.append(folder / name)
    present = [p for p in named if p.exists()]
    swept = [p for p in landing.ready_files(folder) if p not in present]
    files = sorted(set(present) | set(swept))
    return files, {"announced": len(named), "already_taken": len(named) - len(present), "swept": len(swept)}


def _delivery_key(path: Path) -> tuple[str, str, str, str]:
    m = _FILE_NAME_RE.match(path.name)
    if not m:
        # Unrecognised names still go through ingest, which rejects and records them.
        return ("~", "", "", path.name)
    return (m["source"], m["period"], m["delivered"], path.name)


def plan_chunks(files: list[Path], chunk_size: int = DEFAULT_CHUNK_SIZE,
                mix_sources: bool = False) -> list[list[str]]:
    """Split deliveries into chunks for mapped ingest tasks.

    A later delivery for the same source and period replaces the earlier one, so all deliveries of
    one source+period stay in one chunk, in delivery order. Chunks of different periods may then
    run in any order or in parallel. Chunks mix sources only with `mix_sources` (the watcher's
    runs, with a few files each: one task start, about 5 s on two cores, instead of one per source).
    """
    chunks: list[list[str]] = []
    ordered = sorted(files, key=_delivery_key)
    if mix_sources:
        current: list[str] = []
        for _group, group in groupby(ordered, key=lambda p: _delivery_key(p)[:2]):
            deliveries = [str(p) for p in group]
            if current and len(current) + len(deliveries) > chunk_size:
                chunks.append(current)
                current = []
            current.extend(deliveries)
        return chunks + ([current] if current else [])
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
    if len({k[0] for k in keys}) > 1:
        periods = sorted({k[1] for k in keys if k[1]})
        span = periods[0] if len(periods) == 1 else f"{periods[0]}..{periods[-1]}" if periods else "?"
        return f"{len({k[0] for k in keys})} sources {span} ({len(keys)} files)"
    if first[0] == "~":
        return f"unrecognised file names ({len(keys)})"
    span = first[1] if first[1] == last[1] else f"{first[1]}..{last[1]}"
    return f"{first[0]} {span} ({len(keys)} files)"


def ingest_chunk(paths: list[str]) -> list[dict[str, Any]]:
    """Write-audit-publish each file of a chunk, in order. Returns the results as dicts (XCom).

    A quarantined or rejected delivery is the gate working, not a task failure: the task succeeds
    and the outcome is in the results and in audit.batches. Files in the watched landing folder
    move to processed/<status>/ as soon as their outcome is recorded, so a retry of this task
    takes only the files it had not finished.
    """
    from ewi.ingest import ingest_file
    from ewi.ingest.reading import safe_file_name

    folder = config.landing_dir()
    results = []
    for p in paths:
        path = Path(p)
        if not path.exists() and landing.in_folder(path, folder):  # moved by an earlier try
            log.info("already ingested and moved: %s", safe_file_name(path.name))
            continue
        r = ingest_file(path)
        log.info("%s %s %s rows=%s", r.status, r.source, r.period, r.rows)
        if landing.in_folder(path, folder):
            landing.archive(path, r.status, folder)
        results.append(r.as_dict())
    return results


def refresh_data_docs_index() -> None:
    """Rebuild the GX Data Docs index page (the latest validations; every page stays on disk)."""
    from ewi.ingest import gate

    gate.build_index()


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


def wait_for_quiet(quiet_seconds: float | None = None, max_wait_seconds: float | None = None,
                   poll_seconds: float = 1.0) -> dict[str, Any]:
    """Debounce before a build: wait until no delivery is in the landing folder, no batch is being
    ingested, and no batch was decided in the last `quiet_seconds`, for at most `max_wait_seconds`.

    Deliveries that land together are then all in one build. Events that arrive during the wait or
    the build queue a next ewi_transform run, which finds nothing new (nothing_new_since_last_build)
    and skips its build.
    """
    import psycopg

    from ewi import warehouse

    quiet = float(os.environ.get("EWI_TRANSFORM_QUIET_SECONDS", "5") if quiet_seconds is None else quiet_seconds)
    max_wait = float(os.environ.get("EWI_TRANSFORM_MAX_WAIT_SECONDS", "120")
                     if max_wait_seconds is None else max_wait_seconds)
    started = time.monotonic()
    folder = config.landing_dir()
    while True:
        waiting = len(landing.scan(folder, landing.Rules.from_env()))
        with psycopg.connect(warehouse.dsn()) as conn:
            ingesting, since_last = conn.execute(
                """select count(*) filter (where status = 'pending' and received_at > now() - interval '10 minutes'),
                          extract(epoch from now() - max(decided_at))
                   from audit.batches"""
            ).fetchone()
        waited = time.monotonic() - started
        calm = since_last is None or float(since_last) >= quiet
        if (not waiting and not ingesting and calm) or waited >= max_wait:
            state = {"waited_s": round(waited, 1), "deliveries_waiting": waiting, "ingesting": ingesting,
                     "timed_out": waited >= max_wait}
            log.info("debounce: %s", state)
            return state
        time.sleep(poll_seconds)


def nothing_new_since_last_build() -> bool:
    """True when no batch was published or superseded since the last build that published marts
    started: a queued run whose events the previous build already covered has nothing to do."""
    import psycopg

    from ewi import warehouse

    with psycopg.connect(warehouse.dsn()) as conn:
        last_build, last_batch = conn.execute(
            """select (select max(started_at) from audit.dbt_runs where published),
                      (select max(decided_at) from audit.batches where status in ('published', 'superseded'))"""
        ).fetchone()
    return last_build is not None and (last_batch is None or last_batch < last_build)


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
    if event == "task_failed":
        _notify(event, dag_id, task_id, run_id, detail)


def _notify(event: str, dag_id: str, task_id: str | None, run_id: str | None, detail: str) -> None:
    from ewi import notify

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
    log.error("EWI pipeline dag_run_failed: dag=%s run=%s (%s)", dag_id, run_id, detail)
    try:
        record_pipeline_event(dag_id, None, run_id, "dag_run_failed", detail)
    except Exception as exc:
        log.error("could not record the failed run in audit.pipeline_events: %s", type(exc).__name__)
    _notify("dag_run_failed", dag_id, None, run_id, detail)
