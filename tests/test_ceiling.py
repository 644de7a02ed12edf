"""The ceiling evaluation's parts on cases with known answers: Marshall's empirical-Bayes estimator,
signals as area_signals groups them, the calibration to a false-signal budget, the oracle and the
empirical-Bayes detector."""

from __future__ import annotations

import math
import shutil
import subprocess
from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest

from ewi.alerts.eb import eb_statistic, marshall, window_sum
from ewi.alerts.evaluation.ceiling import calibrate, choose_defaults, false_signals_per_4_weeks, new_signals
from ewi.alerts.evaluation.registry import ORACLE_WINDOWS, REGISTRY, Panel, oracle_statistic
from ewi.alerts.evaluation.scoring import configured_settings


def test_marshall_hand_worked():
    """O = (0, 10, 40), E = (5, 10, 30): m = 10/9, s2 = 14/81, v = s2 - m / mean(E) = 8/81, and the
    posterior means m + v/(v + m/E) (O/E - m) = 10/13, 18/17, 14/11 (worked by hand with fractions);
    they equal the gamma-Poisson conjugate form (O + m^2/v) / (E + m/v), as Bailey & Gatrell state."""
    est = marshall([0, 10, 40], [5, 10, 30])
    assert est.prior_mean == pytest.approx(10 / 9)
    assert est.prior_variance == pytest.approx(8 / 81)
    assert est.theta == pytest.approx([10 / 13, 18 / 17, 14 / 11])
    alpha, beta = est.prior_mean ** 2 / est.prior_variance, est.prior_mean / est.prior_variance
    assert est.theta == pytest.approx((np.array([0, 10, 40]) + alpha) / (np.array([5, 10, 30]) + beta))
    # The smallest area is pulled furthest towards m.
    assert est.weight[0] < est.weight[1] < est.weight[2]


def test_marshall_without_variation_between_areas_gives_everyone_the_municipalitys_rate():
    est = marshall([9, 11, 10], [10, 10, 10])  # s2 < m / mean(E): all of it is Poisson noise
    assert est.prior_variance == 0
    assert est.theta == pytest.approx([1.0, 1.0, 1.0])


#: The Scottish lip cancer data (Clayton & Kaldor 1987, Biometrics 43: 671-681): observed and expected
#: cases in the 56 districts, the textbook example of empirical-Bayes smoothing.
LIP_OBSERVED = [9, 39, 11, 9, 15, 8, 26, 7, 6, 20, 13, 5, 3, 8, 17, 9, 2, 7, 9, 7, 16, 31, 11, 7, 19, 15, 7, 10, 16, 11, 5, 3, 7, 8, 11, 9, 11, 8, 6, 4, 10, 8, 2, 6, 19, 3, 2, 3, 28, 6, 1, 1, 1, 1, 0, 0]
LIP_EXPECTED = [1.4, 8.7, 3, 2.5, 4.3, 2.4, 8.1, 2.3, 2, 6.6, 4.4, 1.8, 1.1, 3.3, 7.8, 4.6, 1.1, 4.2, 5.5, 4.4, 10.5, 22.7, 8.8, 5.6, 15.5, 12.5, 6, 9, 14.4, 10.2, 4.8, 2.9, 7, 8.5, 12.3, 10.1, 12.7, 9.4, 7.2, 5.3, 18.8, 15.8, 4.3, 14.6, 50.7, 8.2, 5.6, 9.3, 88.7, 19.6, 3.4, 3.6, 5.7, 7, 4.2, 1.8]


def test_marshall_on_the_lip_cancer_data():
    est = marshall(LIP_OBSERVED, LIP_EXPECTED)
    assert sum(LIP_OBSERVED) == 536
    assert est.prior_mean == pytest.approx(536 / sum(LIP_EXPECTED))
    assert est.prior_variance > 0
    # Shrinkage keeps the order of the raw ratios within equal expected counts and pulls the extremes in.
    assert est.theta.max() < est.raw.max() and est.theta.min() > est.raw.min()


@pytest.mark.skipif(shutil.which("Rscript") is None, reason="R (r-base-core) is not installed: no comparison with R")
def test_marshall_equals_r_method_of_moments():
    """The same estimator written in R (Bailey & Gatrell's method of moments, as epiR's
    epi.empbayes parameterises it: risk (obs + nu) / (pop + alpha))."""
    script = f"""
    o <- c({','.join(map(str, LIP_OBSERVED))}); e <- c({','.join(map(str, LIP_EXPECTED))})
    g <- sum(o) / sum(e); r <- o / e
    phi <- max(0, sum(e * (r - g)^2) / sum(e) - g / mean(e))
    cat(format((o + g^2 / phi) / (e + g / phi), digits = 15), sep = "\\n")
    """
    run = subprocess.run(["Rscript", "-e", script], capture_output=True, text=True, timeout=120, check=False)
    if run.returncode != 0:
        pytest.skip(f"Rscript does not run here: {run.stderr.strip()[:200]}")
    expected = [float(x) for x in run.stdout.split()]
    assert marshall(LIP_OBSERVED, LIP_EXPECTED).theta == pytest.approx(expected, rel=1e-10)


