"""Quarantined batches: list them, and release one after the cause was fixed (for instance an area
missing from the reference table). A release re-runs the same gate; it publishes only if the batch
now passes, and the engineer's reason is kept in the audit trail."""

from __future__ import annotations

from pathlib import Path

from psycopg import sql

from ewi import locks, warehouse
from ewi.ingest import pending
from ewi.ingest.decide import IngestResult, audit_and_decide, record_rejection
from ewi.ingest.pseudonyms import check_pending
from ewi.ingest.publish import later_delivery_published
from ewi.ingest.reading import DeliveredFile, Rejection
from ewi.sources import SOURCES, parse_file_name


def list_quarantined() -> list[dict]:
    with warehouse.connect() as conn:
        cur = conn.execute(
            "select batch_id, source, period, file_name, received_at, decided_at, rows_in_file, reason "
            "from audit.batches where status = 'quarantined' order by received_at"
        )
        names = [d.name for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def _restore_pending(conn, source, batch_id: str) -> int:
    """Put the quarantined rows (text as delivered) back into a pending table, typed as a first
    delivery's would be: every integer column whose values all parse, so the gate names the rest."""
    cols = sql.SQL(", ").join(sql.Identifier(c) for c in source.pending_columns)
    with conn.transaction():
        pending.quiet_server_log(conn)
        pending.drop(conn, source, batch_id)
        pending.create(conn, source, batch_id, typed=False)
        rows = conn.execute(
            sql.SQL("insert into {p} ({c}) select {c} from {q} where batch_id = %s").format(
                p=pending.table(source, batch_id), q=sql.Identifier("quarantine", source.name), c=cols),
            (batch_id,),
        ).rowcount
        pending.type_columns_that_parse(conn, source, batch_id)
    return rows


def release(batch_id: str, reason: str) -> IngestResult:
    with warehouse.connect() as conn:
        week = conn.execute("select source, period from audit.batches where batch_id = %s", (batch_id,)).fetchone()
        if week and week[0] in SOURCES:
            # decided in turn with the deliveries of its period, like an ingest (ewi.locks); its status
            # is read after the wait, so a second release of the same batch finds it released
            locks.hold_deliveries(conn, *week)
        row = conn.execute(
            "select source, period, file_name, status, delivered_at, file_size from audit.batches "
            "where batch_id = %s",
            (batch_id,),
        ).fetchone()
        if row is None or row[3] != "quarantined":
            return IngestResult(file=row[2] if row else "", batch_id=batch_id, status=row[3] if row else "unknown",
                                reason="not a quarantined batch")
        source = SOURCES[row[0]]
        # the recorded name, already safe to record, parsed once as an arriving file's is
        file = DeliveredFile(path=Path(row[2]), file_name=row[2], delivery=parse_file_name(row[2]))
        result = IngestResult(file=row[2], source=source.name, period=row[1], batch_id=batch_id)
        if later_delivery_published(conn, source.name, row[1], row[4]):
            result.status, result.reason = "quarantined", "stale: a later delivery for this period is published"
            return result
        # loaded again as text and typed column by column, like a delivery whose values did not parse
        warehouse.ensure_room_for_load(row[5] or 0, warehouse.TEXT_RELOAD_DISK_FACTOR)
        with conn.transaction():
            rows = _restore_pending(conn, source, batch_id)
            conn.execute(sql.SQL("delete from {} where batch_id = %s").format(
                sql.Identifier("quarantine", source.name)), (batch_id,))
            conn.execute(
                "update audit.batches set status = 'pending', reason = %s where batch_id = %s",
                (f"release requested: {reason}"[:500], batch_id),
            )
        result.rows = rows
        conn.commit()  # the batch is pending again, out of quarantine, before it is checked
        try:
            # A batch quarantined before the check existed may hold unkeyed hashes: never published.
            check_pending(conn, pending.table(source, batch_id), rows)
        except Rejection as rejection:
            return record_rejection(conn, result, file, batch_id, rejection, resume=True)
        audit_and_decide(conn, file.delivery, batch_id, rows, result)
        if result.status == "published":
            result.reason = f"released from quarantine: {reason}"
            conn.execute("update audit.batches set reason = %s where batch_id = %s",
                         (result.reason[:500], batch_id))
            conn.commit()
        return result
