"""`make bench` (python -m ewi.bench dbt): dbt full refresh against an incremental build after one
new week, over 1, 2 and 4 years of synthetic municipality data.

Per size, synth writes weeks + 1 weeks ending one week after END_WEEK; the first `weeks` weeks are
ingested once into a template database (`ewi_bench_dbt_<n>y_base`, kept between runs because 4
years is 600+ files at about half a second each). Each run copies the template into a working
database, times a full-refresh build, ingests the new week's three files and times the
incremental build that follows. Measured, never asserted.
"""

from __future__ import annotations

import json
import os
import time
from datetime import timedelta
from pathlib import Path

from ewi import config, warehouse
from ewi.school_calendar import iso_week_of, week_start

END_WEEK = "2026-W47"
SEED = 7
YEARS = (1, 2, 4)
TARGET_RATIO_AT_2Y = 0.20


def _next_week(period: str) -> str:
    return iso_week_of(week_start(period) + timedelta(weeks=1))


def base_database(years: int) -> str:
    return f"ewi_bench_dbt_{years}y_base"


def work_database(years: int) -> str:
    """The database the benchmark builds in; left with its published marts for bench_dashboard."""
    return f"ewi_bench_dbt_{years}y"


def _data(years: int) -> tuple[list[Path], list[Path]]:
    """(history files, the new week's files) for `years` years ending END_WEEK plus one week."""
    from ewi import synth

    weeks = 52 * years
    out = config.ewi_home() / "bench-data" / f"dbt-{weeks + 1}w-{_next_week(END_WEEK)}-s{SEED}"
    stamp = out / ".complete"
    if not stamp.exists():
        synth.generate(out, weeks=weeks + 1, end_week=_next_week(END_WEEK), seed=SEED)
        stamp.write_text("ok")
    files = sorted(p for p in out.glob("*.csv"))
    new_week = _next_week(END_WEEK)
    return ([p for p in files if f"_{new_week}_" not in p.name],
            [p for p in files if f"_{new_week}_" in p.name])


def _admin():
    import psycopg

    return psycopg.connect(warehouse.dsn("postgres"), autocommit=True)


def _decided_files(name: str) -> set[str]:
    import psycopg

    with psycopg.connect(warehouse.dsn(name)) as conn:
        rows = conn.execute("select file_name from audit.batches where status <> 'pending'").fetchall()
    return {r[0] for r in rows}


def _use(name: str) -> None:
    os.environ["EWI_WAREHOUSE_DB"] = name


def _ensure_base(years: int, history: list[Path]) -> dict:
    """The template database with the history ingested; ingests only the files it has not decided
    on yet (so an interrupted run resumes)."""
    from ewi import setup
    from ewi.ingest import ingest_files

    name = base_database(years)
    _use(name)
    setup.init_warehouse()  # creates the database when it is missing
    todo = [p for p in history if p.name not in _decided_files(name)]
    started = time.perf_counter()
    if todo:
        ingest_files(todo)
    with warehouse.connect() as conn:
        statuses = dict(conn.execute("select status, count(*) from audit.batches group by 1").fetchall())
    return {"ingested_now": len(todo), "ingest_s": round(time.perf_counter() - started, 1),
            "batches": statuses}


def _copy_of(template: str, name: str) -> None:
    with _admin() as conn:
        # the ingest's validation engine keeps pooled connections to the template open
        conn.execute("select pg_terminate_backend(pid) from pg_stat_activity "
                     "where datname = %s and pid <> pg_backend_pid()", (template,))
        conn.execute(f'drop database if exists "{name}" with (force)')
        conn.execute(f'create database "{name}" template "{template}"')


def _build(full_refresh: bool) -> dict:
    from ewi import transform

    started = time.perf_counter()
    summary = transform.build(full_refresh=full_refresh)
    seconds = time.perf_counter() - started
    if not summary["success"]:
        raise RuntimeError(f"dbt build failed: {summary['failures'][:3]}")
    return {"s": round(seconds, 1), "timings": summary.get("timings"), "counts": summary["counts"]}


def bench_size(years: int) -> dict:
    from ewi.ingest import ingest_files

    history, new_week = _data(years)
    base = _ensure_base(years, history)
    _copy_of(base_database(years), work_database(years))
    _use(work_database(years))
    full = _build(full_refresh=True)
    started = time.perf_counter()
    added = ingest_files(new_week)
    ingest_s = time.perf_counter() - started
    incremental = _build(full_refresh=False)
    return {
        "years": years,
        "weeks": len(history) // 3,
        **base,
        "full_refresh_s": full["s"],
        "new_week_ingest_s": round(ingest_s, 1),
        "new_week_statuses": sorted(r.status for r in added),
        "incremental_s": incremental["s"],
        "ratio": round(incremental["s"] / full["s"], 3),
        "full_refresh_timings": full["timings"],
        "incremental_timings": incremental["timings"],
    }


def bench_dbt(years: tuple[int, ...] = YEARS) -> dict:
    saved = os.environ.get("EWI_WAREHOUSE_DB")
    try:
        sizes = [bench_size(y) for y in years]
    finally:
        if saved is None:
            os.environ.pop("EWI_WAREHOUSE_DB", None)
        else:
            os.environ["EWI_WAREHOUSE_DB"] = saved
    by_years = {s["years"]: s for s in sizes}
    ratios = [s["ratio"] for s in sizes]
    return {
        "benchmark": "dbt_full_refresh_vs_incremental",
        "end_week": END_WEEK,
        "seed": SEED,
        "sizes": [{k: v for k, v in s.items() if not k.endswith("_timings")} for s in sizes],
        "ratio_at_2y": by_years[2]["ratio"] if 2 in by_years else None,
        "target_ratio_at_2y": TARGET_RATIO_AT_2Y,
        "ratio_falls_with_history": all(a > b for a, b in zip(ratios, ratios[1:], strict=False)),
        "timings": {f"{s['years']}y": {"full_refresh": s["full_refresh_timings"],
                                       "incremental": s["incremental_timings"]} for s in sizes},
    }


if __name__ == "__main__":
    print(json.dumps(bench_dbt()))
