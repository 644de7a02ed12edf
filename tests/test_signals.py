"""Signals on a real warehouse with real dbt: published.area_signals built from the default method's
alerts, the states people set kept outside `published` through rebuilds, written only through
signals.change_state() by the dashboard role, every change in the audit trail, a closed signal that
alerts again opening a new one, and the disclosure audit checking that signal figures are published
ones.

The input is a hand-made intermediate.int_area_weekly_counts (as tests/test_alerts_dbt.py): two areas,
120 weeks, and contacts in one area quadrupled from week 108, so the default method (Farrington)
alerts there. The first build sees 112 weeks, the second all 120."""

from __future__ import annotations

import psycopg
import pytest

from ewi.alerts.runner import run_farrington
from tests.weekly_counts import WEEKS, load_weekly_counts, weekly_counts
from tests.weekly_counts import iso_week as _iso

pytestmark = pytest.mark.slow

RISE_AREA, RISE_FROM, FIRST_CUT = "2081C1010", 100, 112
RISES = {(RISE_AREA, "contacts"): (RISE_FROM, 4)}  # (area, indicator): (from week, factor)
SELECT = ("stg_areas stg_farrington_results stg_glrnb_results stg_area_score_results stg_signal_states area_weekly_indicators municipality_weekly area_trends "
          "alert_series alert_ears area_alerts area_signals")


def _load(db, weeks: int, rises: dict = RISES) -> None:
    """The weekly counts the indicator models would have built, and the Farrington task's results."""
    load_weekly_counts(db, weekly_counts(20261130, rises, weeks))
    run_farrington(db)


