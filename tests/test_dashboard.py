"""The dashboard against a real embedded warehouse: published tables created by SQL with known rows
in a database of its own (so the dbt pipeline's tables are never touched), read through the
dashboard's own login roles; then a real uvicorn driven by Chromium (Playwright)."""

from __future__ import annotations

import csv
import io
import json
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import time
from datetime import UTC, date, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path

import psycopg
import pytest

TEST_DB = "ewi_dashboard_test"
PASSWORDS = {"coord": "coord-pass-1", "audit": "audit-pass-1"}
SECRET = "test-session-secret-0123456789abcdef"
INDICATORS = ("chronic_absence", "invalid_absence", "referrals", "contacts", "multi_signal")
AREAS = [("2081C1010", "Borlänge centrum"), ("2081C1020", "Tjärna Ängar"), ("2081B2010", "Ornäs")]
ALERT_AREA, ALERT_INDICATOR = "2081C1020", "chronic_absence"
SUPPRESSED_AREA, SUPPRESSED_INDICATOR = "2081B2010", "referrals"
N_WEEKS = 60
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"


# ---------------------------------------------------------------- a tiny HTML tree (stdlib only)


class Node:
    def __init__(self, tag: str, attrs: dict):
        self.tag, self.attrs, self.children = tag, attrs, []

    def text(self) -> str:
        return " ".join("".join(c if isinstance(c, str) else c.text() for c in self.children).split())

    def find_all(self, tag: str | None = None, **attrs) -> list[Node]:
        found = []
        for c in self.children:
            if isinstance(c, Node):
                if (tag is None or c.tag == tag) and all(
                        (v is True and k in c.attrs) or c.attrs.get(k) == v
                        or (k == "class_" and v in (c.attrs.get("class") or "").split())
                        for k, v in attrs.items()):
                    found.append(c)
                found.extend(c.find_all(tag, **attrs))
        return found

    def find(self, tag: str | None = None, **attrs) -> Node:
        found = self.find_all(tag, **attrs)
        assert found, f"no <{tag} {attrs}>"
        return found[0]


class _TreeBuilder(HTMLParser):
    VOID = {"meta", "link", "input", "br", "img", "hr"}

    def __init__(self):
        super().__init__()
        self.root = Node("root", {})
        self.stack = [self.root]

    def handle_starttag(self, tag, attrs):
        node = Node(tag, {k.replace("-", "_"): (v or "") for k, v in attrs})
        self.stack[-1].children.append(node)
        if tag not in self.VOID:
            self.stack.append(node)

    def handle_endtag(self, tag):
        for i in range(len(self.stack) - 1, 0, -1):
            if self.stack[i].tag == tag:
                del self.stack[i:]
                break

    def handle_data(self, data):
        self.stack[-1].children.append(data)


def parse(html: str) -> Node:
    builder = _TreeBuilder()
    builder.feed(html)
    return builder.root


# ---------------------------------------------------------------- the warehouse


def _last_complete_week_start(today: date) -> date:
    return today - timedelta(days=today.weekday() + 7)


def _iso(week_start: date) -> str:
    y, w, _ = week_start.isocalendar()
    return f"{y}-W{w:02d}"


def _build_rows():
    """Known published rows: 3 areas x 5 indicators x 60 weeks, small counts suppressed."""
    rng = random.Random(7)
    latest = _last_complete_week_start(date.today())
    weeks = [latest - timedelta(weeks=i) for i in range(N_WEEKS - 1, -1, -1)]
    area_rows, muni_rows, trend_rows = [], [], []
    totals: dict[tuple[str, date], list[int]] = {}
    for code, name in AREAS:
        for ind in INDICATORS:
            share = ind in ("chronic_absence", "invalid_absence")
            den = rng.randint(300, 500) if share else rng.randint(700, 1100)
            history = []
            for w in weeks:
                num = rng.randint(1, 45)
                if (code, ind) == (SUPPRESSED_AREA, SUPPRESSED_INDICATOR) and w == latest:
                    num = 3
                if (code, ind) == (ALERT_AREA, ALERT_INDICATOR) and w == latest:
                    num = 90
                t = totals.setdefault((ind, w), [0, 0])
                t[0] += num
                t[1] += den
                rate = round((100 if share else 1000) * num / den, 2)
                suppressed = num < 5
                area_rows.append((code, name, w, _iso(w), ind, None if suppressed else num, den,
                                  None if suppressed else rate, suppressed))
                history.append(rate)
                trend_rows.append((code, ind, w, round(sum(history[-12:]) / len(history[-12:]), 2)))
    for (ind, w), (num, den) in totals.items():
        share = ind in ("chronic_absence", "invalid_absence")
        muni_rows.append((w, _iso(w), ind, num, den, round((100 if share else 1000) * num / den, 2), False))
    return latest, area_rows, muni_rows, trend_rows


