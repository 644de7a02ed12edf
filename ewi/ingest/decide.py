"""The decision on a delivered file, and its record in audit.batches: published (ewi.ingest.publish),
quarantined with the failed checks, rejected with a reason, or a duplicate of an earlier delivery.
Every decision is its own transaction, taken in turn with a build (ewi.locks.decision)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from psycopg import sql
from psycopg.types.json import Jsonb

from ewi import locks
from ewi.ingest import gate, pending
from ewi.ingest.publish import publish
from ewi.ingest.reading import DeliveredFile, Rejection
from ewi.sources import Delivery, Source

FINAL_STATUSES = ("published", "quarantined", "rejected", "duplicate", "superseded")


@dataclass
class IngestResult:
    file: str
    source: str | None = None
    period: str | None = None
    batch_id: str | None = None
    status: str = "rejected"
    rows: int | None = None
    reason: str | None = None
    failed_checks: list[dict] = field(default_factory=list)
    data_docs: str | None = None
    timings: dict[str, float] = field(default_factory=dict)

    @classmethod
    def of(cls, file: DeliveredFile) -> IngestResult:
        d = file.delivery
        return cls(file=file.file_name, source=d.source.name if d else None, period=d.period if d else None)

    def as_dict(self) -> dict:
        return asdict(self)


def audit_and_decide(conn, delivery: Delivery, batch_id: str, rows: int, result: IngestResult,
                     lap=lambda stage: None) -> IngestResult:
    """The audit and the decision for a batch whose rows are pending: run the gate, record every
    check, then publish or quarantine. Shared by a first ingest and a quarantine release."""
    params = gate.parameters(conn, delivery)
    conn.commit()
    outcome = gate.validate(batch_id, delivery, params, pending.table_name(delivery.source, batch_id))
    _record_checks(conn, batch_id, outcome)
    lap("audit")
    result.data_docs = outcome.data_docs_path
    if outcome.success:
        try:
            publish(conn, delivery.source, delivery.period, batch_id, rows)
            result.status = "published"
        except Rejection as stale:  # a later delivery was published while this one was audited
            _reject_pending(conn, delivery.source, batch_id, stale)
            result.status, result.reason = "rejected", stale.reason
    else:
        result.status = "quarantined"
        result.reason = outcome.reason()
        result.failed_checks = [
            {"expectation": c.expectation_type, "column": c.column, "observed": c.observed,
             "description": c.notes}
            for c in outcome.failed
        ]
        _quarantine(conn, delivery.source, batch_id, result.reason, result.failed_checks)
    conn.commit()
    lap("publish" if result.status == "published" else "quarantine")
    return result


def prior_delivery(conn, sha: str) -> dict | None:
    """The latest earlier delivery of the same file (not counting duplicates), and whether it was
    undone: superseded by a delivery with an earlier delivery timestamp, which the contract forbids."""
    row = conn.execute(
        """select b.batch_id, b.status, coalesce(n.delivered_at < b.delivered_at, false)
           from audit.batches as b left join audit.batches as n on n.batch_id = b.superseded_by
           where b.file_sha256 = %s and b.status <> 'duplicate'
           order by b.received_at desc limit 1""",
        (sha,),
    ).fetchone()
    return {"batch_id": row[0], "status": row[1], "undone": row[2]} if row else None


def record_duplicate(conn, result: IngestResult, file: DeliveredFile, batch_id: str, prior: dict) -> IngestResult:
    reason = f"duplicate: same sha256 as batch {prior['batch_id']} ({prior['status']})"
    conn.execute(
        """insert into audit.batches (batch_id, source, period, file_name, file_sha256, file_size,
               status, reason, duplicate_of, decided_at)
           values (%s, %s, %s, %s, %s, %s, 'duplicate', %s, %s, now())""",
        (batch_id, result.source, result.period, result.file, file.sha256, file.size, reason, prior["batch_id"]),
    )
    conn.commit()
    result.batch_id, result.status, result.reason = batch_id, "duplicate", reason
    return result


def record_rejection(conn, result: IngestResult, file: DeliveredFile, batch_id: str, rejection: Rejection,
                     resume: bool) -> IngestResult:
    """Reject the file: a batch already registered (`resume`) is marked rejected and its pending
    rows dropped; otherwise the refusal is recorded as a batch of its own."""
    conn.rollback()
    delivery = file.delivery
    decided_at = locks.decision(conn)
    if resume:
        conn.execute(
            "update audit.batches set status = 'rejected', reason = %s, decided_at = %s, rows_published = 0 "
            "where batch_id = %s",
            (rejection.reason, decided_at, batch_id),
        )
        if delivery:
            pending.drop(conn, delivery.source, batch_id)
    else:
        conn.execute(
            """insert into audit.batches (batch_id, source, period, file_name, file_sha256, file_size,
                   delivered_at, status, reason, decided_at, rows_published)
               values (%s, %s, %s, %s, %s, %s, %s, 'rejected', %s, %s, 0)""",
            (batch_id, result.source, result.period, result.file, file.sha256, file.size,
             delivery.delivered if delivery else None, rejection.reason, decided_at),
        )
    conn.commit()
    result.batch_id, result.status, result.reason = batch_id, "rejected", rejection.reason
    return result


def _reject_pending(conn, source: Source, batch_id: str, rejection: Rejection) -> None:
    with conn.transaction():
        decided_at = locks.decision(conn)
        conn.execute(
            "update audit.batches set status = 'rejected', reason = %s, decided_at = %s, rows_published = 0 "
            "where batch_id = %s",
            (rejection.reason, decided_at, batch_id),
        )
        pending.drop(conn, source, batch_id)


def _record_checks(conn, batch_id: str, outcome: gate.GateResult) -> None:
    with conn.transaction():
        conn.execute("delete from audit.check_results where batch_id = %s", (batch_id,))
        with conn.cursor() as cur:
            cur.executemany(
                """insert into audit.check_results (batch_id, expectation_type, column_name, success,
                       observed, unexpected_count) values (%s, %s, %s, %s, %s, %s)""",
                [(batch_id, c.expectation_type, c.column, c.success, Jsonb({**c.observed, "description": c.notes}),
                  c.unexpected_count) for c in outcome.checks],
            )
        conn.execute(
            "update audit.batches set validation_result_id = %s, data_docs_path = %s where batch_id = %s",
            (outcome.validation_result_id, outcome.data_docs_path, batch_id),
        )


def _quarantine(conn, source: Source, batch_id: str, reason: str, failed: list[dict]) -> None:
    with conn.transaction():
        decided_at = locks.decision(conn)
        columns = sql.SQL(", ").join(sql.Identifier(c) for c in source.column_names)
        # Quarantine holds text as delivered; typed pending columns go back to their text form.
        conn.execute(
            sql.SQL("insert into {q} (batch_id, {cols}) select %s, {cols} from {p}").format(
                q=sql.Identifier("quarantine", source.name), p=pending.table(source, batch_id), cols=columns),
            (batch_id,),
        )
        pending.drop(conn, source, batch_id)
        conn.execute(
            "update audit.batches set status = 'quarantined', reason = %s, failed_checks = %s, "
            "rows_published = 0, decided_at = %s where batch_id = %s",
            (reason, Jsonb(failed), decided_at, batch_id),
        )
