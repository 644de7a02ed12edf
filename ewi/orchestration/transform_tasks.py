"""ewi_transform's and ewi_dashboard_refresh's work: wait until deliveries are quiet, skip a
build that has nothing new, build the marts, refresh what the dashboard caches."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ewi import config
from ewi.orchestration import landing
from ewi.settings import get_settings

log = logging.getLogger(__name__)



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

    settings = get_settings()
    quiet = float(settings.transform_quiet_seconds if quiet_seconds is None else quiet_seconds)
    max_wait = float(settings.transform_max_wait_seconds if max_wait_seconds is None else max_wait_seconds)
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


def after_publish(docs_dir: Path | None = None, briefings_dir: Path | None = None) -> dict[str, Any]:
    """What a publish leaves for the people who read it: dbt's docs site with its manifest and
    catalog ($EWI_HOME/dbt-docs: the auditors' lineage page and dbt docs site read them) and the
    week's briefing in both languages ($EWI_HOME/briefings/briefing_<week>_<lang>.pdf). A failure
    of either is logged and reported, never a failure of the publish that already happened."""
    from ewi import transform
    from ewi.dashboard import briefing

    done: dict[str, Any] = {}
    started = time.monotonic()
    try:
        docs = transform.docs(docs_dir)
        done["dbt_docs"] = {k: docs[k] for k in ("success", "path", "files")}
    except Exception as exc:  # noqa: BLE001 - the marts are published; the docs are redone next build
        log.warning("dbt docs were not generated: %s", type(exc).__name__)
        done["dbt_docs"] = {"success": False}
    done["dbt_docs_s"] = round(time.monotonic() - started, 2)
    folder = Path(briefings_dir or config.ewi_home() / "briefings")
    started = time.monotonic()
    try:
        written = []
        for lang in ("sv", "en"):
            pdf, week = briefing.build(lang=lang)
            if week is None:
                break
            out = folder / f"briefing_{briefing.fmt_week(week)}_{lang}.pdf"
            folder.mkdir(parents=True, exist_ok=True)
            out.with_name(out.name + ".part").write_bytes(pdf)
            out.with_name(out.name + ".part").replace(out)
            written.append(str(out))
        done["briefings"] = written
    except Exception as exc:  # noqa: BLE001 - as above: `ewi briefing` or the dashboard builds it on demand
        log.warning("the weekly briefing was not built: %s", type(exc).__name__)
        done["briefings"] = []
    done["briefing_s"] = round(time.monotonic() - started, 2)
    log.info("after publish: %s", done)
    return done
