"""The negative-binomial GLR detector (ewi.alerts.glrnb) against R package surveillance.

Two kinds of reference: (a) the figures of surveillance's own test (tests/testthat/test-algo.glrnb.R,
reproduced to its tolerance 1e-6 without R), and (b) R itself: whole simulated series are run through
`algo.glrnb` by Rscript (tests/r/glrnb_series.R) under eleven controls (negative binomial and Poisson,
GLR and known change, window M/Mtilde, both directions, ret "value" and "cases", mu0 and alpha
estimated by glm.nb), and every week's upperbound, alarm and estimated alpha is compared. Where R or
its surveillance package is absent, (b) is skipped with a message.
"""

from __future__ import annotations

import math
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ewi.alerts.glrnb import GlrnbControl, algo_glrnb, glm_nb, glr_detector, glrnb_series, harmonic_design

R_SCRIPT = Path(__file__).parent / "r" / "glrnb_series.R"
#: R's own test compares at 1e-6; against R itself every week agrees to ~5e-12 (relative, measured),
#: so 1e-9 leaves room for another platform's floating point without hiding a wrong formula.
R_TOLERANCE = 1e-6
WHOLE_SERIES_TOLERANCE = 1e-9


def _r_available() -> str | None:
    if shutil.which("Rscript") is None:
        return "Rscript is not installed (make system-deps installs r-base-core and r-cran-surveillance)"
    probe = subprocess.run(["Rscript", "-e", "library(surveillance)"], capture_output=True, text=True)
    if probe.returncode != 0:
        return "R package surveillance is not installed (make system-deps installs r-cran-surveillance)"
    return None


# --- (a) surveillance's tests/testthat/test-algo.glrnb.R --------------------------------------------

#: x of that test: rnbinom(120, mu = mu0 * exp(0.4)^(t >= 100), size = 1/0.2) after set.seed(42) in R
#: (printed by R 4.2 / surveillance 1.20.3; R's generator, so kept as data here).
R_TEST_X = [11, 5, 10, 16, 19, 25, 7, 11, 11, 2, 13, 8, 13, 12, 6, 11, 10, 4, 2, 0, 3, 3, 1, 0, 2, 2, 1, 2,
            0, 3, 0, 1, 2, 1, 3, 4, 0, 1, 1, 7, 1, 5, 1, 2, 4, 1, 2, 7, 8, 9, 13, 8, 1, 10, 11, 14, 9, 6, 10,
            15, 5, 1, 9, 3, 26, 3, 1, 8, 7, 2, 5, 8, 2, 2, 7, 0, 3, 0, 1, 0, 1, 0, 1, 1, 2, 2, 5, 5, 3, 1,
            0, 2, 5, 1, 4, 2, 9, 4, 5, 2, 5, 10, 21, 6, 13, 14, 19, 22, 17, 7, 11, 13, 17, 22, 12, 13, 12,
            10, 4, 3]
R_TEST_UPPERBOUND = [
    0.0933664, 0, 0.001387989, 0.4392282, 1.239898, 2.983766, 1.954988,
    1.722341, 1.586777, 0.7331938, 0.9337575, 0.7903225, 1.104522,
    1.425098, 1.24129, 1.633672, 2.033343, 1.788079, 1.397671, 0.9081794,
    0.797097, 0.7270934, 0.5248943, 0.3093548, 0.2622768, 0.2301054,
    0.1595651, 0.1484989, 0.06889605, 0.1504776, 0.04138495, 0.02219845,
    0.0231524, 0.009575689, 0.1504776, 0.5827537, 0.0357062, 0.005011513,
    0, 1.390972, 0.3167743, 0.5717088, 0.1053871, 0.003442552, 0.0005934715,
    0, 0, 0.05509335, 0.1375619, 0.2449853, 0.6840703, 0.5427538,
    0.05675776, 0.06656547, 0.09036596, 0.209314, 0.1392091, 0.03494786,
    0.026216, 0.277202, 0.01762547, 0, 0, 0, 3.564077, 1.41019, 0.290548,
    0.3740241, 0.4269062, 0.1296794, 0.1298662, 0.6322042, 0.2115204,
    0.107457, 0.9366399, 0.1379007, 0.1509654, 0.03392803, 0.005775552,
    0, 0, 0, 0, 0, 0.001143512, 0.001637927, 1.021689, 1.965804,
    1.83044, 1.017412, 0.3033473, 0.1689957, 0.4051742, 0.1247774,
    0.1460143, 0.03590031, 0.9459381, 0.4189531, 0.2637725, 0.03925406,
    0.01374443, 0.2283519, 2.535301, 1.406133, 1.692899, 2.021258,
    2.951635, 4.25683, 4.77543, 3.90064, 3.646361, 3.680106, 4.236502,
    5.522696, 0.1221651, 0.4054735, 0.6761779, 0.8039129, 0.3913383,
    0.1261521]


def _r_test_mu0() -> np.ndarray:
    t = np.arange(1, 121)
    return np.exp(1.5 + 0.6 * np.cos(2 * np.pi / 52 * t) + 0.6 * np.sin(2 * np.pi / 52 * t))


