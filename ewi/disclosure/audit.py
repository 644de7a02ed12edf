"""The disclosure audit of everything a dashboard reader can see: run by the gated build on the marts
it is about to publish (ewi/transform.py), and on `published` by `ewi disclosure-audit`.

Fails when a suppressed cell can be narrowed, from all published figures together, to an interval
that leaves out a value from 0 to disclosure_min_count - 1 (SOURCES.md, disclosure control), and
when the schema holds a readable table the audit does not know (a new mart must say how it is
audited before it can be published)."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field

import pandas as pd
import psycopg
from psycopg import sql

from ewi.disclosure.intervals import Finding, InfeasibleFigures, narrowed_cells
from ewi.disclosure.system import build_system

#: The marts the audit reads, and the ones that publish no figure derived from the weekly cells.
AUDITED = ("area_weekly_indicators", "municipality_weekly", "area_trends", "area_alerts")
NO_CELL_FIGURES = ("load_status",)  # deliveries per source: rows and dates, not people
#: Marts whose figures are taken from already published ones: each is checked against its source
#: (a figure that is not there could carry a cell the system above never saw).
FROM_PUBLISHED = ("area_signals",)


@dataclass
class AuditResult:
    passed: bool
    findings: list[Finding] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    stats: dict = field(default_factory=dict)

    def message(self, limit: int = 5) -> str:
        """What failed, in area/indicator/week terms (no person is named anywhere in a cell key)."""
        parts = list(self.problems)
        for f in self.findings[:limit]:
            upper = "inf" if f.upper == float("inf") else f"{f.upper:g}"
            parts.append(f"{'/'.join(str(p) for p in f.cell)} narrowed to [{f.lower:g}, {upper}] "
                         f"by {', '.join(f.figures)}")
        if len(self.findings) > limit:
            parts.append(f"... {len(self.findings) - limit} more cells")
        return "; ".join(parts) or "passed"


def _read(conn: psycopg.Connection, table: sql.Composable) -> pd.DataFrame:
    with conn.cursor() as cur:
        cur.execute(sql.SQL("select * from {}").format(table))
        columns = [d.name for d in cur.description]
        return pd.DataFrame(cur.fetchall(), columns=columns)


def _tables(conn: psycopg.Connection, schema: str) -> list[str]:
    return [r[0] for r in conn.execute(
        "select table_name::text from information_schema.tables where table_schema = %s", (schema,)).fetchall()]


def audit(conn: psycopg.Connection, schemas: dict[str, str], project_vars: dict | None = None) -> AuditResult:
    """Audit the marts; `schemas` says where each one is read (table -> schema, e.g. the build's
    published_next for the marts it built, `published` for the rest)."""
    from ewi.alerts.runner import project_vars as read_project_vars
    from ewi.alerts.series import rolling_weeks_setting

    started = time.monotonic()
    settings = read_project_vars() if project_vars is None else project_vars
    required = int(settings.get("disclosure_min_count", 5)) - 1
    result = AuditResult(passed=True)
    unknown_tables = sorted(
        t for schema in set(schemas.values()) for t in _tables(conn, schema)
        if t not in AUDITED + NO_CELL_FIGURES + FROM_PUBLISHED and schemas.get(t, schema) == schema)
    for table in unknown_tables:
        result.problems.append(f"{table}: a readable table the disclosure audit does not know")
    frames: dict[str, pd.DataFrame | None] = {}
    for table in AUDITED + FROM_PUBLISHED:
        schema = schemas.get(table)
        if schema is None or table not in _tables(conn, schema):
            frames[table] = None
        else:
            frames[table] = _read(conn, sql.Identifier(schema, table))
    if frames["area_weekly_indicators"] is None or frames["municipality_weekly"] is None:
        result.stats = {"seconds": round(time.monotonic() - started, 2), "skipped": "no weekly marts"}
        result.passed = not result.problems
        return result
    read_s = time.monotonic() - started
    result.problems += signal_figures_not_published(frames["area_signals"], frames["area_alerts"])
    result.problems += area_score_figures(frames["area_alerts"])
    system = build_system(
        frames["area_weekly_indicators"], frames["municipality_weekly"], frames["area_trends"],
        frames["area_alerts"], rolling_weeks_setting(settings.get("alert_rolling_weeks")),
        int(settings.get("ears_baseline_weeks", 7)))
    built_s = time.monotonic() - started - read_s
    try:
        findings, stats = narrowed_cells(system, float(required))
    except InfeasibleFigures as exc:
        findings, stats = [], {}
        result.problems.append(str(exc))
    result.findings = findings
    result.stats = {**stats, "figures": dict(system.figures), "read_s": round(read_s, 2),
                    "system_s": round(built_s, 2), "seconds": round(time.monotonic() - started, 2)}
    result.passed = not findings and not result.problems
    return result


def signal_figures_not_published(signals: pd.DataFrame | None, alerts: pd.DataFrame | None) -> list[str]:
    """area_signals publishes no figure of its own: its first and latest week must be weeks area_alerts
    publishes as alerts of its method, and its peak score the published score of one of its weeks."""
    if signals is None or signals.empty:
        return []
    if alerts is None:
        return ["area_signals: published without area_alerts, the figures it is taken from"]
    flagged = alerts[alerts["is_alert"].astype(bool)]
    weeks = flagged.groupby(["area_code", "indicator", "method"])
    problems = []
    for s in signals.itertuples(index=False):
        key = (s.area_code, s.indicator, s.method)
        rows = weeks.get_group(key) if key in weeks.groups else flagged.iloc[0:0]
        inside = rows[(rows["week_start"] >= s.first_week_start) & (rows["week_start"] <= s.last_alert_week_start)]
        if not {s.first_week_start, s.last_alert_week_start} <= set(inside["week_start"]):
            problems.append(f"area_signals {s.signal_key}: its first or latest week is not a published alert week")
        if pd.notna(s.peak_score) and float(s.peak_score) not in {float(v) for v in inside["score"].dropna()}:
            problems.append(f"area_signals {s.signal_key}: peak_score is not a published score of its weeks")
    return problems


#: The component indicators of the area score (ewi.alerts.area_score.COMPONENTS) and the method whose
#: figures it is computed from.
AREA_SCORE_COMPONENTS = ("chronic_absence", "invalid_absence", "referrals", "contacts")
_DIGITS = re.compile(r"[0-9]")


def area_score_figures(alerts: pd.DataFrame | None) -> list[str]:
    """The area score's rows of area_alerts publish no count and no figure built from a withheld one:
    observed, expected and upper_threshold are NULL; the score is NULL where a component's Farrington
    row of the same area and week is withheld (the score is a function of that row's count and
    baseline, and would give them back); the explanations carry no number but the week and the score.
    Its alarm depends on no count below the alert minimum (ewi/alerts/area_score.py: such a component
    counts as no evidence, whatever the count), like every other method's alarm."""
    if alerts is None or alerts.empty:
        return []
    rows = alerts[alerts["indicator"] == "area_score"]
    if rows.empty:
        return []
    problems = []
    counts = rows[rows[["observed", "expected", "upper_threshold"]].notna().any(axis=1)]
    if len(counts):
        problems.append(f"area_alerts area_score: {len(counts)} rows publish a count, expectation or threshold")
    components = alerts[(alerts["method"] == "farrington") & alerts["indicator"].isin(AREA_SCORE_COMPONENTS)]
    withheld = set(components.loc[components["status"] == "withheld", ["area_code", "week_start"]]
                   .itertuples(index=False, name=None))
    leaked = [r for r in rows.itertuples(index=False)
              if pd.notna(r.score) and (r.area_code, r.week_start) in withheld]
    if leaked:
        problems.append(f"area_alerts area_score: {len(leaked)} scores published where a component's figures "
                        f"are withheld (first: {leaked[0].area_code} {leaked[0].iso_week})")
    for r in rows.itertuples(index=False):
        if _explanation_numbers(r):
            problems.append(f"area_alerts area_score {r.area_code} {r.iso_week}: the explanation gives a number")
            break
    return problems


