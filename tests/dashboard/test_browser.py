"""The dashboard served as `ewi dashboard` serves it, driven by Chromium (Playwright): what a
coordinator and an auditor see, with screenshots in test-artifacts/."""

from __future__ import annotations

import re
import time
from datetime import timedelta

import pytest

from tests.dashboard.conftest import QUARANTINED_SOURCE
from tests.dashboard.helpers import ARTIFACTS, PASSWORDS, iso, published, rows, shown

pytestmark = pytest.mark.slow


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
def test_browser_coordinator(browser, server, dashboard_warehouse):
    dsn, latest = dashboard_warehouse["dsn"], dashboard_warehouse["latest"]
    hidden = published(dsn, "week_start = %s and is_suppressed order by area_code limit 1", (latest,))[0]
    area = published(dsn, "week_start = %s order by area_code limit 1", (latest,))[0]["area_code"]
    context, page = _browser_login(browser, server, "coord")
    try:
        page.goto(server + "/?lang=en")
        _wait_for_charts(page)
        for r in published(dsn, "week_start = %s", (latest,)):
            shown_there = page.inner_text(f'#overview-table tr[data-area="{r["area_code"]}"] '
                                    f'td[data-indicator="{r["indicator"]}"] .value')
            assert shown_there == shown(r["rate"], r["is_suppressed"])
        assert page.inner_text(f'#overview-table tr[data-area="{hidden["area_code"]}"] '
                               f'td[data-indicator="{hidden["indicator"]}"] .value') == "<5"
        assert page.is_visible(".stale-banner") and page.is_visible("#freshness")
        _screenshot(page, "coordinator_overview")

        page.click(f'#area-grid a[data-area="{area}"]')
        page.wait_for_selector("#weekly-table")
        _wait_for_charts(page)
        r = published(dsn, "area_code = %s and indicator = %s and week_start = %s", (area, "referrals", latest))[0]
        cell = page.inner_text(f'#weekly-table tr[data-week="{iso(latest)}"] td[data-indicator="referrals"]')
        assert cell.replace("⚠", "").strip() == shown(r["rate"], r["is_suppressed"])
        alerting = rows(dsn, "select count(*) as n from published.area_alerts where area_code = %s and is_alert "
                             "and is_default_method and week_start > %s", (area, latest - timedelta(weeks=52)))
        assert page.is_visible("#alerts") == (alerting[0]["n"] > 0)  # the default method's alerts only
        _screenshot(page, "coordinator_area")

        response = page.goto(server + "/audit")
        assert response.status == 403
        _screenshot(page, "coordinator_refused_audit")
        html = page.content()
        assert not re.search(r"\b[0-9a-f]{64}\b", html)  # no pseudonym-like strings on screen
    finally:
        context.close()


@pytest.mark.slow
def test_browser_auditor(browser, server, dashboard_warehouse):
    batches = {r["status"]: r for r in rows(dashboard_warehouse["dsn"], "select * from audit.batches "
                                            "where source = %s order by received_at", (QUARANTINED_SOURCE,))}
    stopped, taken = batches["quarantined"]["batch_id"], batches["published"]
    context, page = _browser_login(browser, server, "audit")
    try:
        page.goto(server + "/audit?lang=en")
        assert page.inner_text(f'#batches-table tr[data-batch="{stopped}"] td.status') == "quarantined"
        assert page.inner_text(f'#batches-table tr[data-batch="{taken["batch_id"]}"] td.rows-published') == str(
            taken["rows_published"])
        _screenshot(page, "auditor_batches")
        page.click(f'#batches-table tr[data-batch="{stopped}"] a')
        page.wait_for_selector("#checks-table")
        assert page.inner_text("#batch-status") == "quarantined"
        _screenshot(page, "auditor_batch")
    finally:
        context.close()


@pytest.mark.slow
def test_browser_auditor_lineage_and_provenance(browser, server, dashboard_warehouse, lineage_files):
    lineage_files()
    dsn, latest = dashboard_warehouse["dsn"], dashboard_warehouse["latest"]
    week = iso(latest)
    area = published(dsn, "week_start = %s order by area_code limit 1", (latest,))[0]["area_code"]
    used = rows(dsn, "select batch_id from audit.batches where source = 'referrals' and period = %s "
                     "and status = 'published'", (week,))[0]["batch_id"]
    context, page = _browser_login(browser, server, "audit")
    try:
        page.goto(server + "/?lang=en")
        page.click(f'#overview-table tr[data-area="{area}"] td[data-indicator="referrals"] a.provenance')
        page.wait_for_selector("#provenance-batches")
        assert page.inner_text("#prov-week") == week
        assert page.inner_text(f'#provenance-batches tr[data-batch="{used}"] td.used') == "yes"
        _screenshot(page, "auditor_provenance")
        page.click("#nav-lineage")
        page.wait_for_selector("#lineage-graph")
        box = page.locator('#lineage-graph g[data-node="exposure.ewi.coordinator_dashboard"]').bounding_box()
        assert box and box["width"] > 100  # drawn, not just present
        assert page.locator("#lineage-graph path.edge").count() > 20
        _screenshot(page, "auditor_lineage")
    finally:
        context.close()
