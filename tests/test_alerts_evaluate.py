"""Smoke test of `make eval` (ewi.alerts.evaluation) on tiny sizes, plus its metrics on a hand-made case."""

from __future__ import annotations

import numpy as np
import pytest

from ewi.alerts import evaluation
from ewi.alerts.evaluation import metrics, power, scoring, simulation, tuning
from ewi.alerts.evaluation.simulate import Scenario, simulate_series
from ewi.alerts.runner import farrington_parameters
from ewi.alerts.series import INDICATORS, trailing_sum


def test_detection_metrics_hand_made():
    alerts = np.array([[0, 0, 1, 0, 0, 1], [0, 0, 0, 0, 0, 0]], dtype=bool)
    outbreak = np.array([[0, 1, 1, 1, 0, 0], [0, 0, 1, 1, 0, 0]], dtype=bool)
    m = metrics.detection_metrics(alerts, outbreak, starts=[1, 2])
    assert m["fpr"] == pytest.approx(1 / 7)  # one alert in the seven weeks without outbreak
    assert m["pod"] == 0.5 and m["pod_week1"] == 0 and m["pod_3weeks"] == 0.5
    assert m["median_delay"] == 1


def test_simulated_series_are_reproducible_and_carry_their_outbreak():
    scenario = Scenario("test", level=10, outbreak="sustained", size=(2.0,))
    a, b = simulate_series(scenario, seed=4), simulate_series(scenario, seed=4)
    assert np.array_equal(a.observed, b.observed)
    assert a.outbreak[a.outbreak_start] > 0 and a.outbreak_start >= 156 - 52
    assert np.isnan(trailing_sum(a.observed, 4)[:3]).all()
    assert trailing_sum(np.ones(6), 4)[3:].tolist() == [4, 4, 4]


@pytest.mark.slow
def test_evaluation_runs_end_to_end_on_tiny_sizes(tmp_path):
    out = tmp_path / "alert_evaluation.md"
    result = evaluation.run(n_series=2, rise_seeds=1, out=out, workers=1, weeks=60, quiet_seeds=(510,),
                            cache=tmp_path / "cache",
                            ceiling_options={"tuning_quiet": (500,), "tuning_rises": (600,)})
    report = out.read_text(encoding="utf-8")
    assert "# Alert evaluation" in report and "## Earlier targets (alerts, not signals: superseded by section 4)" in report
    assert "## 4. Each indicator against its own ceiling" in report
    # the co-rises' data sets are not cached here: the section says how to measure it instead of taking ~15 min
    assert "## The area score on co-occurring rises (issue 18)" in report and "Not measured in this run" in report
    rows = result["ceiling"]["rows"]
    assert {r["method"] for r in rows} >= {"farrington", "ears_c2", "eb", "oracle"}
    assert set(result["ceiling"]["defaults"]) == set(INDICATORS)
    assert len(result["simulation"]) == len(simulation.SCENARIOS)
    assert result["synth"]["series"] == 24 * 5
    for method in scoring.METHODS:
        assert result["synth"]["false_alerts_per_week"][method] >= 0


def test_per_indicator_alpha_and_rolling_windows():
    from ewi.alerts.runner import alpha_for, farrington_control
    from ewi.alerts.series import rolling_weeks_setting

    params = {**farrington_parameters(), "alpha": {"referrals": 0.01, "default": 0.001}}
    assert alpha_for(params, "referrals") == 0.01 and alpha_for(params, "contacts") == 0.001
    assert farrington_control(params, "referrals").alpha == 0.01
    assert alpha_for({"alpha": 0.002}, "referrals") == 0.002
    assert rolling_weeks_setting(4) == {"referrals": 4, "contacts": 4}
    assert rolling_weeks_setting({"referrals": 3}) == {"referrals": 3}


def test_watched_series_windows_and_warm_up():
    import pandas as pd

    from ewi.alerts.series import monitored_series

    weeks = pd.date_range("2024-01-01", periods=8, freq="7D")
    counts = pd.DataFrame([
        {"area_code": "A", "week_start": w, "indicator": ind, "numerator": 1, "denominator": 100,
         "is_share": ind == "invalid_absence", "note": None}
        for ind in ("referrals", "invalid_absence") for w in weeks])
    series = monitored_series(counts, {"referrals": 3})
    referrals = series[series["indicator"] == "referrals"]["observed"].tolist()
    absence = series[series["indicator"] == "invalid_absence"]["observed"].tolist()
    assert np.isnan(referrals[:2]).all() and referrals[2:] == [3.0] * 6
    assert np.isnan(absence[:3]).all() and absence[3:] == [1.0] * 5


