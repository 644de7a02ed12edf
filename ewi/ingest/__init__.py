"""Write-audit-publish ingest: every delivered file ends as published, quarantined, rejected or
duplicate, with a reason in audit.batches.

    write    COPY the file into pending.<source>, tagged with a new batch id, in one transaction
    check    reject the batch if its pseudonyms are unkeyed hashes of identity numbers (ewi.ingest.pseudonyms)
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

from ewi import locks, warehouse
from ewi.ingest import gate, pseudonyms
from ewi.ingest.reading import Inspection, Rejection, fingerprint, inspect, open_regular, safe_file_name
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


def ingest_files(paths: list[Path], docs_index: bool = True, on_result=None) -> list[IngestResult]:
    """Write-audit-publish each file, in delivery order. `docs_index`: then rebuild the Data Docs
    index page once (each validation's own page is built by its audit). `on_result` is called with
    each file's result as it is decided, so a failure later on does not hide the decisions made."""
    results_by_path = {}
    for path in sorted((Path(p) for p in paths), key=_delivery_order):
        results_by_path[path] = ingest_file(path)
        if on_result is not None:
            on_result(results_by_path[path])
    if docs_index and any(r.data_docs for r in results_by_path.values()):
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
        delivery = parse_file_name(path.name)
        if delivery:
            result.source, result.period = delivery.source.name, delivery.period
        try:
            size, sha = fingerprint(path)
        except Rejection as refusal:  # not a regular file: recorded without checksum, nothing was read
            result.batch_id = _new_batch_id()
            return _record_rejection(conn, result, path, None, None, result.batch_id, refusal, resume=False)
        # From the duplicate and stale checks to the decision's commit, no other delivery of this
        # source and period is checked or decided (ewi.locks): which one wins is decided by the
        # delivery timestamp, and a second copy of the same file waits and is then a duplicate.
        locks.hold_deliveries(conn, *((delivery.source.name, delivery.period) if delivery else ("file", sha)))
        prior = _prior_delivery(conn, sha)
        if prior and prior["undone"]:
            # Before deliveries were decided in turn, a late original could supersede its correction;
            # the correction delivered again repairs that instead of being a duplicate (decisions.md).
            log.info("%s: taken again: its earlier copy was superseded by an older delivery", result.file)
            prior = None
        if prior and prior["status"] != "pending":
            return _record_duplicate(conn, result, path, size, sha, prior)
        batch_id = prior["batch_id"] if prior else _new_batch_id()
        result.batch_id = batch_id
        try:
            inspection = inspect(path, known=(size, sha))
            _check_not_stale(conn, inspection)
            lap("read")
        except Rejection as rejection:
            return _record_rejection(conn, result, path, size, sha, batch_id, rejection, resume=bool(prior))

        warehouse.ensure_room_for_load(size)  # before the batch is registered: a refusal leaves nothing
        _register_pending(conn, inspection, batch_id, resume=bool(prior))
        try:
            rows = _write_pending(conn, inspection, batch_id)
        except Rejection as rejection:
            return _record_rejection(conn, result, path, size, sha, batch_id, rejection, resume=True)
        result.rows = rows
        lap("write")
        try:
            pseudonyms.check_pending(conn, _pending_table(inspection.delivery.source, batch_id), rows)
        except Rejection as rejection:
            return _record_rejection(conn, result, path, size, sha, batch_id, rejection, resume=True)
        lap("pseudonyms")
        audit_and_decide(conn, inspection.delivery, batch_id, rows, result, lap)
    log.info("%s: %s (%s rows) %s", result.file, result.status, result.rows, result.timings)
    return result


def audit_and_decide(conn, delivery: Delivery, batch_id: str, rows: int, result: IngestResult,
                     lap=lambda stage: None) -> IngestResult:
    """The audit and the decision for a batch whose rows are pending: run the gate, record every
    check, then publish or quarantine. Shared by a first ingest and a quarantine release."""
    params = gate.parameters(conn, delivery)
    conn.commit()
    outcome = gate.validate(batch_id, delivery, params, _pending_name(delivery.source, batch_id))
    _record_checks(conn, batch_id, outcome)
    lap("audit")
    result.data_docs = outcome.data_docs_path
    if outcome.success:
        try:
            _publish(conn, delivery.source, delivery.period, batch_id, rows)
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


def _prior_delivery(conn, sha: str) -> dict | None:
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
    decided_at = locks.decision(conn)
    if resume:
        conn.execute(
            "update audit.batches set status = 'rejected', reason = %s, decided_at = %s, rows_published = 0 "
            "where batch_id = %s",
            (rejection.reason, decided_at, batch_id),
        )
        if delivery:
            _delete_pending(conn, delivery.source, batch_id)
    else:
        conn.execute(
            """insert into audit.batches (batch_id, source, period, file_name, file_sha256, file_size,
                   delivered_at, status, reason, decided_at, rows_published)
               values (%s, %s, %s, %s, %s, %s, %s, 'rejected', %s, %s, 0)""",
            (batch_id, result.source, result.period, result.file, sha, size,
             delivery.delivered if delivery else None, rejection.reason, decided_at),
        )
    conn.commit()
    result.status, result.reason = "rejected", rejection.reason
    return result


def _reject_pending(conn, source: Source, batch_id: str, rejection: Rejection) -> None:
    with conn.transaction():
        decided_at = locks.decision(conn)
        conn.execute(
            "update audit.batches set status = 'rejected', reason = %s, decided_at = %s, rows_published = 0 "
            "where batch_id = %s",
            (rejection.reason, decided_at, batch_id),
        )
        _delete_pending(conn, source, batch_id)


def later_delivery_published(conn, source: str, period: str, delivered) -> bool:
    return conn.execute(
        "select 1 from audit.batches where source = %s and period = %s and status = 'published' "
        "and delivered_at > %s",
        (source, period, delivered),
    ).fetchone() is not None


def _check_not_stale(conn, inspection: Inspection) -> None:
    d = inspection.delivery
    _raise_if_stale(conn, d.source.name, d.period, d.delivered)


def _raise_if_stale(conn, source: str, period: str, delivered) -> None:
    if later_delivery_published(conn, source, period, delivered):
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


def _pending_name(source: Source, batch_id: str) -> str:
    """The batch's table name, pending and (school absence) as the published partition. Lower case:
    GX names tables unquoted, and PostgreSQL folds unquoted names to lower case."""
    return f"{source.name}_{batch_id}".lower()


def _pending_table(source: Source, batch_id: str) -> sql.Identifier:
    return sql.Identifier("pending", _pending_name(source, batch_id))


def _delete_pending(conn, source: Source, batch_id: str) -> None:
    conn.execute(sql.SQL("drop table if exists {}").format(_pending_table(source, batch_id)))
    # Batches left pending by a version before per-batch tables sit in the old shared table.
    conn.execute(sql.SQL("delete from {} where batch_id = %s").format(
        sql.Identifier("pending", f"{source.name}_legacy")), (batch_id,))


def create_pending_table(conn, source: Source, batch_id: str, typed: bool = True,
                         period: str | None = None) -> sql.Identifier:
    """The batch's own pending table: nothing else reads or writes it, it needs no index while it
    is loaded, and it leaves by a DROP (quarantine) or by becoming the published partition itself.
    `typed`: integer columns as integers (see Column.load_type), no column NULL and, for a
    partitioned source, every row in `period`; else every column as text."""
    table = _pending_table(source, batch_id)
    columns = []
    if "batch_id" in source.pending_columns:
        columns.append(sql.SQL("batch_id text not null default {}").format(sql.Literal(batch_id)))
    for col in source.columns:
        # Typed, every column is NOT NULL as in the published table, so that publishing need not
        # scan the batch to prove it; a missing value sends the load to text like a bad number.
        columns.append(sql.SQL("{} {}").format(
            sql.Identifier(col.name), sql.SQL(f"{col.load_type} not null" if typed else "text")))
    if typed and period and source.partitioned:
        # The partition bound, checked while the rows are loaded: attaching then needs no scan.
        columns.append(sql.SQL("constraint {} check ({} = {})").format(
            sql.Identifier(_period_check_name(source, batch_id)), sql.Identifier(source.period_column),
            sql.Literal(period)))
    conn.execute(sql.SQL("create table {} ({})").format(table, sql.SQL(", ").join(columns)))
    return table


def _period_check_name(source: Source, batch_id: str) -> str:
    return f"{_pending_name(source, batch_id)}_period"


def _write_pending(conn, inspection: Inspection, batch_id: str) -> int:
    """COPY the file into the batch's pending table. A value that is missing or does not parse as its
    column's type is not a reason to reject the file: it is loaded again as text, and the audit's
    not-null or type check quarantines it with the column named."""
    source = inspection.delivery.source
    table = _pending_table(source, batch_id)
    copy = sql.SQL(
        "copy {table} ({columns}) from stdin "
        "with (format csv, header true, delimiter {delim}, encoding {enc}, freeze true)"
    ).format(
        table=table,
        columns=sql.SQL(", ").join(sql.Identifier(c) for c in inspection.header),
        delim=sql.Literal(inspection.delimiter),
        enc=sql.Literal(inspection.encoding),
    )
    for typed in (True, False):
        try:
            with conn.transaction(), conn.cursor() as cur:
                quiet_server_log(conn)
                _delete_pending(conn, source, batch_id)
                create_pending_table(conn, source, batch_id, typed=typed, period=inspection.delivery.period)
                with cur.copy(copy) as cp, open_regular(inspection.path) as fh:
                    while chunk := fh.read(1 << 20):
                        cp.write(chunk)
                rows = cur.rowcount
                if not typed:
                    type_columns_that_parse(conn, source, batch_id)
            return rows
        except (psycopg.errors.InvalidTextRepresentation, psycopg.errors.NumericValueOutOfRange,
                psycopg.errors.NotNullViolation, psycopg.errors.CheckViolation):
            if typed:
                log.info("%s: a value is missing, does not parse as its column's type or is outside the "
                         "period; loading it as text for the audit",
                         inspection.file_name)
                warehouse.ensure_room_for_load(inspection.size, warehouse.TEXT_RELOAD_DISK_FACTOR)
                continue
            raise Rejection("malformed", "rows do not parse as the header's columns") from None
        except psycopg.errors.DataError as exc:
            # The server's message quotes the offending line; only the line number may leave here.
            line = _copy_error_line(exc)
            if not inspection.ends_with_newline and line is not None and line >= (inspection.rows or 0) + 1:
                raise Rejection("truncated", "the last line is incomplete") from None
            where = f" at line {line}" if line else ""
            raise Rejection("malformed", f"rows do not parse as the header's columns{where}") from None
    raise AssertionError("unreachable")


def quiet_server_log(conn, session: bool = False) -> None:
    """Keep this transaction's errors out of the database server's log. PostgreSQL logs a failed
    COPY or cast with the offending value and line, and a failed unique index with the duplicated
    key: pseudonymous data that must not end up in a log file. Setting it needs a superuser (the
    embedded server's loader is one); elsewhere the server's own logging settings apply.
    `session`: for the whole connection rather than the open transaction."""
    try:
        with conn.transaction():
            conn.execute(f"set {'' if session else 'local '}log_min_messages = 'fatal'")
    except psycopg.errors.InsufficientPrivilege:
        pass


def type_columns_that_parse(conn, source: Source, batch_id: str) -> None:
    """After a load as text (a delivery whose values did not all parse, or a quarantine release):
    every integer column whose values all parse becomes an integer, so the audit names exactly the
    columns that do not, and still checks the ranges of the rest."""
    for col in source.columns:
        if col.load_type == "text":
            continue
        try:
            with conn.transaction():
                conn.execute(sql.SQL("alter table {} alter column {} type integer using {}::integer").format(
                    _pending_table(source, batch_id), sql.Identifier(col.name), sql.Identifier(col.name)))
        except (psycopg.errors.InvalidTextRepresentation, psycopg.errors.NumericValueOutOfRange):
            pass  # the server's message quotes the value: dropped here, unread


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
        if col.sql_type == col.load_type:
            casts.append(ident)
        else:
            casts.append(sql.SQL("{}::{}").format(ident, sql.SQL(col.sql_type)))
    return sql.SQL(", ").join(casts)


def _publish(conn, source: Source, period: str, batch_id: str, rows: int) -> None:
    """Move the batch into raw.<source>, replacing the published batch for the same period, in one
    transaction. A batch that is already published (a retried task) is left as it is. Raises
    Rejection (stale) when a later delivery for the period is published: checked again here, under
    the locks, as the decision is made (the check when the file was read may be older)."""
    with conn.transaction():
        decided_at = locks.decision(conn)
        status, delivered = conn.execute(
            "select status, delivered_at from audit.batches where batch_id = %s for update", (batch_id,)
        ).fetchone()
        if status == "published":
            return
        _raise_if_stale(conn, source.name, period, delivered)
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
        # The rows' published_at is the decision's time too, not the transaction's start, which may
        # lie before a build that this decision waited for (ewi.locks).
        if source.partitioned:
            _attach_partition(conn, source, period, batch_id, decided_at)
            inserted = rows
        else:
            columns = sql.SQL(", ").join(sql.Identifier(c) for c in source.column_names)
            inserted = conn.execute(
                sql.SQL("insert into {raw} (batch_id, published_at, {cols}) "
                        "select batch_id, %s, {typed} from {pending}").format(
                    raw=raw, cols=columns, typed=_typed_select(source), pending=_pending_table(source, batch_id)),
                (decided_at,),
            ).rowcount
            _delete_pending(conn, source, batch_id)
        conn.execute(
            "update audit.batches set status = 'published', rows_published = %s, decided_at = %s, "
            "reason = %s where batch_id = %s",
            (inserted, decided_at, f"published: replaces batch {replaced[0][0]}" if replaced else None, batch_id),
        )


def _partition(source: Source, batch_id: str) -> sql.Identifier:
    return sql.Identifier("raw", _pending_name(source, batch_id))


def _remove_published_rows(conn, source: Source, batch_id: str) -> None:
    if source.partitioned:
        exists = conn.execute("select to_regclass(%s)", (_partition(source, batch_id).as_string(conn),)).fetchone()[0]
        if exists:
            part = _partition(source, batch_id)
            conn.execute(sql.SQL("alter table {} detach partition {}").format(
                sql.Identifier("raw", source.name), part))
            conn.execute(sql.SQL("drop table {}").format(part))
            return
    conn.execute(sql.SQL("delete from {} where batch_id = %s").format(sql.Identifier("raw", source.name)),
                 (batch_id,))


def _attach_partition(conn, source: Source, period: str, batch_id: str, published_at) -> None:
    """The audited pending table becomes the period's partition: no row is copied. Its NOT NULL and
    CHECK constraints let PostgreSQL attach it without another scan of its own, and batch_id and
    published_at are constant column defaults, so they cost no rewrite either. A batch loaded typed
    has its constraints from the load; one loaded as text (a release) gets them here, at one scan.
    The key needs no index: the gate found it unique in the batch, and the partition holds that
    batch alone, for one ISO week (decisions.md)."""
    pending = _pending_table(source, batch_id)
    not_null = sql.SQL(", ").join(
        sql.SQL("alter column {} set not null").format(sql.Identifier(c)) for c in source.column_names)
    checked = conn.execute("select 1 from pg_constraint where conrelid = %s::regclass and conname = %s",
                           (pending.as_string(conn), _period_check_name(source, batch_id))).fetchone()
    period_check = sql.SQL("") if checked else sql.SQL(", add constraint {} check ({} = {})").format(
        sql.Identifier(_period_check_name(source, batch_id)), sql.Identifier(source.period_column),
        sql.Literal(period))
    conn.execute(sql.SQL("alter table {} {}, add column batch_id text not null default {}, "
                         "add column published_at timestamptz not null default {}{}").format(
        pending, not_null, sql.Literal(batch_id), sql.Literal(published_at), period_check))
    conn.execute(sql.SQL("alter table {} set schema raw").format(pending))
    conn.execute(sql.SQL("alter table {} attach partition {} for values in ({})").format(
        sql.Identifier("raw", source.name), _partition(source, batch_id), sql.Literal(period)))


def _quarantine(conn, source: Source, batch_id: str, reason: str, failed: list[dict]) -> None:
    with conn.transaction():
        decided_at = locks.decision(conn)
        columns = sql.SQL(", ").join(sql.Identifier(c) for c in source.column_names)
        # Quarantine holds text as delivered; typed pending columns go back to their text form.
        conn.execute(
            sql.SQL("insert into {q} (batch_id, {cols}) select %s, {cols} from {p}").format(
                q=sql.Identifier("quarantine", source.name), p=_pending_table(source, batch_id), cols=columns),
            (batch_id,),
        )
        _delete_pending(conn, source, batch_id)
        conn.execute(
            "update audit.batches set status = 'quarantined', reason = %s, failed_checks = %s, "
            "rows_published = 0, decided_at = %s where batch_id = %s",
            (reason, Jsonb(failed), decided_at, batch_id),
        )
