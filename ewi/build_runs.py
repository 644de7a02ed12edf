"""The record of every dbt build in audit.dbt_runs, kept even for a build that does not end normally.

A build is recorded as 'running' when it starts, with the database session it holds for its whole
run, and closed with its outcome when it ends. When it cannot be closed because the warehouse is
gone, the outcome is kept in a file under $EWI_HOME/dbt/unrecorded/<warehouse>/ until that warehouse
is back (one EWI_HOME may serve several warehouse databases: each record goes to its own).
The next command (`settle`, run by every command that prepares the warehouse) writes those files
into the record and marks every 'running' build whose session no longer exists: 'failed' when the
warehouse restarted since the build started (an outage ended it), else 'killed' (its process died
without a word, e.g. kill -9 or a lost machine). So auditors see every build, and the build after a
killed one is a full refresh like the one after a failed one (it may have written into the
incremental models).
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from datetime import datetime
from pathlib import Path

import psycopg

from ewi import config, errors

log = logging.getLogger(__name__)

KILLED_REASON = "the build's process ended without recording its outcome (killed, or its machine stopped)"
OUTAGE_REASON = "the warehouse stopped during the build"


def _spool_dir(conn: psycopg.Connection) -> Path:
    """Where the records for `conn`'s warehouse wait: named after its server and database."""
    where = f"{conn.info.host}:{conn.info.port}/{conn.info.dbname}"
    return config.ewi_home() / "dbt" / "unrecorded" / hashlib.sha256(where.encode()).hexdigest()[:16]


def start(conn: psycopg.Connection, started_at: datetime) -> dict:
    """Record a build as running, held by `conn`'s session (which must stay open until the build
    ends). Returns the run to pass to `finish`: run_id, started_at, command, published."""
    run_id = str(uuid.uuid4())
    with conn.transaction():
        conn.execute(
            """insert into audit.dbt_runs (run_id, started_at, success, published, command, status,
                                           holder_pid, holder_started)
               select %s, %s, false, false, 'dbt build', 'running', pid, backend_start
               from pg_stat_activity where pid = pg_backend_pid()""",
            (run_id, started_at))
    return {"run_id": run_id, "started_at": started_at, "command": "dbt build", "published": False,
            "spool": str(_spool_dir(conn))}


def _write(conn: psycopg.Connection, run: dict, nodes: list[dict]) -> None:
    with conn.transaction():
        conn.execute(
            """insert into audit.dbt_runs (run_id, started_at, finished_at, success, published, command,
                                           counts, elapsed_s, status, reason)
               values (%(run_id)s, %(started_at)s, %(finished_at)s, %(success)s, %(published)s,
                       %(command)s, %(counts)s, %(elapsed_s)s, %(status)s, %(reason)s)
               on conflict (run_id) do update set
                   finished_at = excluded.finished_at, success = excluded.success,
                   published = excluded.published, command = excluded.command,
                   counts = excluded.counts, elapsed_s = excluded.elapsed_s,
                   status = excluded.status, reason = excluded.reason""",
            {**run, "counts": json.dumps(run.get("counts") or {}), "reason": run.get("reason")})
        with conn.cursor() as cur:
            cur.executemany(
                """insert into audit.dbt_test_results
                       (run_id, unique_id, test_name, model, status, failures, message, execution_time)
                   values (%s, %s, %s, %s, %s, %s, %s, %s)
                   on conflict (run_id, unique_id) do nothing""",
                [(run["run_id"], n["unique_id"], n["name"], n["model"], n["status"], n["failures"],
                  n["message"], n["execution_time"])
                 for n in nodes if n["resource_type"] in ("test", "unit_test")],
            )


def finish(conn: psycopg.Connection | None, run: dict, nodes: list[dict]) -> None:
    """Close a build's record: run_id, started_at, finished_at, success, published, command, counts,
    elapsed_s, and reason (words) when it failed. Without a connection, or when the warehouse
    cannot take it, the record waits in a file for the next command."""
    run = {**run, "status": "success" if run["success"] else "failed"}
    try:
        if conn is None:
            from ewi import warehouse

            with warehouse.connect(autocommit=True) as fresh:
                _write(fresh, run, nodes)
        else:
            _write(conn, run, nodes)
    except Exception as exc:  # a lost connection, or an embedded server that does not start
        if not isinstance(errors.classify(exc), errors.WarehouseUnavailable):
            raise
        _spool(run, nodes)


def _spool(run: dict, nodes: list[dict]) -> None:
    folder = Path(run["spool"])
    try:
        folder.mkdir(parents=True, exist_ok=True)
        part = folder / f".{run['run_id']}.json.part"
        part.write_text(json.dumps({"run": run, "nodes": nodes}, default=str), encoding="utf-8")
        part.rename(folder / f"{run['run_id']}.json")  # whole or not at all
        log.warning("the warehouse is unreachable: build %s is recorded when it is back", run["run_id"])
    except OSError:
        # the disk is full too: the 'running' row remains, and the next command marks it
        log.warning("build %s could not be recorded now; the next command marks it", run["run_id"])


def settle(conn: psycopg.Connection) -> list[str]:
    """Record what earlier builds could not: outcomes kept in files while the warehouse was gone,
    then every 'running' build whose session is gone. Returns the run ids recorded."""
    settled = []
    folder = _spool_dir(conn)
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            kept = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:  # another command recorded it just now
            continue
        run = kept["run"]
        for key in ("started_at", "finished_at"):
            run[key] = datetime.fromisoformat(run[key]) if run.get(key) else None
        _write(conn, run, kept["nodes"])
        path.unlink(missing_ok=True)
        settled.append(run["run_id"])
    with conn.transaction():
        rows = conn.execute(
            """update audit.dbt_runs as r
               set status = case when pg_postmaster_start_time() > r.started_at then 'failed'
                                 else 'killed' end,
                   reason = case when pg_postmaster_start_time() > r.started_at then %s else %s end,
                   success = false
               where r.status = 'running' and not exists (
                   select from pg_stat_activity as a
                   where a.pid = r.holder_pid and a.backend_start = r.holder_started)
               returning r.run_id, r.status""",
            (OUTAGE_REASON, KILLED_REASON)).fetchall()
    for run_id, status in rows:
        log.warning("build %s never recorded its outcome: marked %s", run_id, status)
        settled.append(run_id)
    return settled