# The columns of the dbt marts (dbt_project/models/marts/*.yml); published.area_alerts as announced.
DDL = """
create table published.area_weekly_indicators (
    area_code text, area_name text, week_start date, iso_week text, indicator text,
    numerator integer, denominator integer, rate numeric(8,2), rate_unit text, is_suppressed boolean, note text);
create table published.municipality_weekly (
    week_start date, iso_week text, indicator text, numerator integer, denominator integer,
    rate numeric(8,2), rate_unit text, is_suppressed boolean, note text);
create table published.area_trends (
    area_code text, area_name text, week_start date, iso_week text, indicator text, rate_unit text,
    rate numeric(8,2), rate_4w numeric(8,2), rate_12w numeric(8,2), rate_4w_year_earlier numeric(8,2),
    rate_4w_change_1y numeric(8,2), municipality_rate_4w numeric(8,2), municipality_rate_12w numeric(8,2));
create table published.load_status (
    source text, last_published_period text, last_published_week_start date, last_published_at timestamptz,
    last_published_rows integer, last_delivery_period text, last_delivery_received_at timestamptz,
    gate_result text, gate_reason_code text);
create table published.area_alerts (
    area_code text, week_start date, indicator text, method text, observed numeric, expected numeric,
    upper_threshold numeric, score numeric, is_alert boolean, explanation_sv text, explanation_en text);
"""


@pytest.fixture(scope="module")
def dashboard_env(warehouse_ready, tmp_path_factory):
    """A database of the dashboard's own with published (and audit) rows; the environment the
    dashboard process reads (which database, users, session secret)."""
    from ewi import migrate, warehouse

    owner_dsn = warehouse.dsn(TEST_DB)
    with psycopg.connect(owner_dsn, autocommit=True) as conn:
        migrate.migrate(conn)
        conn.execute("drop schema if exists published cascade")
        conn.execute("create schema published")
        conn.execute("grant usage on schema published to ewi_dashboard, ewi_auditor")
        conn.execute("alter default privileges in schema published grant select on tables "
                     "to ewi_dashboard, ewi_auditor")
        conn.execute(DDL)
        latest, area_rows, muni_rows, trend_rows = _build_rows()
        with conn.cursor() as cur:
            cur.executemany("insert into published.area_weekly_indicators (area_code, area_name, week_start, "
                            "iso_week, indicator, numerator, denominator, rate, is_suppressed) values "
                            "(%s, %s, %s, %s, %s, %s, %s, %s, %s)", area_rows)
            cur.executemany("insert into published.municipality_weekly (week_start, iso_week, indicator, "
                            "numerator, denominator, rate, is_suppressed) values (%s, %s, %s, %s, %s, %s, %s)",
                            muni_rows)
            cur.executemany("insert into published.area_trends (area_code, indicator, week_start, rate_12w) "
                            "values (%s, %s, %s, %s)", trend_rows)
            now = datetime.now(UTC)
            stale_week = latest - timedelta(weeks=3)
            cur.executemany(
                "insert into published.load_status (source, last_published_period, last_published_week_start, "
                "last_published_at, last_delivery_period, gate_result, gate_reason_code) "
                "values (%s, %s, %s, %s, %s, %s, %s)", [
                    ("school_absence", _iso(latest), latest, now, _iso(latest), "published", None),
                    ("referrals", _iso(latest), latest, now, _iso(latest), "quarantined", "checks_failed"),
                    ("contacts", _iso(stale_week), stale_week, now - timedelta(weeks=3), _iso(stale_week),
                     "published", None),
                ])
            cur.execute(
                "insert into published.area_alerts values (%s, %s, %s, 'poisson_ewma', 20.1, 8.4, 12.9, 4.2, "
                "true, 'Hög frånvaro ovanligt hög denna vecka', 'Chronic absence unusually high this week')",
                (ALERT_AREA, latest, ALERT_INDICATOR))
        conn.execute("delete from audit.dbt_test_results")
        conn.execute("delete from audit.dbt_runs")
        conn.execute("insert into audit.dbt_runs (run_id, started_at, finished_at, success, published, command, "
                     "counts, elapsed_s, status) values ('run-1', now() - interval '1 hour', now(), false, false, "
                     "'dbt build', '{}', 42.0, 'failed')")
        conn.execute("insert into audit.dbt_test_results (run_id, unique_id, test_name, model, status, failures, "
                     "message) values ('run-1', 'test.a', 'not_null_area_code', 'area_weekly_indicators', 'pass', "
                     "0, null), ('run-1', 'test.b', 'not_small_count_numerator', 'area_weekly_indicators', "
                     "'fail', 2, 'Got 2 results, configured to fail if != 0')")
        conn.execute("delete from audit.check_results")
        conn.execute("delete from audit.batches")
        home = Path(os.environ["EWI_HOME"])
        # Not under validations/: a page there that GX did not write stops GX rebuilding its index.
        docs = home / "gx" / "data_docs" / "test-pages" / "batch-q.html"
        docs.parent.mkdir(parents=True, exist_ok=True)
        docs.write_text("<html><body><h1>GX validation batch-q</h1></body></html>", encoding="utf-8")
        conn.execute(
            "insert into audit.batches (batch_id, source, period, file_name, file_sha256, file_size, "
            "rows_in_file, rows_published, status, reason, failed_checks, data_docs_path) values "
            "('batch-p', 'referrals', %s, %s, %s, 1000, 120, 120, 'published', null, '[]', null), "
            "('batch-q', 'referrals', %s, %s, %s, 900, 118, 0, 'quarantined', 'birth_year out of range', "
            " '[\"expect_column_values_to_be_between\"]', %s)",
            (_iso(latest), f"referrals_{_iso(latest)}_20260101T0600.csv", "a" * 64,
             _iso(latest), f"referrals_{_iso(latest)}_20260102T0600.csv", "b" * 64, str(docs)))
        conn.execute(
            "insert into audit.check_results (batch_id, expectation_type, column_name, success, observed, "
            "unexpected_count) values "
            "('batch-q', 'expect_column_values_to_be_between', 'birth_year', false, '{\"min\": 1990}', 7), "
            "('batch-q', 'expect_column_values_to_not_be_null', 'home_area_code', true, null, 0)")

    users_path = tmp_path_factory.mktemp("dash-users") / "users.json"
    from ewi.dashboard import users

    saved = {k: os.environ.get(k) for k in ("EWI_WAREHOUSE_DB", "EWI_DASHBOARD_USERS", "EWI_DASHBOARD_SECRET")}
    os.environ.update({"EWI_WAREHOUSE_DB": TEST_DB, "EWI_DASHBOARD_USERS": str(users_path),
                       "EWI_DASHBOARD_SECRET": SECRET})
    users.save_users({
        "coord": users.User("coord", "coordinator", users.hash_password(PASSWORDS["coord"])),
        "audit": users.User("audit", "auditor", users.hash_password(PASSWORDS["audit"])),
    })
    import ewi.dashboard

    ewi.dashboard.refresh()
    yield {"dsn": owner_dsn, "latest": latest, "home": home}
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    ewi.dashboard.refresh()