def test_signals_join_alerts_at_most_two_quiet_weeks_apart():
    alerts = np.array([[1, 0, 0, 1, 0, 0, 0, 1, 1]], dtype=bool)
    assert np.flatnonzero(new_signals(alerts)[0]).tolist() == [0, 7]
    assert false_signals_per_4_weeks(alerts.astype(float), 1.0, 8) == 1.0  # 2 signals in 8 weeks


def test_calibration_keeps_the_budget_and_is_the_lowest_such_threshold():
    # 4 series x 10 weeks; one high week per series, values 5, 4, 3, 2, the rest -inf.
    stats = np.full((4, 10), -np.inf)
    for i, v in enumerate((5.0, 4.0, 3.0, 2.0)):
        stats[i, 3] = v
    # 40 municipality-weeks: 1 signal = 0.1 per 4 weeks. Budget 0.25 allows two signals.
    assert calibrate(stats, 0.25, 40) == 4.0
    assert calibrate(stats, 0.05, 40) == np.inf
    assert calibrate(stats, 10, 40) == 2.0


def test_window_sum():
    assert window_sum(np.array([[1.0, np.nan, 2, 3]]), 2)[0, 1:].tolist() == [1, 2, 5]
    assert np.isnan(window_sum(np.ones((1, 3)), 2)[0, 0])


def _panel(weekly, population, known=None, monitored=None, variance=None):
    n = weekly.shape[1]
    weeks = [date(2024, 1, 1) + timedelta(weeks=k) for k in range(n)]
    return Panel("referrals", [f"A{i}" for i in range(len(weekly))], weeks, weekly, weekly, population,
                 monitored or range(n - 52, n), configured_settings(), known, variance)


def test_oracle_known_answer():
    """Youths with an event (variance = mean): -log10 of the Poisson tail P(X >= S); the window sum's
    mean is the sum of the weeks' means."""
    weekly = np.full((1, 60), 2.0)
    weekly[0, -1] = 8.0
    known = np.full((1, 60), 2.0)
    panel = _panel(weekly, np.ones((1, 60)), known=known, variance=known)
    stat = oracle_statistic(panel, window=2)
    tail = 1 - sum(math.exp(-4) * 4 ** k / math.factorial(k) for k in range(10))  # S = 8 + 2, mu = 4
    assert stat[0, -1] == pytest.approx(-math.log10(tail))
    # a window count below alert_min_count cannot alert
    assert stat[0, 0] == -np.inf  # S = 4
    # the scan is the largest over the windows, each at its own exact tail
    scan = oracle_statistic(panel, window=0)
    assert scan[0, -1] == max(oracle_statistic(panel, window=n)[0, -1] for n in ORACLE_WINDOWS)
    # flagged pupils (variance well below the mean): the normal tail with a continuity correction
    under = _panel(weekly, np.ones((1, 60)), known=known, variance=np.full((1, 60), 1.0))
    z = (10 - 0.5 - 4) / math.sqrt(2)
    assert oracle_statistic(under, window=2)[0, -1] == pytest.approx(-math.log10(0.5 * math.erfc(z / math.sqrt(2))))
    with pytest.raises(ValueError, match="known_expected"):
        oracle_statistic(_panel(weekly, np.ones((1, 60))), window=1)


def test_exact_oracle_keeps_its_false_signal_budget_on_quiet_data():
    """Calibrated on quiet data sets drawn from the known means, the oracle's new false signals on other
    quiet data sets match the budget it was calibrated to (within sampling error), and it finds a
    doubling that an area of the same level does not show without one."""
    rng = np.random.default_rng(18)
    level = np.linspace(0.3, 3.0, 24)[:, None] * np.ones((1, 120))
    monitored = range(68, 120)

    def quiet_sets(n):
        return [oracle_statistic(_panel(rng.poisson(level).astype(float), np.ones_like(level), known=level,
                                        variance=level, monitored=monitored), window=0) for _ in range(n)]

    budget = 0.2
    tune, held_out = np.concatenate(quiet_sets(12)), np.concatenate(quiet_sets(12))
    weeks = 12 * len(monitored)
    threshold = calibrate(tune, budget, weeks)
    assert np.isfinite(threshold)
    assert false_signals_per_4_weeks(tune, threshold, weeks) <= budget
    assert abs(false_signals_per_4_weeks(held_out, threshold, weeks) - budget) < 0.12
    # A doubling in the largest area over the last four weeks passes that threshold.
    risen = rng.poisson(level).astype(float)
    risen[-1, -4:] = rng.poisson(2 * level[-1, -4:] + 3)
    stat = oracle_statistic(_panel(risen, np.ones_like(level), known=level, variance=level, monitored=monitored),
                            window=0)
    assert stat[-1, -4:].max() >= threshold


