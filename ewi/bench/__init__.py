"""`make bench`: speed and memory figures, measured on this machine, never asserted in unit tests.

    python -m ewi.bench [ingest] [dbt] [dashboard] [latency] [sessions] [disk] [recovery] [pseudonyms]
                      [audit_chain] [backup] [--rows N]

Each benchmark runs against its own database on the warehouse server and prints one JSON line.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import socket
import time

from ewi.settings import environment as configured_environment


def fresh_database(name: str) -> str:
    """An empty database `name` on the warehouse server, migrated, made the one EWI uses."""
    import psycopg

    from ewi import warehouse, warehouse_init

    admin = warehouse.dsn("postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'drop database if exists "{name}" with (force)')
    os.environ["EWI_WAREHOUSE_DB"] = name
    warehouse_init.init_warehouse()
    return warehouse.dsn()


@contextlib.contextmanager
def database_restored():
    """EWI_WAREHOUSE_DB as it was before, whatever database a benchmark switches to inside."""
    saved = configured_environment().get("EWI_WAREHOUSE_DB")
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("EWI_WAREHOUSE_DB", None)
        else:
            os.environ["EWI_WAREHOUSE_DB"] = saved


def any_free_port() -> int:
    """A port free now, for a server of the benchmark's own."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


#: name -> (module in ewi.bench, function, whether it takes --rows). Imported when run: each
#: benchmark pulls in what it measures (dbt, Playwright, Airflow), never the others'.
BENCHMARKS = {
    "ingest": ("ingest", "bench_ingest", True),
    "dbt": ("dbt", "bench_dbt", False),
    "dashboard": ("dashboard", "bench_dashboard", False),
    "latency": ("latency", "bench_latency", False),
    "sessions": ("sessions", "bench_sessions", False),
    "disk": ("recovery", "bench_disk", True),
    "recovery": ("recovery", "bench_recovery", False),
    "pseudonyms": ("pseudonyms", "bench_pseudonyms", True),
    "audit_chain": ("backup", "bench_audit_chain", True),
    "backup": ("backup", "bench_backup", False),
}


def run(name: str, rows: int) -> dict:
    module, function, takes_rows = BENCHMARKS[name]
    bench = getattr(importlib.import_module(f"ewi.bench.{module}"), function)
    return bench(rows) if takes_rows else bench()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ewi.bench")
    parser.add_argument("which", nargs="*", default=list(BENCHMARKS))
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args(argv)
    for name in args.which:
        started = time.perf_counter()
        result = run(name, args.rows)
        result["wall_s"] = round(time.perf_counter() - started, 1)
        print(json.dumps(result), flush=True)
    return 0
