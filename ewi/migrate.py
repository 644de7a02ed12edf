"""Versioned schema migrations: numbered SQL files in ewi/migrations, applied once each, in order,
each in its own transaction, and recorded with a checksum so an edited migration is noticed."""

from __future__ import annotations

import hashlib
import logging
from importlib import resources

import psycopg

log = logging.getLogger(__name__)

LOCK_ID = 0x0E1_0001  # advisory lock: two processes migrating at once wait for each other


def available() -> list[tuple[int, str, str]]:
    files = sorted(
        (f for f in resources.files("ewi.migrations").iterdir() if f.name.endswith(".sql")),
        key=lambda f: f.name,
    )
    return [(int(f.name.split("_", 1)[0]), f.name, f.read_text(encoding="utf-8")) for f in files]


def migrate(conn: psycopg.Connection) -> list[str]:
    """Apply pending migrations; returns the names applied."""
    applied_now: list[str] = []
    with conn.transaction():
        conn.execute("select pg_advisory_xact_lock(%s)", (LOCK_ID,))
        conn.execute("create schema if not exists ewi_meta")
        conn.execute(
            """create table if not exists ewi_meta.schema_migrations (
                   version integer primary key, name text not null, sha256 text not null,
                   applied_at timestamptz not null default now())"""
        )
        done = dict(conn.execute("select version, sha256 from ewi_meta.schema_migrations").fetchall())
        for version, name, sql in available():
            digest = hashlib.sha256(sql.encode()).hexdigest()
            if version in done:
                if done[version] != digest:
                    raise RuntimeError(f"migration {name} was changed after it was applied; add a new one")
                continue
            log.info("applying migration %s", name)
            conn.execute(sql)
            conn.execute(
                "insert into ewi_meta.schema_migrations (version, name, sha256) values (%s, %s, %s)",
                (version, name, digest),
            )
            applied_now.append(name)
    return applied_now