@pytest.fixture(scope="module")
def app(dashboard_env):
    from ewi.dashboard.app import create_app

    return create_app()


def _client(app):
    from fastapi.testclient import TestClient

    return TestClient(app, follow_redirects=False)


def _login(app, username: str):
    client = _client(app)
    page = parse(client.get("/login").text)
    token = page.find("input", name="csrf").attrs["value"]
    r = client.post("/login", data={"username": username, "password": PASSWORDS[username], "csrf": token,
                                    "next": "/"})
    assert r.status_code == 303, r.text
    return client


@pytest.fixture(scope="module")
def coordinator(app):
    return _login(app, "coord")


@pytest.fixture(scope="module")
def auditor(app):
    return _login(app, "audit")


def _published(dsn: str, where: str = "true", params=()) -> list[dict]:
    with psycopg.connect(dsn, row_factory=psycopg.rows.dict_row) as conn:
        return conn.execute(f"select * from published.area_weekly_indicators where {where}", params).fetchall()  # noqa: S608


def _shown(rate, suppressed: bool) -> str:
    """What the page must show in English: "<5" for suppressed figures, one decimal otherwise."""
    return "<5" if suppressed else f"{float(rate):,.1f}"


# ---------------------------------------------------------------- stage 1: the overview


def test_overview_shows_the_published_rates_of_the_latest_week(coordinator, dashboard_env):
    latest = dashboard_env["latest"]
    page = parse(coordinator.get("/?lang=en").text)
    assert page.find(id="week").text() == _iso(latest)
    table = page.find("table", id="overview-table")
    rows = _published(dashboard_env["dsn"], "week_start = %s", (latest,))
    assert len(rows) == len(AREAS) * len(INDICATORS)
    for r in rows:
        tr = table.find("tr", data_area=r["area_code"])
        td = tr.find("td", data_indicator=r["indicator"])
        assert td.find("span", class_="value").text() == _shown(r["rate"], r["is_suppressed"])
    suppressed = table.find("tr", data_area=SUPPRESSED_AREA).find("td", data_indicator=SUPPRESSED_INDICATOR)
    assert suppressed.find("span", class_="value").text() == "<5"
    # the area with an active alert comes first, its cell marked and explained
    first = table.find("tbody").find_all("tr")[0]
    assert first.attrs["data_area"] == ALERT_AREA
    alert_cell = first.find("td", data_indicator=ALERT_INDICATOR)
    assert "alert" in alert_cell.attrs["class"].split()
    assert alert_cell.attrs["title"] == "Chronic absence unusually high this week"
    # the grid links every area; the small multiples chart is an SVG rendered on the server
    assert {a.attrs["data_area"] for a in page.find(id="area-grid").find_all("a")} == {c for c, _ in AREAS}
    chart = coordinator.get(page.find("img", id="small-multiples").attrs["src"])
    assert chart.status_code == 200 and chart.headers["content-type"] == "image/svg+xml"
    assert b"<svg" in chart.content[:2000]


