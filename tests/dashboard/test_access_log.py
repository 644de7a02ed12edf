"""The access log (audit.dashboard_access): every page view that shows area figures and every
export is recorded with who, when, which area, indicator and weeks, through real HTTP requests to
the dashboard served as `ewi dashboard` serves it; auditors read it on /audit/access and export it
as CSV; coordinators cannot; the dashboard's roles can only append; and a view whose record cannot
be written shows nothing."""

from __future__ import annotations

import csv
import io
import re
from datetime import timedelta

import httpx
import psycopg
import pytest

from tests.dashboard.helpers import PASSWORDS, access_log, parse, published, rows

pytestmark = pytest.mark.slow


def _login(server: str, username: str) -> httpx.Client:
    client = httpx.Client(base_url=server, follow_redirects=False, timeout=60)
    token = re.search(r'name="csrf" value="([^"]+)"', client.get("/login").text)[1]
    r = client.post("/login", data={"username": username, "password": PASSWORDS[username], "csrf": token,
                                    "next": "/"})
    assert r.status_code == 303, r.status_code
    return client


def _entries_after(dsn: str, last_id: int) -> list[dict]:
    return rows(dsn, "select * from audit.dashboard_access where id > %s order by id", (last_id,))


def _last_id(dsn: str) -> int:
    return rows(dsn, "select coalesce(max(id), 0) as n from audit.dashboard_access")[0]["n"]


def _seen(e: dict) -> tuple:
    return (e["username"], e["user_role"], e["action"], e["view"], e["format"], e["area_code"], e["indicator"],
            e["week_from"], e["week_to"])


def test_views_of_area_figures_and_exports_are_logged_with_area_indicator_and_weeks(server, dashboard_warehouse):
    dsn, latest = dashboard_warehouse["dsn"], dashboard_warehouse["latest"]
    area = published(dsn, "week_start = %s order by area_code limit 1", (latest,))[0]["area_code"]
    coord = _login(server, "coord")
    start = _last_id(dsn)
    assert coord.get("/?weeks=12").status_code == 200
    assert coord.get(f"/area/{area}?weeks=26").status_code == 200
    assert coord.get(f"/chart/area/{area}/referrals.svg?weeks=26").status_code == 200  # part of the page
    assert coord.get(f"/export/area/{area}.csv?weeks=26").status_code == 200
    assert coord.get(f"/chart/area/{area}/referrals.png?weeks=26").status_code == 200
    assert coord.get("/export/overview.csv").status_code == 200
    assert coord.get("/area/NOSUCHAREA").status_code == 404  # nothing shown, nothing logged
    w12, w26 = latest - timedelta(weeks=11), latest - timedelta(weeks=25)
    assert [_seen(e) for e in _entries_after(dsn, start)] == [
        ("coord", "coordinator", "view", "overview", "html", None, None, w12, latest),
        ("coord", "coordinator", "view", "area", "html", area, None, w26, latest),
        ("coord", "coordinator", "export", "area", "csv", area, None, w26, latest),
        ("coord", "coordinator", "export", "chart", "png", area, "referrals", w26, latest),
        ("coord", "coordinator", "export", "overview", "csv", None, None, latest, latest),
    ]
    paths = [e["path"] for e in _entries_after(dsn, start)]
    assert paths[1] == f"/area/{area}" and all(p.startswith("/") for p in paths)


def test_auditors_read_and_export_the_access_log_and_coordinators_cannot(server, dashboard_warehouse):
    dsn, latest = dashboard_warehouse["dsn"], dashboard_warehouse["latest"]
    area = published(dsn, "week_start = %s order by area_code desc limit 1", (latest,))[0]["area_code"]
    coord, audit = _login(server, "coord"), _login(server, "audit")
    assert coord.get(f"/area/{area}").status_code == 200
    assert coord.get("/audit/access").status_code == 403
    assert coord.get("/audit/access.csv").status_code == 403

    page = audit.get(f"/audit/access?username=coord&area={area}&lang=en")
    assert page.status_code == 200
    shown = parse(page.text).find("table", id="access-table").find_all("tr", data_id=True)
    expected = rows(dsn, "select * from audit.dashboard_access where username = 'coord' "
                         "and (area_code = %s or area_code is null) order by id desc limit 500", (area,))
    assert [int(r.attrs["data_id"]) for r in shown] == [e["id"] for e in expected]
    newest = shown[0]
    assert newest.find("td", class_="area").text() == area and newest.find("td", class_="view").text() == "area"
    assert all(r.find("td", class_="user").text() == "coord" for r in shown)

    before = len(access_log(dsn, "export_csv"))
    exported = audit.get("/audit/access.csv?username=coord")
    assert exported.status_code == 200 and exported.headers["content-type"].startswith("text/csv")
    lines = list(csv.DictReader(io.StringIO(exported.content.decode("utf-8-sig"))))
    everything = rows(dsn, "select * from audit.dashboard_access where username = 'coord' order by id desc")
    assert [int(r["id"]) for r in lines] == [e["id"] for e in everything]
    assert lines[0]["area_code"] == (everything[0]["area_code"] or "")
    assert lines[0]["week_to"] == (everything[0]["week_to"].isoformat() if everything[0]["week_to"] else "")
    logged = access_log(dsn, "export_csv")[before:]  # exporting the log is logged too
    assert [(e["username"], e["detail"]["view"]) for e in logged] == [("audit", "access_log")]


def test_the_dashboards_roles_can_append_only(dashboard_warehouse):
    from ewi.dashboard import data

    for role in (data.DASHBOARD_ROLE, data.AUDITOR_ROLE):
        with psycopg.connect(data.role_dsn(role), autocommit=True) as conn:
            for statement in ("update audit.dashboard_access set username = 'x'",
                              "delete from audit.dashboard_access",
                              "insert into audit.dashboard_access (username, action, view, format) "
                              "values ('x', 'view', 'area', 'html')"):
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    conn.execute(statement)
    with psycopg.connect(data.role_dsn(data.DASHBOARD_ROLE), autocommit=True) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("select * from audit.dashboard_access")


def test_a_view_that_cannot_be_logged_shows_no_figures(server, dashboard_warehouse):
    dsn, latest = dashboard_warehouse["dsn"], dashboard_warehouse["latest"]
    area = published(dsn, "week_start = %s order by area_code limit 1", (latest,))[0]["area_code"]
    coord = _login(server, "coord")
    grant = ("audit.record_dashboard_access(text, text, text, text, text, text, text, date, date, text) "
             "to ewi_dashboard")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"revoke execute on function {grant.replace(' to ', ' from ')}")
        try:
            for path in (f"/area/{area}", "/", f"/export/area/{area}.csv"):
                # a connection of its own each: the server closes one that ended in an error
                r = httpx.get(server + path, cookies=coord.cookies, timeout=60)
                assert r.status_code == 500, path
                assert area not in r.text or path == "/"  # no figures of the area in the answer
        finally:
            conn.execute(f"grant execute on function {grant}")
    assert coord.get(f"/area/{area}").status_code == 200
