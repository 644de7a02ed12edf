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
    result = evaluate.run(n_series=2, rise_seeds=1, out=out, workers=1, weeks=60)
    report = out.read_text(encoding="utf-8")
    assert "# Alert evaluation" in report and "## Targets (default method)" in report
    assert len(result["simulation"]) == len(evaluate.SCENARIOS)
    assert result["synth"]["series"] == 24 * 5
    for method in evaluate.METHODS:
        assert result["synth"]["false_alerts_per_week"][method] >= 0
