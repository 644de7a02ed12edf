"""What the auditors' pages read from the audit schema (as `ewi_auditor`): every delivery and its
checks, the dbt builds and their tests, and which deliveries a published figure was computed from.
The audit tables are the warehouse's own (ewi/migrations), so their columns are read by name."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import psycopg

from ewi.dashboard.data import built, floats


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


ACCESS_COLUMNS = ("id", "at", "username", "user_role", "action", "view", "format", "area_code", "indicator",
                  "week_from", "week_to", "path")


def dashboard_access(conn: psycopg.Connection, username: str | None = None, area_code: str | None = None,
                     since: date | None = None, until: date | None = None, limit: int | None = 1000) -> list[dict]:
    """audit.dashboard_access (migration 0017), newest first: who saw which area figures and what
    they exported; filtered by user, area (also the views of every area) and the days [since, until]."""
    where, params = ["true"], []
    if username:
        where.append("username = %s")
        params.append(username)
    if area_code:
        where.append("(area_code = %s or area_code is null)")
        params.append(area_code)
    if since:
        where.append("at >= %s::date")
        params.append(since)
    if until:
        where.append("at < %s::date + 1")
        params.append(until)
    query = (f"select {', '.join(ACCESS_COLUMNS)} from audit.dashboard_access "  # noqa: S608 - fixed names
             f"where {' and '.join(where)} order by id desc")
    if limit:
        query += f" limit {int(limit)}"
    rows = conn.execute(query, params).fetchall()
    for r in rows:
        r["at"] = r["at"].astimezone(UTC)
    return rows


def last_chain_verification(conn: psycopg.Connection) -> dict | None:
    """The latest `ewi audit verify` (audit.chain_verifications, migration 0019), or None."""
    if conn.execute("select to_regclass('audit.chain_verifications') is null as absent").fetchone()["absent"]:
        return None
    row = conn.execute(
        "select verified_at, holds, records_checked, links_checked, first_broken, problems "
        "from audit.chain_verifications order by id desc limit 1").fetchone()
    if row:
        row["verified_at"] = row["verified_at"].astimezone(UTC)
    return row


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


#: the columns of a build's test results the page shows (audit.dbt_test_results, migration 0003)
TEST_COLUMNS = ["test_name", "model", "status", "failures", "message", "completed_at"]


def dbt_builds(conn: psycopg.Connection, limit: int = 20) -> list[dict]:
    """The latest dbt builds (audit.dbt_runs), newest first, each with its test results, failures
    first."""
    runs = conn.execute("select * from audit.dbt_runs order by started_at desc limit %s", (limit,)).fetchall()
    tests = conn.execute(
        "select * from audit.dbt_test_results where run_id = any(%s) order by "
        "case when lower(status) in ('fail', 'error') then 0 when lower(status) = 'warn' then 1 else 2 end, "
        "test_name",
        ([r["run_id"] for r in runs],),
    ).fetchall()
    by_run: dict[str, list[dict]] = {}
    for t in tests:
        by_run.setdefault(t["run_id"], []).append(t)
    for r in runs:
        r["tests"] = by_run.get(r["run_id"], [])
        r["test_columns"] = TEST_COLUMNS
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
    elif built(conn, "municipality_weekly"):
        row = conn.execute(
            "select null as area_code, null as area_name, numerator, denominator, rate, is_suppressed "
            "from published.municipality_weekly where indicator = %s and week_start = %s",
            (indicator, week),
        ).fetchone()
    else:
        row = None
    return floats(row) if row else None


