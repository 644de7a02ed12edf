"""Exports carry the published figures, suppressed ones as <5, and each is in the access log."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

from tests.dashboard.helpers import ARTIFACTS, access_log, iso, published, shown


def test_csv_export_has_the_published_figures_and_is_logged(coordinator, dashboard_warehouse):
    dsn, latest = dashboard_warehouse["dsn"], dashboard_warehouse["latest"]
    area = published(dsn, "week_start = %s and is_suppressed order by area_code limit 1", (latest,))[0]["area_code"]
    before = len(access_log(dsn))
    r = coordinator.get(f"/export/area/{area}.csv?lang=en")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    exported = list(csv.DictReader(io.StringIO(r.content.decode("utf-8-sig"))))
    expected = {(p["indicator"], iso(p["week_start"])): p for p in published(
        dsn, "area_code = %s and week_start > %s", (area, latest - timedelta(weeks=52)))}
    assert len(exported) == len(expected)
    for row in exported:
        p = expected[(row["indicator"], row["Week"])]
        assert row["Rate"] == shown(p["rate"], p["is_suppressed"])
        assert row["Numerator"] == ("<5" if p["is_suppressed"] else str(p["numerator"]))
    assert any(row["Rate"] == "<5" for row in exported)
    overview = coordinator.get("/export/overview.csv")  # Swedish: ';' and decimal comma
    assert overview.status_code == 200
    areas = {p["area_code"] for p in published(dsn, "week_start = %s", (latest,))}
    lines = list(csv.reader(io.StringIO(overview.content.decode("utf-8-sig")), delimiter=";"))
    assert len(lines) == 1 + 5 * len(areas)
    png = coordinator.get(f"/chart/area/{area}/referrals.png")
    assert png.status_code == 200 and png.content[:8] == b"\x89PNG\r\n\x1a\n"
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "dashboard_export_area_referrals.png").write_bytes(png.content)
    logged = access_log(dsn)[before:]
    assert [(e["action"], e["username"], e["user_role"]) for e in logged] == [
        ("export_csv", "coord", "coordinator"), ("export_csv", "coord", "coordinator"),
        ("export_png", "coord", "coordinator")]