def _signals(db) -> list[dict]:
    cur = db.execute("select * from published.area_signals order by area_code, indicator, first_week_start")
    names = [d.name for d in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def _role(dsn: str, role: str) -> psycopg.Connection:
    return psycopg.connect(psycopg.conninfo.make_conninfo(dsn, user=role), autocommit=True)


def _change(conn, key, from_state, to_state, note=None, reason=None, user="anna", role="coordinator"):
    conn.execute("select signals.change_state(%s, %s, %s, %s, %s, %s, %s)",
                 (key, from_state, to_state, user, role, note, reason))


@pytest.fixture(scope="module")
def signals_warehouse(warehouse_ready):
    from ewi import transform

    with psycopg.connect(warehouse_ready, autocommit=True) as db:
        db.execute("delete from alerts.farrington_results")
        db.execute("delete from signals.signal_states")
        transform._invoke(["seed", "--select", "areas"])
        _load(db, FIRST_CUT)
        first = transform.build(select=SELECT)
        yield {"db": db, "dsn": warehouse_ready, "first": first, "transform": transform}
        db.execute("delete from alerts.farrington_results")
        db.execute("delete from signals.signal_states")
        db.execute("drop table if exists intermediate.int_area_weekly_counts cascade")


def test_signals_group_the_default_methods_alerts(signals_warehouse):
    db = signals_warehouse["db"]
    assert signals_warehouse["first"]["success"], signals_warehouse["first"]["failures"]
    assert "area_signals" in signals_warehouse["first"]["published_models"]
    alerts = db.execute("""select area_code, indicator, method, week_start from published.area_alerts
                           where is_alert and is_default_method order by 1, 2, 3, 4""").fetchall()
    assert alerts, "the rise must alert for the test to mean anything"
    signals = _signals(db)
    assert {s["method"] for s in signals} == {"farrington"}
    assert {s["state"] for s in signals} == {"new"}
    # every default alert lies in exactly one signal of its area and indicator, and no other alert does
    for area, indicator, method, week in alerts:
        inside = [s for s in signals if (s["area_code"], s["indicator"], s["method"]) == (area, indicator, method)
                  and s["first_week_start"] <= week <= s["last_alert_week_start"]]
        assert len(inside) == 1
    # a signal's alerts are at most two quiet weeks apart; two signals of a series more than two
    by_series: dict = {}
    for area, indicator, method, week in alerts:
        by_series.setdefault((area, indicator, method), []).append(week)
    for s in signals:
        weeks = [w for w in by_series[(s["area_code"], s["indicator"], s["method"])]
                 if s["first_week_start"] <= w <= s["last_alert_week_start"]]
        assert weeks[0] == s["first_week_start"] and weeks[-1] == s["last_alert_week_start"]
        assert all((b - a).days <= 21 for a, b in zip(weeks, weeks[1:], strict=False))
        assert s["first_week"] == _iso(s["first_week_start"]) and s["last_alert_week"] == _iso(s["last_alert_week_start"])
        assert s["signal_key"] == f"farrington:{s['area_code']}:{s['indicator']}:{s['first_week']}"
    for key, series in by_series.items():
        starts = [s for s in signals if (s["area_code"], s["indicator"], s["method"]) == key]
        assert len(starts) == 1 + sum((b - a).days > 21 for a, b in zip(series, series[1:], strict=False))


def test_states_are_written_through_the_function_only_and_audited(signals_warehouse):
    db, dsn = signals_warehouse["db"], signals_warehouse["dsn"]
    key = _signals(db)[0]["signal_key"]
    with _role(dsn, "ewi_dashboard") as dash, _role(dsn, "ewi_auditor") as auditor:
        # neither login role writes the state table or the published table directly
        for conn in (dash, auditor):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("insert into signals.signal_states (signal_key, area_code, indicator, method, "
                             "first_week_start, state, acknowledged_by, acknowledged_at) "
                             "values (%s, 'x', 'x', 'x', '2026-01-05', 'acknowledged', 'x', now())", (key,))
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("update published.area_signals set state = 'closed'")
        # auditors only read: they cannot call the function
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            _change(auditor, key, "new", "acknowledged")
        # the dashboard passes its user's role; an auditor's session gets no change through
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            _change(dash, key, "new", "acknowledged", role="auditor")
        _change(dash, key, "new", "acknowledged", note="Fältgruppen informerad")
        # a stale page (still showing new) does not overwrite the change someone made meanwhile
        with pytest.raises(psycopg.errors.SerializationFailure):
            _change(dash, key, "new", "closed", reason="monitored", user="bo")
        with pytest.raises(psycopg.errors.InvalidParameterValue):  # closing needs one of the reasons
            _change(dash, key, "acknowledged", "closed", reason="because", user="bo")
        with pytest.raises(psycopg.errors.InvalidParameterValue):  # closed is the end
            _change(dash, key, "acknowledged", "new", user="bo")
        _change(dash, key, "acknowledged", "closed", note="Ökad närvaro i området", reason="action_started", user="bo")
        with pytest.raises(psycopg.errors.InvalidParameterValue):
            _change(dash, key, "closed", "acknowledged", user="bo")
        row = dash.execute("select state, acknowledged_by, acknowledged_note, closed_by, close_reason, close_note "
                           "from published.area_signals where signal_key = %s", (key,)).fetchone()
        assert row == ("closed", "anna", "Fältgruppen informerad", "bo", "action_started", "Ökad närvaro i området")
        trail = auditor.execute("""select username, user_role, from_state, to_state, note, reason, at is not null
                                   from audit.signal_state_changes where signal_key = %s order by id""",
                                (key,)).fetchall()
        assert trail == [("anna", "coordinator", "new", "acknowledged", "Fältgruppen informerad", None, True),
                         ("bo", "coordinator", "acknowledged", "closed", "Ökad närvaro i området", "action_started",
                          True)]
        with pytest.raises(psycopg.errors.InsufficientPrivilege):  # the dashboard does not read the trail
            dash.execute("select * from audit.signal_state_changes")
    db.execute("delete from signals.signal_states")
    db.execute("""update published.area_signals set state = 'new', acknowledged_by = null, acknowledged_at = null,
                  acknowledged_note = null, closed_by = null, closed_at = null, close_reason = null,
                  close_note = null""")


def test_states_survive_a_rebuild_and_a_closed_signal_that_alerts_again_opens_a_new_one(signals_warehouse):
    db, dsn, transform = signals_warehouse["db"], signals_warehouse["dsn"], signals_warehouse["transform"]
    before = _signals(db)
    rise = [s for s in before if (s["area_code"], s["indicator"]) == (RISE_AREA, "contacts")]
    assert rise, "the rise must open a signal"
    closed, other = rise[-1], [s for s in before if s is not rise[-1]]
    with _role(dsn, "ewi_dashboard") as dash:
        _change(dash, closed["signal_key"], "new", "closed", reason="monitored")
        for s in other[:1]:
            _change(dash, s["signal_key"], "new", "acknowledged", note="sett")
    states_before = db.execute("select * from signals.signal_states order by signal_key").fetchall()

    rebuilt = transform.build(select=SELECT)  # the same data: nothing but the build changes
    assert rebuilt["success"], rebuilt["failures"]
    assert db.execute("select * from signals.signal_states order by signal_key").fetchall() == states_before
    after = {s["signal_key"]: s for s in _signals(db)}
    assert after[closed["signal_key"]]["state"] == "closed"
    for s in other[:1]:
        assert after[s["signal_key"]]["state"] == "acknowledged"
        assert after[s["signal_key"]]["acknowledged_note"] == "sett"

    _load(db, len(WEEKS))  # eight more weeks of the rise
    grown = transform.build(select=SELECT)
    assert grown["success"], grown["failures"]
    after = {s["signal_key"]: s for s in _signals(db)}
    again = db.execute("""select week_start from published.area_alerts where is_alert and is_default_method
                          and area_code = %s and indicator = 'contacts' and week_start > %s order by 1""",
                       (RISE_AREA, closed["last_alert_week_start"])).fetchall()
    assert again, "the rise must alert after the close for the test to mean anything"
    # the closed signal keeps the weeks its closer saw; the next alert opens a new, new signal
    assert after[closed["signal_key"]]["state"] == "closed"
    assert after[closed["signal_key"]]["last_alert_week_start"] == closed["last_alert_week_start"]
    reopened = f"farrington:{RISE_AREA}:contacts:{_iso(again[0][0])}"
    assert after[reopened]["state"] == "new"
    assert after[reopened]["first_week_start"] == again[0][0]


def test_a_state_set_while_a_build_runs_is_on_the_table_it_publishes(signals_warehouse, monkeypatch):
    """The build reads the states when it builds area_signals; a coordinator's change after that, before
    the publish, must not be lost when the new table replaces the old one."""
    db, dsn, transform = signals_warehouse["db"], signals_warehouse["dsn"], signals_warehouse["transform"]
    key = next(s for s in _signals(db) if s["state"] == "new")["signal_key"]
    publish = transform._publish

    def change_then_publish(conn, tables, run_id):
        with _role(dsn, "ewi_dashboard") as dash:
            _change(dash, key, "new", "acknowledged", note="medan bygget körde")
        publish(conn, tables, run_id)

    monkeypatch.setattr(transform, "_publish", change_then_publish)
    built = transform.build(select=SELECT)
    assert built["success"], built["failures"]
    row = db.execute("select state, acknowledged_note from published.area_signals where signal_key = %s",
                     (key,)).fetchone()
    assert row == ("acknowledged", "medan bygget körde")


def test_the_dashboard_and_auditor_roles_read_the_signals(signals_warehouse):
    dsn = signals_warehouse["dsn"]
    for role in ("ewi_dashboard", "ewi_auditor"):
        with _role(dsn, role) as conn:
            assert conn.execute("select count(*) from published.area_signals").fetchone()[0] > 0


def test_the_disclosure_audit_checks_signal_figures_against_published_ones(signals_warehouse):
    from ewi.disclosure.audit import audit

    db = signals_warehouse["db"]
    schemas = dict.fromkeys(("area_weekly_indicators", "municipality_weekly", "area_trends", "area_alerts",
                             "area_signals"), "published")
    assert audit(db, schemas).passed
    key = next(s["signal_key"] for s in _signals(db) if s["peak_score"] is not None)
    with db.transaction():
        # a peak score that no published alert week carries (as a raw, unwithheld score would be)
        db.execute("update published.area_signals set peak_score = peak_score + 0.37 where signal_key = %s", (key,))
        tampered = audit(db, schemas)
        assert not tampered.passed
        assert any(key in p and "peak_score" in p for p in tampered.problems)
        db.execute("update published.area_signals set last_alert_week_start = last_alert_week_start + 7 "
                   "where signal_key = %s", (key,))
        assert any(key in p and "latest week" in p for p in audit(db, schemas).problems)
        raise psycopg.Rollback()


def test_the_hand_worked_grouping_unit_test_passes(signals_warehouse):
    """models/marts/area_signals.yml: the gap rule, a closed signal's reopening, a withheld score and a
    non-default method's alert, on rows worked by hand."""
    import json

    from ewi.transform import _FAILED, _node_results

    res = signals_warehouse["transform"]._invoke(
        ["test", "--select", "area_signals,test_type:unit", "--vars", json.dumps({"marts_schema": "published"})])
    nodes = _node_results(res)
    assert [n["name"] for n in nodes] == ["area_signals_grouping_hand_worked"]
    assert not [n for n in nodes if n["status"] in _FAILED], [n["message"] for n in nodes]
