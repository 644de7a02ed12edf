"""Farrington-flexible (ewi.alerts.farrington) against R package surveillance's own tests.

Reference figures are those of surveillance's tests/testthat/test-farringtonFlexible.R (the
threshold functions, the weights function, reference time points and blocks); they are reproduced
to the tolerance R's test uses (1e-6). Whole series are also run through R's farringtonFlexible itself
(Rscript, tests/r/farrington_series.R) and compared week by week (skipped where R is absent). Whole-series behaviour (alarms only above the threshold,
the limit54 rule, degrading to the history there is) follows the same file's alarm tests.
"""

from __future__ import annotations

import math
import shutil
import subprocess
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ewi.alerts.farrington import (
    FarringtonControl,
    assign_weights,
    available_years,
    blocks,
    farrington_flexible,
    reference_time_points,
    threshold_farrington,
    threshold_noufaily,
)

R_TOLERANCE = 1e-6


def _weeks(n: int, first: date = date(2020, 1, 6)) -> list[date]:
    return [first + timedelta(weeks=i) for i in range(n)]


def _nb_series(n: int, mean: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    mu = mean * np.exp(0.3 * np.cos(2 * np.pi * t / 52))
    return rng.negative_binomial(mu / 0.5, 1 / 1.5).astype(float)


@pytest.mark.parametrize(
    ("transform", "expected"),
    [
        ("none", (1.3073128, 8.6926872, 0.0907246, 0.8124165)),
        ("1/2", (1.9891097, 9.3744842, 0.1189986, 0.6857951)),
        ("2/3", (1.8084477, 9.1154825, 0.1094727, 0.7289546)),
    ],
)
def test_farrington_threshold_reproduces_r(transform, expected):
    # R: algo.farrington.threshold.farrington(predFit=5, predSeFit=0.2, phi=1, ., alpha=0.05, y=8, "delta")
    got = threshold_farrington(5, 0.2, 1, transform, 0.05, 8)
    assert got == pytest.approx(expected, abs=R_TOLERANCE)


def test_farrington_threshold_rejects_unknown_exponent():
    with pytest.raises(ValueError, match="proper exponent"):
        threshold_farrington(5, 0.2, 1, "2/88", 0.05, 8)


@pytest.mark.parametrize(
    ("phi", "method", "expected"),
    [
        (1.5, "muan", (8.0, 24.0, 0.8597797, 0.4193982)),
        (1.0, "muan", (9.0, 22.0, 0.9093099, 0.4605347)),
        (1.5, "nbPlugin", (1.0, 10.0, 0.03763657, 1.11918153)),
        (1.0, "nbPlugin", (2.0, 9.0, 0.01369527, 1.27061541)),
    ],
)
def test_noufaily_threshold_reproduces_r(phi, method, expected):
    # R: algo.farrington.threshold.noufaily(log(5), log(2), phi, "none", alpha=0.05, y=11, method)
    got = threshold_noufaily(math.log(5), math.log(2), phi, 0.05, 11, method)
    assert got == pytest.approx(expected, abs=R_TOLERANCE)


def test_noufaily_score_when_the_threshold_equals_eta0():
    # mu0 = 1 (eta0 = 0) and phi = 3: P(Y = 0) = 3^-0.5 > 0.5, so the median threshold is 0 = eta0.
    # R divides by zero there (Inf, or NaN for y = 0); it must not raise.
    assert threshold_noufaily(0.0, 0.1, 3.0, 0.5, 2, "nbPlugin")[3] == math.inf
    assert math.isnan(threshold_noufaily(0.0, 0.1, 3.0, 0.5, 0, "nbPlugin")[3])


def test_muan_with_a_huge_prediction_error_gives_no_threshold_instead_of_raising():
    # muan's mu0 is exp of the 1 - alpha quantile of the linear predictor: with se 400 that is inf (R: Inf).
    assert all(math.isnan(v) for v in threshold_noufaily(-20.0, 400.0, 1.5, 0.001, 3, "muan"))


def test_weights_are_one_when_nothing_is_above_the_threshold():
    assert assign_weights(np.zeros(10), 0) == pytest.approx(np.ones(10))


def test_weights_case_checked_by_hand_in_r():
    s = np.full(10, 2.0)
    s[:5] = 0
    weights = assign_weights(s, 0)
    assert weights[:5] == pytest.approx([1.6] * 5)
    assert weights[5:] == pytest.approx([0.4] * 5)


def test_reference_time_points_weekly_as_in_r():
    points = reference_time_points(date(2013, 6, 6), 3)
    assert all(p.isoweekday() == 4 for p in points)  # the same weekday as the day considered
    assert sorted(points) == [date(2010, 6, 3), date(2011, 6, 9), date(2012, 6, 7), date(2013, 6, 6)]


@pytest.mark.parametrize("p", [1, 8])
def test_blocks_reference_window_length_and_levels_as_in_r(p):
    dates = [date(1990, 6, 7) + timedelta(weeks=i) for i in range(1301)]
    index = {d: i for i, d in enumerate(dates)}
    refs = [index[d] for d in reference_time_points(date(2013, 6, 6), 3)]
    factors = blocks(refs, len(dates), refs[0], b=3, w=3, p=p)
    assert int(np.sum(factors == p)) == 3 + 1 + 3 * (2 * 3 + 1)  # w + 1 + b (2w + 1)
    assert len(np.unique(factors[~np.isnan(factors)])) == p
    if p > 1:  # "periods of roughly the same length each year"
        counts = np.array([np.sum(factors == level) for level in range(1, p)])
        assert np.all(np.abs(np.diff(counts)) <= 3)


def test_statsmodels_and_numpy_engines_agree():
    y = _nb_series(156, 12, seed=3)
    weeks = _weeks(156)
    control = FarringtonControl(b=2, alpha=0.01)
    fast = farrington_flexible(y, weeks, control, weeks=range(110, 156, 5))
    reference = farrington_flexible(y, weeks, FarringtonControl(b=2, alpha=0.01, engine="statsmodels"),
                                     weeks=range(110, 156, 5))
    for a, b in zip(fast, reference, strict=True):
        assert (a.status, a.is_alert, a.upper) == (b.status, b.is_alert, b.upper)
        assert a.expected == pytest.approx(b.expected, rel=1e-6)
        assert a.phi == pytest.approx(b.phi, rel=1e-6)


def test_alarms_only_above_the_threshold_and_never_on_zero():
    y = _nb_series(208, 6, seed=11)
    y[170:174] += 25  # an outbreak
    results = [r for r in farrington_flexible(y, _weeks(208), FarringtonControl(b=3, alpha=0.05))
               if r.status in ("ok", "few_cases")]
    assert results
    for r in results:
        if r.is_alert:
            assert r.observed > r.upper and r.observed != 0 and r.status == "ok"
    assert any(r.is_alert for r in results if 170 <= r.index < 174)


def test_no_alarm_with_fewer_than_five_cases_in_four_weeks():
    y = np.zeros(120)
    y[116:120] = [0, 0, 1, 3]  # 4 cases in the last 4 weeks; expected ~0
    result = farrington_flexible(y, _weeks(120), FarringtonControl(b=1), weeks=[119])[0]
    assert not result.is_alert
    assert result.status in ("few_cases", "no_convergence")


def test_degrades_to_the_history_there_is():
    y = _nb_series(130, 10, seed=5)
    control = FarringtonControl(b=5, w=3)
    assert available_years(_weeks(130), 129, control) == 2
    assert available_years(_weeks(130), 60, control) == 1
    results = farrington_flexible(y, _weeks(130), control, weeks=[20, 60, 129])
    assert [r.status for r in results][0] == "insufficient_history"
    assert [r.years_used for r in results] == [0, 1, 2]
    assert all(r.expected is not None for r in results[1:])


def test_missing_weeks_are_no_data_and_results_are_reproducible():
    y = _nb_series(120, 20, seed=8)
    y[100] = np.nan
    first = farrington_flexible(y, _weeks(120), FarringtonControl(b=1), weeks=range(95, 120))
    second = farrington_flexible(y, _weeks(120), FarringtonControl(b=1), weeks=range(95, 120))
    assert first == second
    assert first[5].status == "no_data"


def test_trend_is_kept_only_with_three_years_and_significance():
    t = np.arange(220)
    # A steady, strongly significant decline (a rise would be dropped: its prediction for the current
    # week lies above every count in the reference data, R's "no extrapolation" rule).
    y = np.round(60 * np.exp(-0.008 * t)).astype(float)
    with_trend = farrington_flexible(y, _weeks(220), FarringtonControl(b=3, alpha=0.01), weeks=[219])[0]
    two_years = farrington_flexible(y, _weeks(220), FarringtonControl(b=2, alpha=0.01), weeks=[219])[0]
    assert with_trend.trend and not two_years.trend
    assert with_trend.expected < two_years.expected


# --- whole series against R's farringtonFlexible itself (Rscript) -----------------------------------

R_SCRIPT = Path(__file__).parent / "r" / "farrington_series.R"
#: The controls of tests/r/farrington_series.R, by name (the rest as R's call there: trend on,
#: limit54 (5, 4), reweighting at 2.58, powertrans 2/3).
R_CONFIGS = {
    "noufaily_nb": {"b": 3, "w": 3, "alpha": 0.01, "no_periods": 10, "past_weeks_not_included": 26,
                    "threshold_method": "nbPlugin"},
    "noufaily_pop": {"b": 2, "w": 3, "alpha": 0.005, "no_periods": 10, "past_weeks_not_included": 26,
                     "threshold_method": "nbPlugin", "population_offset": True},
    "muan": {"b": 3, "w": 2, "alpha": 0.05, "no_periods": 10, "past_weeks_not_included": 26,
             "threshold_method": "muan"},
    "farrington": {"b": 3, "w": 3, "alpha": 0.01, "no_periods": 1, "past_weeks_not_included": 3,
                   "threshold_method": "delta"},
}
FIRST_MONITORED = 170  # R's 1-based week: three years and a window of history before it
#: Measured against R 4.2 / surveillance 1.20.3: expectations agree to 4e-6 relative (R's glm stops at
#: a deviance change of 1e-8, ours at 1e-10), nbPlugin and muan thresholds exactly (integer quantiles),
#: delta thresholds and scores to 3.4e-5 (they carry the prediction's standard error).
EXPECTED_TOLERANCE, DELTA_TOLERANCE = 2e-5, 1e-4


def _r_missing() -> str | None:
    if shutil.which("Rscript") is None:
        return "Rscript is not installed (make system-deps installs r-base-core and r-cran-surveillance)"
    if subprocess.run(["Rscript", "-e", "library(surveillance)"], capture_output=True).returncode != 0:
        return "R package surveillance is not installed (make system-deps installs r-cran-surveillance)"
    return None


def _five_year_series() -> pd.DataFrame:
    """Three five-year weekly series (seasonal, overdispersed): one at ~3 a week, one at ~9 with a
    trend and a doubling, one at ~1.3 with a tripling; a growing population for the offset."""
    rng = np.random.default_rng(5)
    rows = []
    for number, (level, size, slope) in enumerate([(1.0, 1.0, 0.0), (2.2, 2.0, 0.002), (0.2, 3.0, 0.0)]):
        t = np.arange(260)
        mu = np.exp(level + 0.4 * np.cos(2 * np.pi * t / 52) + slope * t) * np.where((t >= 230) & (t < 240), size, 1)
        population = 1000 + 3 * t + rng.integers(0, 50, len(t))
        observed = rng.negative_binomial(mu / 0.8, 1 / 1.8)
        rows += [{"series": f"f{number}", "week_start": (date(2018, 1, 1) + timedelta(weeks=int(i))).isoformat(),
                  "observed": int(observed[i]), "population": float(population[i])} for i in t]
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def r_farrington(tmp_path_factory):
    missing = _r_missing()
    if missing:
        pytest.skip(f"R comparison skipped: {missing}")
    folder = tmp_path_factory.mktemp("farrington_r")
    series = _five_year_series()
    series.to_csv(folder / "series.csv", index=False)
    subprocess.run(["Rscript", str(R_SCRIPT), str(folder / "series.csv"), str(folder / "r.csv"),
                    str(FIRST_MONITORED)], check=True, capture_output=True, text=True, timeout=600)
    return series, pd.read_csv(folder / "r.csv")


@pytest.mark.parametrize("name", sorted(R_CONFIGS))
def test_every_week_equals_r_farrington_flexible(r_farrington, name):
    """Every monitored week of every series: expectation, threshold, score and alarm as R's. R leaves
    the expectation and threshold NA in weeks with too few cases (limit54); those are our few_cases."""
    series, r = r_farrington
    control = FarringtonControl(**R_CONFIGS[name])
    compared = alarms = 0
    for label, group in series.groupby("series"):
        group = group.sort_values("week_start")
        ours = farrington_flexible(group["observed"].to_numpy(float), [date.fromisoformat(d) for d in group["week_start"]],
                                   control, population=group["population"].to_numpy(float),
                                   weeks=list(range(FIRST_MONITORED - 1, len(group))))
        theirs = r[(r["series"] == label) & (r["config"] == name)].sort_values("week_start")
        assert len(ours) == len(theirs)
        for week, row in zip(ours, theirs.itertuples(), strict=True):
            assert week.years_used == control.b
            assert (week.status == "few_cases") == math.isnan(row.expected), (label, row.week_start)
            assert week.is_alert == bool(row.alarm), (label, row.week_start)
            assert week.score == pytest.approx(row.score, rel=DELTA_TOLERANCE, abs=1e-9)
            if math.isnan(row.expected):
                continue
            assert week.expected == pytest.approx(row.expected, rel=EXPECTED_TOLERANCE)
            tolerance = DELTA_TOLERANCE if control.threshold_method == "delta" else 1e-12
            assert week.upper == pytest.approx(row.upperbound, rel=tolerance)
            compared += 1
            alarms += week.is_alert
    assert compared > 150 and alarms > 0


def test_trend_test_uses_rs_dispersion_after_reweighting():
    """R overwrites the reweighted model's working weights with the reweighting weights before
    summary.glm tests the trend, so its p-value uses sum(omega ((y - mu)/mu)^2) / df as dispersion.
    A series with a mild trend where that decides: R keeps the trend (as the whole-series test
    shows against R itself); the Pearson dispersion would drop it (p = 0.12)."""
    series = _five_year_series()
    group = series[series["series"] == "f0"].sort_values("week_start")
    week = farrington_flexible(group["observed"].to_numpy(float), [date.fromisoformat(d) for d in group["week_start"]],
                               FarringtonControl(**R_CONFIGS["noufaily_nb"]), weeks=[169])[0]
    assert week.trend
    assert week.expected == pytest.approx(4.88130252183, rel=EXPECTED_TOLERANCE)  # R's figure