def test_upperbound_reproduces_the_packages_own_test():
    result = algo_glrnb(R_TEST_X, GlrnbControl(c_arl=5, alpha=0.2, change="intercept", ret="value"),
                        mu0=_r_test_mu0())
    # R's expect_equal(tolerance = 1e-6) is a mean relative difference
    expected = np.array(R_TEST_UPPERBOUND)
    assert np.abs(result.upperbound - expected).sum() / np.abs(expected).sum() < R_TOLERANCE
    assert np.allclose(result.upperbound, expected, rtol=5e-7, atol=5e-10)  # signif(, 7) each
    # the chart reaches c.ARL = 5 once, in week 114 (the change is at week 100), and restarts after it
    assert list(np.nonzero(result.alarm)[0] + 1) == [114]
    assert result.upperbound[114] < 1


def test_a_wrong_alpha_or_mu0_does_not_reproduce_it():
    """The reference can fail: the figures depend on alpha and mu0."""
    expected = np.array(R_TEST_UPPERBOUND)
    for control, mu0 in ((GlrnbControl(c_arl=5, alpha=0.25), _r_test_mu0()),
                         (GlrnbControl(c_arl=5, alpha=0.2), _r_test_mu0() * 1.05)):
        result = algo_glrnb(R_TEST_X, control, mu0=mu0)
        assert not np.allclose(result.upperbound, expected, rtol=1e-4)


def test_cases_needed_is_the_smallest_count_that_alarms():
    """ret = "cases" for the negative-binomial GLR (R computes it only for the Poisson GLR and the
    known-change CUSUM): with that count in week n the chart alarms, with one less it does not."""
    x = np.array(R_TEST_X[:60], dtype=float)
    mu0 = _r_test_mu0()[:60]
    control = GlrnbControl(c_arl=5, alpha=0.2, ret="cases")
    result = algo_glrnb(x, control, mu0=mu0)
    assert np.all(result.cases >= 0) and np.all(np.isfinite(result.cases))
    value_control = GlrnbControl(c_arl=5, alpha=0.2)
    for n in (0, 5, 17, 40, 59):
        needed = result.cases[n]
        at = x[: n + 1].copy()
        at[n] = needed
        assert glr_detector(at, mu0[: n + 1], 0.2, value_control)[0][n]
        if needed > 0:
            at[n] = needed - 1
            assert not glr_detector(at, mu0[: n + 1], 0.2, value_control)[0][n]


def test_gaps_restart_the_chart():
    x = np.array(R_TEST_X[:40], dtype=float)
    mu0 = _r_test_mu0()[:40]
    with_gap = x.copy()
    with_gap[20] = np.nan
    alarm, statistic, _ = glrnb_series(with_gap, mu0, 0.2, GlrnbControl(c_arl=5, alpha=0.2))
    assert np.isnan(statistic[20]) and not alarm[20]
    # after the gap the chart starts afresh: the same as a series that begins at week 21
    _, fresh, _ = glr_detector(x[21:], mu0[21:], 0.2, GlrnbControl(c_arl=5, alpha=0.2))
    assert np.allclose(statistic[21:], fresh)
    with pytest.raises(ValueError):
        glr_detector(with_gap, mu0, 0.2, GlrnbControl())


def test_per_week_alpha_equals_a_scalar_alpha_when_constant():
    mu0 = _r_test_mu0()
    scalar = glr_detector(R_TEST_X, mu0, 0.2, GlrnbControl(c_arl=5, alpha=0.2))[1]
    array = glr_detector(R_TEST_X, mu0, np.full(120, 0.2), GlrnbControl(c_arl=5, alpha=0.2))[1]
    assert np.array_equal(scalar, array)


def test_glm_nb_recovers_a_known_model():
    rng = np.random.default_rng(3)
    t = np.arange(1, 521)
    X = harmonic_design(t, 1, False, 52)
    mu = np.exp(X @ np.array([1.2, 0.5, -0.3]))
    y = rng.negative_binomial(4, 4 / (4 + mu)).astype(float)
    beta, theta = glm_nb(y, X)
    assert np.allclose(beta, [1.2, 0.5, -0.3], atol=0.08)
    assert 2.5 < theta < 6


# --- (b) whole series against R's algo.glrnb ------------------------------------------------------

#: The controls of tests/r/glrnb_series.R, by name.
CONFIGS = {
    "nb_given": {"c_arl": 5, "alpha": 0.2},
    "nb_window": {"c_arl": 4, "alpha": 0.3, "m": 10, "m_tilde": 2},
    "nb_dec": {"c_arl": 3, "alpha": 0.2, "direction": "dec"},
    "pois_value": {"c_arl": 5, "alpha": 0},
    "pois_cases": {"c_arl": 5, "alpha": 0, "ret": "cases"},
    "pois_window": {"c_arl": 4, "alpha": 0, "m": 8, "m_tilde": 1, "ret": "cases"},
    "lr_nb_value": {"c_arl": 3, "alpha": 0.2, "theta": math.log(2)},
    "lr_nb_cases": {"c_arl": 3, "alpha": 0.2, "theta": math.log(2), "ret": "cases"},
    "lr_pois_cases": {"c_arl": 3, "alpha": 0, "theta": math.log(1.5), "ret": "cases"},
    "estimated": {"c_arl": 5, "alpha": None, "s": 1},
    "estimated_s2t": {"c_arl": 5, "alpha": None, "s": 2, "trend": True},
}
ESTIMATED_FROM = 53  # mu0 estimated on weeks 1-52, monitored from week 53 (as in the R script)