def test_overview_is_swedish_by_default_with_decimal_comma(app, dashboard_env):
    client = _login(app, "coord")
    page = parse(client.get("/").text)
    assert page.find("html").attrs["lang"] == "sv"
    assert "Översikt" in page.find("h1").text()
    latest = dashboard_env["latest"]
    r = _published(dashboard_env["dsn"], "week_start = %s and area_code = %s and indicator = %s",
                   (latest, AREAS[0][0], "chronic_absence"))[0]
    td = page.find("tr", data_area=AREAS[0][0]).find("td", data_indicator="chronic_absence")
    assert td.find("span", class_="value").text() == f"{float(r['rate']):.1f}".replace(".", ",")
    # the choice of language sticks for the session
    client.get("/?lang=en")
    assert parse(client.get("/").text).find("html").attrs["lang"] == "en"


def test_freshness_is_always_shown_with_banners_for_stale_and_quarantined_sources(coordinator):
    page = parse(coordinator.get("/?lang=en").text)
    fresh = page.find(id="freshness")
    assert {s.attrs["data_source"] for s in fresh.find_all("span", data_source=True)} == {
        "school_absence", "referrals", "contacts"}
    stale = page.find_all("div", class_="stale-banner")
    assert len(stale) == 1 and "contacts" in stale[0].text()
    quarantined = page.find_all("div", class_="quarantine-banner")
    assert len(quarantined) == 1 and "referrals" in quarantined[0].text()
    assert "(quarantined, checks_failed)" in quarantined[0].text()


def test_area_page_shows_weekly_values_trends_and_alerts(coordinator, dashboard_env):
    latest = dashboard_env["latest"]
    html = coordinator.get(f"/area/{ALERT_AREA}?lang=en&indicator={ALERT_INDICATOR}").text
    page = parse(html)
    rows = _published(dashboard_env["dsn"], "area_code = %s and week_start > %s",
                      (ALERT_AREA, latest - timedelta(weeks=52)))
    weekly = page.find("table", id="weekly-table")
    for r in rows:
        td = weekly.find("tr", data_week=_iso(r["week_start"])).find("td", data_indicator=r["indicator"])
        assert td.text().replace("⚠", "").strip() == _shown(r["rate"], r["is_suppressed"])
    detail = page.find("table", id="detail-table").find("tr", data_week=_iso(latest))
    r = next(r for r in rows if r["week_start"] == latest and r["indicator"] == ALERT_INDICATOR)
    assert detail.find("td", class_="numerator").text() == str(r["numerator"])
    assert detail.find("td", class_="denominator").text() == str(r["denominator"])
    with psycopg.connect(dashboard_env["dsn"]) as conn:
        rolling, = conn.execute("select rate_12w from published.area_trends where area_code = %s and "
                                "indicator = %s and week_start = %s", (ALERT_AREA, ALERT_INDICATOR, latest)).fetchone()
        muni, = conn.execute("select rate from published.municipality_weekly where indicator = %s and "
                             "week_start = %s", (ALERT_INDICATOR, latest)).fetchone()
    cells = [td.text() for td in detail.find_all("td")]
    assert f"{float(rolling):.1f}" in cells and f"{float(muni):.1f}" in cells
    alert = page.find(id="alerts").find("li")
    assert alert.attrs["data_week"] == _iso(latest)
    assert "Chronic absence unusually high this week" in alert.text()
    for ind in INDICATORS:
        chart = coordinator.get(f"/chart/area/{ALERT_AREA}/{ind}.svg?lang=en")
        assert chart.status_code == 200 and b"<svg" in chart.content[:2000]


def test_suppressed_figures_show_as_less_than_five(coordinator, dashboard_env):
    page = parse(coordinator.get(f"/area/{SUPPRESSED_AREA}?lang=en&indicator={SUPPRESSED_INDICATOR}").text)
    latest = _iso(dashboard_env["latest"])
    cell = page.find("table", id="weekly-table").find("tr", data_week=latest).find(
        "td", data_indicator=SUPPRESSED_INDICATOR)
    assert cell.text() == "<5"
    detail = page.find("table", id="detail-table").find("tr", data_week=latest)
    assert detail.find("td", class_="numerator").text() == "<5"
    assert detail.find("td", class_="rate").text() == "<5"


# ---------------------------------------------------------------- exports and the access log


def _access_log(dsn: str) -> list[dict]:
    with psycopg.connect(dsn, row_factory=psycopg.rows.dict_row) as conn:
        return conn.execute("select * from audit.access_log order by id").fetchall()


def test_csv_export_has_the_published_figures_and_is_logged(coordinator, dashboard_env):
    before = len(_access_log(dashboard_env["dsn"]))
    r = coordinator.get(f"/export/area/{SUPPRESSED_AREA}.csv?lang=en")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.content.decode("utf-8-sig"))))
    published = {(p["indicator"], _iso(p["week_start"])): p for p in _published(
        dashboard_env["dsn"], "area_code = %s", (SUPPRESSED_AREA,))}
    assert len(rows) == len(INDICATORS) * 52
    for row in rows:
        p = published[(row["indicator"], row["Week"])]
        assert row["Rate"] == _shown(p["rate"], p["is_suppressed"])
        assert row["Numerator"] == ("<5" if p["is_suppressed"] else str(p["numerator"]))
    overview = coordinator.get("/export/overview.csv")  # Swedish: ';' and decimal comma
    assert overview.status_code == 200
    assert len(list(csv.reader(io.StringIO(overview.content.decode("utf-8-sig")), delimiter=";"))) == 16
    png = coordinator.get(f"/chart/area/{SUPPRESSED_AREA}/referrals.png")
    assert png.status_code == 200 and png.content[:8] == b"\x89PNG\r\n\x1a\n"
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "dashboard_export_area_referrals.png").write_bytes(png.content)
    log = _access_log(dashboard_env["dsn"])[before:]
    assert [(e["action"], e["username"], e["user_role"]) for e in log] == [
        ("export_csv", "coord", "coordinator"), ("export_csv", "coord", "coordinator"),
        ("export_png", "coord", "coordinator")]


