"""`make bench` (python -m ewi.bench audit_chain backup): the audit trail's hash chain and
`ewi backup` / `ewi restore` (issue 17).

audit_chain  in a database of its own (ewi_bench_audit_chain), appends `rows` audit records
             (audit.pipeline_events, 10,000 a transaction, each linked by the chain's trigger at
             commit), then times `ewi audit verify`'s check of the whole chain; reports both per
             million records.
backup       two years of synthetic data (`ewi synth --weeks 104`) through the pipeline: the history
             ingested into the dbt benchmark's template database (ewi.bench.dbt, shared with it and
             kept between runs), copied and built with dbt once; then times a backup of it and a
             restore into a new database, and reports the dump's size.

Measured, never asserted.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

from ewi import config, warehouse
from ewi.bench import database_restored, fresh_database

BATCH = 10_000


def bench_audit_chain(rows: int) -> dict:
    import psycopg

    from ewi import audit_chain

    with database_restored():
        dsn = fresh_database("ewi_bench_audit_chain")
        with psycopg.connect(dsn, autocommit=True) as conn:
            started = time.perf_counter()
            for done in range(0, rows, BATCH):
                with conn.transaction():
                    conn.execute("insert into audit.pipeline_events (dag_id, task_id, run_id, event, detail) "
                                 "select 'ewi_ingest', 'ingest', 'bench-' || i, 'retry', 'try 1' "
                                 "from generate_series(%s::bigint, %s::bigint) as i", (done + 1, min(done + BATCH, rows)))
            append_s = time.perf_counter() - started
            conn.execute("vacuum analyze audit.chain")
            conn.execute("vacuum analyze audit.pipeline_events")
            started = time.perf_counter()
            result = audit_chain.verify(conn)
            verify_s = time.perf_counter() - started
    assert result.holds, result.first_broken
    return {"benchmark": "audit_chain", "records": result.records_checked, "links": result.links_checked,
            "append_s": round(append_s, 1), "append_per_million_s": round(append_s * 1e6 / rows, 1),
            "verify_s": round(verify_s, 1),
            "verify_per_million_s": round(verify_s * 1e6 / max(result.links_checked, 1), 1)}


def _database_bytes(name: str) -> int:
    import psycopg

    with psycopg.connect(warehouse.dsn("postgres")) as conn:
        return conn.execute("select pg_database_size(%s)", (name,)).fetchone()[0]


def bench_backup() -> dict:
    import psycopg

    from ewi import backup, transform
    from ewi.bench import dbt

    source, restored = "ewi_bench_backup_2y", "ewi_bench_backup_2y_restored"
    with database_restored():
        history, _ = dbt.synth_data(2)
        base = dbt.ensure_base(2, history)
        with psycopg.connect(warehouse.dsn("postgres"), autocommit=True) as conn:
            exists = conn.execute("select 1 from pg_database where datname = %s", (source,)).fetchone()
        if not exists:
            dbt.copy_of(dbt.base_database(2), source)
        os.environ["EWI_WAREHOUSE_DB"] = source
        with warehouse.connect() as conn:
            marts = conn.execute("select to_regclass('published.area_weekly_indicators')").fetchone()[0]
        if marts is None:  # built once, kept for the next run (a build of two years takes minutes)
            transform.build(full_refresh=True)
        with warehouse.connect() as conn:
            counts = {t: conn.execute(f"select count(*) from {t}").fetchone()[0]  # noqa: S608
                      for t in ("audit.batches", "audit.chain", "raw.school_absence", "raw.referrals",
                                "raw.contacts", "published.area_weekly_indicators")}
        folder = Path(tempfile.mkdtemp(prefix="ewi-bench-backup-", dir=config.ewi_home()))
        try:
            started = time.perf_counter()
            manifest = backup.backup(folder / "b")
            backup_s = time.perf_counter() - started
            dump_bytes = (folder / "b" / "warehouse.dump").stat().st_size
            total_bytes = sum(f["bytes"] for f in manifest["files"].values())
            os.environ["EWI_WAREHOUSE_DB"] = restored
            with psycopg.connect(warehouse.dsn("postgres"), autocommit=True) as conn:
                conn.execute(f'drop database if exists "{restored}" with (force)')
            started = time.perf_counter()
            summary = backup.restore(folder / "b")
            restore_s = time.perf_counter() - started
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    return {"benchmark": "backup", "weeks": 104, "history_batches": base["batches"], "rows": counts,
            "database_mb": round(_database_bytes(source) / 1e6, 1), "dump_mb": round(dump_bytes / 1e6, 1),
            "backup_mb": round(total_bytes / 1e6, 1), "backup_s": round(backup_s, 1),
            "restore_s": round(restore_s, 1), "restored_chain_holds": summary["chain_holds"]}
