"""Relation files that no table owns, left by transactions that a crash interrupted.

PostgreSQL removes the files of a table created in a transaction that rolls back, but not those of
a transaction that was running when the server died: after crash recovery they stay on disk for
ever (a killed load leaves its whole pending table, tens of MB a week). They are found as files
under base/<database oid>/ whose relfilenode `pg_filenode_relation` maps to no relation.

Only right after a crash recovery, and only files last written before the server became ready: a
table that a new transaction is creating has no committed pg_class row yet either, but its file is
newer than that. Empty files are left alone: PostgreSQL keeps an empty first segment of a dropped
table until the next checkpoint, to keep its number from being reused.
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from pathlib import Path

import psycopg

log = logging.getLogger(__name__)

_RELATION_FILE = re.compile(r"^(\d+)(?:_(?:fsm|vm|init))?(?:\.\d+)?$")


def _connect(socket_dir: str, dbname: str) -> psycopg.Connection:
    return psycopg.connect(host=socket_dir, user="postgres", dbname=dbname, autocommit=True)


def find(pgdata: Path, socket_dir: str, written_before: float) -> dict[str, list[Path]]:
    """Orphaned relation files by database name (every fork and segment of each relfilenode)."""
    with _connect(socket_dir, "postgres") as conn:
        if conn.execute("select count(*) from pg_prepared_xacts").fetchone()[0]:
            return {}  # a prepared transaction's new tables have no visible row either: not safe
        databases = conn.execute(
            "select oid, datname from pg_database where datallowconn").fetchall()
    found: dict[str, list[Path]] = {}
    for oid, name in databases:
        directory = pgdata / "base" / str(oid)
        candidates: dict[int, list[Path]] = defaultdict(list)
        for path in directory.iterdir() if directory.is_dir() else ():
            match = _RELATION_FILE.match(path.name)
            if match:
                candidates[int(match.group(1))].append(path)
        if not candidates:
            continue
        with _connect(socket_dir, name) as conn:
            owned = {row[0] for row in conn.execute(
                "select f from unnest(%s::oid[]) as f where pg_filenode_relation(0, f) is not null",
                (list(candidates),))}
        orphans = []
        for filenode, paths in candidates.items():
            if filenode in owned:
                continue
            stats = [p.stat() for p in paths]
            if all(s.st_mtime < written_before for s in stats) and any(s.st_size for s in stats):
                orphans.extend(paths)
        if orphans:
            found[name] = sorted(orphans)
    return found


def remove_after_recovery(pgdata: Path, ready_at: float) -> int:
    """Remove the orphaned relation files found after a crash recovery; returns the bytes freed."""
    from ewi.embedded_server import read_postmaster

    pm = read_postmaster(pgdata)
    if pm is None or not pm.socket_dir:
        return 0
    freed = 0
    for database, paths in find(pgdata, pm.socket_dir, written_before=ready_at).items():
        size = sum(p.stat().st_size for p in paths)
        for path in paths:
            path.unlink(missing_ok=True)
        freed += size
        log.warning("removed %d relation files (%.1f MB) in database %s that no table owns: left by "
                    "transactions the crash interrupted", len(paths), size / 1e6, database)
    return freed
