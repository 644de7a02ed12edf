"""`ewi audit verify`: walk the audit trail's hash chain (migration 0019) and name the first record
that was changed, inserted or deleted outside it.

Two checks, both set-based SQL (one pass over the chain, one per audit table):

1. the links: numbered 1, 2, 3 ... without a gap (a deleted link), each link's prev_hash is its
   predecessor's hash (a link inserted or rewritten), and each hash is the keyed hash of its own
   fields (a link edited, or written by a session without EWI's key: plain SQL from another client);
2. the rows: each audit table holds exactly the row versions the chain says are live (genesis,
   insert and update add a version, update and delete remove one), compared as multisets of row
   digests. A row the chain does not know was inserted (or changed, when a known version of the
   same key is missing at the same time) with the trigger bypassed; a live version with no row was
   deleted or changed.

A report names records by chain number, table and key (a batch id, a run id, an entry number);
never by content. Every verification is recorded in audit.chain_verifications for the auditors.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import psycopg
from psycopg import sql

from ewi import warehouse

GENESIS_PREV = "0" * 64
LOCK_ID = 0x0E1_0019  # = ewi.locks.AUDIT_CHAIN, the number migration 0019 takes
_SHOWN = 20  # problems kept in a report; the count says how many there were


@dataclass
class Problem:
    kind: str            # wrong_key | link_missing | link_broken | link_unsealed | row_deleted | row_changed | row_inserted | not_chained
    table: str
    seq: int | None      # the chain record concerned, when there is one
    key: str | None      # the row's key in words (batch_id=..., id=...)
    words: str

    def sort_key(self) -> tuple:
        return (self.kind != "wrong_key", self.seq is None, self.seq or 0, self.table, self.key or "")


@dataclass
class Verification:
    holds: bool
    links_checked: int
    records_checked: int
    head_seq: int | None
    head_hash: str | None
    seconds: float
    problems: list[Problem] = field(default_factory=list)
    problem_count: int = 0

    @property
    def first_broken(self) -> str | None:
        return self.problems[0].words if self.problems else None

    def as_dict(self) -> dict:
        out = asdict(self)
        out["first_broken"] = self.first_broken
        # a hash prefix is enough to compare with a copy kept elsewhere, and never looks like data
        out["head_hash"] = self.head_hash[:16] if self.head_hash else None
        return out


def _record(seq: int | None, table: str, key: str | None) -> str:
    if seq is None:
        return f"a row of {table} ({key or 'no key'})"
    return f"record #{seq} of the chain ({table}" + (f", {key})" if key else ")")


def _check_links(conn: psycopg.Connection, key: str) -> tuple[int, int | None, str | None, list[Problem]]:
    problems: list[Problem] = []
    rows = conn.execute(
        """select seq, table_name, row_key, consecutive, joins, sealed, prev_seq from (
               select seq, table_name, row_key,
                      seq = coalesce(lag(seq) over w, 0) + 1 as consecutive,
                      prev_hash = coalesce(lag(hash) over w, %(genesis)s) as joins,
                      hash = audit.link_hash(%(key)s, prev_hash, seq, table_name, op, row_key,
                                             row_digest, old_digest, recorded_at) as sealed,
                      lag(seq) over w as prev_seq
               from audit.chain window w as (order by seq)) as links
           where not (consecutive and joins and sealed)
           order by seq limit %(limit)s""",
        {"genesis": GENESIS_PREV, "key": key, "limit": _SHOWN * 3},
    ).fetchall()
    for seq, table, row_key, consecutive, joins, sealed, prev_seq in rows:
        if not consecutive:
            gone = f"#{(prev_seq or 0) + 1}" + (f" to #{seq - 1}" if seq - 1 > (prev_seq or 0) + 1 else "")
            problems.append(Problem("link_missing", table, seq, row_key,
                                    f"chain record {gone} before {_record(seq, table, row_key)} was deleted"))
        elif not joins:
            problems.append(Problem("link_broken", table, seq, row_key,
                                    f"{_record(seq, table, row_key)} does not follow the record before it: "
                                    "a record was inserted into the chain or changed there"))
        elif not sealed:
            problems.append(Problem("link_unsealed", table, seq, row_key,
                                    f"{_record(seq, table, row_key)} does not carry EWI's hash: it was changed, "
                                    "or written by a session without EWI's key (SQL from outside EWI)"))
    count, head_seq, head_hash = conn.execute(
        "select count(*), max(seq), (select hash from audit.chain order by seq desc limit 1) from audit.chain"
    ).fetchone()
    ends_sealed = conn.execute(
        """select bool_or(hash = audit.link_hash(%s, prev_hash, seq, table_name, op, row_key, row_digest,
                                                 old_digest, recorded_at))
           from audit.chain where seq in ((select min(seq) from audit.chain), (select max(seq) from audit.chain))""",
        (key,)).fetchone()[0]
    if count and ends_sealed is False:
        # neither the first nor the last record verifies: the key is not the chain's, not a record
        problems.insert(0, Problem("wrong_key", "audit.chain", None, None,
                                   "neither the chain's first nor its last record verifies with the key in use: "
                                   "this is not the key the chain was written with (EWI_AUDIT_CHAIN_KEY, or "
                                   "$EWI_HOME/audit/chain.key of the installation that wrote it)"))
    return count, head_seq, head_hash, problems


def audit_tables(conn: psycopg.Connection) -> list[str]:
    """Every table of schema audit but the chain itself (partitions are checked through their parent)."""
    return [r[0] for r in conn.execute(
        """select 'audit.' || c.relname from pg_class as c join pg_namespace as n on n.oid = c.relnamespace
           where n.nspname = 'audit' and c.relkind in ('r', 'p') and c.relname <> 'chain'
             and not c.relispartition order by c.relname""").fetchall()]


def chained_tables(conn: psycopg.Connection) -> dict[str, list[str]]:
    """The audit tables with the chain's trigger, and the key columns each names its rows by."""
    return {table: cols for table, (cols, _) in _triggers(conn).items()}


