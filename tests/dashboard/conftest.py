"""The dashboard's fixture warehouse, built once per test session (for this package: the tests of
other packages find the environment as it was) the way production builds one:
`ewi synth` writes 20 weeks of deliveries, `ewi ingest` takes them through the gate, `ewi transform`
runs the real dbt build and publishes the marts. Two deliveries make the freshness banners real:
contacts' last three weeks are never delivered (stale), and a correction of referrals' last week
with a birth year out of range is stopped by the gate (quarantined). The dashboard reads it all
through its own login roles, as the users `coord` and `audit`."""

from __future__ import annotations

import json
import os
import shutil
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.dashboard.helpers import PASSWORDS, dashboard_environment, login, rows, serve, stop

TEST_DB = "ewi_dashboard_test"
WEEKS = 20
STALE_SOURCE, STALE_WEEKS = "contacts", 3
QUARANTINED_SOURCE = "referrals"
CHROMIUM = "/usr/bin/chromium"


def _correction_out_of_range(original: Path) -> Path:
    """A delivery of the same referrals week an hour later whose first row's person was born in
    1990: aged 36, outside the 0-20 of SOURCES.md, so the gate quarantines the whole delivery."""
    source, period, delivered = original.stem.rsplit("_", 2)
    encoding = "utf-8-sig" if original.read_bytes().startswith(b"\xef\xbb\xbf") else "cp1252"
    lines = original.read_text(encoding=encoding).splitlines()
    sep = ";" if ";" in lines[0] else ","
    first = lines[1].split(sep)
    first[lines[0].split(sep).index("birth_year")] = "1990"
    later = f"{delivered[:-4]}{int(delivered[-4:]) + 100:04d}"
    corrected = original.with_name(f"{source}_{period}_{later}.csv")
    corrected.write_text("\n".join([lines[0], sep.join(first), *lines[2:]]) + "\n", encoding=encoding)
    return corrected


@pytest.fixture(scope="package")
def dashboard_warehouse(warehouse_ready, tmp_path_factory):
    with dashboard_environment(TEST_DB, tmp_path_factory.mktemp("dash-users") / "users.json"):
        yield _build(tmp_path_factory)
    import ewi.dashboard

    ewi.dashboard.refresh()


def _build(tmp_path_factory) -> dict:
    from ewi import cli, warehouse
    from ewi.dashboard import users

    out = tmp_path_factory.mktemp("dash-synth")
    assert cli.main(["synth", "--out", str(out), "--weeks", str(WEEKS), "--seed", "3"]) == 0
    deliveries = sorted(out.glob("*.csv"))
    withheld = sorted(p for p in deliveries if p.name.startswith(f"{STALE_SOURCE}_"))[-STALE_WEEKS:]
    assert cli.main(["ingest", *map(str, (p for p in deliveries if p not in withheld))]) == 0
    last = sorted(p for p in deliveries if p.name.startswith(f"{QUARANTINED_SOURCE}_"))[-1]
    assert cli.main(["ingest", str(_correction_out_of_range(last))]) != 0  # stopped by the gate
    assert cli.main(["transform"]) == 0
    users.save_users({
        "coord": users.User("coord", "coordinator", users.hash_password(PASSWORDS["coord"])),
        "audit": users.User("audit", "auditor", users.hash_password(PASSWORDS["audit"])),
    })
    import ewi.dashboard

    ewi.dashboard.refresh()
    dsn = warehouse.dsn(TEST_DB)
    latest = rows(dsn, "select max(week_start) as w from published.area_weekly_indicators")[0]["w"]
    return {"dsn": dsn, "latest": latest, "home": Path(os.environ["EWI_HOME"]), "synth": out}


@pytest.fixture(scope="package")
def app(dashboard_warehouse):
    from ewi.dashboard.app import create_app

    return create_app()


@pytest.fixture(scope="package")
def coordinator(app):
    return login(app, "coord")


@pytest.fixture(scope="package")
def auditor(app):
    return login(app, "audit")


@pytest.fixture(scope="package")
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


@pytest.fixture(scope="package")
def lineage_files(dashboard_warehouse, tmp_path_factory):
    """$EWI_HOME/dbt-docs emptied for this module (other modules may have written it), a function
    that writes it with the real `transform.docs()`, and OpenLineage event files."""
    home = dashboard_warehouse["home"]
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

    @contextmanager
    def absent():
        """The docs as before any build wrote them, whichever test of the package generated them
        first: moved aside for the block, then put back."""
        hidden = tmp_path_factory.mktemp("dbt-docs-hidden") / "dbt-docs"
        if docs.exists():
            shutil.move(docs, hidden)
        try:
            yield
        finally:
            if hidden.exists():
                shutil.rmtree(docs, ignore_errors=True)
                shutil.move(hidden, docs)

    generate.absent = absent
    yield generate
    for path in ours:
        path.unlink(missing_ok=True)
    shutil.rmtree(docs, ignore_errors=True)
    if aside.exists():
        shutil.move(aside, docs)


@pytest.fixture(scope="module")
def server(dashboard_warehouse, tmp_path_factory):
    """The dashboard served by `ewi dashboard` in a process of its own, for the browser tests."""
    with open(tmp_path_factory.mktemp("dashboard-log") / "stderr.txt", "w") as err:
        proc, url = serve(dict(os.environ), err)
    yield url
    stop(proc)
