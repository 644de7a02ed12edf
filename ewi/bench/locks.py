"""What ordering deliveries and builds (ewi.locks) costs an ingest.

    python -m ewi.bench.locks [--weeks N] [--tree DIR]

Ingests the small referrals and contacts deliveries of N synthetic weeks (about 35 rows each), one
file per call as the ingest DAG does, in a child process running the code in --tree (default: this
tree) against a fresh database, and prints one JSON line: the median seconds per ingest and per
stage. Run it with --tree pointing at a checkout from before the locks to compare. With the locks
present it also times the lock statements alone, uncontended, over 1000 rounds: the per-period lock
(one round trip and a commit) and a decision's shared build lock with its clock read (two round
trips inside the decision's own transaction).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

_CHILD = r"""
import json, statistics, sys, time
from pathlib import Path
from ewi import synth, warehouse
from ewi.ingest import ingest_files, gate

out = Path(sys.argv[1])
synth.generate(out, weeks=int(sys.argv[2]), end_week="2026-W14", seed=3, rises=False)
gate.warm_up()
files = sorted(p for p in out.glob("*.csv") if p.name.startswith(("referrals_", "contacts_")))
seconds, stages = [], {}
for path in files:
    started = time.perf_counter()
    [result] = ingest_files([path], docs_index=False)
    seconds.append(time.perf_counter() - started)
    assert result.status == "published", result.status
    for stage, s in result.timings.items():
        stages.setdefault(stage, []).append(s)
report = {"ingests": len(files), "median_s": round(statistics.median(seconds), 4),
          "stages_median_s": {k: round(statistics.median(v), 4) for k, v in stages.items()}}
try:
    from ewi import locks
except ImportError:
    locks = None
if locks:
    import psycopg
    with psycopg.connect(warehouse.dsn()) as conn:
        t = time.perf_counter()
        for i in range(1000):
            locks.hold_deliveries(conn, "bench", f"round-{i}")
        report["per_period_lock_ms"] = round((time.perf_counter() - t), 4)
        conn.execute("select pg_advisory_unlock_all()")
        conn.commit()
        t = time.perf_counter()
        for _ in range(1000):
            with conn.transaction():
                locks.decision(conn)
        report["decision_lock_ms"] = round((time.perf_counter() - t), 4)
print(json.dumps(report))
"""


def run(weeks: int, tree: Path) -> dict:
    from ewi.bench import fresh_database

    fresh_database("ewi_bench_locks")
    work = Path(tempfile.mkdtemp(prefix="ewi-bench-locks-"))
    env = {**os.environ, "PYTHONPATH": str(tree)}
    # run from the tree: `python -c` puts the working directory before PYTHONPATH on sys.path
    child = subprocess.run([sys.executable, "-c", _CHILD, str(work), str(weeks)], capture_output=True, text=True,
                           check=True, env=env, cwd=tree)
    report = json.loads(child.stdout.strip().splitlines()[-1])
    return {"benchmark": "ingest_locks", "tree": str(tree), "weeks": weeks, **report}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ewi.bench.locks")
    parser.add_argument("--weeks", type=int, default=10)
    parser.add_argument("--tree", type=Path, default=Path(__file__).resolve().parents[1])
    args = parser.parse_args(argv)
    print(json.dumps(run(args.weeks, args.tree.resolve())), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
