"""What recording builds that do not end normally (ewi.build_runs) costs.

    python -m ewi.bench.build_record [--rounds N]

In a database of its own (ewi_bench_build_record on the warehouse of EWI_HOME) holding 500 finished
builds, times over N rounds: `settle`, which every command that prepares the warehouse now runs,
and a build's `start` + `finish` of its record. Prints one JSON line of medians and 95th
percentiles in milliseconds.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from datetime import UTC, datetime


def _ms(samples: list[float]) -> dict:
    ordered = sorted(samples)
    return {"median_ms": round(statistics.median(ordered) * 1000, 2),
            "p95_ms": round(ordered[int(len(ordered) * 0.95) - 1] * 1000, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m ewi.bench.build_record", description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()
    os.environ["EWI_WAREHOUSE_DB"] = "ewi_bench_build_record"
    from ewi import build_runs, warehouse, warehouse_init

    warehouse_init.init_warehouse()
    with warehouse.connect(autocommit=True) as conn:
        conn.execute("""insert into audit.dbt_runs (run_id, started_at, finished_at, success, published,
                                                    command, status, elapsed_s)
                        select 'bench-' || i, now() - i * interval '1 day', now(), true, true, 'dbt build',
                               'success', 8
                        from generate_series(1, 500) as i on conflict do nothing""")
        settle = []
        for _ in range(args.rounds):
            started = time.perf_counter()
            build_runs.settle(conn)
            settle.append(time.perf_counter() - started)
        record = []
        for _ in range(args.rounds):
            started = time.perf_counter()
            run = build_runs.start(conn, datetime.now(UTC))
            build_runs.finish(conn, {**run, "finished_at": datetime.now(UTC), "success": True, "counts": {},
                                     "elapsed_s": 0}, [])
            record.append(time.perf_counter() - started)
    print(json.dumps({"rounds": args.rounds, "settle": _ms(settle), "start_and_finish": _ms(record)}))


if __name__ == "__main__":
    main()
