"""The auditors' pages against the fixture warehouse: every delivery the gate decided with its
checks and GX Data Docs, the dbt builds and their tests, the lineage graph, and the deliveries a
published figure was computed from."""

from __future__ import annotations

import os
from datetime import UTC, timedelta

from tests.dashboard.conftest import QUARANTINED_SOURCE
from tests.dashboard.helpers import iso, parse, published, rows, shown


def _quarantined(dsn: str) -> dict:
    found = rows(dsn, "select * from audit.batches where status = 'quarantined'")
    assert len(found) == 1, "the fixture warehouse has one quarantined delivery"
    return found[0]


def test_auditor_sees_every_batch_with_checks_and_data_docs(auditor, dashboard_warehouse):
    dsn = dashboard_warehouse["dsn"]
    page = parse(auditor.get("/audit?lang=en").text)
    table = page.find("table", id="batches-table")
    assert {tr.attrs["data_batch"] for tr in table.find_all("tr", data_batch=True)} >= {
        r["batch_id"] for r in rows(dsn, "select batch_id from audit.batches")}
    stopped = _quarantined(dsn)
    q = table.find("tr", data_batch=stopped["batch_id"])
    assert q.find("td", class_="status").text() == "quarantined"
    assert q.find("td", class_="rows-in-file").text() == str(stopped["rows_in_file"])
    batch = parse(auditor.get(f"/audit/batch/{stopped['batch_id']}?lang=en").text)
    failed = batch.find("table", id="checks-table").find_all("tr", class_="failed")
    assert any("birth_year" in tr.text() for tr in failed)
    docs = auditor.get(batch.find("a", id="docs-link").attrs["href"])
    assert docs.status_code == 200 and docs.headers["content-type"].startswith("text/html")
    assert auditor.get("/audit/docs/../../users.json").status_code == 404
    assert auditor.get("/audit/docs/%2e%2e/%2e%2e/dashboard/session.key").status_code == 404


def test_auditor_sees_the_dbt_builds_and_their_tests(auditor, dashboard_warehouse):
    run = rows(dashboard_warehouse["dsn"], "select run_id from audit.dbt_runs order by started_at desc limit 1")[0]
    tests = rows(dashboard_warehouse["dsn"], "select test_name from audit.dbt_test_results where run_id = %s",
                 (run["run_id"],))
    assert tests
    page = parse(auditor.get("/audit/dbt").text)
    listed = page.find("details", data_run=run["run_id"]).find("tbody").find_all("tr")
    assert sorted(tr.find_all("td")[0].text() for tr in listed) == sorted(t["test_name"] for t in tests)


def test_auditor_sees_a_refused_link_that_has_no_checksum(auditor, dashboard_warehouse, tmp_path):
    """A path refused as not a regular file is recorded without checksum or size (nothing was read):
    /audit and its batch page show a dash, not an error."""
    from ewi import cli

    target = next(dashboard_warehouse["synth"].glob("contacts_*.csv"))
    link = tmp_path / "contacts_2026-W01_20260105T0600.csv"
    os.symlink(target, link)
    assert cli.main(["ingest", str(link)]) != 0
    refused = rows(dashboard_warehouse["dsn"], "select batch_id from audit.batches where file_name = %s", (link.name,))
    assert len(refused) == 1
    listing = auditor.get("/audit?lang=en")
    assert listing.status_code == 200
    row = parse(listing.text).find("table", id="batches-table").find("tr", data_batch=refused[0]["batch_id"])
    assert row.find("td", class_="sha").text() == "–"
    detail = auditor.get(f"/audit/batch/{refused[0]['batch_id']}?lang=en")
    assert detail.status_code == 200 and parse(detail.text).find("dd", class_="sha").text() == "–"


