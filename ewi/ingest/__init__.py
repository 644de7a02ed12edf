"""Write-audit-publish ingest: every delivered file ends as published, quarantined, rejected or
duplicate, with a reason in audit.batches.

    write    COPY the file into pending.<source>, tagged with a new batch id, in one transaction
    audit    run the source's GX suite against the pending batch (ewi.ingest.gate)
    publish  move the batch into raw.<source> in one transaction, replacing the batch it corrects
    or quarantine  move it into quarantine.<source> with the failed checks

A crash anywhere leaves a 'pending' batch that the next attempt for the same file resumes, so
retries neither lose nor double rows.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from ewi import warehouse
from ewi.ingest import gate
from ewi.ingest.reading import Inspection, Rejection, fingerprint, inspect, safe_file_name
from ewi.sources import Delivery, Source, parse_file_name

log = logging.getLogger(__name__)

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

    def as_dict(self) -> dict:
        return asdict(self)


def _new_batch_id() -> str:
    return uuid.uuid4().hex


def _delivery_order(path: Path):
    """Files of one source and period are taken in delivery order, so a correction delivered
    later always wins, whatever order they were passed in."""
    d = parse_file_name(path.name)
    return (0, d.source.name, d.period, d.delivered.isoformat(), path.name) if d else (1, "", "", "", path.name)


def ingest_files(paths: list[Path]) -> list[IngestResult]:
    results_by_path = {}
    for path in sorted((Path(p) for p in paths), key=_delivery_order):
        results_by_path[path] = ingest_file(path)
    if any(r.data_docs for r in results_by_path.values()):
        gate.build_index()
    return [results_by_path[Path(p)] for p in paths]


def ingest_file(path: Path) -> IngestResult:
    path = Path(path)
    result = IngestResult(file=safe_file_name(path.name))
    clock = time.perf_counter()

    def lap(stage: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        result.timings[stage] = round(now - clock, 3)
        clock = now

    with warehouse.connect() as conn:
        size, sha = fingerprint(path)
        delivery = parse_file_name(path.name)
        if delivery:
            result.source, result.period = delivery.source.name, delivery.period
        prior = _prior_delivery(conn, sha)
        if prior and prior["status"] != "pending":
            return _record_duplicate(conn, result, path, size, sha, prior)
        batch_id = prior["batch_id"] if prior else _new_batch_id()
        result.batch_id = batch_id
        try:
            inspection = inspect(path)
            _check_not_stale(conn, inspection)
            lap("read")
        except Rejection as rejection:
            return _record_rejection(conn, result, path, size, sha, batch_id, rejection, resume=bool(prior))

        _register_pending(conn, inspection, batch_id, resume=bool(prior))
        try:
            rows = _write_pending(conn, inspection, batch_id)
        except Rejection as rejection:
            return _record_rejection(conn, result, path, size, sha, batch_id, rejection, resume=True)
        result.rows = rows
        lap("write")
        audit_and_decide(conn, inspection.delivery, batch_id, rows, result, lap)
    log.info("%s: %s (%s rows) %s", result.file, result.status, result.rows, result.timings)
    return result


def audit_and_decide(conn, delivery: Delivery, batch_id: str, rows: int, result: IngestResult,
                     lap=lambda stage: None) -> IngestResult:
    """The audit and the decision for a batch whose rows are pending: run the gate, record every
    check, then publish or quarantine. Shared by a first ingest and a quarantine release."""
    params = gate.parameters(conn, delivery)
    conn.commit()
    outcome = gate.validate(batch_id, delivery, params)
    _record_checks(conn, batch_id, outcome)
    lap("audit")
    result.data_docs = outcome.data_docs_path
    if outcome.success:
        _publish(conn, delivery.source, delivery.period, batch_id, rows)
        result.status = "published"
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


def _prior_delivery(conn, sha: str) -> dict | None:
    row = conn.execute(
        "select batch_id, status from audit.batches where file_sha256 = %s and status <> 'duplicate' "
        "order by received_at limit 1",
        (sha,),
    ).fetchone()
    return {"batch_id": row[0], "status": row[1]} if row else None


def _record_duplicate(conn, result, path, size, sha, prior) -> IngestResult:
    batch_id = _new_batch_id()
    conn.execute(
        """insert into audit.batches (batch_id, source, period, file_name, file_sha256, file_size,
               status, reason, duplicate_of, decided_at)
           values (%s, %s, %s, %s, %s, %s, 'duplicate', %s, %s, now())""",
        (batch_id, result.source, result.period, result.file, sha, size,
         f"duplicate: same sha256 as batch {prior['batch_id']} ({prior['status']})", prior["batch_id"]),
    )
    conn.commit()
    result.batch_id, result.status = batch_id, "duplicate"
    result.reason = f"duplicate: same sha256 as batch {prior['batch_id']} ({prior['status']})"
    return result


def _record_rejection(conn, result, path, size, sha, batch_id, rejection: Rejection, resume: bool) -> IngestResult:
    conn.rollback()
    delivery = parse_file_name(path.name)
    if resume:
        conn.execute(
            "update audit.batches set status = 'rejected', reason = %s, decided_at = now(), rows_published = 0 "
            "where batch_id = %s",
            (rejection.reason, batch_id),
        )
        if delivery:
            _delete_pending(conn, delivery.source, batch_id)
    else:
        conn.execute(
            """insert into audit.batches (batch_id, source, period, file_name, file_sha256, file_size,
                   delivered_at, status, reason, decided_at, rows_published)
               values (%s, %s, %s, %s, %s, %s, %s, 'rejected', %s, now(), 0)""",
            (batch_id, result.source, result.period, result.file, sha, size,
             delivery.delivered if delivery else None, rejection.reason),
        )
    conn.commit()
    result.status, result.reason = "rejected", rejection.reason
    return result


def later_delivery_published(conn, source: str, period: str, delivered) -> bool:
    return conn.execute(
        "select 1 from audit.batches where source = %s and period = %s and status = 'published' "
        "and delivered_at > %s",
        (source, period, delivered),
    ).fetchone() is not None


def _check_not_stale(conn, inspection: Inspection) -> None:
    d = inspection.delivery
    if later_delivery_published(conn, d.source.name, d.period, d.delivered):
        raise Rejection("stale", "a later delivery for this source and period is already published")


def _register_pending(conn, inspection: Inspection, batch_id: str, resume: bool) -> None:
    d = inspection.delivery
    if resume:
        _delete_pending(conn, d.source, batch_id)
        conn.execute("update audit.batches set rows_in_file = %s where batch_id = %s", (inspection.rows, batch_id))
    else:
        conn.execute(
            """insert into audit.batches (batch_id, source, period, file_name, file_sha256, file_size,
                   delivered_at, rows_in_file, status)
               values (%s, %s, %s, %s, %s, %s, %s, %s, 'pending')""",
            (batch_id, d.source.name, d.period, inspection.file_name, inspection.sha256, inspection.size,
             d.delivered, inspection.rows),
        )
    # The pending record is committed first: from here on a crash leaves a visible batch.
    conn.commit()


def _pending_partition(source: Source, batch_id: str) -> sql.Identifier:
    return sql.Identifier("pending", f"{source.name}_{batch_id}")


def _delete_pending(conn, source: Source, batch_id: str) -> None:
    conn.execute(sql.SQL("drop table if exists {}").format(_pending_partition(source, batch_id)))
    # Batches left pending by a version before per-batch partitions sit in the default partition.
    conn.execute(sql.SQL("delete from {} where batch_id = %s").format(
        sql.Identifier("pending", f"{source.name}_legacy")), (batch_id,))


def _create_pending_partition(conn, source: Source, batch_id: str) -> sql.Identifier:
    part = _pending_partition(source, batch_id)
    conn.execute(sql.SQL("create table {} partition of {} for values in ({})").format(
        part, sql.Identifier("pending", source.name), sql.Literal(batch_id)))
    return part


def _write_pending(conn, inspection: Inspection, batch_id: str) -> int:
    source = inspection.delivery.source
    copy = sql.SQL(
        "copy {table} ({columns}) from stdin with (format csv, header true, delimiter {delim}, encoding {enc})"
    ).format(
        table=_pending_partition(source, batch_id),
        columns=sql.SQL(", ").join(sql.Identifier(c) for c in inspection.header),
        delim=sql.Literal(inspection.delimiter),
        enc=sql.Literal(inspection.encoding),
    )
    try:
        with conn.transaction(), conn.cursor() as cur:
            _delete_pending(conn, source, batch_id)
            _create_pending_partition(conn, source, batch_id)
            cur.execute("select set_config('ewi.batch_id', %s, true)", (batch_id,))
            with cur.copy(copy) as cp, open(inspection.path, "rb") as fh:
                while chunk := fh.read(1 << 20):
                    cp.write(chunk)
            rows = cur.rowcount
    except psycopg.errors.DataError as exc:
        # The server's message quotes the offending line; only the line number may leave here.
        line = _copy_error_line(exc)
        if not inspection.ends_with_newline and line is not None and line >= (inspection.rows or 0) + 1:
            raise Rejection("truncated", "the last line is incomplete") from None
        where = f" at line {line}" if line else ""
        raise Rejection("malformed", f"rows do not parse as the header's columns{where}") from None
    return rows


def _copy_error_line(exc: psycopg.Error) -> int | None:
    context = (exc.diag.context or "") if exc.diag else ""
    m = re.search(r"line (\d+)", context)
    return int(m.group(1)) if m else None


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


def _typed_select(source: Source) -> sql.Composed:
    casts = []
    for col in source.columns:
        ident = sql.Identifier(col.name)
        if col.sql_type == "text":
            casts.append(ident)
        else:
            casts.append(sql.SQL("{}::{}").format(ident, sql.SQL(col.sql_type)))
    return sql.SQL(", ").join(casts)


def _publish(conn, source: Source, period: str, batch_id: str, rows: int) -> None:
    """Move the batch into raw.<source>, replacing the published batch for the same period, in one
    transaction. A batch that is already published (a retried task) is left as it is."""
    with conn.transaction():
        status = conn.execute(
            "select status from audit.batches where batch_id = %s for update", (batch_id,)
        ).fetchone()[0]
        if status == "published":
            return
        replaced = conn.execute(
            "select batch_id from audit.batches where source = %s and period = %s and status = 'published' "
            "for update",
            (source.name, period),
        ).fetchall()
        raw = sql.Identifier("raw", source.name)
        for (old,) in replaced:
            _remove_published_rows(conn, source, old)
            conn.execute(
                "update audit.batches set status = 'superseded', superseded_by = %s, "
                "reason = 'superseded: corrected by a later delivery for the same period' where batch_id = %s",
                (batch_id, old),
            )
        columns = sql.SQL(", ").join(sql.Identifier(c) for c in source.column_names)
        select = sql.SQL("select batch_id, {typed} from {pending} where batch_id = %s").format(
            typed=_typed_select(source), pending=sql.Identifier("pending", source.name))
        if source.partitioned:
            inserted = _attach_partition(conn, source, period, batch_id, columns, select)
        else:
            inserted = conn.execute(
                sql.SQL("insert into {raw} (batch_id, {cols}) ").format(raw=raw, cols=columns) + select, (batch_id,)
            ).rowcount
        _delete_pending(conn, source, batch_id)
        conn.execute(
            "update audit.batches set status = 'published', rows_published = %s, decided_at = now(), "
            "reason = %s where batch_id = %s",
            (inserted, f"published: replaces batch {replaced[0][0]}" if replaced else None, batch_id),
        )


def _partition(source: Source, batch_id: str) -> sql.Identifier:
    return sql.Identifier("raw", f"{source.name}_{batch_id}")


def _remove_published_rows(conn, source: Source, batch_id: str) -> None:
    if source.partitioned:
        exists = conn.execute("select to_regclass(%s)", (f"raw.{source.name}_{batch_id}",)).fetchone()[0]
        if exists:
            part = _partition(source, batch_id)
            conn.execute(sql.SQL("alter table {} detach partition {}").format(
                sql.Identifier("raw", source.name), part))
            conn.execute(sql.SQL("drop table {}").format(part))
            return
    conn.execute(sql.SQL("delete from {} where batch_id = %s").format(sql.Identifier("raw", source.name)),
                 (batch_id,))


def _attach_partition(conn, source: Source, period: str, batch_id: str, columns, select) -> int:
    """Build the batch's rows as a table with its key, then attach it as the period's partition. The
    CHECK constraint lets PostgreSQL attach without scanning the rows again."""
    raw = sql.Identifier("raw", source.name)
    part = _partition(source, batch_id)
    conn.execute(sql.SQL("create table {} (like {} including defaults)").format(part, raw))
    inserted = conn.execute(
        sql.SQL("insert into {part} (batch_id, {cols}) ").format(part=part, cols=columns) + select, (batch_id,)
    ).rowcount
    key = sql.SQL(", ").join(sql.Identifier(c) for c in (source.period_column, *[
        k for k in source.key if k != source.period_column]))
    conn.execute(sql.SQL("alter table {} add primary key ({})").format(part, key))
    conn.execute(sql.SQL("alter table {} add check ({} = {})").format(
        part, sql.Identifier(source.period_column), sql.Literal(period)))
    conn.execute(sql.SQL("alter table {} attach partition {} for values in ({})").format(
        raw, part, sql.Literal(period)))
    return inserted


def _quarantine(conn, source: Source, batch_id: str, reason: str, failed: list[dict]) -> None:
    with conn.transaction():
        columns = sql.SQL(", ").join(sql.Identifier(c) for c in ("batch_id", *source.column_names))
        conn.execute(
            sql.SQL("insert into {q} ({cols}) select {cols} from {p} where batch_id = %s").format(
                q=sql.Identifier("quarantine", source.name), p=sql.Identifier("pending", source.name), cols=columns),
            (batch_id,),
        )
        _delete_pending(conn, source, batch_id)
        conn.execute(
            "update audit.batches set status = 'quarantined', reason = %s, failed_checks = %s, "
            "rows_published = 0, decided_at = now() where batch_id = %s",
            (reason, Jsonb(failed), batch_id),
        )
