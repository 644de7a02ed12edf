"""`make bench` (python -m ewi.bench dbt): dbt full refresh against an incremental build after one
new week, over 1, 2 and 4 years of synthetic municipality data.

Per size, synth writes weeks + 1 weeks ending one week after END_WEEK; the first `weeks` weeks are
ingested once into a template database (`ewi_bench_dbt_<n>y_base`, kept between runs because 4
years is 600+ files at about half a second each). Each run copies the template into a working
database, times a full-refresh build, ingests the new week's three files and times the
incremental build that follows; each build REPEATS times from the same state, the median reported. Both builds run in this process, so the incremental one does not pay
for importing dbt and pandas again (a fresh `ewi transform` process does: docs/benchmarks.md).
Measured, never asserted.
"""

from __future__ import annotations

import json
import os
import time
from datetime import timedelta
from pathlib import Path

from ewi import config, warehouse
from ewi.bench import database_restored
from ewi.school_calendar import iso_week_of, week_start

END_WEEK = "2026-W47"
SEED = 7
YEARS = (1, 2, 4)
TARGET_RATIO_AT_2Y = 0.20
#: Runs of each build per history, the median reported: on the shared 2-core machine one run of the
#: same build varies by a third.
REPEATS = 3


def _next_week(period: str) -> str:
    return iso_week_of(week_start(period) + timedelta(weeks=1))


def base_database(years: int) -> str:
    return f"ewi_bench_dbt_{years}y_base"


def work_database(years: int) -> str:
    """The database the benchmark builds in; left with its published marts for ewi.bench.dashboard."""
    return f"ewi_bench_dbt_{years}y"


def synth_data(years: int) -> tuple[list[Path], list[Path]]:
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


def ensure_base(years: int, history: list[Path]) -> dict:
    """The template database with the history ingested; ingests only the files it has not decided
    on yet (so an interrupted run resumes)."""
    from ewi import warehouse_init
    from ewi.ingest import ingest_files

    name = base_database(years)
    _use(name)
    warehouse_init.init_warehouse()  # creates the database when it is missing
    todo = [p for p in history if p.name not in _decided_files(name)]
    started = time.perf_counter()
    if todo:
        ingest_files(todo)
    with warehouse.connect() as conn:
        statuses = dict(conn.execute("select status, count(*) from audit.batches group by 1").fetchall())
    return {"ingested_now": len(todo), "ingest_s": round(time.perf_counter() - started, 1),
            "batches": statuses}


def copy_of(template: str, name: str) -> None:
    with _admin() as conn:
        # the ingest's validation engine keeps pooled connections to the template open
        conn.execute("select pg_terminate_backend(pid) from pg_stat_activity "
                     "where datname = %s and pid <> pg_backend_pid()", (template,))
        conn.execute(f'drop database if exists "{name}" with (force)')
        conn.execute(f'create database "{name}" template "{template}"')
    # A new database's first connection builds PostgreSQL's relation cache file (about 0.3 s here);
    # a warehouse in service has it, so the copy gets it before a build is timed.
    import psycopg

    with psycopg.connect(warehouse.dsn(name)) as conn:
        conn.execute("select count(*) from pg_class").fetchone()


def timed_build(full_refresh: bool) -> dict:
    from ewi import transform

    started = time.perf_counter()
    summary = transform.build(full_refresh=full_refresh)
    seconds = time.perf_counter() - started
    if not summary["success"]:
        raise RuntimeError(f"dbt build failed: {summary['failures'][:3]}")
    # what the build ran (unit tests and unchanged seeds are left out of builds) beside where its time went
    timings = {**(summary.get("timings") or {}), "counts": summary["counts"],
               "seeds_reloaded": summary.get("seeds_reloaded")}
    return {"s": round(seconds, 1), "timings": timings, "counts": summary["counts"]}


def _median_run(runs: list[dict]) -> dict:
    return sorted(runs, key=lambda r: r["s"])[len(runs) // 2]


def bench_size(years: int, repeats: int = REPEATS) -> dict:
    """Full refresh and incremental build `repeats` times each from the same state (the template, and
    a copy taken after the new week's ingest); the median of each is reported, with every run."""
    from ewi.ingest import ingest_files

    history, new_week = synth_data(years)
    base = ensure_base(years, history)
    work, after_ingest = work_database(years), f"{work_database(years)}_new_week"
    full_runs = []
    for _ in range(repeats):
        copy_of(base_database(years), work)
        _use(work)
        full_runs.append(timed_build(full_refresh=True))
    started = time.perf_counter()
    added = ingest_files(new_week)
    ingest_s = time.perf_counter() - started
    incremental_runs = []
    if repeats > 1:
        copy_of(work, after_ingest)
    for i in range(repeats):
        if i:
            copy_of(after_ingest, work)
            _use(work)
        incremental_runs.append(timed_build(full_refresh=False))
    if repeats > 1:
        with _admin() as conn:
            conn.execute(f'drop database if exists "{after_ingest}" with (force)')
    full, incremental = _median_run(full_runs), _median_run(incremental_runs)
    return {
        "years": years,
        "weeks": len(history) // 3,
        **base,
        "full_refresh_s": full["s"],
        "full_refresh_runs_s": [r["s"] for r in full_runs],
        "new_week_ingest_s": round(ingest_s, 1),
        "new_week_statuses": sorted(r.status for r in added),
        "incremental_s": incremental["s"],
        "incremental_runs_s": [r["s"] for r in incremental_runs],
        "ratio": round(incremental["s"] / full["s"], 3),
        "full_refresh_timings": full["timings"],
        "incremental_timings": incremental["timings"],
    }


def bench_dbt(years: tuple[int, ...] = YEARS) -> dict:
    with database_restored():
        sizes = [bench_size(y) for y in years]
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
    import sys

    # python -m ewi.bench.dbt [YEARS ...]: a subset of the sizes (the 4-year template takes longest)
    print(json.dumps(bench_dbt(tuple(int(y) for y in sys.argv[1:]) or YEARS)))
