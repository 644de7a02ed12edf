"""What the dashboard reads from the warehouse, and as whom.

Coordinator pages read as the login role `ewi_dashboard` (SELECT on `published` only), auditor
pages as `ewi_auditor` (`published` + `audit`); the dashboard never connects as the owner. The
marts' columns are read by name: their contracts are enforced by dbt (dbt_project/models/marts,
`contract: {enforced: true}`), so a renamed column fails the build, not this page.
Before the first build a mart does not exist yet; that shows as "nothing to show", not an error.
The audit schema's reads are in ewi.dashboard.audit_data.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

import psycopg
from psycopg import conninfo, sql
from psycopg.rows import dict_row

from ewi.dashboard.i18n import INDICATORS
from ewi.settings import get_settings

DASHBOARD_ROLE = "ewi_dashboard"
AUDITOR_ROLE = "ewi_auditor"
#: The settings holding each read-only role's password.
_PASSWORD_SETTING = {DASHBOARD_ROLE: "dashboard_db_password", AUDITOR_ROLE: "auditor_db_password"}

STALE_AFTER = timedelta(days=8)


@functools.lru_cache(maxsize=1)
def _owner_dsn() -> str:
    # Only to learn host/port/database: starting the embedded server is what warehouse.dsn() does.
    from ewi import warehouse

    return warehouse.dsn()


def role_dsn(role: str) -> str:
    params: dict[str, str] = {"user": role}
    password = getattr(get_settings(), _PASSWORD_SETTING[role])
    if password is not None:
        params["password"] = password.get_secret_value()
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


def built(conn: psycopg.Connection, table: str) -> bool:
    """Whether a mart (published.<table>) exists yet: the first dbt build creates it."""
    return conn.execute("select to_regclass(%s) is not null as found", (f"published.{table}",)).fetchone()["found"]


# ---------------------------------------------------------------- indicators


@dataclass
class Cell:
    rate: float | None
    numerator: int | None
    denominator: int | None
    is_suppressed: bool


def latest_complete_week(conn: psycopg.Connection, today: date | None = None) -> date | None:
    today = today or date.today()
    if not built(conn, "area_weekly_indicators"):
        return None  # before the first build: nothing published yet
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
    where, params = _where("true", ("indicator = %s", indicator), ("area_code = %s", area_code),
                           ("week_start >= %s", since))
    query = sql.SQL(
        "select area_code, area_name, week_start, indicator, numerator, denominator, rate, is_suppressed "
        "from published.area_weekly_indicators where {} order by area_code, indicator, week_start"
    ).format(where)
    return [floats(r) for r in conn.execute(query, params).fetchall()]


def municipality(conn: psycopg.Connection, since: date | None = None) -> dict[tuple[str, date], float | None]:
    """(indicator, week_start) -> municipality rate."""
    if not built(conn, "municipality_weekly"):
        return {}
    rows = conn.execute(
        "select indicator, week_start, rate from published.municipality_weekly where week_start >= %s",
        (since or date(1900, 1, 1),),
    ).fetchall()
    return {(r["indicator"], r["week_start"]): _float(r["rate"]) for r in rows}


def rolling_12(conn: psycopg.Connection, area_code: str) -> dict[tuple[str, date], float | None]:
    """(indicator, week_start) -> the area's 12-week rolling rate, from published.area_trends."""
    if not built(conn, "area_trends"):
        return {}
    rows = conn.execute(
        "select indicator, week_start, rate_12w as value from published.area_trends where area_code = %s",
        (area_code,),
    ).fetchall()
    return {(r["indicator"], r["week_start"]): _float(r["value"]) for r in rows}


def alerts(conn: psycopg.Connection, area_code: str | None = None, week: date | None = None) -> list[dict]:
    """The alerts of the default method (published.area_alerts where is_alert and
    is_default_method): what the dashboard calls "an alert" on every coordinator page, export and
    chart. The other methods' verdicts are for the auditors' comparison (`method_alerts`). Empty
    while that table does not exist."""
    if not built(conn, "area_alerts"):
        return []
    where, params = _where("is_alert and is_default_method", ("area_code = %s", area_code), ("week_start = %s", week))
    query = sql.SQL(
        "select area_code, week_start, indicator, method, observed, expected, upper_threshold, score, "
        "explanation_sv, explanation_en from published.area_alerts where {} order by week_start, area_code"
    ).format(where)
    return [floats(r) for r in conn.execute(query, params).fetchall()]


