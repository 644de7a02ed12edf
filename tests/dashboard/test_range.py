"""The time range a coordinator picks on the overview and the area pages (the last 12, 26, 52 or 104
weeks, or from–to), and each week's value read from a table, checked against the published rows."""

from __future__ import annotations

from datetime import timedelta

from tests.dashboard.helpers import iso, parse, published, shown


def _weeks_shown(table) -> list[str]:
    return [tr.attrs["data_week"] for tr in table.find("tbody").find_all("tr")]


def test_the_area_page_shows_the_last_12_weeks_when_asked(coordinator, dashboard_warehouse):
    dsn, latest = dashboard_warehouse["dsn"], dashboard_warehouse["latest"]
    area = published(dsn, "week_start = %s order by area_code limit 1", (latest,))[0]["area_code"]
    page = parse(coordinator.get(f"/area/{area}?lang=en&weeks=12").text)
    expected = [iso(latest - timedelta(weeks=i)) for i in range(12)]
    assert _weeks_shown(page.find("table", id="weekly-table")) == expected
    nav = page.find("nav", id="range")
    assert [a.attrs["data_weeks"] for a in nav.find_all("a")] == ["12", "26", "52", "104"]
    assert nav.find("a", data_weeks="12").attrs.get("aria_current") == "true"


def test_the_area_page_charts_and_export_keep_a_from_to_range(coordinator, dashboard_warehouse):
    dsn, latest = dashboard_warehouse["dsn"], dashboard_warehouse["latest"]
    area = published(dsn, "week_start = %s order by area_code limit 1", (latest,))[0]["area_code"]
    first, last = latest - timedelta(weeks=10), latest - timedelta(weeks=4)
    page = parse(coordinator.get(f"/area/{area}?lang=en&from={iso(first)}&to={iso(last)}").text)
    expected = [iso(last - timedelta(weeks=i)) for i in range(7)]
    assert _weeks_shown(page.find("table", id="weekly-table")) == expected
    r = published(dsn, "area_code = %s and indicator = 'referrals' and week_start = %s", (area, last))[0]
    cell = page.find("table", id="weekly-table").find("tr", data_week=iso(last)).find(
        "td", data_indicator="referrals")
    assert cell.text().replace("⚠", "").strip() == shown(r["rate"], r["is_suppressed"])
    assert page.find("input", id="range-from").attrs["value"] == iso(first)
    assert page.find("input", id="range-to").attrs["value"] == iso(last)
    export = coordinator.get(page.find("a", id="export-csv").attrs["href"] + "&lang=en")
    weeks_exported = {line.split(";")[0].split(",")[0] for line in export.text.splitlines()[1:] if line}
    assert weeks_exported == set(expected)
    for img in page.find_all("img", class_="chart"):
        assert f"to={iso(last)}" in img.attrs["src"]
        assert coordinator.get(img.attrs["src"]).status_code == 200


def test_a_from_after_its_to_falls_back_to_the_weeks_asked_for(coordinator, dashboard_warehouse):
    dsn, latest = dashboard_warehouse["dsn"], dashboard_warehouse["latest"]
    area = published(dsn, "week_start = %s order by area_code limit 1", (latest,))[0]["area_code"]
    page = parse(coordinator.get(f"/area/{area}?lang=en&weeks=12&from={iso(latest)}&to=2026-W99").text)
    assert _weeks_shown(page.find("table", id="weekly-table"))[0] == iso(latest)
    assert len(_weeks_shown(page.find("table", id="weekly-table"))) == 12


def test_the_overview_shows_the_small_multiples_values_as_a_table(coordinator, dashboard_warehouse):
    dsn, latest = dashboard_warehouse["dsn"], dashboard_warehouse["latest"]
    page = parse(coordinator.get("/?lang=en&indicator=referrals&weeks=12").text)
    table = page.find("table", id="values-table")
    assert _weeks_shown(table) == [iso(latest - timedelta(weeks=i)) for i in range(12)]
    for r in published(dsn, "indicator = 'referrals' and week_start > %s", (latest - timedelta(weeks=12),)):
        td = table.find("tr", data_week=iso(r["week_start"])).find("td", data_area=r["area_code"])
        assert td.text() == shown(r["rate"], r["is_suppressed"])
    assert "weeks=12" in page.find("img", id="small-multiples").attrs["src"]
    assert coordinator.get(page.find("img", id="small-multiples").attrs["src"]).status_code == 200


def test_every_script_and_style_is_served_by_the_dashboard(coordinator, dashboard_warehouse):
    page = parse(coordinator.get("/?lang=en").text)
    for tag, attr in (("script", "src"), ("link", "href"), ("img", "src")):
        for node in page.find_all(tag):
            assert not node.attrs.get(attr, "/").startswith(("http:", "https:", "//"))
