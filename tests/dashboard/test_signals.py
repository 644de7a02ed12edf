"""Signals on the dashboard: the overview lists the open signals with their age, an area's page its
signal history with the acknowledge and close forms, a coordinator acknowledges one in Chromium
(screenshots under the pytest basetemp, artifacts/), and auditors read every change but change nothing.

The warehouse is built by the real dbt models and the real Farrington task, from weekly counts made
as tests/test_signals.py makes them (120 weeks, three rises): the session's synthetic 20 weeks are
too short for the default method, which needs a year of history, and 70 weeks through the real
ingest take minutes on a shared machine (docs/decisions.md, "Signals and their states")."""

from __future__ import annotations

import os
from datetime import date, timedelta

import pytest

from tests.dashboard.helpers import PASSWORDS, SECRET, login, parse, rows, serve, stop

pytestmark = pytest.mark.slow

TEST_DB = "ewi_dashboard_signals"
AREA_1, AREA_2 = "2081C1010", "2081C1020"
RISES = {(AREA_1, "contacts"): (100, 4), (AREA_2, "referrals"): (96, 4), (AREA_1, "multi_signal"): (104, 3)}
ENV_KEYS = ("EWI_WAREHOUSE_DB", "EWI_DASHBOARD_USERS", "EWI_DASHBOARD_SECRET")


@pytest.fixture(scope="module")
def signal_warehouse(warehouse_ready, tmp_path_factory):
    import psycopg

    import ewi.dashboard
    from ewi import transform, warehouse, warehouse_init
    from ewi.dashboard import users
    from tests.test_signals import SELECT, WEEKS, _load

    saved = {k: os.environ.get(k) for k in ENV_KEYS}
    users_path = tmp_path_factory.mktemp("signal-users") / "users.json"
    os.environ.update({"EWI_WAREHOUSE_DB": TEST_DB, "EWI_DASHBOARD_USERS": str(users_path),
                       "EWI_DASHBOARD_SECRET": SECRET})
    ewi.dashboard.refresh()
    try:
        warehouse_init.init_warehouse()
        with psycopg.connect(warehouse.dsn(), autocommit=True) as db:
            transform._invoke(["seed", "--select", "areas"])
            _load(db, len(WEEKS), RISES)
            built = transform.build(select=SELECT + " stg_batches load_status")
        assert built["success"], built["failures"]
        users.save_users({
            "coord": users.User("coord", "coordinator", users.hash_password(PASSWORDS["coord"])),
            "audit": users.User("audit", "auditor", users.hash_password(PASSWORDS["audit"])),
        })
        yield {"dsn": warehouse.dsn(), "artifacts": tmp_path_factory.getbasetemp() / "artifacts"}
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        ewi.dashboard.refresh()


@pytest.fixture(scope="module")
def app(signal_warehouse):
    from ewi.dashboard.app import create_app

    return create_app()


def _signals(dsn: str, where: str = "true", params=()) -> list[dict]:
    return rows(dsn, f"select * from published.area_signals where {where} order by signal_key", params)  # noqa: S608


def _age(first_week_start: date) -> int:
    today = date.today()
    return ((today - timedelta(days=today.weekday())) - first_week_start).days // 7


def test_the_overview_lists_the_open_signals_with_their_age(signal_warehouse, app):
    dsn = signal_warehouse["dsn"]
    open_ = _signals(dsn, "state <> 'closed'")
    assert len(open_) >= 4, "the rises must open signals for this test to mean anything"
    # signals are made of default-method alerts only (tests/test_signals.py checks the grouping)
    assert {s["method"] for s in _signals(dsn)} == {"farrington"}
    page = parse(login(app, "coord").get("/?lang=en").text)
    listed = page.find("table", id="open-signals-table").find_all("tr", class_="signal")
    assert sorted(r.attrs["data_signal"] for r in listed) == [s["signal_key"] for s in open_]
    for r in listed:
        s = next(s for s in open_ if s["signal_key"] == r.attrs["data_signal"])
        assert r.find("td", class_="age").text() == f"{_age(s['first_week_start'])} wk"
        assert s["first_week"] in r.text() and s["last_alert_week"] in r.text()


def test_an_area_page_shows_its_signal_history(signal_warehouse, app):
    dsn = signal_warehouse["dsn"]
    area = _signals(dsn)[0]["area_code"]
    page = parse(login(app, "coord").get(f"/area/{area}?lang=en").text)
    history = page.find("section", id="signals").find_all("li", class_="signal")
    assert sorted(li.attrs["data_signal"] for li in history) == [s["signal_key"] for s in _signals(
        dsn, "area_code = %s", (area,))]
    assert page.find_all("form", class_="acknowledge")


