"""`python -m ewi.bench pseudonyms`: what the reversible-pseudonym check costs per file.

The three files of a demo week (`ewi synth`) and a 1,000,000-row school week (the ingest
benchmark's file) are read and written into their pending tables by the ingest's own steps; the
check then runs on each, timed in its two parts (reading the sample, hashing and looking up):
`cold` as in a fresh worker process (no birth year kept), `warm` as for a file of a worker that
already keeps the whole of the file's most frequent birth year (it checked a small file of that
year before). Best of three each.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

RUNS = 3


def _timed(fn) -> tuple[float, object]:
    started = time.perf_counter()
    value = fn()
    return time.perf_counter() - started, value


def _measure(conn, path: Path) -> dict:
    from ewi.ingest import pending, pseudonyms
    from ewi.ingest.flow import new_batch_id
    from ewi.ingest.reading import inspect

    inspection = inspect(path)
    batch_id = new_batch_id()
    pending.register(conn, inspection, batch_id, resume=False)
    rows = pending.write(conn, inspection, batch_id)
    table = pending.table(inspection.delivery.source, batch_id)
    result: dict = {"file": inspection.delivery.source.name, "rows": rows}
    try:
        sample = pseudonyms.sample(conn, table, rows)
        conn.rollback()
        for state in ("cold", "warm"):
            sample_runs, lookup_runs = [], []
            if state == "warm":  # a worker that checked a small file of the same birth year before
                for algorithm, by_year in pseudonyms._parse(sample).items():
                    pseudonyms._whole_year(algorithm, max(by_year, key=lambda y, b=by_year: (len(b[y]), y)))
            for _ in range(RUNS):
                if state == "cold":
                    pseudonyms._whole_years.clear()
                sample_s, sample = _timed(lambda: pseudonyms.sample(conn, table, rows))
                conn.rollback()
                lookup_s, found = _timed(lambda sample=sample: pseudonyms.any_reversible(sample))
                sample_runs.append(sample_s)
                lookup_runs.append(lookup_s)
            result["sampled_rows"] = len(sample)
            result["reversible"] = found
            best = min(range(RUNS), key=lambda i: sample_runs[i] + lookup_runs[i])
            result[state] = {"seconds": round(sample_runs[best] + lookup_runs[best], 3),
                             "sample_s": round(sample_runs[best], 3), "hash_and_lookup_s": round(lookup_runs[best], 3),
                             "runs_s": [round(s + h, 3) for s, h in zip(sample_runs, lookup_runs, strict=True)]}
    finally:
        pending.drop(conn, inspection.delivery.source, batch_id)
        conn.execute("delete from audit.batches where batch_id = %s", (batch_id,))
        conn.commit()
    return result


def bench_pseudonyms(rows: int = 1_000_000) -> dict:
    from ewi import synth, warehouse
    from ewi.bench import fresh_database

    work = Path(tempfile.mkdtemp(prefix="ewi-bench-pseudonyms-"))
    try:
        synth.generate(work / "demo", weeks=1, end_week="2026-W10", seed=1)
        files = sorted((work / "demo").glob("*.csv"))
        files.append(synth.write_school_absence_week(work / "school_absence_2026-W11_20260316T0600.csv", rows=rows,
                                                     period="2026-W11", seed=11))
        fresh_database("ewi_bench_pseudonyms")
        with warehouse.connect() as conn:
            measured = [_measure(conn, path) for path in files]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {"benchmark": "reversible_pseudonym_check", "files": measured}