def test_logins_are_logged_and_unknown_usernames_are_not(app, dashboard_env):
    client = _client(app)
    token = parse(client.get("/login").text).find("input", name="csrf").attrs["value"]
    bad = client.post("/login", data={"username": "197001011234", "password": "x", "csrf": token})
    assert bad.status_code == 401
    wrong = client.post("/login", data={"username": "coord", "password": "nope", "csrf": token})
    assert wrong.status_code == 401
    ok = client.post("/login", data={"username": "coord", "password": PASSWORDS["coord"], "csrf": token,
                                     "next": "//evil.example/"})
    assert ok.status_code == 303 and ok.headers["location"] == "/"  # no open redirect
    log = _access_log(dashboard_env["dsn"])[-3:]
    assert [(e["action"], e["username"], e["success"]) for e in log] == [
        ("login", "(unknown)", False), ("login", "coord", False), ("login", "coord", True)]
    assert "197001011234" not in json.dumps([dict(e) for e in _access_log(dashboard_env["dsn"])], default=str)


# ---------------------------------------------------------------- access control


def test_anonymous_requests_get_the_login_page_or_401(app):
    client = _client(app)
    r = client.get("/area/2081C1010")
    assert r.status_code == 303 and r.headers["location"].startswith("/login?next=")
    for path in ("/export/overview.csv", "/chart/overview/referrals.svg", "/audit/docs/x.html"):
        assert client.get(path).status_code == 401, path
    assert client.get("/audit").status_code == 303


def test_forms_need_the_csrf_token(app):
    client = _client(app)
    client.get("/login")
    r = client.post("/login", data={"username": "coord", "password": PASSWORDS["coord"], "csrf": "forged"})
    assert r.status_code == 403
    logged_in = _login(app, "coord")
    assert logged_in.post("/logout", data={"csrf": "forged"}).status_code == 403
    assert logged_in.get("/").status_code == 200


def test_coordinator_is_refused_auditor_pages(coordinator):
    for path in ("/audit", "/audit/batch/batch-q", "/audit/dbt", "/audit/docs/data_docs/test-pages/batch-q.html"):
        assert coordinator.get(path).status_code == 403, path


def test_sessions_expire(app):
    from itsdangerous import TimestampSigner

    client = _login(app, "coord")
    cookie = client.cookies["ewi_session"]
    payload = TimestampSigner(SECRET).unsign(cookie)  # the session data, re-signed 9 hours ago

    class NineHoursAgo(TimestampSigner):
        def get_timestamp(self):
            return int(time.time()) - 9 * 3600

    fresh, stale = TimestampSigner(SECRET).sign(payload), NineHoursAgo(SECRET).sign(payload)
    assert _client(app).get("/", headers={"Cookie": f"ewi_session={fresh.decode()}"}).status_code == 200
    assert _client(app).get("/", headers={"Cookie": f"ewi_session={stale.decode()}"}).status_code == 303


