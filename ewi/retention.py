"""Retention and erasure (issue 17): pseudonymous data is kept only as long as a rebuild or an alert
needs it, and one person's rows can be erased on request.

Retention (`ewi retention apply [--dry-run]`, the daily ewi_retention DAG):
- pseudonymous rows of weeks before `kept_from` go: raw school-absence weeks by dropping their
  partition, raw referral and contact rows (tables without partitions) and the per-person
  intermediate models' rows by DELETE, delivered files of those weeks under landing/processed;
- quarantined batches (rows and files) and batches stuck pending after EWI_RETENTION_QUARANTINE_DAYS;
- GX validation results and Data Docs pages, Airflow and dbt logs, lineage events after their days.
Published aggregates are kept: the area counts (intermediate.int_area_weekly_counts), the Farrington
results and the marts hold no person, and a build never recounts a week before `kept_from` plus the
longest trailing window (docs/decisions.md). Every deletion is a row of audit.deletions: table or
folder, partition, batch or week, rows, files and bytes; never content.

Erasure (`ewi erase --pseudonym P`): every row of that pseudonym in every table that holds
pseudonyms, and every file under EWI_HOME (or the landing folder) that holds it, then the gated
build recounts the weeks the person was in. The pseudonym is never logged, printed or stored: the
audit keeps the time, who, a case reference and counts.
"""

from __future__ import annotations

import getpass
import json
import logging
import mmap
import os
import re
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import psycopg
from psycopg import sql

from ewi import config, locks, warehouse
from ewi.settings import get_settings
from ewi.sources import PSEUDONYM_PATTERN, SOURCES, iso_week_of, iso_week_start, parse_file_name

log = logging.getLogger(__name__)

#: The longest chain of trailing windows behind one week's count: multi_signal reads 12 weeks of
#: invalid-absence flags, each of which reads 4 weeks of absence (SOURCES.md), so a week's counts
#: read 15 weeks of rows, and the first 14 weeks after a cut are never recounted.
LONGEST_INPUT_WEEKS = 15
#: Under EWI_HOME (the same places ewi.ingest.gate, ewi.transform and ewi.orchestration write).
GX_RESULT_DIRS = ("gx/validation_results", "gx/data_docs/validations")
LOG_DIRS = ("airflow/logs", "dbt/logs")
LINEAGE_FILE = "lineage/events.jsonl"
#: landing/processed/<status>/: delivered files, kept like the rows they delivered.
PROCESSED = "processed"
WEEK_KEPT_STATUSES = ("published", "superseded", "duplicate")
#: Schemas whose tables hold pseudonyms; an erasure searches every table with a pseudonym column.
PSEUDONYM_COLUMN = "person_pseudonym"
#: Text files are rewritten without the erased person's lines; any other file holding the
#: pseudonym is deleted whole.
LINE_FILES = (".csv", ".jsonl", ".log", ".txt")
REFERENCE_RE = re.compile(r"^[A-Za-z0-9_./-]{1,40}$")


# --- the policy ------------------------------------------------------------------------------------

def lookback_weeks() -> int:
    """Weeks of history a rebuild of the newest week needs: Farrington's reference weeks (b years
    back, w weeks either side) read counts that a redefined indicator would recount from these rows,
    plus the longest chain of trailing windows those counts read."""
    from ewi.alerts.runner import farrington_parameters

    params = farrington_parameters()
    return 52 * int(params["b"]) + int(params["w"]) + 1 + LONGEST_INPUT_WEEKS - 1


@dataclass(frozen=True)
class Policy:
    kept_from: date          # Monday of the first week whose pseudonymous rows are kept
    quarantine_before: datetime
    gx_before: datetime
    logs_before: datetime
    lineage_before: datetime
    weeks: int
    numbers: dict = field(default_factory=dict)

    @property
    def kept_from_week(self) -> str:
        return iso_week_of(self.kept_from)