def test_eb_detector_finds_the_risen_area_and_shrinks_the_small_ones():
    rng = np.random.default_rng(3)
    n_areas, n_weeks = 12, 160
    population = np.repeat(np.linspace(200, 2000, n_areas)[:, None], n_weeks, axis=1)
    rate = 0.002 * rng.lognormal(0, 0.2, n_areas)
    weekly = rng.poisson(population * rate[:, None]).astype(float)
    weekly[5, -4:] = rng.poisson(population[5, -4:] * rate[5] * 3)
    monitored = range(n_weeks - 52, n_weeks)
    z = eb_statistic(weekly, population, monitored, window=3)
    assert np.unravel_index(np.argmax(np.where(np.isfinite(z), z, -99)), z.shape)[0] == 5
    assert z[5, -1] > 3
    # Weeks without a rise: the statistic is centred near 0.
    assert abs(np.median(z[:, :40][np.isfinite(z[:, :40])])) < 1


def test_registry_and_default_choice():
    assert {"farrington", "ears_c1", "ears_c2", "ears_c3", "eb", "eb_unshrunk", "oracle"} <= set(REGISTRY)
    assert [m for m in REGISTRY.values() if m.oracle] == [REGISTRY["oracle"]]
    assert {"window": 0} in REGISTRY["oracle"].grid  # the scan over windows, calibrated as one statistic
    assert not REGISTRY["oracle_approx"].oracle and not REGISTRY["oracle_approx"].pipeline
    rows = [{"indicator": "referrals", "method": "farrington", "pipeline": True, "tuning_found_3": 0.4},
            {"indicator": "referrals", "method": "ears_c2", "pipeline": True, "tuning_found_3": 0.5},
            {"indicator": "referrals", "method": "oracle", "pipeline": False, "tuning_found_3": 0.9},
            {"indicator": "contacts", "method": "farrington", "pipeline": True, "tuning_found_3": 0.5},
            {"indicator": "contacts", "method": "ears_c2", "pipeline": True, "tuning_found_3": 0.5}]
    defaults = choose_defaults(rows)
    assert defaults["referrals"] == "ears_c2"  # most tuning rises; the oracle is never a default
    assert defaults["contacts"] == "farrington"  # a tie goes to Farrington
    assert defaults["multi_signal"] == "farrington"  # nothing measured


def test_default_method_var_one_method_or_per_indicator():
    from ewi.alerts.evaluation.scoring import Settings, default_methods

    assert default_methods("ears_c2") == ("ears_c2", {})
    assert default_methods({"default": "farrington", "contacts": "ears_c2"}) == ("farrington", {"contacts": "ears_c2"})
    s = configured_settings()
    mapped = Settings(s.farrington, s.rolling, s.ears, "farrington", s.min_count, {"contacts": "ears_c2"})
    assert mapped.default_for("contacts") == "ears_c2" and mapped.default_for("referrals") == "farrington"


def test_glrnb_statistic_without_reset_alarms_where_the_chart_with_that_c_arl_does():
    """glrnb's evidence is the GLR statistic without reset: its first crossing of a threshold is the
    week the pipeline's chart (glrnb_runner, reset after each alarm) with c_ARL = that threshold first
    alarms, so the evaluation can calibrate c_ARL like any threshold; a quadrupling stands out."""
    from ewi.alerts.evaluation.registry import glrnb_statistic
    from ewi.alerts.farrington import FarringtonControl, farrington_flexible
    from ewi.alerts.glrnb_runner import glrnb_alarms

    rng = np.random.default_rng(18)
    n = 160
    weekly = rng.poisson(np.full((3, n), 4.0)).astype(float)
    weekly[0, -8:] = rng.poisson(16.0, 8)
    panel = _panel(weekly, np.full((3, n), 1000.0))
    stat = glrnb_statistic(panel)
    assert stat.shape == (3, 52)
    assert stat[0, -8:].max() > np.max(np.where(np.isfinite(stat[1:]), stat[1:], 0))
    assert (stat[weekly[:, panel.monitored] < panel.settings.min_count] == -np.inf).all()
    fc = FarringtonControl.from_dict({**panel.settings.farrington, "alpha": 0.5})
    for a in range(3):
        weeks = farrington_flexible(weekly[a], panel.week_starts, fc, population=np.full(n, 1000.0),
                                    weeks=panel.monitored)
        usable = [r.status in ("ok", "few_cases") and r.expected is not None and r.phi is not None for r in weeks]
        series = pd.DataFrame({"observed": [r.observed for r in weeks],
                               "expected": [r.expected if u else np.nan for r, u in zip(weeks, usable, strict=True)],
                               "phi": [r.phi if u else np.nan for r, u in zip(weeks, usable, strict=True)]})
        for c in (2.0, 5.0, float(np.nanmax(np.where(np.isfinite(stat[a]), stat[a], np.nan)))):
            alarms = glrnb_alarms(series, {"c_arl": c})
            alertable = alarms & (series["observed"].to_numpy() >= panel.settings.min_count)
            crossing = np.flatnonzero(stat[a] >= c)
            first_alarm = np.flatnonzero(alarms)
            # the first crossing is the chart's first alarm (when that alarm's count is alertable)
            if len(first_alarm) and alertable[first_alarm[0]]:
                assert len(crossing) and crossing[0] == first_alarm[0]
            elif len(crossing):
                assert not len(first_alarm) or crossing[0] >= first_alarm[0]
