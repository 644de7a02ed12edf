"""The publish step: an audited batch moves into raw.<source>, replacing the batch it corrects, in
one transaction taken in turn with a build (ewi.locks). A later delivery of the same source and
period, once published, makes an earlier one stale: it is never published after it.
"""

from __future__ import annotations

from psycopg import sql

from ewi import locks
from ewi.ingest import pending
from ewi.ingest.reading import Rejection
from ewi.sources import Source


def later_delivery_published(conn, source: str, period: str, delivered) -> bool:
    return conn.execute(
        "select 1 from audit.batches where source = %s and period = %s and status = 'published' "
        "and delivered_at > %s",
        (source, period, delivered),
    ).fetchone() is not None


def raise_if_stale(conn, source: str, period: str, delivered) -> None:
    if later_delivery_published(conn, source, period, delivered):
        raise Rejection("stale", "a later delivery for this source and period is already published")


def publish(conn, source: Source, period: str, batch_id: str, rows: int) -> None:
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
        raise_if_stale(conn, source.name, period, delivered)
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
                    raw=raw, cols=columns, typed=_typed_select(source), pending=pending.table(source, batch_id)),
                (decided_at,),
            ).rowcount
            pending.drop(conn, source, batch_id)
        conn.execute(
            "update audit.batches set status = 'published', rows_published = %s, decided_at = %s, "
            "reason = %s where batch_id = %s",
            (inserted, decided_at, f"published: replaces batch {replaced[0][0]}" if replaced else None, batch_id),
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


def _partition(source: Source, batch_id: str) -> sql.Identifier:
    return sql.Identifier("raw", pending.table_name(source, batch_id))


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
    table = pending.table(source, batch_id)
    check_name = pending.period_check_name(source, batch_id)
    not_null = sql.SQL(", ").join(
        sql.SQL("alter column {} set not null").format(sql.Identifier(c)) for c in source.column_names)
    checked = conn.execute("select 1 from pg_constraint where conrelid = %s::regclass and conname = %s",
                           (table.as_string(conn), check_name)).fetchone()
    period_check = sql.SQL("") if checked else sql.SQL(", add constraint {} check ({} = {})").format(
        sql.Identifier(check_name), sql.Identifier(source.period_column), sql.Literal(period))
    conn.execute(sql.SQL("alter table {} {}, add column batch_id text not null default {}, "
                         "add column published_at timestamptz not null default {}{}").format(
        table, not_null, sql.Literal(batch_id), sql.Literal(published_at), period_check))
    conn.execute(sql.SQL("alter table {} set schema raw").format(table))
    conn.execute(sql.SQL("alter table {} attach partition {} for values in ({})").format(
        sql.Identifier("raw", source.name), _partition(source, batch_id), sql.Literal(period)))