def policy(now: datetime | None = None) -> Policy:
    s = get_settings()
    now = now or datetime.now(UTC)
    weeks = s.retention_pseudonymous_weeks or lookback_weeks() + s.retention_margin_weeks
    monday = now.date() - timedelta(days=now.date().weekday())
    numbers = {"pseudonymous_weeks": weeks, "quarantine_days": s.retention_quarantine_days,
               "gx_days": s.retention_gx_days, "log_days": s.retention_log_days,
               "lineage_days": s.retention_lineage_days}
    return Policy(kept_from=monday - timedelta(weeks=weeks),
                  quarantine_before=now - timedelta(days=s.retention_quarantine_days),
                  gx_before=now - timedelta(days=s.retention_gx_days),
                  logs_before=now - timedelta(days=s.retention_log_days),
                  lineage_before=now - timedelta(days=s.retention_lineage_days),
                  weeks=weeks, numbers=numbers)


@dataclass
class Deletion:
    target: str
    item: str | None
    action: str
    rows: int = 0
    files: int = 0
    bytes: int = 0


# --- retention -------------------------------------------------------------------------------------

def apply(dry_run: bool = False, now: datetime | None = None) -> dict:
    """Apply the policy (or, dry, say what it would delete). Holds the build lock, so no build or
    gate decision runs meanwhile. Returns counts only."""
    pol = policy(now)
    home = config.ewi_home()
    deletions: list[Deletion] = []
    with warehouse.connect(autocommit=True) as conn:
        locks.hold_build(conn)
        try:
            with conn.transaction():
                deletions += _raw_weeks(conn, pol, dry_run)
                deletions += _intermediate_weeks(conn, pol, dry_run)
                deletions += _quarantined_and_stuck(conn, pol, dry_run)
                deletions += _files(home, config.landing_dir(), pol, dry_run)
                run_id = None if dry_run else _record_run(conn, pol, deletions)
        finally:
            conn.execute("select pg_advisory_unlock(%s)", (locks.BUILD,))
    return _summary(pol, deletions, dry_run, run_id)


def _summary(pol: Policy, deletions: list[Deletion], dry_run: bool, run_id: int | None) -> dict:
    return {"dry_run": dry_run, "retention_run": run_id, "kept_from_week": pol.kept_from_week,
            "policy": pol.numbers, "rows": sum(d.rows for d in deletions),
            "files": sum(d.files for d in deletions), "bytes": sum(d.bytes for d in deletions),
            "deletions": [asdict(d) for d in deletions]}


def _record_run(conn, pol: Policy, deletions: list[Deletion]) -> int:
    run_id = conn.execute(
        "insert into audit.retention_runs (kept_from, policy, rows_deleted, files_deleted, bytes_freed) "
        "values (%s, %s, %s, %s, %s) returning id",
        (pol.kept_from, json.dumps(pol.numbers), sum(d.rows for d in deletions),
         sum(d.files for d in deletions), sum(d.bytes for d in deletions))).fetchone()[0]
    _record_deletions(conn, "retention_run", run_id, deletions)
    return run_id


def _record_deletions(conn, column: str, ref: int, deletions: list[Deletion]) -> None:
    with conn.cursor() as cur:
        cur.executemany(
            sql.SQL("insert into audit.deletions ({}, target, item, action, rows, files, bytes) "
                    "values (%s, %s, %s, %s, %s, %s, %s)").format(sql.Identifier(column)),
            [(ref, d.target, d.item, d.action, d.rows, d.files, d.bytes) for d in deletions])


def _partitions(conn, parent: str) -> list[tuple[str, str, int]]:
    """(partition, its bound expression, bytes) of a partitioned table."""
    return conn.execute(
        "select c.oid::regclass::text, pg_get_expr(c.relpartbound, c.oid), pg_total_relation_size(c.oid) "
        "from pg_inherits as i join pg_class as c on c.oid = i.inhrelid where i.inhparent = %s::regclass "
        "order by 1", (parent,)).fetchall()


