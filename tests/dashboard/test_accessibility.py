"""WCAG 2.1 AA in the browser: axe-core (the minified engine shipped by the pinned
axe-playwright-python package, injected by Playwright, never fetched from a CDN) audits every page
a coordinator or an auditor can open, on the warehouse the real pipeline built, and finds nothing."""

from __future__ import annotations

import json

import pytest

from tests.dashboard.conftest import QUARANTINED_SOURCE
from tests.dashboard.helpers import ARTIFACTS, PASSWORDS, iso, published, rows

pytestmark = pytest.mark.slow

#: WCAG 2.0/2.1 A and AA: what the DOS law asks of a public-sector service.
WCAG_AA = {"runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]},
           "resultTypes": ["violations"]}


def _violations(page) -> list[dict]:
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page, options=WCAG_AA).response
    return [{"rule": v["id"], "impact": v["impact"],
             "targets": [n["target"] for n in v["nodes"]][:5]} for v in results["violations"]]


def _audit(browser, server: str, username: str | None, paths: list[str]) -> dict[str, list]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    found = {}
    try:
        if username:
            page.goto(server + "/login")
            page.fill("#username", username)
            page.fill("#password", PASSWORDS[username])
            page.click("#login-submit")
            page.wait_for_url(server + "/")
        for path in paths:
            for lang in ("sv", "en"):
                response = page.goto(f"{server}{path}{'&' if '?' in path else '?'}lang={lang}")
                assert response.status == 200, path
                page.wait_for_load_state("load")
                found[f"{path} ({lang})"] = _violations(page)
            name = "".join(ch if ch.isalnum() else "_" for ch in path).strip("_") or "overview"
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / f"axe_{username or 'anonymous'}_{name}.png"), full_page=True)
    finally:
        context.close()
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / f"axe_{username or 'anonymous'}.json").write_text(json.dumps(found, indent=1, default=str))
    return {p: v for p, v in found.items() if v}


def test_login_page_has_no_axe_violations(browser, server):
    assert _audit(browser, server, None, ["/login"]) == {}


def test_coordinator_pages_have_no_axe_violations(browser, server, dashboard_warehouse):
    dsn, latest = dashboard_warehouse["dsn"], dashboard_warehouse["latest"]
    areas = [r["area_code"] for r in published(dsn, "week_start = %s order by area_code", (latest,))]
    alerting = rows(dsn, "select area_code from published.area_alerts where is_alert and is_default_method "
                         "order by week_start desc limit 1")
    paths = ["/", "/?indicator=referrals", f"/area/{areas[0]}"]
    if alerting:
        paths.append(f"/area/{alerting[0]['area_code']}")
    assert _audit(browser, server, "coord", paths) == {}


def test_auditor_pages_have_no_axe_violations(browser, server, dashboard_warehouse, lineage_files):
    lineage_files()
    dsn, latest = dashboard_warehouse["dsn"], dashboard_warehouse["latest"]
    area = published(dsn, "week_start = %s order by area_code limit 1", (latest,))[0]["area_code"]
    batch = rows(dsn, "select batch_id from audit.batches where source = %s and status = 'quarantined' limit 1",
                 (QUARANTINED_SOURCE,))[0]["batch_id"]
    paths = ["/", f"/area/{area}", "/audit", f"/audit/batch/{batch}", "/audit/lineage", "/audit/dbt",
             f"/audit/provenance?area={area}&indicator=referrals&week={iso(latest)}", "/audit/methods",
             "/audit/signals", "/audit/access"]
    assert _audit(browser, server, "audit", paths) == {}