def _explanation_numbers(row) -> bool:
    """Whether an area-score explanation says a number other than its week, its score and the "1" the
    score is compared with."""
    for text in (row.explanation_sv, row.explanation_en):
        rest = str(text).replace(str(row.iso_week), "").replace("över 1", "").replace("above 1", "")
        if pd.notna(row.score):
            rest = rest.replace(f"{float(row.score):.2f}", "", 1)
        if _DIGITS.search(rest):
            return True
    return False


def audit_by_method(conn: psycopg.Connection, schemas: dict[str, str]) -> AuditResult:
    """The audit of the configured disclosure_method: intervals for suppression, the Cell Key
    Method's own checks (ewi/disclosure/cell_key.py) for cell_key."""
    from ewi.alerts.runner import project_vars
    from ewi.disclosure import cell_key

    settings = project_vars()
    if settings.get("disclosure_method", "suppression") != "cell_key":
        return audit(conn, schemas, settings)
    started = time.monotonic()
    table, min_count = settings.get("cell_key_ptable") or [], int(settings.get("disclosure_min_count", 5))
    problems = cell_key.table_problems(table, min_count)
    if not problems:
        problems = cell_key.published_problems(conn, schemas, table, min_count)
    return AuditResult(passed=not problems, problems=problems,
                       stats={"method": "cell_key", "seconds": round(time.monotonic() - started, 2)})


def build_check(conn: psycopg.Connection, built: list[str], staging: str, published: str) -> dict:
    """The audit as one check of a gated build, shaped like a dbt test result (ewi/transform.py
    records it in audit.dbt_test_results and publishes nothing when it fails): the marts the build
    made are read from `staging`, the others from `published`, as they will be read once published."""
    started = time.monotonic()
    schemas = {table: (staging if table in built else published) for table in AUDITED + FROM_PUBLISHED}
    try:
        result = audit_by_method(conn, schemas)
        status = "pass" if result.passed else "fail"
        message = None if result.passed else result.message()
        failures = len(result.findings) + len(result.problems)
    except Exception as exc:  # an audit that cannot run vouches for nothing
        status, message, failures = "error", f"{type(exc).__name__}: {exc}", None
    return {"unique_id": "test.ewi.disclosure_audit", "name": "disclosure_audit", "resource_type": "test",
            "schema": staging, "model": None, "status": status, "failures": failures, "message": message,
            "execution_time": time.monotonic() - started}