def _raw_weeks(conn, pol: Policy, dry_run: bool) -> list[Deletion]:
    out = []
    for source in SOURCES.values():
        table = sql.SQL(source.raw_table)
        column = sql.Identifier(source.period_column)
        if source.partitioned:
            # one partition per published week: whole partitions go (the legacy default partition,
            # rows published before partitioning, row by row)
            for part, bound, size in _partitions(conn, source.raw_table):
                if bound == "DEFAULT":
                    out += _delete_grouped(conn, part, sql.SQL("{} < %s").format(column),
                                           (pol.kept_from_week,), "batch_id", dry_run)
                    continue
                week = re.fullmatch(r"FOR VALUES IN \('(\d{4}-W\d{2})'\)", bound or "")
                if week is None or week[1] >= pol.kept_from_week:
                    continue
                rows = conn.execute(sql.SQL("select count(*) from {}").format(sql.SQL(part))).fetchone()[0]
                if not dry_run:
                    conn.execute(sql.SQL("alter table {} detach partition {}").format(table, sql.SQL(part)))
                    conn.execute(sql.SQL("drop table {}").format(sql.SQL(part)))
                out.append(Deletion(source.raw_table, f"{part} ({week[1]})", "drop_partition", rows, 0, size))
        else:  # referrals and contacts have no partitions: their rows go by DELETE, per batch
            out += _delete_grouped(conn, source.raw_table, sql.SQL("{} < %s").format(column),
                                   (pol.kept_from,), "batch_id", dry_run)
    return out


def _delete_grouped(conn, table: str, where: sql.Composable, params: tuple, group: str | None,
                    dry_run: bool) -> list[Deletion]:
    """DELETE (or, dry, count) the rows `where` selects, one Deletion per value of `group`."""
    key = sql.Identifier(group) if group else sql.SQL("null::text")
    if dry_run:
        query = sql.SQL("select {key}, count(*), sum(pg_column_size(t.*)) from {table} as t where {where} "
                        "group by 1 order by 1")
    else:
        query = sql.SQL("with gone(k, b) as (delete from {table} as t where {where} "
                        "returning {key}, pg_column_size(t.*)) select k, count(*), sum(b) from gone "
                        "group by k order by k")
    query = query.format(key=key, table=sql.SQL(table), where=where)
    return [Deletion(table, k, "delete_rows", n, 0, int(b or 0))
            for k, n, b in conn.execute(query, params).fetchall()]


def _pseudonymous_tables(conn, with_week: bool = False) -> list[str]:
    """Every table (partitions and dbt models included) with a pseudonym column."""
    rows = conn.execute(
        "select format('%%I.%%I', n.nspname, c.relname) from pg_class as c "
        "join pg_namespace as n on n.oid = c.relnamespace "
        "where c.relkind = 'r' and n.nspname not in ('pg_catalog', 'information_schema') "
        "and exists (select from pg_attribute as a where a.attrelid = c.oid and a.attname = %s and not a.attisdropped) "
        "and (not %s or exists (select from pg_attribute as a where a.attrelid = c.oid "
        "                       and a.attname = 'week_start' and not a.attisdropped)) order by 1",
        (PSEUDONYM_COLUMN, with_week)).fetchall()
    return [r[0] for r in rows]


def _intermediate_weeks(conn, pol: Policy, dry_run: bool) -> list[Deletion]:
    """The per-person models' rows of weeks before kept_from (dbt's tables; no partitions)."""
    out = []
    for table in _pseudonymous_tables(conn, with_week=True):
        if table.split(".")[0] in ("intermediate",):
            out += _delete_grouped(conn, table, sql.SQL("week_start < %s"), (pol.kept_from,), None, dry_run)
    for d in out:
        d.item = f"before {pol.kept_from_week}"
    return out


def _quarantined_and_stuck(conn, pol: Policy, dry_run: bool) -> list[Deletion]:
    out = []
    for source in SOURCES.values():
        out += _delete_grouped(conn, source.quarantine_table, sql.SQL("quarantined_at < %s"),
                               (pol.quarantine_before,), "batch_id", dry_run)
    # A batch left pending (a crash whose file never came again) keeps its own table in `pending`.
    stuck = conn.execute(
        "select format('%%I.%%I', n.nspname, c.relname), pg_total_relation_size(c.oid), b.batch_id "
        "from pg_class as c join pg_namespace as n on n.oid = c.relnamespace "
        "join audit.batches as b on c.relname = lower(b.source || '_' || b.batch_id) "
        "where n.nspname = 'pending' and c.relkind = 'r' and not c.relispartition and b.received_at < %s",
        (pol.quarantine_before,)).fetchall()
    for table, size, batch in stuck:
        rows = conn.execute(sql.SQL("select count(*) from {}").format(sql.SQL(table))).fetchone()[0]
        if not dry_run:
            conn.execute(sql.SQL("drop table {}").format(sql.SQL(table)))
        out.append(Deletion("pending", batch, "drop_table", rows, 0, size))
    return out


