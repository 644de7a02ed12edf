"""The PostgreSQL advisory locks that order the pipeline's writers (issue 14). One place defines them.

BUILD        a build holds it exclusively for its whole run: one build at a time (builds share the
             schema published_next), and no gate decision commits while a build reads. Every
             decision takes it shared, in its own transaction, so it commits either before a build
             starts or after the build has ended; the decision's time (`decided_at`) is read after
             the lock is granted, so a decision the build did not see is always newer than the
             build's start, which is the incremental models' watermark (processed_at).
DELIVERIES   per source and period, held by an ingest from its duplicate and stale checks to its
             decision's commit: two deliveries of one week are decided one after the other, so the
             delivery timestamp decides which one is published, never the order they finish in.
             A file whose name does not parse is locked by its sha256 instead.

Decisions of different weeks take the BUILD lock in shared mode only, so they never wait for one
another; a decision waits for a running build, and a build for the decisions in flight.
"""

from __future__ import annotations

import logging
from datetime import datetime

log = logging.getLogger(__name__)

#: One build at a time; decisions shared (migrate.py holds 0x0E1_0001 for migrations).
BUILD = 0x0E1_0003
#: The first key of the two-key form: the deliveries of one source and period (the second key).
DELIVERIES = 0x0E1_0004
#: The audit chain: every audit row's trigger takes it until commit, so links append one at a time
#: (migration 0019 spells the number out; tests/test_audit_chain.py checks they agree).
AUDIT_CHAIN = 0x0E1_0019


def hold_build(conn) -> None:
    """For a build: wait until the decisions in flight have committed, then keep every new one
    waiting until this session ends or unlocks. `conn` is an autocommit connection kept open for
    the build."""
    if not conn.execute("select pg_try_advisory_lock(%s)", (BUILD,)).fetchone()[0]:
        log.info("build: waiting for another build or for a gate decision to commit")
        conn.execute("select pg_advisory_lock(%s)", (BUILD,))


def decision(conn) -> datetime:
    """For a gate decision, as the first statement of its transaction: wait for a running build to
    end, and keep a new build waiting until this transaction commits. Returns the database's clock
    after the lock was granted, the decision's time."""
    if not conn.execute("select pg_try_advisory_xact_lock_shared(%s)", (BUILD,)).fetchone()[0]:
        log.info("a dbt build is running; the decision waits for it to end")
        conn.execute("select pg_advisory_xact_lock_shared(%s)", (BUILD,))
    return conn.execute("select clock_timestamp()").fetchone()[0]


def hold_deliveries(conn, source: str, period: str) -> None:
    """For an ingest: wait for any other ingest of the same source and period to be decided, then
    keep the next one waiting until this session ends (the ingest closes its connection when the
    file is decided; a crashed ingest's session ends with it). Commits, so the wait is over before
    the caller reads anything."""
    key = f"{source}/{period}"
    if not conn.execute("select pg_try_advisory_lock(%s, hashtext(%s))", (DELIVERIES, key)).fetchone()[0]:
        log.info("%s %s: waiting for another delivery of the same source and period to be decided", source, period)
        conn.execute("select pg_advisory_lock(%s, hashtext(%s))", (DELIVERIES, key))
    conn.commit()
