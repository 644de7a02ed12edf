"""The alert models on a real warehouse with real dbt: the Farrington and glrnb tasks' tables as dbt
sources, the EARS SQL against its Python reference, the watched series against their Python twin, and
disclosure control in the published mart.

The input is a hand-made intermediate.int_area_weekly_counts (two areas, 120 weeks, every
indicator; deterministic Poisson counts, an absence holiday week, and a tripling of contacts in one
area over the last 6 weeks), so the test depends on the alert models only, not on ingest.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from ewi.alerts.ears import EarsControl, ears
from ewi.alerts.glrnb_runner import c_arl_for, glrnb_parameters, run_glrnb
from ewi.alerts.glrnb_runner import compute as glrnb_compute
from ewi.alerts.runner import run_farrington
from ewi.alerts.series import INDICATORS, monitored_series
from tests.weekly_counts import AREAS, WEEKS, load_weekly_counts, weekly_counts

pytestmark = pytest.mark.slow

RISE_AREA, RISE_WEEKS = "2081C1010", range(114, 120)
# The area register seed is loaded first (selecting it here would also select the other models' tests
# that refer to it, and their models are not built in this test). area_alerts reads which weekly cells
# area_weekly_indicators suppresses, and the build's disclosure audit reads every mart, so they are built too.
SELECT = ("stg_areas stg_farrington_results stg_glrnb_results stg_area_score_results area_weekly_indicators municipality_weekly area_trends alert_series alert_ears "
          "area_alerts")


@pytest.fixture(scope="module")
def alert_warehouse(warehouse_ready):
    import psycopg

    from ewi import transform

    with psycopg.connect(warehouse_ready, autocommit=True) as db:
        yield from _build(db, transform)


def _build(db, transform):
    # contacts tripled in RISE_AREA over the last weeks; a holiday week without absence figures each year
    counts = weekly_counts(20260101, {(RISE_AREA, "contacts"): (RISE_WEEKS.start, 3)}, holidays=True)
    load_weekly_counts(db, counts)
    db.execute("delete from alerts.farrington_results")
    db.execute("delete from alerts.glrnb_results")
    transform._invoke(["seed", "--select", "areas"])
    empty = transform.build(select=SELECT)  # the mart builds while the Farrington table is empty
    written = run_farrington(db)
    started = time.monotonic()
    glrnb_written = run_glrnb(db)
    glrnb_s = time.monotonic() - started
    built = transform.build(select=SELECT)
    yield {"counts": counts, "empty": empty, "written": written, "built": built, "glrnb_written": glrnb_written,
           "glrnb_s": glrnb_s}
    db.execute("delete from alerts.farrington_results")
    db.execute("delete from alerts.glrnb_results")
    db.execute("drop table if exists intermediate.int_area_weekly_counts cascade")


def test_mart_builds_without_farrington_rows_and_with_them(alert_warehouse, db):
    assert alert_warehouse["empty"]["success"], alert_warehouse["empty"]["failures"]
    assert alert_warehouse["built"]["success"], alert_warehouse["built"]["failures"]
    assert "area_alerts" in alert_warehouse["built"]["published_models"]
    assert alert_warehouse["written"] == len(AREAS) * len(INDICATORS) * len(WEEKS)
    assert alert_warehouse["glrnb_written"] == len(AREAS) * len(INDICATORS) * len(WEEKS)
    methods = dict(db.execute("select method, count(*) from published.area_alerts group by method").fetchall())
    assert methods == dict.fromkeys(("farrington", "glrnb", "ears_c1", "ears_c2", "ears_c3"),
                                    len(AREAS) * 5 * len(WEEKS))


def test_disclosure_control_in_the_published_mart(alert_warehouse, db):
    assert db.execute("select count(*) from published.area_alerts where observed between 1 and 4").fetchone()[0] == 0
    assert db.execute("select count(*) from published.area_alerts where observed is null and score is not null"
                      ).fetchone()[0] == 0
    # A watched count of 1-4 never alerts (its figures are withheld: a cell of its window is suppressed).
    assert db.execute("""select count(*) from published.area_alerts as a
                         join intermediate.alert_series as s using (area_code, week_start, indicator)
                         where s.observed between 1 and 4 and (a.is_alert or a.observed is not null)""").fetchone()[0] == 0
    # Small counts exist underneath (the referral 4-week counts), so something was suppressed.
    assert db.execute("""select count(*) from intermediate.alert_series
                         where observed between 1 and 4""").fetchone()[0] > 0
    assert db.execute("select count(*) from published.area_alerts where explanation_en like '%: not published observed%'"
                      ).fetchone()[0] > 0


def test_default_method_flags_the_injected_rise(alert_warehouse, db):
    rows = db.execute(
        """select week_start, is_alert, explanation_en from published.area_alerts
           where is_default_method and area_code = %s and indicator = 'contacts' and week_start >= %s""",
        (RISE_AREA, WEEKS[RISE_WEEKS.start])).fetchall()
    assert any(alert for _, alert, _ in rows)
    assert all(m == "farrington" for (m,) in db.execute(
        "select distinct method from published.area_alerts where is_default_method").fetchall())
    assert "ALERT" in next(text for _, alert, text in rows if alert)


def test_sql_series_equal_the_python_twin(alert_warehouse, db):
    sql = pd.DataFrame(db.execute("select area_code, indicator, week_start, observed from intermediate.alert_series")
                       .fetchall(), columns=["area_code", "indicator", "week_start", "observed"])
    python = monitored_series(alert_warehouse["counts"])
    merged = sql.merge(python, on=["area_code", "indicator", "week_start"], suffixes=("_sql", "_py"))
    assert len(merged) == len(python) == len(sql)
    assert np.allclose(merged["observed_sql"].astype(float), merged["observed_py"], equal_nan=True)


def test_ears_sql_equals_the_python_reference(alert_warehouse, db):
    frame = pd.DataFrame(db.execute(
        """select e.area_code, e.indicator, e.week_start, e.method, s.observed, e.statistic, e.upper_threshold,
                  e.is_alert
           from intermediate.alert_ears as e join intermediate.alert_series as s using (area_code, indicator, week_start)
           order by 1, 2, 4, 3""").fetchall(),
        columns=["area_code", "indicator", "week_start", "method", "observed", "statistic", "upper", "is_alert"])
    control = EarsControl()
    compared = 0
    for (_, _, method), group in frame.groupby(["area_code", "indicator", "method"]):
        reference = ears(list(group["observed"]), method, control)
        assert [w.is_alert for w in reference] == list(group["is_alert"])
        py = np.array([np.nan if w.statistic is None else w.statistic for w in reference])
        assert np.allclose(py, group["statistic"].astype(float), equal_nan=True, atol=1e-9)
        compared += len(group)
    assert compared == len(AREAS) * len(INDICATORS) * len(WEEKS) * 3


RESULTS = ("select area_code, indicator, week_start, observed, expected, upper_threshold, is_alert "
           "from alerts.farrington_results order by 1, 2, 3")


def test_farrington_recomputes_only_from_the_first_changed_week(alert_warehouse, db):
    """A run recomputes nothing when no input changed, every week from a changed count on (its
    results equal a full recompute's), and every week from a delivery's week when one was published
    since the last run (a changed denominator leaves the count as it was)."""
    per_week = len(AREAS) * len(INDICATORS)
    before = db.execute(RESULTS).fetchall()
    assert run_farrington(db) == 0
    changed = 100
    bump = ("update intermediate.int_area_weekly_counts set numerator = numerator + %s "
            "where area_code = %s and indicator = 'referrals' and week_start = %s")
    db.execute(bump, (7, RISE_AREA, WEEKS[changed]))
    try:
        assert run_farrington(db) == per_week * (len(WEEKS) - changed)
        incremental = db.execute(RESULTS).fetchall()
        assert run_farrington(db, full=True) == per_week * len(WEEKS)
        assert db.execute(RESULTS).fetchall() == incremental
    finally:
        db.execute(bump, (-7, RISE_AREA, WEEKS[changed]))
    assert run_farrington(db) == per_week * (len(WEEKS) - changed)
    assert db.execute(RESULTS).fetchall() == before  # deterministic

    delivered = 110
    period = "{}-W{:02d}".format(*WEEKS[delivered].isocalendar()[:2])
    db.execute(
        "insert into audit.batches (batch_id, source, period, file_name, file_sha256, file_size, status, "
        "rows_in_file, rows_published, decided_at) values ('farrington-test', 'school_absence', %s, %s, "
        "repeat('0', 64), 1, 'published', 0, 0, now())",
        (period, f"school_absence_{period}_20260101T0600.csv"))
    try:
        assert run_farrington(db) == per_week * (len(WEEKS) - delivered)
    finally:
        db.execute("delete from audit.batches where batch_id = 'farrington-test'")
    assert db.execute(RESULTS).fetchall() == before


def test_glrnb_through_the_pipeline(alert_warehouse, db):
    """run_glrnb reads Farrington's results and writes what the Python detector computes from them;
    area_alerts publishes them as method glrnb (threshold = cases needed - 1, score = statistic /
    c_ARL) under the same disclosure rules, and the injected tripling of contacts alarms."""
    farrington = pd.DataFrame(db.execute(
        "select area_code, indicator, week_start, observed, expected, phi, status from alerts.farrington_results"
    ).fetchall(), columns=["area_code", "indicator", "week_start", "observed", "expected", "phi", "status"])
    python = glrnb_compute(farrington, glrnb_parameters())
    stored = pd.DataFrame(db.execute(
        "select area_code, indicator, week_start, statistic, cases_needed, is_alert, status from alerts.glrnb_results"
    ).fetchall(), columns=["area_code", "indicator", "week_start", "statistic", "cases_needed", "is_alert", "status"])
    merged = python.merge(stored, on=["area_code", "indicator", "week_start"], suffixes=("_py", "_db"))
    assert len(merged) == len(python) == len(stored)
    assert np.allclose(merged["statistic_py"].astype(float), merged["statistic_db"].astype(float), equal_nan=True)
    assert np.allclose(merged["cases_needed_py"].astype(float), merged["cases_needed_db"].astype(float), equal_nan=True)
    assert (merged["is_alert_py"] == merged["is_alert_db"]).all()
    assert (merged["status_py"] == merged["status_db"]).all()
    assert set(stored["status"]) >= {"ok", "insufficient_history", "no_data"}
    # an alarm is exactly a statistic at or over c_ARL, and the threshold is consistent with it
    ok = stored[stored["status"] == "ok"]
    c_arl = ok["indicator"].map(lambda indicator: c_arl_for(glrnb_parameters(), indicator)).astype(float)
    assert ((ok["statistic"].astype(float) >= c_arl) == ok["is_alert"]).all()
    assert ((ok["cases_needed"].astype(float) <= farrington.set_index(["area_code", "indicator", "week_start"])
             .loc[list(zip(ok["area_code"], ok["indicator"], ok["week_start"], strict=True)), "observed"]
             .to_numpy(dtype=float)) == ok["is_alert"].to_numpy()).all()
    # published: the same rules as every method
    published = pd.DataFrame(db.execute(
        """select a.area_code, a.indicator, a.week_start, a.observed, a.expected, a.upper_threshold, a.score, a.is_alert,
                  a.status, a.explanation_en, s.observed as watched
           from published.area_alerts as a join intermediate.alert_series as s using (area_code, week_start, indicator)
           where a.method = 'glrnb'""").fetchall(),
        columns=["area_code", "indicator", "week_start", "observed", "expected", "upper", "score", "is_alert",
                 "status", "explanation_en", "watched"])
    assert not ((published["watched"] >= 1) & (published["watched"] <= 4) & published["is_alert"]).any()
    assert not (published["observed"].isna() & published["score"].notna()).any()
    assert (published["status"] == "withheld").any()
    shown = published.merge(python, on=["area_code", "indicator", "week_start"])
    shown = shown[shown["upper"].notna()]
    assert len(shown) > 0
    assert np.allclose(shown["upper"].astype(float), (shown["cases_needed"] - 1).round(1))
    assert np.allclose(shown["score"].dropna().astype(float),
                       (shown.loc[shown["score"].notna(), "statistic"] / shown.loc[shown["score"].notna(), "c_arl"]).round(2))
    assert "GLR (negative binomial)" in published["explanation_en"].iloc[-1] or published["status"].iloc[-1] == "no_data"
    rise = published[(published["area_code"] == RISE_AREA) & (published["indicator"] == "contacts")
                     & (published["week_start"] >= WEEKS[RISE_WEEKS.start])]
    assert rise["is_alert"].any()
    # cost: the whole task (every week of every series, thresholds included) next to Farrington's
    print(f"glrnb task: {alert_warehouse['glrnb_s']:.2f} s for {alert_warehouse['glrnb_written']} rows")


def test_glrnb_withheld_reaches_back_to_its_charts_first_week(alert_warehouse, db):
    """glrnb's expected, threshold and score are withheld when a cell is suppressed anywhere from
    Farrington's lookback before the week's chart started, so never when Farrington's are published
    for a week whose chart started at that week (same lookback), and at least as often otherwise."""
    rows = db.execute(
        """select g.week_start = r.chart_start as starts_here, g.expected is null as g_withheld,
                  f.expected is null as f_withheld
           from published.area_alerts as g
           join published.area_alerts as f using (area_code, indicator, week_start)
           join alerts.glrnb_results as r using (area_code, indicator, week_start)
           where g.method = 'glrnb' and f.method = 'farrington' and r.status = 'ok'""").fetchall()
    assert rows
    assert all(g == f for starts, g, f in rows if starts)
    assert all(g for _, g, f in rows if f)


GLRNB_RESULTS = ("select area_code, indicator, week_start, observed, expected, alpha, statistic, cases_needed, "
                 "is_alert, status, chart_start from alerts.glrnb_results order by 1, 2, 3")


def test_glrnb_recomputes_from_the_first_changed_week_as_a_full_run_would(alert_warehouse, db):
    """run_glrnb resumes each series' chart at its first changed week (Farrington's count, expectation
    or dispersion): the result equals a computation from scratch, and less is computed."""
    before = db.execute(GLRNB_RESULTS).fetchall()
    started = time.monotonic()
    run_glrnb(db)
    unchanged_s = time.monotonic() - started
    assert db.execute(GLRNB_RESULTS).fetchall() == before
    week = WEEKS[100]
    bump = ("update alerts.farrington_results set observed = observed + %s "
            "where area_code = %s and indicator = 'contacts' and week_start >= %s")
    db.execute(bump, (6, RISE_AREA, week))
    try:
        started = time.monotonic()
        run_glrnb(db)
        incremental_s = time.monotonic() - started
        incremental = db.execute(GLRNB_RESULTS).fetchall()
        assert incremental != before
        db.execute("delete from alerts.glrnb_results")
        started = time.monotonic()
        run_glrnb(db)
        full_s = time.monotonic() - started
        assert db.execute(GLRNB_RESULTS).fetchall() == incremental
    finally:
        db.execute(bump, (-6, RISE_AREA, week))
    run_glrnb(db)
    assert db.execute(GLRNB_RESULTS).fetchall() == before
    assert unchanged_s < full_s and incremental_s < full_s
    print(f"glrnb: unchanged {unchanged_s:.2f} s, one series from week 100 {incremental_s:.2f} s, full {full_s:.2f} s")