# --- files -----------------------------------------------------------------------------------------

def _files(home: Path, landing: Path, pol: Policy, dry_run: bool) -> list[Deletion]:
    out = []
    out += _delivered_files(landing / PROCESSED, home, pol, dry_run)
    for folder in GX_RESULT_DIRS:
        out += _older_files(home, folder, pol.gx_before, dry_run)
    for folder in LOG_DIRS:
        out += _older_files(home, folder, pol.logs_before, dry_run)
    out += _lineage(home, pol.lineage_before, dry_run)
    return [d for d in out if d.files or d.rows]


def _label(path: Path, home: Path) -> str:
    try:
        return str(path.relative_to(home))
    except ValueError:
        return str(path)


def _delivered_files(processed: Path, home: Path, pol: Policy, dry_run: bool) -> list[Deletion]:
    """Delivered files moved to landing/processed/<status>/ after their ingest: those of published,
    superseded and duplicate deliveries go with their week's rows; quarantined and rejected ones
    (a rejected file may hold an identity number) after the quarantine days."""
    out = []
    if not processed.is_dir():
        return out
    for status_dir in sorted(p for p in processed.iterdir() if p.is_dir()):
        gone = Deletion(_label(status_dir, home), None, "delete_files")
        for path in sorted(p for p in status_dir.iterdir() if p.is_file()):
            delivery = parse_file_name(path.name.split(".csv")[0] + ".csv")
            if status_dir.name in WEEK_KEPT_STATUSES and delivery is not None:
                expired = iso_week_start(delivery.period) < pol.kept_from
            else:
                expired = _mtime(path) < pol.quarantine_before
            if expired:
                _remove(path, gone, dry_run)
        out.append(gone)
    return out


def _mtime(path: Path) -> datetime:
    return datetime.fromtimestamp(path.stat().st_mtime, UTC)


def _remove(path: Path, into: Deletion, dry_run: bool) -> None:
    into.files += 1
    into.bytes += path.stat().st_size
    if not dry_run:
        path.unlink()


def _older_files(home: Path, folder: str, before: datetime, dry_run: bool) -> list[Deletion]:
    root = home / folder
    gone = Deletion(folder, None, "delete_files")
    if not root.is_dir():
        return []
    for dirpath, _dirs, files in os.walk(root, topdown=False):
        for name in files:
            path = Path(dirpath) / name
            if _mtime(path) < before:
                _remove(path, gone, dry_run)
        if not dry_run and Path(dirpath) != root and not os.listdir(dirpath):
            os.rmdir(dirpath)
    return [gone]


def _lineage(home: Path, before: datetime, dry_run: bool) -> list[Deletion]:
    """Lineage events older than the limit, by their eventTime; the file is rewritten atomically."""
    path = home / LINEAGE_FILE
    if not path.is_file():
        return []
    kept, dropped = [], Deletion(LINEAGE_FILE, None, "rewrite_files")
    for line in path.read_text(encoding="utf-8").splitlines(keepends=True):
        try:
            when = datetime.fromisoformat(json.loads(line)["eventTime"].replace("Z", "+00:00"))
            old = (when if when.tzinfo else when.replace(tzinfo=UTC)) < before
        except (ValueError, KeyError, TypeError):
            old = False  # a line EWI cannot date is kept (and counted nowhere)
        if old:
            dropped.rows += 1
            dropped.bytes += len(line.encode("utf-8"))
        else:
            kept.append(line)
    if dropped.rows:
        dropped.files = 1
        if not dry_run:
            _rewrite(path, "".join(kept).encode("utf-8"))
    return [dropped]