def test_tuning_p_values_decide_every_alpha_as_the_method_does():
    """The tuning harness fits Farrington once and applies each alpha to the week's P(Y >= observed):
    with nbPlugin that must give exactly the alerts of a run at that alpha (mart rule included)."""
    import pandas as pd

    from ewi.alerts.farrington import FarringtonControl, farrington_flexible

    scenario = Scenario("test", level=3, phi=1.2, outbreak="sustained", size=(2.5,))
    s = simulate_series(scenario, seed=7)
    observed = trailing_sum(s.observed, 3)
    group = pd.DataFrame({"observed": observed, "population": np.full(len(observed), 1000.0)})
    monitored = range(len(observed) - 52, len(observed))
    control = {**farrington_parameters(), "population_offset": False}
    p = tuning._tuning_p_values(group, s.week_starts, monitored, dict(control), min_count=5)
    for alpha in (0.001, 0.005, 0.02, 0.1):
        fc = FarringtonControl.from_dict({**control, "alpha": alpha})
        run = farrington_flexible(observed, s.week_starts, fc, weeks=monitored)
        assert [r.is_alert and r.observed >= 5 for r in run] == list(p <= alpha)
    assert (p <= 0.1).any()


def test_known_baseline_bound():
    """The power analysis: more youths a week or a bigger rise can only help; at one youth a week a
    doubling is found within three weeks far less often than 80 % of the time by any trailing-sum rule."""
    budget = 1 / (4 * power.COUNT_SERIES)
    one_x2 = power.known_baseline_detection(1.0, 2.0, budget, baseline_weeks=50_000, reps=5_000)
    one_x3 = power.known_baseline_detection(1.0, 3.0, budget, baseline_weeks=50_000, reps=5_000)
    eight_x2 = power.known_baseline_detection(8.0, 2.0, budget, baseline_weeks=50_000, reps=5_000)
    assert one_x2[0] < 0.3 < one_x3[0] and eight_x2[0] > 0.85
    assert one_x2[2] >= 5  # never below the disclosure minimum


def test_trailing_sum_warm_up_hand_worked():
    """One trailing sum for the watched rolling counts (incomplete windows: no value) and for the
    4- and 12-week flags of the pandas twin (incomplete windows: the weeks there are, as SQL's
    `rows between 3 preceding and current row` sums)."""
    weekly = np.array([1, 2, 3, 4, 5])
    assert np.isnan(trailing_sum(weekly, 3)[:2]).all() and trailing_sum(weekly, 3)[2:].tolist() == [6, 9, 12]
    assert trailing_sum(weekly, 3, partial=True).tolist() == [1, 3, 6, 9, 12]
    assert trailing_sum(weekly, 1).tolist() == [1, 2, 3, 4, 5]
    people = np.array([[1, 0, 1, 1], [0, 2, 0, 0]])
    assert trailing_sum(people, 2, partial=True).tolist() == [[1, 1, 1, 2], [0, 2, 2, 0]]
    gap = trailing_sum(np.array([1, np.nan, 1, 1, 1]), 2)
    assert np.isnan(gap[:3]).all() and gap[3:].tolist() == [2, 2]  # a missing week spoils its windows only


REFERRALS_HEADER = ("referral_id", "person_pseudonym", "received_date", "home_area_code", "birth_year",
                    "reporter_category", "concern_category")


def _referrals_file(folder, cells) -> object:
    """A referrals delivery in the contract's Windows-1252 dialect (semicolons, CRLF), its header's
    names padded with spaces, which the ingest's reader takes."""
    path = folder / "referrals_2026-W10_20260309T0600.csv"
    lines = [" ; ".join(REFERRALS_HEADER), ";".join(cells)]
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode("cp1252"))
    return path


def test_the_evaluation_reads_an_extract_as_the_ingest_does(tmp_path):
    from ewi.alerts.evaluation.counts import read_extract

    pseudonym = "ab" * 32
    path = _referrals_file(tmp_path, ["R-1", pseudonym, "2026-03-04", "2081001", "2011", "skola", "skolfrånvaro"])
    frame = read_extract(path)
    assert list(frame.columns) == list(REFERRALS_HEADER)
    assert frame.loc[0, "received_date"] == "2026-03-04" and frame.loc[0, "concern_category"] == "skolfrånvaro"


def test_the_evaluation_refuses_an_extract_the_ingest_refuses(tmp_path):
    from ewi.alerts.evaluation.counts import read_extract
    from ewi.ingest.reading import Rejection

    path = _referrals_file(tmp_path, ["R-1", "19121212-1212", "2026-03-04", "2081001", "2011", "skola", "annat"])
    with pytest.raises(Rejection) as refused:
        read_extract(path)
    assert refused.value.code == "direct_identifier"