def _triggers(conn: psycopg.Connection) -> dict[str, tuple[list[str], bool]]:
    """table -> (key columns, whether the trigger fires): one disabled (ALTER TABLE ... DISABLE
    TRIGGER) records nothing."""
    out = {}
    for table, args, enabled in conn.execute(
            """select n.nspname || '.' || c.relname, t.tgargs, t.tgenabled <> 'D' from pg_trigger as t
               join pg_class as c on c.oid = t.tgrelid join pg_namespace as n on n.oid = c.relnamespace
               where t.tgname = 'audit_chain' and n.nspname = 'audit'""").fetchall():
        out[table] = ([a.decode() for a in bytes(args).split(b"\x00") if a], enabled)
    return out


def ensure_chained(conn: psycopg.Connection) -> int:
    """Chain every table of schema audit that has no chain trigger (`ewi warehouse init`, after the
    migrations): a new table with its rows as genesis records (audit.chain_all); a table the chain
    already knows, whose trigger was dropped, gets its trigger back and no genesis, so what was
    changed meanwhile stays visible to `verify` instead of being taken in as a new start."""
    chained = chained_tables(conn)
    missing = [t for t in audit_tables(conn) if t not in chained]
    if not missing:
        return 0
    for table in missing:
        if conn.execute("select exists (select 1 from audit.chain where table_name = %s)", (table,)).fetchone()[0]:
            conn.execute(sql.SQL(
                "create constraint trigger audit_chain after insert or update or delete on {} "
                "deferrable initially deferred for each row execute function audit.chain_record({})"
            ).format(sql.Identifier(*table.split(".", 1)),
                     sql.SQL(", ").join(sql.Literal(c) for c in _key_columns(conn, table))))
    return conn.execute("select audit.chain_all()").fetchone()[0]


def _key_columns(conn: psycopg.Connection, table: str) -> list[str]:
    """The columns a table's rows are named by: its primary key, else batch_id / run_id (as 0019's
    audit.chain_table picks them)."""
    cols = conn.execute(
        """select a.attname from pg_index as i
           join pg_attribute as a on a.attrelid = i.indrelid and a.attnum = any (i.indkey)
           where i.indrelid = %s::regclass and i.indisprimary
           order by array_position(i.indkey::int2[], a.attnum)""", (table,)).fetchall()
    if not cols:
        cols = conn.execute(
            """select attname from pg_attribute where attrelid = %s::regclass
               and attname in ('batch_id', 'run_id') and not attisdropped order by attnum""", (table,)).fetchall()
    return [c[0] for c in cols]