def test_the_dashboard_role_cannot_read_audit_or_raw_tables(dashboard_env):
    from ewi.dashboard import data

    with data.connect() as conn:
        for table in ("audit.batches", "audit.access_log", "raw.referrals"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(f"select 1 from {table} limit 1")  # noqa: S608


# ---------------------------------------------------------------- the auditor view


def test_auditor_sees_a_refused_link_that_has_no_checksum(auditor, dashboard_env):
    """A path refused as not a regular file is recorded without checksum or size (nothing was read):
    /audit and its batch page show a dash, not an error."""
    with psycopg.connect(dashboard_env["dsn"], autocommit=True) as conn:
        conn.execute("insert into audit.batches (batch_id, source, period, file_name, status, reason, decided_at) "
                     "values ('batch-link', 'contacts', '2026-W01', 'contacts_2026-W01_20260105T0600.csv', "
                     "'rejected', 'not_a_regular_file: the path is a symbolic link', now())")
        try:
            listing = auditor.get("/audit?lang=en")
            assert listing.status_code == 200
            row = parse(listing.text).find("table", id="batches-table").find("tr", data_batch="batch-link")
            assert row.find("td", class_="sha").text() == "–"
            detail = auditor.get("/audit/batch/batch-link?lang=en")
            assert detail.status_code == 200 and parse(detail.text).find("dd", class_="sha").text() == "–"
        finally:
            conn.execute("delete from audit.batches where batch_id = 'batch-link'")


def test_auditor_sees_every_batch_with_checks_and_data_docs(auditor, dashboard_env):
    page = parse(auditor.get("/audit?lang=en").text)
    table = page.find("table", id="batches-table")
    assert {tr.attrs["data_batch"] for tr in table.find_all("tr", data_batch=True)} == {"batch-p", "batch-q"}
    q = table.find("tr", data_batch="batch-q")
    assert q.find("td", class_="status").text() == "quarantined"
    assert q.find("td", class_="rows-in-file").text() == "118"
    assert "birth_year out of range" in q.text()
    batch = parse(auditor.get("/audit/batch/batch-q?lang=en").text)
    failed = batch.find("table", id="checks-table").find("tr", class_="failed")
    assert "expect_column_values_to_be_between" in failed.text() and "7" in failed.text()
    docs = auditor.get(batch.find("a", id="docs-link").attrs["href"])
    assert docs.status_code == 200 and "GX validation batch-q" in docs.text
    assert auditor.get("/audit/docs/../../users.json").status_code == 404
    assert auditor.get("/audit/docs/%2e%2e/%2e%2e/dashboard/session.key").status_code == 404
    dbt = parse(auditor.get("/audit/dbt").text)
    first = dbt.find("details", data_run="run-1").find("tbody").find("tr")
    assert "not_small_count_numerator" in first.text() and "failed" in first.attrs["class"]


# ---------------------------------------------------------------- lineage and provenance


#: OpenLineage run events as Airflow's provider writes them (file transport): a task's START and
#: COMPLETE, a failed task in a file of its own, and a line no reader could parse.
_OL_EVENTS = [
    {"eventType": "START", "eventTime": "2026-11-23T06:15:00Z",
     "run": {"runId": "0195a7c2-aaaa-7000-8000-000000000001"},
     "job": {"namespace": "ewi", "name": "ewi_ingest.ingest_landing"},
     "inputs": [{"namespace": "file", "name": "landing/referrals_2026-W47_20261123T0600.csv"}], "outputs": []},
    {"eventType": "COMPLETE", "eventTime": "2026-11-23T06:15:09Z",
     "run": {"runId": "0195a7c2-aaaa-7000-8000-000000000001"},
     "job": {"namespace": "ewi", "name": "ewi_ingest.ingest_landing"},
     "inputs": [], "outputs": [{"namespace": "postgres://warehouse", "name": "ewi.raw.referrals"}]},
]
_OL_FAILED = {"eventType": "FAIL", "eventTime": "2026-11-23T06:20:00Z",
              "run": {"runId": "0195a7c2-bbbb-7000-8000-000000000002"},
              "job": {"namespace": "ewi", "name": "ewi_transform.dbt_build"},
              "inputs": [{"namespace": "postgres://warehouse", "name": "ewi.raw.referrals"}], "outputs": []}


@pytest.fixture(scope="module")
def lineage_files(dashboard_env, tmp_path_factory):
    """$EWI_HOME/dbt-docs emptied for this module (other modules may have written it), a function
    that writes it with the real `transform.docs()`, and OpenLineage event files."""
    home = dashboard_env["home"]
    docs, aside = home / "dbt-docs", tmp_path_factory.mktemp("dbt-docs-aside") / "dbt-docs"
    if docs.exists():
        shutil.move(docs, aside)
    events = home / "lineage"
    events.mkdir(exist_ok=True)
    ours = [events / "test-dashboard-events.jsonl", events / "test-dashboard-failed.json"]
    ours[0].write_text("\n".join(json.dumps(e) for e in _OL_EVENTS) + "\n{not json\n", encoding="utf-8")
    ours[1].write_text(json.dumps(_OL_FAILED), encoding="utf-8")
    generated = {}

    def generate() -> dict:
        if not generated:
            from ewi import transform

            generated.update(transform.docs())
            assert generated["success"], generated
        return generated

    yield generate
    for path in ours:
        path.unlink(missing_ok=True)
    shutil.rmtree(docs, ignore_errors=True)
    if aside.exists():
        shutil.move(aside, docs)


def test_lineage_graph_from_the_dbt_manifest_and_openlineage_runs(auditor, coordinator, lineage_files):
    before = parse(auditor.get("/audit/lineage?lang=en").text)
    assert "transform.docs()" in before.find(id="no-manifest").text()
    runs = before.find("table", id="task-runs")
    done = runs.find("tr", data_run="0195a7c2-aaaa-7000-8000-000000000001")
    assert done.find("td", class_="job").text() == "ewi_ingest.ingest_landing"
    assert done.find("td", class_="state").text() == "COMPLETE"
    assert "referrals_2026-W47_20261123T0600.csv" in done.find("td", class_="inputs").text()
    assert done.find("td", class_="outputs").text() == "ewi.raw.referrals"
    failed = runs.find("tr", data_run="0195a7c2-bbbb-7000-8000-000000000002")
    assert failed.find("td", class_="state").text() == "FAIL" and "failed" in failed.attrs["class"]
    assert before.find(id="unreadable-events").text().startswith("1 ")

    lineage_files()
    page = parse(auditor.get("/audit/lineage?lang=en").text)
    svg = page.find("svg", id="lineage-graph")
    kinds = {g.attrs["data_node"]: g.attrs["data_kind"] for g in svg.find_all("g", class_="node")}
    assert kinds["deliveries.school_absence"] == "delivery" and kinds["source.ewi.raw.referrals"] == "source"
    assert kinds["model.ewi.stg_referrals"] == "staging"
    assert kinds["model.ewi.int_person_signal_weeks"] == "intermediate"
    assert kinds["model.ewi.area_weekly_indicators"] == "marts"
    assert kinds["exposure.ewi.coordinator_dashboard"] == "exposure"
    edges = {(e.attrs["data_from"], e.attrs["data_to"]) for e in svg.find_all("path", class_="edge")}
    # a path from each source's deliveries through the models to the coordinators' dashboard
    for source in ("school_absence", "referrals", "contacts"):
        assert (f"deliveries.{source}", f"source.ewi.raw.{source}") in edges
        assert (f"source.ewi.raw.{source}", f"model.ewi.stg_{source}") in edges
    assert ("model.ewi.stg_referrals", "model.ewi.int_person_signal_weeks") in edges
    assert ("model.ewi.int_area_weekly_counts", "model.ewi.area_weekly_indicators") in edges
    assert ("model.ewi.area_weekly_indicators", "exposure.ewi.coordinator_dashboard") in edges
    # the delivery nodes count audit.batches: one published and one quarantined referrals delivery
    referrals = svg.find("g", data_node="deliveries.referrals")
    assert referrals.find("title").text() == "published: 1, quarantined: 1"
    assert coordinator.get("/audit/lineage").status_code == 403


def test_provenance_lists_the_batches_a_published_value_was_computed_from(auditor, coordinator, dashboard_env):
    week = _iso(dashboard_env["latest"])
    # auditors get a link on every published number; coordinators do not
    overview = parse(auditor.get("/?lang=en").text)
    link = overview.find("tr", data_area=ALERT_AREA).find("td", data_indicator="referrals").find(
        "a", class_="provenance")
    assert link.attrs["href"] == f"/audit/provenance?indicator=referrals&week={week}&area={ALERT_AREA}"
    assert not parse(coordinator.get("/?lang=en").text).find_all("a", class_="provenance")
    area = parse(auditor.get(f"/area/{ALERT_AREA}?lang=en").text)
    assert area.find("table", id="weekly-table").find("tr", data_week=week).find(
        "td", data_indicator="referrals").find("a", class_="provenance")

    page = parse(auditor.get(link.attrs["href"] + "&lang=en").text)
    rows = {tr.attrs["data_batch"]: tr for tr in page.find("table", id="provenance-batches").find_all(
        "tr", data_batch=True)}
    assert set(rows) == {"batch-p", "batch-q"}  # the week's referrals deliveries, nothing else
    assert rows["batch-p"].find("td", class_="used").text() == "yes"
    assert rows["batch-q"].find("td", class_="used").text() == "no"
    assert rows["batch-q"].find("td", class_="status").text() == "quarantined"
    published = _published(dashboard_env["dsn"], "area_code = %s and indicator = 'referrals' and week_start = %s",
                           (ALERT_AREA, dashboard_env["latest"]))[0]
    assert page.find(id="prov-value").text() == _shown(published["rate"], published["is_suppressed"])
    # absence is computed from the school deliveries of 4 weeks, none of which this warehouse has
    absence = parse(auditor.get(f"/audit/provenance?indicator=chronic_absence&week={week}&lang=en").text)
    assert not absence.find("table", id="provenance-batches").find_all("tr", data_batch=True)
    first = _iso(dashboard_env["latest"] - timedelta(weeks=3))
    assert absence.find("li", data_source="school_absence").text() == f"school absence: periods {first} – {week}"
    assert absence.find(id="prov-area").text() == "Municipality"
    assert coordinator.get(link.attrs["href"]).status_code == 403
    assert auditor.get("/audit/provenance?indicator=nope&week=2026-W01").status_code == 404


# ---------------------------------------------------------------- users and refresh


def test_passwords_are_scrypt_hashed_and_demo_users_created_once(tmp_path, monkeypatch):
    from ewi.dashboard import users

    h = users.hash_password("secret")
    assert h.startswith("scrypt$") and "secret" not in h
    assert users.verify_password("secret", h) and not users.verify_password("Secret", h)
    monkeypatch.setenv("EWI_DASHBOARD_USERS", str(tmp_path / "users.json"))
    created = users.ensure_demo_users()
    assert set(created) == {"coordinator", "auditor"}
    assert users.authenticate("auditor", created["auditor"]).role == "auditor"
    assert users.ensure_demo_users() == {}
    assert (tmp_path / "users.json").stat().st_mode & 0o077 == 0


def test_refresh_clears_rendered_charts(coordinator):
    from ewi.dashboard import charts, refresh

    coordinator.get("/chart/overview/contacts.svg")
    assert charts._cache
    refresh()
    assert not charts._cache
    # refresh() in another process (the Airflow task) moves the stamp; this process notices
    coordinator.get("/chart/overview/contacts.svg")
    stamp = charts._stamp_file()
    later = stamp.stat().st_mtime + 5
    os.utime(stamp, (later, later))
    charts.cached(("probe",), lambda: b"")
    assert list(charts._cache) == [("probe",)]


# ---------------------------------------------------------------- a real server and browser


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(dashboard_env):
    """`serve()` in a process of its own, as `ewi dashboard` runs it."""
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-c", f"from ewi.dashboard.server import serve; serve(port={port})"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ))
    try:
        line = proc.stdout.readline()
        assert line.strip() == f"Dashboard: http://127.0.0.1:{port}/", line
        deadline = time.time() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert proc.poll() is None and time.time() < deadline, proc.stderr.read()
                time.sleep(0.2)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists() or not shutil.which(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        yield b
        b.close()


def _browser_login(browser, server: str, username: str):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto(server + "/")
    assert "/login" in page.url
    page.fill("#username", username)
    page.fill("#password", PASSWORDS[username])
    page.click("#login-submit")
    page.wait_for_url(server + "/")
    return context, page


def _wait_for_charts(page) -> None:
    # polled from here: wait_for_function would eval in the page, which the dashboard's CSP forbids
    deadline = time.time() + 20
    while not page.evaluate("Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)"):
        assert time.time() < deadline, "charts did not load"
        time.sleep(0.1)


def _screenshot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"dashboard_{name}.png"), full_page=True)


