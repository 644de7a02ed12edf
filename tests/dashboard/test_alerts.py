"""Alerts on the fixture warehouse: area_alerts holds every method's verdicts (Farrington and EARS
C1, C2, C3); the coordinators' pages, exports and charts show the default method's alerts only, and
the auditors compare the methods on a page of their own. Counts are read from the mart as its owner."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

from tests.dashboard.helpers import iso, parse, rows

DEFAULT = "is_alert and is_default_method"
OTHER = "is_alert and not is_default_method"


def _alerts(dsn: str, which: str, where: str = "true", params=()) -> list[dict]:
    return rows(dsn, f"select * from published.area_alerts where {which} and {where}", params)  # noqa: S608


def test_the_overview_marks_the_default_methods_alerts_of_the_week_only(coordinator, dashboard_warehouse):
    dsn, latest = dashboard_warehouse["dsn"], dashboard_warehouse["latest"]
    assert _alerts(dsn, OTHER, "week_start = %s", (latest,)), "the week has no alert of another method to leave out"
    default = _alerts(dsn, DEFAULT, "week_start = %s", (latest,))
    page = parse(coordinator.get("/?lang=en").text)
    marked = page.find("table", id="overview-table").find_all("td", class_="alert")
    assert len(marked) == len(default)
    assert {(td.attrs["data_indicator"]) for td in marked} == {a["indicator"] for a in default}
    exported = list(csv.reader(io.StringIO(coordinator.get("/export/overview.csv?lang=en").content
                                           .decode("utf-8-sig"))))
    assert sum(1 for line in exported[1:] if line[-1] == "1") == len(default)


def test_no_other_methods_alert_appears_on_a_coordinator_page(coordinator, dashboard_warehouse):
    dsn, latest = dashboard_warehouse["dsn"], dashboard_warehouse["latest"]
    since = latest - timedelta(weeks=51)
    other = _alerts(dsn, OTHER, "week_start between %s and %s", (since, latest))
    assert other, "no alert of another method to leave out"
    for area in sorted({a["area_code"] for a in other}):
        page = parse(coordinator.get(f"/area/{area}?lang=en").text)
        default = {(a["indicator"], iso(a["week_start"])) for a in _alerts(
            dsn, DEFAULT, "area_code = %s and week_start between %s and %s", (area, since, latest))}
        listed = {(li.attrs["data_indicator"], li.attrs["data_week"]) for li in page.find_all("li", data_week=True)}
        assert listed == default, area
        marked = {(td.attrs["data_indicator"], tr.attrs["data_week"])
                  for tr in page.find("table", id="weekly-table").find_all("tr", data_week=True)
                  for td in tr.find_all("td", class_="alert")}
        assert marked == default, area
        assert "ears_c" not in page.find("main").text()
        exported = list(csv.DictReader(io.StringIO(coordinator.get(f"/export/area/{area}.csv?lang=en").content
                                                   .decode("utf-8-sig"))))
        assert {(r["indicator"], r["Week"]) for r in exported if r["Alert"] == "1"} == default, area


def test_auditors_compare_every_methods_alerts_of_a_week(auditor, coordinator, dashboard_warehouse):
    dsn, latest = dashboard_warehouse["dsn"], dashboard_warehouse["latest"]
    page = parse(auditor.get(f"/audit/methods?week={iso(latest)}&lang=en").text)
    table = page.find("table", id="methods-table")
    shown = {(td.attrs["data_area"], td.attrs["data_indicator"], td.attrs["data_method"])
             for td in table.find_all("td", class_="alert")}
    assert shown == {(a["area_code"], a["indicator"], a["method"])
                     for a in _alerts(dsn, "is_alert", "week_start = %s", (latest,))}
    assert {a["method"] for a in _alerts(dsn, OTHER, "week_start = %s", (latest,))} <= {m for _, _, m in shown}
    # without a week, the latest complete one; a week that is none, no page
    assert parse(auditor.get("/audit/methods?lang=en").text).find(id="methods-week").text() == iso(latest)
    assert auditor.get("/audit/methods?week=2026-W99").status_code == 404
    assert coordinator.get("/audit/methods").status_code == 403