def test_a_coordinator_acknowledges_a_signal_in_the_browser(signal_warehouse, browser):
    dsn, artifacts = signal_warehouse["dsn"], signal_warehouse["artifacts"]
    artifacts.mkdir(exist_ok=True)
    signal = _signals(dsn, "state = 'new'")[0]
    anchor = "signal-" + signal["signal_key"].replace(":", "-")
    with open(artifacts / "dashboard-stderr.txt", "w") as err:
        proc, url = serve(dict(os.environ), err)
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        page = context.new_page()
        page.goto(url + "/?lang=en")
        page.fill("#username", "coord")
        page.fill("#password", PASSWORDS["coord"])
        page.click("#login-submit")
        page.wait_for_selector("#open-signals-table")
        page.screenshot(path=str(artifacts / "signals_overview.png"), full_page=True)
        page.click(f'#open-signals-table tr[data-signal="{signal["signal_key"]}"] a')
        page.wait_for_selector(f"#{anchor}")
        item = page.locator(f"#{anchor}")
        item.locator("form.acknowledge input[name=note]").fill("Fältgruppen informerad")
        page.screenshot(path=str(artifacts / "signals_area_acknowledging.png"))
        item.screenshot(path=str(artifacts / "signals_area_acknowledging_signal.png"))
        item.locator("form.acknowledge button").click()
        page.wait_for_selector("#signal-message")
        assert "saved" in page.inner_text("#signal-message")
        assert page.locator(f"#{anchor} .state").first.inner_text() == "Acknowledged"
        assert "Acknowledged by coord" in page.locator(f"#{anchor}").inner_text()
        page.screenshot(path=str(artifacts / "signals_area_acknowledged.png"))
    finally:
        context.close()
        stop(proc)
    assert _signals(dsn, "signal_key = %s", (signal["signal_key"],))[0]["state"] == "acknowledged"
    trail = rows(dsn, "select username, user_role, from_state, to_state, note from audit.signal_state_changes "
                      "where signal_key = %s", (signal["signal_key"],))
    assert trail == [{"username": "coord", "user_role": "coordinator", "from_state": "new",
                      "to_state": "acknowledged", "note": "Fältgruppen informerad"}]


def _form(c, area: str, key: str) -> dict:
    page = parse(c.get(f"/area/{area}?lang=en").text)
    return {"csrf": page.find("input", name="csrf").attrs["value"], "signal_key": key}


def test_closing_needs_a_reason_and_a_stale_page_does_not_overwrite(signal_warehouse, app):
    dsn = signal_warehouse["dsn"]
    s = _signals(dsn, "state = 'new'")[0]
    c = login(app, "coord")
    form = _form(c, s["area_code"], s["signal_key"])
    r = c.post("/signals/close", data={**form, "from_state": "new", "reason": ""})
    assert r.status_code == 303 and "signal=reason_needed" in r.headers["location"]
    r = c.post("/signals/acknowledge", data={**form, "from_state": "new", "note": "sett"})
    assert "signal=saved" in r.headers["location"]
    # a second coordinator's page still says new: the warehouse refuses to overwrite
    r = c.post("/signals/close", data={**form, "from_state": "new", "reason": "monitored"})
    assert "signal=changed_meanwhile" in r.headers["location"]
    r = c.post("/signals/close", data={**form, "from_state": "acknowledged", "reason": "monitored", "note": "ok"})
    assert "signal=saved" in r.headers["location"]
    assert _signals(dsn, "signal_key = %s", (s["signal_key"],))[0]["state"] == "closed"
    page = parse(c.get(r.headers["location"].split("#")[0] + "&lang=en").text)
    assert page.find("p", id="signal-message").text() == "The signal's state is saved."
    closed = page.find("li", data_signal=s["signal_key"])
    assert "Closed by coord" in closed.text() and "Monitored" in closed.text()
    assert not closed.find_all("form")


def test_a_note_with_an_identity_number_is_refused(signal_warehouse, app):
    dsn = signal_warehouse["dsn"]
    s = _signals(dsn, "state = 'new'")[0]
    c = login(app, "coord")
    r = c.post("/signals/acknowledge", data={**_form(c, s["area_code"], s["signal_key"]), "from_state": "new",
                                             "note": "gäller 19121212-1212"})
    assert "signal=note_identity" in r.headers["location"]
    assert _signals(dsn, "signal_key = %s", (s["signal_key"],))[0]["state"] == "new"
    assert not rows(dsn, "select 1 from audit.signal_state_changes where note like %s", ("%1212%",))


def test_auditors_read_every_change_and_change_nothing(signal_warehouse, app):
    dsn = signal_warehouse["dsn"]
    s = _signals(dsn, "state = 'new'")[0]
    auditor, coord = login(app, "audit"), login(app, "coord")
    before = rows(dsn, "select count(*) as n from audit.signal_state_changes")[0]["n"]
    form = _form(auditor, s["area_code"], s["signal_key"])
    assert not parse(auditor.get(f"/area/{s['area_code']}").text).find_all("form", class_="acknowledge")
    r = auditor.post("/signals/acknowledge", data={**form, "from_state": "new"})
    assert r.status_code == 403
    assert rows(dsn, "select count(*) as n from audit.signal_state_changes")[0]["n"] == before
    # without the session's CSRF token nothing changes either
    r = coord.post("/signals/acknowledge", data={"signal_key": s["signal_key"], "from_state": "new"})
    assert r.status_code == 403
    changes = rows(dsn, "select * from audit.signal_state_changes order by id")
    assert changes, "the tests above changed signals"
    page = parse(auditor.get("/audit/signals?lang=en").text)
    shown_rows = page.find("table", id="signal-changes").find("tbody").find_all("tr")
    assert len(shown_rows) == len(changes)
    assert coord.get("/audit/signals").status_code == 403