@pytest.mark.slow
def test_browser_coordinator(browser, server, dashboard_env):
    latest = dashboard_env["latest"]
    context, page = _browser_login(browser, server, "coord")
    try:
        page.goto(server + "/?lang=en")
        _wait_for_charts(page)
        for r in _published(dashboard_env["dsn"], "week_start = %s", (latest,)):
            shown = page.inner_text(f'#overview-table tr[data-area="{r["area_code"]}"] '
                                    f'td[data-indicator="{r["indicator"]}"] .value')
            assert shown == _shown(r["rate"], r["is_suppressed"])
        assert page.inner_text(f'#overview-table tr[data-area="{SUPPRESSED_AREA}"] '
                               f'td[data-indicator="{SUPPRESSED_INDICATOR}"] .value') == "<5"
        assert page.is_visible(".stale-banner") and page.is_visible("#freshness")
        _screenshot(page, "coordinator_overview")

        page.click(f'#area-grid a[data-area="{ALERT_AREA}"]')
        page.wait_for_selector("#weekly-table")
        _wait_for_charts(page)
        r = _published(dashboard_env["dsn"], "area_code = %s and indicator = %s and week_start = %s",
                       (ALERT_AREA, "referrals", latest))[0]
        cell = page.inner_text(f'#weekly-table tr[data-week="{_iso(latest)}"] td[data-indicator="referrals"]')
        assert cell.strip() == _shown(r["rate"], r["is_suppressed"])
        assert page.is_visible("#alerts")
        _screenshot(page, "coordinator_area")

        response = page.goto(server + "/audit")
        assert response.status == 403
        _screenshot(page, "coordinator_refused_audit")
        html = page.content()
        assert not re.search(r"\b[0-9a-f]{64}\b", html)  # no pseudonym-like strings on screen
    finally:
        context.close()


