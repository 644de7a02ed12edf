"""The write step: a batch's rows in a pending table of their own, before the audit.

Each batch gets pending.<source>_<batch id>: nothing else reads or writes it, it needs no index
while it is loaded, and it leaves by a DROP (quarantine, rejection) or by becoming the published
partition itself (ewi.ingest.publish). The batch's record in audit.batches is committed before its
rows are written, so a crash leaves a visible pending batch that the next attempt resumes.
"""

from __future__ import annotations

import logging
import re

import psycopg
from psycopg import sql

from ewi import warehouse
from ewi.ingest.reading import DeliveredFile, Rejection, open_regular
from ewi.sources import Source

log = logging.getLogger(__name__)


def table_name(source: Source, batch_id: str) -> str:
    """The batch's table name, pending and (school absence) as the published partition. Lower case:
    GX names tables unquoted, and PostgreSQL folds unquoted names to lower case."""
    return f"{source.name}_{batch_id}".lower()


def table(source: Source, batch_id: str) -> sql.Identifier:
    return sql.Identifier("pending", table_name(source, batch_id))


def period_check_name(source: Source, batch_id: str) -> str:
    return f"{table_name(source, batch_id)}_period"


def drop(conn, source: Source, batch_id: str) -> None:
    conn.execute(sql.SQL("drop table if exists {}").format(table(source, batch_id)))
    # Batches left pending by a version before per-batch tables sit in the old shared table.
    conn.execute(sql.SQL("delete from {} where batch_id = %s").format(
        sql.Identifier("pending", f"{source.name}_legacy")), (batch_id,))


def create(conn, source: Source, batch_id: str, typed: bool = True, period: str | None = None) -> sql.Identifier:
    """The batch's own pending table. `typed`: integer columns as integers (see Column.load_type),
    no column NULL and, for a partitioned source, every row in `period`; else every column as text."""
    pending = table(source, batch_id)
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
            sql.Identifier(period_check_name(source, batch_id)), sql.Identifier(source.period_column),
            sql.Literal(period)))
    conn.execute(sql.SQL("create table {} ({})").format(pending, sql.SQL(", ").join(columns)))
    return pending


def register(conn, file: DeliveredFile, batch_id: str, resume: bool) -> None:
    """Record the batch as pending (or, resuming, clear what a crashed attempt left of its rows)."""
    d = file.delivery
    if resume:
        drop(conn, d.source, batch_id)
        conn.execute("update audit.batches set rows_in_file = %s where batch_id = %s", (file.rows, batch_id))
    else:
        conn.execute(
            """insert into audit.batches (batch_id, source, period, file_name, file_sha256, file_size,
                   delivered_at, rows_in_file, status)
               values (%s, %s, %s, %s, %s, %s, %s, %s, 'pending')""",
            (batch_id, d.source.name, d.period, file.file_name, file.sha256, file.size, d.delivered, file.rows),
        )
    # The pending record is committed first: from here on a crash leaves a visible batch.
    conn.commit()


def write(conn, file: DeliveredFile, batch_id: str) -> int:
    """COPY the file into the batch's pending table. A value that is missing or does not parse as its
    column's type is not a reason to reject the file: it is loaded again as text, and the audit's
    not-null or type check quarantines it with the column named."""
    source = file.delivery.source
    copy = sql.SQL(
        "copy {table} ({columns}) from stdin "
        "with (format csv, header true, delimiter {delim}, encoding {enc}, freeze true)"
    ).format(
        table=table(source, batch_id),
        columns=sql.SQL(", ").join(sql.Identifier(c) for c in file.header),
        delim=sql.Literal(file.delimiter),
        enc=sql.Literal(file.encoding),
    )
    for typed in (True, False):
        try:
            with conn.transaction(), conn.cursor() as cur:
                quiet_server_log(conn)
                drop(conn, source, batch_id)
                create(conn, source, batch_id, typed=typed, period=file.delivery.period)
                with cur.copy(copy) as cp, open_regular(file.path) as fh:
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
                         file.file_name)
                warehouse.ensure_room_for_load(file.size, warehouse.TEXT_RELOAD_DISK_FACTOR)
                continue
            raise Rejection("malformed", "rows do not parse as the header's columns") from None
        except psycopg.errors.DataError as exc:
            # The server's message quotes the offending line; only the line number may leave here.
            line = _copy_error_line(exc)
            if not file.ends_with_newline and line is not None and line >= (file.rows or 0) + 1:
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
                    table(source, batch_id), sql.Identifier(col.name), sql.Identifier(col.name)))
        except (psycopg.errors.InvalidTextRepresentation, psycopg.errors.NumericValueOutOfRange):
            pass  # the server's message quotes the value: dropped here, unread


def _copy_error_line(exc: psycopg.Error) -> int | None:
    context = (exc.diag.context or "") if exc.diag else ""
    m = re.search(r"line (\d+)", context)
    return int(m.group(1)) if m else None
