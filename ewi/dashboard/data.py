"""What the dashboard reads from the warehouse, and as whom.

Coordinator pages read as the login role `ewi_dashboard` (SELECT on `published` only), auditor
pages as `ewi_auditor` (`published` + `audit`); the dashboard never connects as the owner. The
marts are built by another part of the project and grow over time, so every optional table or
column is looked up before it is used and its absence shows as "nothing to show", not an error.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

import psycopg
from psycopg import conninfo, sql
from psycopg.rows import dict_row

from ewi.dashboard.i18n import INDICATORS

DASHBOARD_ROLE = "ewi_dashboard"
AUDITOR_ROLE = "ewi_auditor"
_PASSWORD_ENV = {DASHBOARD_ROLE: "EWI_DASHBOARD_DB_PASSWORD", AUDITOR_ROLE: "EWI_AUDITOR_DB_PASSWORD"}

STALE_AFTER = timedelta(days=8)


@functools.lru_cache(maxsize=1)
def _owner_dsn() -> str:
    # Only to learn host/port/database: starting the embedded server is what warehouse.dsn() does.
    from ewi import warehouse

    return warehouse.dsn()


def role_dsn(role: str) -> str:
    params: dict[str, str] = {"user": role}
    password = os.environ.get(_PASSWORD_ENV[role])
    if password:
        params["password"] = password
    base = conninfo.conninfo_to_dict(_owner_dsn())
    base.pop("password", None)
    return conninfo.make_conninfo(conninfo.make_conninfo(**base), **params)


def clear_caches() -> None:
    _owner_dsn.cache_clear()


@contextmanager
def connect(role: str = DASHBOARD_ROLE, read_only: bool = True) -> Iterator[psycopg.Connection]:
    """A connection as one of the dashboard's login roles; read-only unless it appends to the
    access log (a second guard besides the role's grants)."""
    with psycopg.connect(role_dsn(role), autocommit=True, row_factory=dict_row) as conn:
        if read_only:
            conn.execute("set default_transaction_read_only = on")
        yield conn


def table_columns(conn: psycopg.Connection, schema: str, table: str) -> list[str]:
    """Columns of a table this role may read; empty when it does not exist (yet)."""
    rows = conn.execute(
        "select column_name from information_schema.columns "
        "where table_schema = %s and table_name = %s order by ordinal_position",
        (schema, table),
    ).fetchall()
    return [r["column_name"] for r in rows]


def _pick(columns: list[str], *patterns: str, exclude: tuple[str, ...] = ()) -> str | None:
    """The first column matching one of the patterns (in order of preference)."""
    for pattern in patterns:
        for c in columns:
            if re.search(pattern, c) and not any(x in c for x in exclude):
                return c
    return None


# ---------------------------------------------------------------- indicators


@dataclass
class Cell:
    rate: float | None
    numerator: int | None
    denominator: int | None
    is_suppressed: bool


def latest_complete_week(conn: psycopg.Connection, today: date | None = None) -> date | None:
    today = today or date.today()
    row = conn.execute(
        "select max(week_start) as latest, "
        "max(week_start) filter (where week_start + 7 <= %s) as complete "
        "from published.area_weekly_indicators",
        (today,),
    ).fetchone()
    return row["complete"] or row["latest"]


def areas(conn: psycopg.Connection) -> list[dict]:
    return conn.execute(
        "select distinct area_code, area_name from published.area_weekly_indicators order by area_code"
    ).fetchall()


def weekly(conn: psycopg.Connection, indicator: str | None = None, area_code: str | None = None,
           since: date | None = None) -> list[dict]:
    """Rows of published.area_weekly_indicators, oldest first."""
    where = [sql.SQL("true")]
    params: list = []
    if indicator:
        where.append(sql.SQL("indicator = %s"))
        params.append(indicator)
    if area_code:
        where.append(sql.SQL("area_code = %s"))
        params.append(area_code)
    if since:
        where.append(sql.SQL("week_start >= %s"))
        params.append(since)
    query = sql.SQL(
        "select area_code, area_name, week_start, indicator, numerator, denominator, rate, is_suppressed "
        "from published.area_weekly_indicators where {} order by area_code, indicator, week_start"
    ).format(sql.SQL(" and ").join(where))
    return [_floats(r) for r in conn.execute(query, params).fetchall()]


def municipality(conn: psycopg.Connection, since: date | None = None) -> dict[tuple[str, date], float | None]:
    """(indicator, week_start) -> municipality rate."""
    if not table_columns(conn, "published", "municipality_weekly"):
        return {}
    rows = conn.execute(
        "select indicator, week_start, rate from published.municipality_weekly where week_start >= %s",
        (since or date(1900, 1, 1),),
    ).fetchall()
    return {(r["indicator"], r["week_start"]): _float(r["rate"]) for r in rows}


def rolling_12(conn: psycopg.Connection, area_code: str) -> dict[tuple[str, date], float | None]:
    """(indicator, week_start) -> the area's 12-week rolling rate, from published.area_trends."""
    cols = table_columns(conn, "published", "area_trends")
    col = _pick(cols, r"roll\w*_?12", r"12_?w\w*rate", r"rate\w*12", r"12",
                exclude=("change", "diff", "ratio", "year", "num", "den", "suppress", "municipality"))
    if not col or "area_code" not in cols or "week_start" not in cols:
        return {}
    rows = conn.execute(
        sql.SQL("select indicator, week_start, {} as value from published.area_trends where area_code = %s")
        .format(sql.Identifier(col)),
        (area_code,),
    ).fetchall()
    return {(r["indicator"], r["week_start"]): _float(r["value"]) for r in rows}


def alerts(conn: psycopg.Connection, area_code: str | None = None, week: date | None = None) -> list[dict]:
    """Rows of published.area_alerts with is_alert true; empty while that table does not exist."""
    cols = table_columns(conn, "published", "area_alerts")
    if not {"area_code", "week_start", "indicator", "is_alert"} <= set(cols):
        return []
    wanted = [c for c in ("area_code", "week_start", "indicator", "method", "observed", "expected",
                          "upper_threshold", "score", "explanation_sv", "explanation_en") if c in cols]
    where = [sql.SQL("is_alert")]
    params: list = []
    if area_code:
        where.append(sql.SQL("area_code = %s"))
        params.append(area_code)
    if week:
        where.append(sql.SQL("week_start = %s"))
        params.append(week)
    query = sql.SQL("select {} from published.area_alerts where {} order by week_start, area_code").format(
        sql.SQL(", ").join(map(sql.Identifier, wanted)), sql.SQL(" and ").join(where))
    return [_floats(r) for r in conn.execute(query, params).fetchall()]


# ---------------------------------------------------------------- overview


@dataclass
class OverviewCell:
    indicator: str
    cell: Cell | None
    municipality_rate: float | None
    baseline: float | None  # the area's own mean rate over its previous 12 published weeks
    vs_municipality: str  # high | elevated | normal | low | none
    vs_history: str  # up | down | flat | none
    alert: dict | None = None


@dataclass
class OverviewRow:
    area_code: str
    area_name: str
    cells: dict[str, OverviewCell] = field(default_factory=dict)

    @property
    def alert_count(self) -> int:
        return sum(1 for c in self.cells.values() if c.alert)

    @property
    def level(self) -> str:
        """The worst comparison with the municipality, for the schematic grid's colour."""
        order = ["none", "low", "normal", "elevated", "high"]
        return max((c.vs_municipality for c in self.cells.values()), key=order.index, default="none")


def _vs_municipality(rate: float | None, muni: float | None) -> str:
    if rate is None or muni is None or muni <= 0:
        return "none"
    ratio = rate / muni
    if ratio >= 1.5:
        return "high"
    if ratio >= 1.15:
        return "elevated"
    if ratio <= 0.85:
        return "low"
    return "normal"


def _vs_history(rate: float | None, baseline: float | None) -> str:
    if rate is None or baseline is None:
        return "none"
    if baseline == 0:
        return "up" if rate > 0 else "flat"
    ratio = rate / baseline
    return "up" if ratio >= 1.2 else "down" if ratio <= 0.8 else "flat"


def overview(conn: psycopg.Connection, week: date) -> tuple[list[OverviewRow], dict[str, float | None]]:
    """Every area with its five indicators for one week, areas with alerts first."""
    history_start = week - timedelta(weeks=12)
    rows = weekly(conn, since=history_start)
    muni = municipality(conn, since=week)
    muni_week = {ind: muni.get((ind, week)) for ind in INDICATORS}
    week_alerts = {(a["area_code"], a["indicator"]): a for a in alerts(conn, week=week)}

    by_area: dict[str, OverviewRow] = {}
    history: dict[tuple[str, str], list[float]] = {}
    current: dict[tuple[str, str], Cell] = {}
    for r in rows:
        by_area.setdefault(r["area_code"], OverviewRow(r["area_code"], r["area_name"]))
        key = (r["area_code"], r["indicator"])
        if r["week_start"] == week:
            current[key] = Cell(r["rate"], r["numerator"], r["denominator"], bool(r["is_suppressed"]))
        elif r["week_start"] < week and r["rate"] is not None:
            history.setdefault(key, []).append(r["rate"])
    for code, row in by_area.items():
        for ind in INDICATORS:
            cell = current.get((code, ind))
            past = history.get((code, ind))
            baseline = sum(past) / len(past) if past else None
            rate = cell.rate if cell else None
            row.cells[ind] = OverviewCell(
                ind, cell, muni_week[ind], baseline,
                _vs_municipality(rate, muni_week[ind]), _vs_history(rate, baseline),
                week_alerts.get((code, ind)),
            )
    ordered = sorted(by_area.values(), key=lambda r: (-r.alert_count, r.area_code))
    return ordered, muni_week


# ---------------------------------------------------------------- freshness


@dataclass
class SourceStatus:
    source: str
    last_period: str | None
    published_at: datetime | None
    gate: str | None
    stale: bool
    quarantined: bool
    quarantine_status: str | None
    #: the code of the gate's reason (missing_columns, checks_failed, ...): the mart holds no reason text
    reason_code: str | None = None


_BAD_GATE = ("quarantined", "rejected", "fail", "failed", "error")


def _week_end(period) -> date | None:
    if isinstance(period, datetime):
        period = period.date()
    if isinstance(period, date):
        return period + timedelta(days=6 - period.weekday())
    m = re.fullmatch(r"(\d{4})-?W(\d{2})", str(period or "").strip())
    if not m:
        return None
    try:
        return date.fromisocalendar(int(m[1]), int(m[2]), 7)
    except ValueError:
        return None


def load_status(conn: psycopg.Connection, today: date | None = None) -> list[SourceStatus]:
    """Per source: last published period, when, gate result, and whether it is stale (more than
    8 days since the end of the last published week) or its last delivery was stopped."""
    today = today or date.today()
    cols = table_columns(conn, "published", "load_status")
    if "source" not in cols:
        return []
    period_col = _pick(cols, r"^last_published_period$", r"^last_period$", r"period", r"iso_week",
                       r"week_start", r"week", exclude=("_at",))
    at_col = _pick(cols, r"^last_published_at$", r"^published_at$", r"published_at", r"_at$")
    gate_col = _pick(cols, r"^gate_result$", r"^last_gate_result$", r"gate", r"^status$", r"result",
                     exclude=("reason",))
    code_col = _pick(cols, r"^gate_reason_code$")
    delivery_cols = [c for c in cols if re.search(r"deliver|batch|status|gate|result", c)]
    statuses = []
    for r in conn.execute("select * from published.load_status order by source").fetchall():
        period = r.get(period_col) if period_col else None
        end = _week_end(period)
        bad = next((str(r[c]) for c in delivery_cols
                    if isinstance(r.get(c), str) and r[c].lower() in _BAD_GATE), None)
        statuses.append(SourceStatus(
            source=r["source"],
            last_period=str(period) if period is not None else None,
            published_at=r.get(at_col) if at_col else None,
            gate=str(r[gate_col]) if gate_col and r.get(gate_col) is not None else None,
            stale=end is None or today - end > STALE_AFTER,
            quarantined=bad is not None,
            quarantine_status=bad,
            reason_code=r.get(code_col) if code_col else None,
        ))
    return statuses


# ---------------------------------------------------------------- audit


def batches(conn: psycopg.Connection) -> list[dict]:
    return conn.execute(
        "select b.batch_id, b.source, b.period, b.file_name, b.file_sha256, b.file_size, b.received_at, "
        "b.decided_at, b.rows_in_file, b.rows_published, b.status, b.reason, b.superseded_by, "
        "b.data_docs_path, "
        "(select count(*) from audit.check_results c where c.batch_id = b.batch_id) as checks, "
        "(select count(*) from audit.check_results c where c.batch_id = b.batch_id and not c.success) "
        "  as failed_checks "
        "from audit.batches b order by b.received_at desc, b.batch_id"
    ).fetchall()


def batch(conn: psycopg.Connection, batch_id: str) -> tuple[dict | None, list[dict]]:
    row = conn.execute("select * from audit.batches where batch_id = %s", (batch_id,)).fetchone()
    if row is None:
        return None, []
    checks = conn.execute(
        "select expectation_type, column_name, success, observed, unexpected_count "
        "from audit.check_results where batch_id = %s order by success, expectation_type, column_name",
        (batch_id,),
    ).fetchall()
    return row, checks


def dbt_builds(conn: psycopg.Connection, limit: int = 20) -> list[dict]:
    """The latest dbt builds (audit.dbt_runs), newest first, each with its test results, failures
    first; empty while those tables do not exist."""
    run_cols = table_columns(conn, "audit", "dbt_runs")
    test_cols = table_columns(conn, "audit", "dbt_test_results")
    if "run_id" not in run_cols or "run_id" not in test_cols:
        return []
    order = "started_at desc" if "started_at" in run_cols else "run_id desc"
    runs = conn.execute(
        sql.SQL("select * from audit.dbt_runs order by {} limit %s").format(sql.SQL(order)), (limit,)
    ).fetchall()
    status = "status" if "status" in test_cols else None
    failures_first = (sql.SQL("case when lower(status) in ('fail', 'error') then 0 "
                              "when lower(status) = 'warn' then 1 else 2 end, ")
                      if status else sql.SQL(""))
    name = sql.Identifier("test_name" if "test_name" in test_cols else "unique_id" if "unique_id" in test_cols
                          else "run_id")
    tests = conn.execute(
        sql.SQL("select * from audit.dbt_test_results where run_id = any(%s) order by {}{}")
        .format(failures_first, name),
        ([r["run_id"] for r in runs],),
    ).fetchall()
    by_run: dict[str, list[dict]] = {}
    for t in tests:
        by_run.setdefault(t["run_id"], []).append(t)
    wanted = [c for c in ("test_name", "model", "status", "failures", "message", "completed_at") if c in test_cols]
    for r in runs:
        r["tests"] = by_run.get(r["run_id"], [])
        r["test_columns"] = wanted or [c for c in test_cols if c != "run_id"]
        r["failed_tests"] = sum(1 for t in r["tests"] if str(t.get("status", "")).lower() in ("fail", "error"))
    # builds with failing tests first, then newest first (the query's order)
    return sorted(runs, key=lambda r: r["failed_tests"] == 0)


# ---------------------------------------------------------------- provenance

#: The deliveries an indicator of week W is computed from: per source, how many weeks up to and
#: including W (SOURCES.md). multi_signal looks back 12 weeks at invalid-absence flags, each of which
#: sums the 4 school weeks before it, so school deliveries reach 15 weeks back.
PROVENANCE_WEEKS = {
    "chronic_absence": {"school_absence": 4},
    "invalid_absence": {"school_absence": 4},
    "referrals": {"referrals": 1},
    "contacts": {"contacts": 1},
    "multi_signal": {"school_absence": 15, "referrals": 12, "contacts": 12},
}


def _iso_week(day: date) -> str:
    y, w, _ = day.isocalendar()
    return f"{y}-W{w:02d}"


def last_published_build(conn: psycopg.Connection) -> datetime | None:
    """When the build whose marts are published started (the marts saw the batches decided before)."""
    cols = table_columns(conn, "audit", "dbt_runs")
    if not {"published", "started_at"} <= set(cols):
        return None
    return conn.execute("select max(started_at) as at from audit.dbt_runs where published").fetchone()["at"]


def provenance(conn: psycopg.Connection, indicator: str, week: date) -> dict:
    """The deliveries (audit.batches) of the sources feeding `indicator` whose periods fall in its
    window ending `week`, each marked `used` when it was in raw when the published build ran: a
    published batch decided before that build, or a batch a later correction superseded after it."""
    windows = PROVENANCE_WEEKS[indicator]
    wanted = [(source, _iso_week(week - timedelta(weeks=i))) for source, n in windows.items() for i in range(n)]
    rows = conn.execute(
        "select b.batch_id, b.source, b.period, b.file_name, b.status, b.reason, b.received_at, "
        "b.decided_at, b.rows_published, b.superseded_by, s.decided_at as superseded_at "
        "from audit.batches b "
        "join unnest(%s::text[], %s::text[]) as want (source, period) "
        "  on want.source = b.source and want.period = b.period "
        "left join audit.batches s on s.batch_id = b.superseded_by "
        "order by b.source, b.period desc, b.received_at desc, b.batch_id",
        ([w[0] for w in wanted], [w[1] for w in wanted]),
    ).fetchall()
    built = last_published_build(conn)
    for r in rows:
        if built is None:  # no build on record: what is in raw now is what the marts were built from
            r["used"] = r["status"] == "published"
        else:
            decided_before = r["decided_at"] is not None and r["decided_at"] <= built
            r["used"] = decided_before and (
                r["status"] == "published"
                or (r["status"] == "superseded" and (r["superseded_at"] is None or r["superseded_at"] > built)))
    periods = {source: (_iso_week(week - timedelta(weeks=n - 1)), _iso_week(week)) for source, n in windows.items()}
    missing = sorted(set(wanted) - {(r["source"], r["period"]) for r in rows if r["used"]})
    return {"batches": rows, "periods": periods, "built_at": built, "missing": missing}


def deliveries_by_source(conn: psycopg.Connection) -> dict[str, dict[str, int]]:
    """source -> {status: number of deliveries}, for the lineage graph's delivery nodes."""
    rows = conn.execute(
        "select source, status, count(*) as n from audit.batches where source is not null group by 1, 2"
    ).fetchall()
    out: dict[str, dict[str, int]] = {}
    for r in rows:
        out.setdefault(r["source"], {})[r["status"]] = r["n"]
    return out


def published_cell(conn: psycopg.Connection, indicator: str, week: date, area_code: str | None) -> dict | None:
    """The published figure a provenance page is about: an area's, or the municipality's."""
    if area_code:
        row = conn.execute(
            "select area_code, area_name, numerator, denominator, rate, is_suppressed "
            "from published.area_weekly_indicators where indicator = %s and week_start = %s and area_code = %s",
            (indicator, week, area_code),
        ).fetchone()
    elif table_columns(conn, "published", "municipality_weekly"):
        row = conn.execute(
            "select null as area_code, null as area_name, numerator, denominator, rate, is_suppressed "
            "from published.municipality_weekly where indicator = %s and week_start = %s",
            (indicator, week),
        ).fetchone()
    else:
        row = None
    return _floats(row) if row else None


# ---------------------------------------------------------------- helpers


def _float(value) -> float | None:
    return None if value is None else float(value)


def _floats(row: dict) -> dict:
    for key in ("rate", "observed", "expected", "upper_threshold", "score"):
        if key in row and row[key] is not None and not isinstance(row[key], (dict, list, str)):
            row[key] = float(row[key])
    for key in ("numerator", "denominator"):
        if key in row and row[key] is not None:
            row[key] = int(row[key])
    return row