def _simulated_series() -> pd.DataFrame:
    """Six three-year series: seasonal negative binomial counts at low and moderate levels (one at
    Borlänge's ~1 a week), with a rise of x1.5-x2.5 over 10-20 weeks in the third year."""
    rng = np.random.default_rng(20260518)
    t = np.arange(1, 157)
    rows = []
    for number, (level, alpha, size, start, weeks) in enumerate(
            [(1.2, 0.25, 1.8, 120, 15), (0.0, 0.4, 2.5, 110, 20), (2.0, 0.1, 1.5, 125, 10),
             (0.3, 0.3, 2.0, 100, 12), (1.6, 0.05, 1.0, 0, 0), (-0.2, 0.6, 2.2, 130, 20)]):
        mu = np.exp(level + 0.5 * np.cos(2 * np.pi * t / 52) + 0.3 * np.sin(2 * np.pi * t / 52))
        actual = mu * np.where((t >= start) & (t < start + weeks), size, 1.0)
        x = rng.negative_binomial(1 / alpha, 1 / (1 + alpha * actual))
        rows += [{"series": f"s{number}", "week": int(w), "observed": int(c), "mu0": float(m)}
                 for w, c, m in zip(t, x, mu, strict=True)]
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def r_results(tmp_path_factory) -> tuple[pd.DataFrame, pd.DataFrame]:
    missing = _r_available()
    if missing:
        pytest.skip(f"R comparison skipped: {missing}")
    folder = tmp_path_factory.mktemp("glrnb_r")
    series = _simulated_series()
    series.to_csv(folder / "series.csv", index=False)
    subprocess.run(["Rscript", str(R_SCRIPT), str(folder / "series.csv"), str(folder / "r.csv")],
                   check=True, capture_output=True, text=True, timeout=300)
    return series, pd.read_csv(folder / "r.csv")


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_every_week_equals_r_algo_glrnb(r_results, name):
    series, r = r_results
    weeks = alarms = 0
    for label, group in series.groupby("series"):
        group = group.sort_values("week")
        control = GlrnbControl(**CONFIGS[name])
        if CONFIGS[name]["alpha"] is None:
            ours = algo_glrnb(group["observed"].to_numpy(), control,
                              range_=np.arange(ESTIMATED_FROM, len(group) + 1))
        else:
            ours = algo_glrnb(group["observed"].to_numpy(), control, mu0=group["mu0"].to_numpy())
        theirs = r[(r["series"] == label) & (r["config"] == name)].sort_values("week")
        expected = theirs["upperbound"].to_numpy(dtype=float)
        assert len(ours.upperbound) == len(expected)
        assert np.allclose(ours.upperbound, expected, rtol=WHOLE_SERIES_TOLERANCE, atol=WHOLE_SERIES_TOLERANCE), \
            f"{label}: largest difference {np.abs(ours.upperbound - expected).max():.3g}"
        assert np.array_equal(ours.alarm, theirs["alarm"].to_numpy() == 1), label
        # alpha = 1/theta: theta.ml stops at a step of 1.2e-4, so near-Poisson series (theta ~ 2000)
        # agree to ~1e-8 relative; the statistics above still agree to 1e-9
        assert float(np.atleast_1d(ours.alpha)[0]) == pytest.approx(float(theirs["alpha"].iloc[0]), rel=1e-6)
        weeks += len(expected)
        alarms += int(ours.alarm.sum())
    assert weeks >= 6 * 100
    if name in ("nb_given", "pois_value", "estimated"):
        assert alarms > 0  # the comparison covers resets after alarms


def test_comparison_with_farrington_and_ears_runs_on_the_evaluations_scenarios():
    """ewi.alerts.evaluation.glrnb_compare on a few series of one scenario: every method scored on the
    same series, and the table renders."""
    from ewi.alerts.evaluation.glrnb_compare import compare, render
    from ewi.alerts.evaluation.simulation import SCENARIOS

    scenario = next(s for s in SCENARIOS if s.name.startswith("target: x1.5 sustained, 15/week"))
    rows = compare(n_series=4, scenarios=(scenario,), workers=1)
    assert len(rows) == 1 and rows[0]["farrington"]["n"] == 4
    assert 0 <= rows[0]["glrnb"]["fpr"] <= 1 and 0 <= rows[0]["glrnb_equal"]["pod_3weeks"] <= 1
    assert "| target: x1.5 sustained, 15/week" in render(rows)