@pytest.mark.slow
def test_the_evaluations_counts_are_the_warehouses(ewi_home, tmp_path):
    """The evaluation watches synth's data through a pandas twin of intermediate.int_area_weekly_counts
    (the real pipeline for each of its 58 data sets would take hours). The same files through the real ingest and the
    real dbt build give the same area-week counts, cell for cell: the twin has not drifted."""
    import os
    import shutil

    import pandas as pd
    import psycopg

    from ewi import config, synth, transform, warehouse, warehouse_init
    from ewi.alerts.evaluation.counts import indicator_counts
    from ewi.ingest import ingest_files

    out = tmp_path / "synth"
    synth.generate(out, weeks=16, end_week="2026-W20", seed=5)  # past multi_signal's 12-week window
    os.environ["EWI_WAREHOUSE_DB"] = "ewi_evaluation_twin"
    try:
        warehouse_init.init_warehouse()
        results = ingest_files(sorted(out.glob("*.csv")))
        assert transform.build()["success"]
        with psycopg.connect(warehouse.dsn()) as conn:
            cur = conn.execute("select area_code, week_start, indicator, numerator, denominator, is_share, note "
                               "from intermediate.int_area_weekly_counts")
            built = pd.DataFrame(cur.fetchall(), columns=[d.name for d in cur.description])
    finally:
        os.environ.pop("EWI_WAREHOUSE_DB", None)
    # A week whose volume check fails waits in quarantine (one of these 48): the twin reads what was published.
    published = tmp_path / "published"
    published.mkdir()
    for result in results:
        if result.status == "published":
            shutil.copy(out / result.file, published / result.file)
    assert len(list(published.iterdir())) >= 40
    twin = indicator_counts(published, pd.read_csv(config.AREAS_SEED, dtype={"area_code": str}))
    key = ["area_code", "week_start", "indicator"]
    for frame in (built, twin):
        frame["week_start"] = pd.to_datetime(frame["week_start"]).dt.date
    both = built.merge(twin, on=key, how="outer", suffixes=("_built", "_twin"), indicator=True)
    assert (both["_merge"] == "both").all() and len(both) == 24 * 5 * 16
    for column in ("numerator", "denominator", "is_share"):
        assert (both[f"{column}_built"] == both[f"{column}_twin"]).all(), column
    assert (both["note_built"].fillna("") == both["note_twin"].fillna("")).all()


def test_the_co_rises_section_is_included_only_with_its_data_sets_cached(tmp_path):
    """make eval includes the area score's co-rises section when all 36 data sets are cached (about 2
    minutes), not when one is missing (about 15 minutes cold)."""
    from ewi.alerts.evaluation import co_rises

    names = [f"farrington-{s}-0.pkl" for s in co_rises.TUNING["quiet"] + co_rises.EVALUATION["quiet"]]
    names += [f"farrington-{s}-{co_rises.CO_RISES_PER_SEED}.pkl" for s in co_rises.TUNING["co"] + co_rises.EVALUATION["co"]]
    assert len(names) == 36 and not co_rises.cached(tmp_path)
    for name in names[:-1]:
        (tmp_path / name).write_bytes(b"")
    assert not co_rises.cached(tmp_path)
    (tmp_path / names[-1]).write_bytes(b"")
    assert co_rises.cached(tmp_path)



def test_the_co_rises_cusum_alarms_only_with_components_rising_and_counts_each_indicator_as_a_series():
    """The measured CUSUM: an alarm of the sums needs min_rising components rising that week, as the
    area score's alarm does; the indicators' false signals are summed over their series, not pooled."""
    from datetime import date, timedelta

    import pandas as pd

    from ewi.alerts.evaluation import co_rises

    weeks = [date(2024, 1, 1) + timedelta(weeks=i) for i in range(4)]
    z = np.array([[3.0, 3.0, 3.0, 3.0]])
    grid = (z, np.array([[2, 1, 2, 0]]), ["A"], weeks[-3:])
    flags, _, _ = co_rises._cusum_flags(grid, k=1.0, h=1.5, min_rising=2)
    assert flags.tolist() == [[1.0, 0.0, 1.0]]  # weeks 2-4: rising 1, 2, 0
    # two indicators alerting in the same area and week: two signals (two series), not one
    rows = [{"area_code": "A", "indicator": ind, "week_start": w, "observed": 9, "status": "ok",
             "p_value": 0.001 if w == weeks[-1] else 0.9}
            for ind in co_rises.area_score.COMPONENTS[:2] for w in weeks]
    rows += [{**r, "indicator": ind, "p_value": 0.9} for r in rows[:4] for ind in co_rises.area_score.COMPONENTS[2:]]
    quiet = [{"results": pd.DataFrame(rows)}]
    farrington = {"alpha": 0.01}
    assert co_rises._indicator_false(quiet, 5, farrington) == 4 * 2 / len(weeks)
