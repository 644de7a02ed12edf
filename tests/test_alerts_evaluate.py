"""Smoke test of `make eval` (ewi.alerts.evaluate) on tiny sizes, plus its metrics on a hand-made case."""

from __future__ import annotations

import numpy as np
import pytest

from ewi.alerts import evaluate
from ewi.alerts.simulate import Scenario, rolling_sum, simulate_series


def test_detection_metrics_hand_made():
    alerts = np.array([[0, 0, 1, 0, 0, 1], [0, 0, 0, 0, 0, 0]], dtype=bool)
    outbreak = np.array([[0, 1, 1, 1, 0, 0], [0, 0, 1, 1, 0, 0]], dtype=bool)
    m = evaluate.detection_metrics(alerts, outbreak, starts=[1, 2])
    assert m["fpr"] == pytest.approx(1 / 7)  # one alert in the seven weeks without outbreak
    assert m["pod"] == 0.5 and m["pod_week1"] == 0 and m["pod_3weeks"] == 0.5
    assert m["median_delay"] == 1


def test_simulated_series_are_reproducible_and_carry_their_outbreak():
    scenario = Scenario("test", level=10, outbreak="sustained", size=(2.0,))
    a, b = simulate_series(scenario, seed=4), simulate_series(scenario, seed=4)
    assert np.array_equal(a.observed, b.observed)
    assert a.outbreak[a.outbreak_start] > 0 and a.outbreak_start >= 156 - 52
    assert np.isnan(rolling_sum(a.observed, 4)[:3]).all()
    assert rolling_sum(np.ones(6), 4)[3:].tolist() == [4, 4, 4]


@pytest.mark.slow
def test_evaluation_runs_end_to_end_on_tiny_sizes(tmp_path):
    out = tmp_path / "alert_evaluation.md"
    result = evaluate.run(n_series=2, rise_seeds=1, out=out, workers=1, weeks=60, quiet_seeds=(510,))
    report = out.read_text(encoding="utf-8")
    assert "# Alert evaluation" in report and "## Targets (default method)" in report
    assert len(result["simulation"]) == len(evaluate.SCENARIOS)
    assert result["synth"]["series"] == 24 * 5
    for method in evaluate.METHODS:
        assert result["synth"]["false_alerts_per_week"][method] >= 0


def test_per_indicator_alpha_and_rolling_windows():
    from ewi.alerts.runner import alpha_for, farrington_control
    from ewi.alerts.series import rolling_weeks_setting

    params = {**evaluate.farrington_parameters(), "alpha": {"referrals": 0.01, "default": 0.001}}
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
    observed = rolling_sum(s.observed, 3)
    group = pd.DataFrame({"observed": observed, "population": np.full(len(observed), 1000.0)})
    monitored = range(len(observed) - 52, len(observed))
    control = {**evaluate.farrington_parameters(), "population_offset": False}
    p = evaluate._tuning_p_values(group, s.week_starts, monitored, dict(control), min_count=5)
    for alpha in (0.001, 0.005, 0.02, 0.1):
        fc = FarringtonControl.from_dict({**control, "alpha": alpha})
        run = farrington_flexible(observed, s.week_starts, fc, weeks=monitored)
        assert [r.is_alert and r.observed >= 5 for r in run] == list(p <= alpha)
    assert (p <= 0.1).any()


def test_known_baseline_bound():
    """The power analysis: more youths a week or a bigger rise can only help; at one youth a week a
    doubling is found within three weeks far less often than 80 % of the time by any trailing-sum rule."""
    budget = 1 / (4 * evaluate.COUNT_SERIES)
    one_x2 = evaluate.known_baseline_detection(1.0, 2.0, budget, baseline_weeks=50_000, reps=5_000)
    one_x3 = evaluate.known_baseline_detection(1.0, 3.0, budget, baseline_weeks=50_000, reps=5_000)
    eight_x2 = evaluate.known_baseline_detection(8.0, 2.0, budget, baseline_weeks=50_000, reps=5_000)
    assert one_x2[0] < 0.3 < one_x3[0] and eight_x2[0] > 0.85
    assert one_x2[2] >= 5  # never below the disclosure minimum