def _check_rows(conn: psycopg.Connection, table: str, cols: list[str]) -> tuple[int, list[Problem]]:
    schema, name = table.split(".", 1)
    ident = sql.Identifier(schema, name)
    diff = conn.execute(sql.SQL(
        """with expected as (
               select d, sum(n) as n from (
                   select row_digest as d, 1 as n from audit.chain where table_name = %(t)s and row_digest is not null
                   union all
                   select old_digest, -1 from audit.chain where table_name = %(t)s and old_digest is not null) as e
               group by d),
           actual as (select audit.record_digest(r) as d, count(*) as n from {tbl} as r group by 1)
           select coalesce(e.d, a.d), coalesce(e.n, 0), coalesce(a.n, 0)
           from expected as e full join actual as a on a.d = e.d
           where coalesce(e.n, 0) <> coalesce(a.n, 0)""").format(tbl=ident), {"t": table}).fetchall()
    total = conn.execute(sql.SQL("select count(*) from {}").format(ident)).fetchone()[0]
    missing: list[tuple[int, str | None]] = []   # live versions with no row: (chain record, key)
    extra: list[str | None] = []                  # rows the chain does not know: key
    for digest, expected, actual in diff[: _SHOWN * 3]:
        if expected > actual:
            seq, key = conn.execute(
                "select seq, row_key from audit.chain where table_name = %s and row_digest = %s "
                "order by seq desc limit 1", (table, digest)).fetchone()
            missing.append((seq, key))
        else:
            for (key,) in conn.execute(sql.SQL(
                    "select audit.record_key(to_jsonb(r), %s) from {} as r where audit.record_digest(r) = %s"
            ).format(ident), (cols, digest)).fetchall()[: actual - expected]:
                extra.append(key)
    problems = []
    changed_keys = {k for _, k in missing if k} & {k for k in extra if k}
    for seq, key in missing:
        if key in changed_keys:
            problems.append(Problem("row_changed", table, seq, key,
                                    f"{_record(seq, table, key)} was changed outside the audit trail"))
        else:
            problems.append(Problem("row_deleted", table, seq, key,
                                    f"{_record(seq, table, key)} was deleted outside the audit trail"))
    for key in extra:
        if key not in changed_keys:
            problems.append(Problem("row_inserted", table, None, key,
                                    f"{_record(None, table, key)} was inserted outside the audit trail"))
    return total, problems


def _check_last_verification(conn: psycopg.Connection) -> list[Problem]:
    """The head a verification that held saw must still be in the chain, unchanged: a chain rewritten
    from some record on (hashes recomputed with the key) is caught here, back to that verification."""
    last = conn.execute(
        """select verified_at, head_seq, head_hash from audit.chain_verifications
           where holds and head_seq is not null order by id desc limit 1""").fetchone()
    if not last:
        return []
    at, seq, expected = last
    row = conn.execute("select hash from audit.chain where seq = %s", (seq,)).fetchone()
    if row and row[0] == expected:
        return []
    return [Problem("link_broken", "audit.chain", seq, None,
                    f"record #{seq} of the chain is not the one the verification of {at:%Y-%m-%d %H:%M} UTC "
                    "saw: the chain was rewritten since")]


def verify(conn: psycopg.Connection, key: str | None = None) -> Verification:
    """Verify the chain on `conn`, an autocommit connection (read only; `record` writes the outcome)."""
    started = time.perf_counter()
    key = key if key is not None else warehouse.audit_chain_key()
    # the digests are of JSON, and a timestamp's JSON depends on these two (the trigger sets them too)
    conn.execute("set timezone = 'UTC'")
    conn.execute("set intervalstyle = 'postgres'")
    problems: list[Problem] = []
    with conn.transaction():
        conn.execute("set transaction isolation level repeatable read, read only")
        links, head_seq, head_hash, link_problems = _check_links(conn, key)
        problems += link_problems
        triggers = _triggers(conn)
        records = 0
        for table in audit_tables(conn):
            if table not in triggers:
                problems.append(Problem("not_chained", table, None, None,
                                        f"{table} is not chained: run `ewi warehouse init`"))
                continue
            cols, enabled = triggers[table]
            if not enabled:
                problems.append(Problem("not_chained", table, None, None,
                                        f"the chain's trigger on {table} is disabled: changes to it are not recorded"))
            count, table_problems = _check_rows(conn, table, cols)
            records += count
            problems += table_problems
        problems += _check_last_verification(conn)
    problems.sort(key=Problem.sort_key)
    return Verification(holds=not problems, links_checked=links, records_checked=records,
                        head_seq=head_seq, head_hash=head_hash,
                        seconds=round(time.perf_counter() - started, 3),
                        problems=problems[:_SHOWN], problem_count=len(problems))


def record(conn: psycopg.Connection, result: Verification) -> None:
    """Keep the outcome for the auditors' page (itself a chained audit record)."""
    with conn.transaction():
        conn.execute(
            """insert into audit.chain_verifications
                   (holds, records_checked, links_checked, head_seq, head_hash, first_broken, problems)
               values (%s, %s, %s, %s, %s, %s, %s)""",
            (result.holds, result.records_checked, result.links_checked,
             result.head_seq if result.holds else None, result.head_hash if result.holds else None,
             result.first_broken, result.problem_count))


def verify_warehouse(keep: bool = True) -> Verification:
    with warehouse.connect(autocommit=True) as conn:
        result = verify(conn)
        if keep:
            record(conn, result)
    return result