def method_alerts(conn: psycopg.Connection, week: date) -> list[dict]:
    """Every method's verdict of one week for each area and indicator that some method alerts,
    with is_default_method: the auditors' comparison of the methods."""
    if not built(conn, "area_alerts"):
        return []
    return [floats(r) for r in conn.execute(
        "select a.area_code, a.area_name, a.indicator, a.method, a.is_default_method, a.is_alert, a.status, "
        "a.observed, a.expected, a.upper_threshold, a.score, a.explanation_sv, a.explanation_en "
        "from published.area_alerts a where a.week_start = %(week)s and exists ("
        "  select 1 from published.area_alerts b where b.week_start = %(week)s and b.is_alert "
        "  and b.area_code = a.area_code and b.indicator = a.indicator) "
        "order by a.area_code, a.indicator, a.method",
        {"week": week},
    ).fetchall()]


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


# ---------------------------------------------------------------- one area


def area_view(conn: psycopg.Connection, area_code: str, weeks: int, until: date | None = None) -> dict | None:
    """What the area page, its charts and its export show: the area's published weeks up to the
    latest complete one, or to `until` when that is earlier (`weeks` of them), with the
    municipality's rates, the 12-week rolling rate, the same week a year earlier and the alerts;
    None when the area has no published rows."""
    latest = latest_complete_week(conn)
    if latest is None:
        return None
    latest = min(latest, until) if until else latest
    since = latest - timedelta(weeks=weeks - 1)
    rows = [r for r in weekly(conn, area_code=area_code, since=since - timedelta(weeks=53))
            if r["week_start"] <= latest]
    if not rows:
        return None
    by_key = {(r["indicator"], r["week_start"]): r for r in rows}
    shown = [r for r in rows if r["week_start"] >= since]
    week_list = sorted({r["week_start"] for r in shown}, reverse=True)
    area_alerts = [a for a in alerts(conn, area_code=area_code) if since <= a["week_start"] <= latest]
    last_year = {k: (by_key.get((k[0], k[1] - timedelta(weeks=52))) or {}).get("rate")
                 for k in by_key}
    return {
        "area_code": area_code,
        "area_name": rows[0]["area_name"],
        "latest": latest,
        "since": since,
        "weeks": weeks,
        "week_list": week_list,
        "cells": {(r["indicator"], r["week_start"]): r for r in shown},
        "rows": shown,
        "muni": municipality(conn, since=since),
        "rolling": rolling_12(conn, area_code),
        "last_year": last_year,
        "alerts": area_alerts,
        "alert_keys": {(a["indicator"], a["week_start"]) for a in area_alerts},
    }


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


#: gate results that mean the source's last delivery was stopped (load_status.gate_result)
_BAD_GATE = ("quarantined", "rejected", "fail", "failed", "error")


def _week_end(week_start: date | None) -> date | None:
    return None if week_start is None else week_start + timedelta(days=6)


def load_status(conn: psycopg.Connection, today: date | None = None) -> list[SourceStatus]:
    """Per source: last published period, when, gate result, and whether it is stale (more than
    8 days since the end of the last published week) or its last delivery was stopped."""
    today = today or date.today()
    if not built(conn, "load_status"):
        return []
    statuses = []
    for r in conn.execute(
        "select source, last_published_period, last_published_week_start, last_published_at, gate_result, "
        "gate_reason_code from published.load_status order by source"
    ).fetchall():
        end = _week_end(r["last_published_week_start"])
        gate = r["gate_result"]
        bad = gate if gate is not None and gate.lower() in _BAD_GATE else None
        statuses.append(SourceStatus(
            source=r["source"],
            last_period=r["last_published_period"],
            published_at=r["last_published_at"],
            gate=gate,
            stale=end is None or today - end > STALE_AFTER,
            quarantined=bad is not None,
            quarantine_status=bad,
            reason_code=r["gate_reason_code"],
        ))
    return statuses


# ---------------------------------------------------------------- helpers


def _where(always: str, *filters: tuple[str, object]) -> tuple[sql.Composed, list]:
    """`always and` each filter whose value is given (a value of None filters nothing), and the values."""
    given = [(condition, value) for condition, value in filters if value]
    return sql.SQL(" and ").join([sql.SQL(always), *(sql.SQL(c) for c, _ in given)]), [v for _, v in given]


def _float(value) -> float | None:
    return None if value is None else float(value)


def floats(row: dict) -> dict:
    for key in ("rate", "observed", "expected", "upper_threshold", "score"):
        if key in row and row[key] is not None and not isinstance(row[key], (dict, list, str)):
            row[key] = float(row[key])
    for key in ("numerator", "denominator"):
        if key in row and row[key] is not None:
            row[key] = int(row[key])
    return row
