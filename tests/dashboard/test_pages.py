"""The coordinators' pages against the fixture warehouse: every figure shown is the published one,
suppressed figures show as <5, and the freshness of each source is always on screen."""

from __future__ import annotations

from datetime import timedelta

from tests.dashboard.conftest import QUARANTINED_SOURCE, STALE_SOURCE
from tests.dashboard.helpers import INDICATORS, iso, login, parse, published, rows, shown


def _suppressed_cell(dsn: str, week) -> dict:
    found = published(dsn, "week_start = %s and is_suppressed order by area_code, indicator", (week,))
    assert found, "the fixture warehouse has no suppressed figure in its latest week"
    return found[0]


def test_overview_shows_the_published_rates_of_the_latest_week(coordinator, dashboard_warehouse):
    dsn, latest = dashboard_warehouse["dsn"], dashboard_warehouse["latest"]
    page = parse(coordinator.get("/?lang=en").text)
    assert page.find(id="week").text() == iso(latest)
    table = page.find("table", id="overview-table")
    week_rows = published(dsn, "week_start = %s", (latest,))
    areas = {r["area_code"] for r in week_rows}
    assert len(week_rows) == len(areas) * len(INDICATORS)
    for r in week_rows:
        td = table.find("tr", data_area=r["area_code"]).find("td", data_indicator=r["indicator"])
        assert td.find("span", class_="value").text() == shown(r["rate"], r["is_suppressed"])
    hidden = _suppressed_cell(dsn, latest)
    cell = table.find("tr", data_area=hidden["area_code"]).find("td", data_indicator=hidden["indicator"])
    assert cell.find("span", class_="value").text() == "<5"
    # the grid links every area; the small multiples chart is an SVG rendered on the server
    assert {a.attrs["data_area"] for a in page.find(id="area-grid").find_all("a")} == areas
    chart = coordinator.get(page.find("img", id="small-multiples").attrs["src"])
    assert chart.status_code == 200 and chart.headers["content-type"] == "image/svg+xml"
    assert b"<svg" in chart.content[:2000]


def test_overview_is_swedish_by_default_with_decimal_comma(app, dashboard_warehouse):
    client = login(app, "coord")
    page = parse(client.get("/").text)
    assert page.find("html").attrs["lang"] == "sv"
    assert "Översikt" in page.find("h1").text()
    r = published(dashboard_warehouse["dsn"], "week_start = %s and not is_suppressed order by area_code limit 1",
                  (dashboard_warehouse["latest"],))[0]
    td = page.find("tr", data_area=r["area_code"]).find("td", data_indicator=r["indicator"])
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
    assert len(stale) == 1 and STALE_SOURCE in stale[0].text()
    quarantined = page.find_all("div", class_="quarantine-banner")
    assert len(quarantined) == 1 and QUARANTINED_SOURCE in quarantined[0].text()
    assert "(quarantined, checks_failed)" in quarantined[0].text()


def test_area_page_shows_weekly_values_trends_and_municipality(coordinator, dashboard_warehouse):
    dsn, latest = dashboard_warehouse["dsn"], dashboard_warehouse["latest"]
    area = published(dsn, "week_start = %s order by area_code limit 1", (latest,))[0]["area_code"]
    page = parse(coordinator.get(f"/area/{area}?lang=en&indicator=referrals").text)
    shown_rows = published(dsn, "area_code = %s and week_start > %s", (area, latest - timedelta(weeks=52)))
    weekly = page.find("table", id="weekly-table")
    for r in shown_rows:
        td = weekly.find("tr", data_week=iso(r["week_start"])).find("td", data_indicator=r["indicator"])
        assert td.text().replace("⚠", "").strip() == shown(r["rate"], r["is_suppressed"])
    detail = page.find("table", id="detail-table").find("tr", data_week=iso(latest))
    r = next(r for r in shown_rows if r["week_start"] == latest and r["indicator"] == "referrals")
    assert detail.find("td", class_="numerator").text() == ("<5" if r["is_suppressed"] else str(r["numerator"]))
    rolling, = rows(dsn, "select rate_12w from published.area_trends where area_code = %s and indicator = %s "
                         "and week_start = %s", (area, "referrals", latest))
    muni, = rows(dsn, "select rate from published.municipality_weekly where indicator = %s and week_start = %s",
                 ("referrals", latest))
    cells = [td.text() for td in detail.find_all("td")]
    assert f"{float(muni['rate']):.1f}" in cells
    assert rolling["rate_12w"] is None or f"{float(rolling['rate_12w']):.1f}" in cells
    for ind in INDICATORS:
        chart = coordinator.get(f"/chart/area/{area}/{ind}.svg?lang=en")
        assert chart.status_code == 200 and b"<svg" in chart.content[:2000]


def test_suppressed_figures_show_as_less_than_five(coordinator, dashboard_warehouse):
    hidden = _suppressed_cell(dashboard_warehouse["dsn"], dashboard_warehouse["latest"])
    page = parse(coordinator.get(f"/area/{hidden['area_code']}?lang=en&indicator={hidden['indicator']}").text)
    latest = iso(dashboard_warehouse["latest"])
    cell = page.find("table", id="weekly-table").find("tr", data_week=latest).find(
        "td", data_indicator=hidden["indicator"])
    assert cell.text().replace("⚠", "").strip() == "<5"
    detail = page.find("table", id="detail-table").find("tr", data_week=latest)
    assert detail.find("td", class_="numerator").text() == "<5"
    assert detail.find("td", class_="rate").text() == "<5"