def _rewrite(path: Path, data: bytes) -> None:
    part = path.with_name(path.name + ".retention-part")
    part.write_bytes(data)
    os.replace(part, path)


# --- erasure ---------------------------------------------------------------------------------------

class NotAPseudonym(ValueError):
    """The value is not a pseudonym (64 lower-case hex); the message never repeats it."""


def erase(pseudonym: str, erased_by: str | None = None, reference: str | None = None,
          rebuild: bool = True) -> dict:
    """Remove every row and file holding `pseudonym`, then rebuild what counted it. Counts only in
    the answer and the audit; the pseudonym itself is never logged, printed or stored."""
    if not re.fullmatch(PSEUDONYM_PATTERN, pseudonym or ""):
        raise NotAPseudonym("the value given is not a pseudonym (64 lower-case hexadecimal characters)")
    if reference is not None and not REFERENCE_RE.fullmatch(reference):
        raise ValueError("a reference is 1-40 letters, digits or _ . / - (a case number, not a pseudonym)")
    erased_by = erased_by or getpass.getuser()
    deletions: list[Deletion] = []
    touched: list[str] = []
    with warehouse.connect(autocommit=True) as conn:
        locks.hold_build(conn)
        try:
            # The rows, the files and the audit record in one transaction: an erasure is recorded
            # exactly when its deletions commit (the files are changed just before the commit).
            with conn.transaction():
                first_week = _first_week_of(conn, pseudonym)
                for table in _pseudonymous_tables(conn):
                    n = conn.execute(sql.SQL("delete from {} where {} = %s").format(
                        sql.SQL(table), sql.Identifier(PSEUDONYM_COLUMN)), (pseudonym,)).rowcount
                    if n:
                        touched.append(table)
                        deletions.append(Deletion(table, None, "delete_rows", n))
                recount_from = _recount_from(conn, first_week)
                if recount_from is not None:
                    # The weeks the person counted in are recounted by the next (incremental) build:
                    # a per-person model recomputes every week after the newest it holds. Weeks whose
                    # trailing windows retention cut keep their counts (docs/decisions.md).
                    for table in _pseudonymous_tables(conn, with_week=True):
                        if table.startswith("intermediate."):
                            conn.execute(sql.SQL("delete from {} where week_start >= %s").format(sql.SQL(table)),
                                         (recount_from,))
                            touched.append(table)
                deletions += _erase_files(pseudonym)
                # 'deferred': a build after this commit recounts (the one started below, or with
                # --no-rebuild the next); its outcome is that build's row in audit.dbt_runs
                asked = "not_needed" if recount_from is None else "deferred"
                rows, files = sum(d.rows for d in deletions), sum(d.files for d in deletions)
                erasure_id = conn.execute(
                    "insert into audit.erasures (erased_by, reference, rows_deleted, files_changed, rebuild) "
                    "values (%s, %s, %s, %s, %s) returning id", (erased_by, reference, rows, files, asked)
                ).fetchone()[0]
                _record_deletions(conn, "erasure", erasure_id, deletions)
            _scrub(conn, touched)
        finally:
            conn.execute("select pg_advisory_unlock(%s)", (locks.BUILD,))
    outcome = asked
    if asked == "deferred" and rebuild:
        from ewi import transform

        # recorded in audit.dbt_runs like every build; a failed one publishes nothing
        outcome = "published" if transform.build()["success"] else "failed"
    log.info("erasure %s: %d rows, %d files; rebuild %s", erasure_id, rows, files, outcome)
    return {"erasure": erasure_id, "rows": rows, "files": files, "rebuild": outcome,
            "deletions": [asdict(d) for d in deletions]}