def test_provenance_lists_the_batches_a_published_value_was_computed_from(auditor, coordinator, dashboard_warehouse):
    dsn, latest = dashboard_warehouse["dsn"], dashboard_warehouse["latest"]
    week = iso(latest)
    area = published(dsn, "week_start = %s order by area_code limit 1", (latest,))[0]["area_code"]
    # auditors get a link on every published number; coordinators do not
    overview = parse(auditor.get("/?lang=en").text)
    link = overview.find("tr", data_area=area).find("td", data_indicator="referrals").find("a", class_="provenance")
    assert link.attrs["href"] == f"/audit/provenance?indicator=referrals&week={week}&area={area}"
    assert not parse(coordinator.get("/?lang=en").text).find_all("a", class_="provenance")
    area_page = parse(auditor.get(f"/area/{area}?lang=en").text)
    assert area_page.find("table", id="weekly-table").find("tr", data_week=week).find(
        "td", data_indicator="referrals").find("a", class_="provenance")

    page = parse(auditor.get(link.attrs["href"] + "&lang=en").text)
    listed = {tr.attrs["data_batch"]: tr for tr in page.find("table", id="provenance-batches").find_all(
        "tr", data_batch=True)}
    week_batches = {r["batch_id"]: r for r in rows(
        dsn, "select batch_id, status from audit.batches where source = %s and period = %s", (QUARANTINED_SOURCE, week))}
    assert set(listed) == set(week_batches)  # the week's referrals deliveries, nothing else
    for batch_id, r in week_batches.items():
        assert listed[batch_id].find("td", class_="status").text() == r["status"]
        assert listed[batch_id].find("td", class_="used").text() == ("yes" if r["status"] == "published" else "no")
    value = published(dsn, "area_code = %s and indicator = 'referrals' and week_start = %s", (area, latest))[0]
    assert page.find(id="prov-value").text() == shown(value["rate"], value["is_suppressed"])
    # absence is computed from the school deliveries of 4 weeks, all of them used
    absence = parse(auditor.get(f"/audit/provenance?indicator=chronic_absence&week={week}&lang=en").text)
    used = absence.find("table", id="provenance-batches").find_all("tr", data_batch=True)
    assert len(used) == 4 and all(tr.find("td", class_="used").text() == "yes" for tr in used)
    first = iso(latest - timedelta(weeks=3))
    assert absence.find("li", data_source="school_absence").text() == f"school absence: periods {first} – {week}"
    assert absence.find(id="prov-area").text() == "Municipality"
    assert coordinator.get(link.attrs["href"]).status_code == 403
    assert auditor.get("/audit/provenance?indicator=nope&week=2026-W01").status_code == 404


def test_lineage_graph_from_the_dbt_manifest_and_openlineage_runs(auditor, coordinator, lineage_files,
                                                                   dashboard_warehouse):
    dsn = dashboard_warehouse["dsn"]
    with lineage_files.absent():  # another module of the package may have generated them already
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
    # the delivery nodes count audit.batches: every referrals delivery, the quarantined one too
    counts = rows(dsn, "select status, count(*) as n from audit.batches where source = 'referrals' "
                       "group by status order by status")
    assert [c["status"] for c in counts] == ["published", "quarantined"]
    referrals = svg.find("g", data_node="deliveries.referrals")
    assert referrals.find("title").text() == ", ".join(f"{c['status']}: {c['n']}" for c in counts)
    assert coordinator.get("/audit/lineage").status_code == 403


def test_auditor_sees_when_the_audit_chain_was_last_verified(auditor, dashboard_warehouse):
    """The fixture warehouse's trail (deliveries decided, a build, logins and page views written by
    the dashboard's own role) verifies, and the auditor's page says when and over how many records."""
    from ewi import audit_chain

    result = audit_chain.verify_warehouse()
    assert result.holds, [p.words for p in result.problems]
    assert result.records_checked > 0
    status = parse(auditor.get("/audit?lang=en").text).find("p", id="chain-status")
    assert "held" in status.text() and f"{result.records_checked} records checked" in status.text()
    verified = rows(dashboard_warehouse["dsn"], "select max(verified_at) as at from audit.chain_verifications")[0]
    assert status.find("time").attrs["datetime"] == verified["at"].astimezone(UTC).isoformat()