@pytest.mark.slow
def test_browser_auditor(browser, server, dashboard_env):
    context, page = _browser_login(browser, server, "audit")
    try:
        page.goto(server + "/audit?lang=en")
        assert page.inner_text('#batches-table tr[data-batch="batch-q"] td.status') == "quarantined"
        assert page.inner_text('#batches-table tr[data-batch="batch-p"] td.rows-published') == "120"
        _screenshot(page, "auditor_batches")
        page.click('#batches-table tr[data-batch="batch-q"] a')
        page.wait_for_selector("#checks-table")
        assert page.inner_text("#batch-status") == "quarantined"
        _screenshot(page, "auditor_batch")
    finally:
        context.close()


@pytest.mark.slow
def test_browser_auditor_lineage_and_provenance(browser, server, dashboard_env, lineage_files):
    lineage_files()
    week = _iso(dashboard_env["latest"])
    context, page = _browser_login(browser, server, "audit")
    try:
        page.goto(server + "/?lang=en")
        page.click(f'#overview-table tr[data-area="{ALERT_AREA}"] td[data-indicator="referrals"] a.provenance')
        page.wait_for_selector("#provenance-batches")
        assert page.inner_text("#prov-week") == week
        assert page.inner_text('#provenance-batches tr[data-batch="batch-p"] td.used') == "yes"
        _screenshot(page, "auditor_provenance")
        page.click("#nav-lineage")
        page.wait_for_selector("#lineage-graph")
        box = page.locator('#lineage-graph g[data-node="exposure.ewi.coordinator_dashboard"]').bounding_box()
        assert box and box["width"] > 100  # drawn, not just present
        assert page.locator("#lineage-graph path.edge").count() > 20
        _screenshot(page, "auditor_lineage")
    finally:
        context.close()


def test_health_endpoint_needs_no_login_and_shows_no_data():
    from fastapi.testclient import TestClient

    from ewi.dashboard.app import create_app

    response = TestClient(create_app()).get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}