def _scrub(conn, touched: list[str]) -> None:
    """Deleted rows stay in the table files until vacuumed, and the planner's statistics may hold a
    sampled pseudonym: rewrite the touched tables, sample them (and their partition roots) again,
    rewrite pg_statistic, then a checkpoint, so the data directory's table files no longer hold
    them (what WAL keeps: docs/decisions.md). On a server where EWI is no superuser PostgreSQL
    skips pg_statistic with a warning."""
    tables = list(dict.fromkeys(touched))
    for table in tables:
        conn.execute(sql.SQL("vacuum (full, analyze) {}").format(sql.SQL(table)))
    roots = {conn.execute("select pg_partition_root(%s::regclass)::text", (t,)).fetchone()[0] for t in tables}
    for root in sorted(roots - set(tables) - {None}):
        conn.execute(sql.SQL("analyze {}").format(sql.SQL(root)))
    conn.execute("vacuum full pg_catalog.pg_statistic")
    try:
        conn.execute("checkpoint")
    except psycopg.errors.InsufficientPrivilege:  # the next automatic checkpoint does the same
        log.warning("erasure: no privilege for CHECKPOINT; the next automatic checkpoint completes it")


def _recount_from(conn, first_week: date | None) -> date | None:
    """The first week a build may recount for this person: their first week, but never one whose
    trailing window retention cut (the same floor as the dbt models' reprocessing)."""
    if first_week is None:
        return None
    kept_from = conn.execute("select max(kept_from) from audit.retention_runs").fetchone()[0]
    floor = kept_from + timedelta(weeks=LONGEST_INPUT_WEEKS - 1) if kept_from else first_week
    return max(first_week, floor)


def _first_week_of(conn, pseudonym: str) -> date | None:
    """Monday of the person's first week in raw or intermediate: counts from there on may hold them."""
    parts = []
    for source in SOURCES.values():
        column = sql.Identifier(source.period_column)
        week = (sql.SQL("to_date({}, 'IYYY-\"W\"IW')").format(column) if source.partitioned
                else sql.SQL("date_trunc('week', {})::date").format(column))
        parts.append(sql.SQL("select min({}) from {} where {} = %s").format(
            week, sql.SQL(source.raw_table), sql.Identifier(PSEUDONYM_COLUMN)))
    for table in _pseudonymous_tables(conn, with_week=True):
        if table.startswith("intermediate."):
            parts.append(sql.SQL("select min(week_start) from {} where {} = %s").format(
                sql.SQL(table), sql.Identifier(PSEUDONYM_COLUMN)))
    query = sql.SQL("select min(w) from ({}) as weeks(w)").format(sql.SQL(" union all ").join(parts))
    return conn.execute(query, (pseudonym,) * len(parts)).fetchone()[0]


def _erase_files(pseudonym: str) -> list[Deletion]:
    """Every file under EWI_HOME and the landing folder holding the pseudonym (either case), the
    warehouse's data directory aside: text files lose the lines that hold it, others go whole."""
    needles = {pseudonym.encode("ascii"), pseudonym.upper().encode("ascii")}
    home = config.ewi_home()
    pgdata = (home / "warehouse").resolve()
    out: dict[str, Deletion] = {}
    roots = dict.fromkeys([home.resolve(), config.landing_dir().resolve()])
    for root in roots:
        if not root.is_dir():
            continue
        for dirpath, dirs, files in os.walk(root):
            dirs[:] = [d for d in dirs if (Path(dirpath) / d).resolve() != pgdata]
            for name in files:
                path = Path(dirpath) / name
                if path.is_symlink() or not path.is_file() or not _holds(path, needles):
                    continue
                folder = _label(path.parent, home)
                if path.suffix in LINE_FILES:
                    d = out.setdefault(folder + ":rewrite", Deletion(folder, None, "rewrite_files"))
                    data = path.read_bytes()
                    lines = data.splitlines(keepends=True)
                    kept = [ln for ln in lines if not any(n in ln for n in needles)]
                    d.rows += len(lines) - len(kept)
                    d.bytes += len(data) - sum(len(ln) for ln in kept)
                    d.files += 1
                    _rewrite(path, b"".join(kept))
                else:
                    d = out.setdefault(folder + ":delete", Deletion(folder, None, "delete_files"))
                    _remove(path, d, dry_run=False)
    return list(out.values())


def _holds(path: Path, needles: set[bytes]) -> bool:
    try:
        with path.open("rb") as fh:
            if os.fstat(fh.fileno()).st_size == 0:
                return False
            with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as data:
                return any(data.find(n) >= 0 for n in needles)
    except (OSError, ValueError):
        return False
