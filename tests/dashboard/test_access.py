"""Who may open what, as requests to the application: logins in the access log, the login page or
401 for anonymous requests, CSRF on every form, auditor pages refused to coordinators, sessions
that expire, and a dashboard role that cannot read the audit or raw tables."""

from __future__ import annotations

import json
import time

import psycopg
import pytest

from tests.dashboard.helpers import PASSWORDS, SECRET, access_log, client, login, parse


def test_logins_are_logged_and_unknown_usernames_are_not(app, dashboard_warehouse):
    dsn = dashboard_warehouse["dsn"]
    c = client(app)
    token = parse(c.get("/login").text).find("input", name="csrf").attrs["value"]
    bad = c.post("/login", data={"username": "191212121212", "password": "x", "csrf": token})
    assert bad.status_code == 401
    wrong = c.post("/login", data={"username": "coord", "password": "nope", "csrf": token})
    assert wrong.status_code == 401
    ok = c.post("/login", data={"username": "coord", "password": PASSWORDS["coord"], "csrf": token,
                                "next": "//evil.example/"})
    assert ok.status_code == 303 and ok.headers["location"] == "/"  # no open redirect
    logged = access_log(dsn, "login")[-3:]
    assert [(e["username"], e["success"]) for e in logged] == [("(unknown)", False), ("coord", False), ("coord", True)]
    assert "191212121212" not in json.dumps([dict(e) for e in access_log(dsn)], default=str)


def test_anonymous_requests_get_the_login_page_or_401(app):
    c = client(app)
    r = c.get("/area/2081C1010")
    assert r.status_code == 303 and r.headers["location"].startswith("/login?next=")
    for path in ("/export/overview.csv", "/chart/overview/referrals.svg", "/audit/docs/x.html"):
        assert c.get(path).status_code == 401, path
    assert c.get("/audit").status_code == 303


def test_forms_need_the_csrf_token(app):
    c = client(app)
    c.get("/login")
    r = c.post("/login", data={"username": "coord", "password": PASSWORDS["coord"], "csrf": "forged"})
    assert r.status_code == 403
    logged_in = login(app, "coord")
    assert logged_in.post("/logout", data={"csrf": "forged"}).status_code == 403
    assert logged_in.get("/").status_code == 200


def test_coordinator_is_refused_auditor_pages(coordinator):
    for path in ("/audit", "/audit/batch/any", "/audit/dbt", "/audit/lineage",
                 "/audit/provenance?indicator=referrals&week=2026-W01", "/audit/docs/data_docs/index.html"):
        assert coordinator.get(path).status_code == 403, path


def test_sessions_expire(app):
    from itsdangerous import TimestampSigner

    c = login(app, "coord")
    payload = TimestampSigner(SECRET).unsign(c.cookies["ewi_session"])  # the session data, re-signed 9 hours ago

    class NineHoursAgo(TimestampSigner):
        def get_timestamp(self):
            return int(time.time()) - 9 * 3600

    fresh, stale = TimestampSigner(SECRET).sign(payload), NineHoursAgo(SECRET).sign(payload)
    assert client(app).get("/", headers={"Cookie": f"ewi_session={fresh.decode()}"}).status_code == 200
    assert client(app).get("/", headers={"Cookie": f"ewi_session={stale.decode()}"}).status_code == 303


def test_the_dashboard_role_cannot_read_audit_or_raw_tables(dashboard_warehouse):
    from ewi.dashboard import data

    with data.connect() as conn:
        for table in ("audit.batches", "audit.access_log", "raw.referrals"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(f"select 1 from {table} limit 1")  # noqa: S608
