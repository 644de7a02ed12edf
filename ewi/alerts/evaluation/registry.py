"""The methods the ceiling evaluation (ceiling.py) compares, in one registry.

A method turns one indicator's panel (every area of one data set) into an evidence statistic per
area x monitored week: larger = more evidence of a rise, -inf = the method cannot alert that week
(no baseline, a count below alert_min_count). The evaluation, not the method, chooses the threshold:
per indicator, the lowest one whose new false signals on the tuning seeds stay within the
indicator's share of the municipality's budget (ceiling.py). A method with a `grid` of parameter
sets (e.g. windows) is calibrated at each, and the one finding most tuning rises is kept.

To add a method: write `def my_statistic(panel: Panel, **params) -> np.ndarray` and add
`register(Method("my_method", my_statistic, "what it is", grid=({...}, ...), sources=("alerts/my.py",)))`
below (or from the method's own module, imported here). `pipeline=True` marks methods the pipeline
can run, which are the candidates for an indicator's default method; `per_area=True` methods see only
the risen areas on data sets with rises (cheaper); statistics are cached per data set and method,
keyed by the statistic's source and `sources`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date

import numpy as np
from scipy import stats

from ewi.alerts.ears import ears
from ewi.alerts.eb import eb_statistic, window_sum
from ewi.alerts.evaluation.scoring import Settings
from ewi.alerts.farrington import FarringtonControl, farrington_flexible
from ewi.alerts.glrnb import glrnb_series
from ewi.alerts.glrnb_runner import DEFAULTS as GLRNB_DEFAULTS
from ewi.alerts.glrnb_runner import glrnb_control, overdispersion


@dataclass
class Panel:
    """One indicator of one data set: every area's weekly series and what the methods need."""

    indicator: str
    areas: list[str]
    week_starts: list[date]
    weekly: np.ndarray  # areas x weeks: the weekly count (NaN = no data: holiday, warm-up)
    watched: np.ndarray  # areas x weeks: the series the pipeline watches (rolling sums where configured)
    population: np.ndarray  # areas x weeks: the offset (pupils with schedule; youths), NaN = none
    monitored: range  # the weeks evaluated (the last year)
    settings: Settings
    #: areas x weeks: the count expected without rises, known exactly (the oracle's privilege; exact.py)
    known_expected: np.ndarray | None = None
    #: areas x weeks: its variance (Poisson-binomial: the sum over persons of p(1 - p); exact.py)
    known_variance: np.ndarray | None = None
    #: areas x weeks: the approximate oracle's level (the area's own three years x the calendar; ceiling.py)
    approx_expected: np.ndarray | None = None


@dataclass(frozen=True)
class Method:
    name: str
    statistic: Callable[..., np.ndarray]
    description: str
    grid: tuple[dict, ...] = field(default_factory=lambda: ({},))
    pipeline: bool = False  # the pipeline runs it: a candidate default method
    oracle: bool = False  # knows the baseline: the ceiling, not a method
    per_area: bool = False  # each area's statistic depends on its own series only (computed for risen areas only)
    sources: tuple[str, ...] = ()  # files under ewi/ it depends on (its cached statistics are keyed by them)


REGISTRY: dict[str, Method] = {}


def register(method: Method) -> Method:
    REGISTRY[method.name] = method
    return method


def farrington_statistic(panel: Panel) -> np.ndarray:
    """-log10 of Farrington's p-value (nbPlugin: a week alerts at alpha exactly when p <= alpha, so a
    threshold on this statistic is an alpha), with every other condition of an alert (status ok,
    watched count >= alert_min_count)."""
    control = {**panel.settings.farrington, "alpha": 0.5}
    out = np.full((len(panel.areas), len(panel.monitored)), -np.inf)
    min_count = panel.settings.min_count
    for a in range(len(panel.areas)):
        fc = FarringtonControl.from_dict(control)
        population = panel.population[a] if fc.population_offset else None
        for j, r in enumerate(farrington_flexible(panel.watched[a], panel.week_starts, fc, population=population,
                                                  weeks=panel.monitored)):
            if r.status == "ok" and r.observed and r.observed >= min_count and r.p_value is not None:
                out[a, j] = -np.log10(max(r.p_value, 1e-300))
    return out


def glrnb_statistic(panel: Panel, series: str = "watched") -> np.ndarray:
    """The negative-binomial GLR statistic (glrnb_runner: mu0 = Farrington's expectation, alpha from
    its phi) on the watched series (or the weekly counts: series="weekly"), computed WITHOUT reset
    (c_ARL = inf) so that the evaluation can calibrate c_ARL like any threshold: the first week the
    statistic reaches a threshold is the week the chart with that c_ARL alarms; after it the chart
    without reset stays high where the pipeline's would restart, so alarms close together merge into
    one signal (docs/decisions.md, issue 18: glrnb's threshold). The chart starts at the first
    monitored week. -inf below alert_min_count and where Farrington has no expectation."""
    values = panel.watched if series == "watched" else panel.weekly
    control = {**panel.settings.farrington, "alpha": 0.5}
    params = dict(GLRNB_DEFAULTS)
    chart = glrnb_control({**params, "c_arl": np.inf})
    n = len(panel.monitored)
    out = np.full((len(panel.areas), n), -np.inf)
    min_count = panel.settings.min_count
    for a in range(len(panel.areas)):
        fc = FarringtonControl.from_dict(control)
        population = panel.population[a] if fc.population_offset else None
        weeks = farrington_flexible(values[a], panel.week_starts, fc, population=population, weeks=panel.monitored)
        observed = np.array([np.nan if r.observed is None else r.observed for r in weeks], dtype=float)
        ok = [r.status in ("ok", "few_cases") and r.expected is not None and r.phi is not None for r in weeks]
        expected = np.array([r.expected if o else np.nan for r, o in zip(weeks, ok, strict=True)], dtype=float)
        phi = np.array([r.phi if o else np.nan for r, o in zip(weeks, ok, strict=True)], dtype=float)
        _, statistic, _ = glrnb_series(observed, expected, overdispersion(params, expected, phi), chart)
        alertable = np.isfinite(statistic) & np.isfinite(observed) & (np.nan_to_num(observed) >= min_count)
        out[a, alertable] = statistic[alertable]
    return out


def ears_statistic(panel: Panel, method: str) -> np.ndarray:
    """EARS C1/C2/C3's statistic on the watched series (-inf below alert_min_count)."""
    ec = panel.settings.ears
    out = np.full((len(panel.areas), len(panel.monitored)), -np.inf)
    for a in range(len(panel.areas)):
        values = [None if not np.isfinite(v) else float(v) for v in panel.watched[a]]
        weeks = ears(values, method, ec)
        for j, k in enumerate(panel.monitored):
            w = weeks[k]
            if w.statistic is not None and w.observed is not None and w.observed >= ec.min_count:
                out[a, j] = w.statistic
    return out


def eb(panel: Panel, window: int, shrink: bool = True, history: int = 104) -> np.ndarray:
    return eb_statistic(panel.weekly, panel.population, panel.monitored, window, history=history,
                        min_count=panel.settings.min_count, shrink=shrink)


#: Half a year: what an area added to the register, or the pipeline's first months, has as history.
SHORT_HISTORY = 26


def oracle_statistic(panel: Panel, window: int) -> np.ndarray:
    """-log10 of the tail probability of the trailing `window`-week count under the count's exact
    distribution without rises (its mean and variance known: exact.py); window 0 = the scan, the
    largest of these over ORACLE_WINDOWS, calibrated as one statistic. Youths with an event are
    Poisson-binomial with small chances (variance >= 90 % of the mean): the Poisson tail P(X >= S);
    flagged pupils (chances up to 1, variance about a third to a half of the mean): the normal tail
    with a continuity correction. -inf where the window count is below alert_min_count (the pipeline's
    rule, as in power.py) or the expectation is unknown."""
    if panel.known_expected is None or panel.known_variance is None:
        raise ValueError("the oracle needs known_expected and known_variance")
    if window == 0:
        return np.max([oracle_statistic(panel, n) for n in ORACLE_WINDOWS], axis=0)
    s_obs = window_sum(panel.weekly, window)[:, panel.monitored]
    known = np.isfinite(panel.known_expected)
    mu = window_sum(panel.known_expected, window)[:, panel.monitored]
    var = window_sum(panel.known_variance, window)[:, panel.monitored]
    # a window reaching a week without a known expectation (no data) is not tested
    unknown = window_sum((~known).astype(float), window)[:, panel.monitored] > 0
    out = np.full(s_obs.shape, -np.inf)
    ok = np.isfinite(s_obs) & np.isfinite(mu) & ~unknown & (mu > 0) & (var > 0) & (s_obs >= panel.settings.min_count)
    poisson_like = var >= 0.9 * mu
    tail = np.ones(s_obs.shape)
    a, b = ok & poisson_like, ok & ~poisson_like
    tail[a] = stats.poisson.sf(s_obs[a] - 1, mu[a])
    tail[b] = stats.norm.sf((s_obs[b] - 0.5 - mu[b]) / np.sqrt(var[b]))
    out[ok] = -np.log10(np.maximum(tail[ok], 1e-300))
    return out


def oracle_approx_statistic(panel: Panel, window: int) -> np.ndarray:
    """The earlier, approximate oracle: the trailing `window`-week count against the area's own
    three-year level times the calendar's profile (ceiling.py), (S - mu) / sqrt(mu)."""
    if panel.approx_expected is None:
        raise ValueError("the approximate oracle needs approx_expected")
    s_obs = window_sum(panel.weekly, window)[:, panel.monitored]
    mu = window_sum(panel.approx_expected, window)[:, panel.monitored]
    out = np.full(s_obs.shape, -np.inf)
    ok = np.isfinite(s_obs) & np.isfinite(mu) & (mu > 0) & (s_obs >= panel.settings.min_count)
    out[ok] = (s_obs[ok] - mu[ok]) / np.sqrt(mu[ok])
    return out


WINDOWS = (1, 2, 3, 4, 6)
#: The exact oracle's windows: each alone, and all together as a scan (window 0).
ORACLE_WINDOWS = (1, 2, 3, 4, 5, 6)

register(Method("farrington", farrington_statistic, "Farrington-flexible (Noufaily 2013), alpha calibrated",
                pipeline=True, per_area=True, sources=("alerts/farrington.py",)))
register(Method("glrnb", glrnb_statistic,
                "negative-binomial GLR (Höhle & Paul 2008) on Farrington's expectation, c_ARL calibrated",
                pipeline=True, per_area=True,
                sources=("alerts/farrington.py", "alerts/glrnb.py", "alerts/glrnb_runner.py")))
for _m in ("ears_c1", "ears_c2", "ears_c3"):
    register(Method(_m, lambda panel, _m=_m: ears_statistic(panel, _m), f"EARS {_m[-2:].upper()}, z calibrated",
                    pipeline=True, per_area=True, sources=("alerts/ears.py",)))
register(Method("eb", eb, "empirical-Bayes baseline (gamma-Poisson, Marshall 1991), trailing window",
                grid=tuple({"window": w} for w in WINDOWS), sources=("alerts/eb.py",)))
register(Method("eb_unshrunk", lambda panel, window: eb(panel, window, shrink=False),
                "the same with each area's own history only (no shrinkage)",
                grid=tuple({"window": w} for w in WINDOWS), sources=("alerts/eb.py",)))
register(Method("eb_short", lambda panel, window: eb(panel, window, history=SHORT_HISTORY),
                f"the empirical-Bayes baseline from only {SHORT_HISTORY} weeks of history",
                grid=tuple({"window": w} for w in WINDOWS), sources=("alerts/eb.py",)))
register(Method("eb_unshrunk_short", lambda panel, window: eb(panel, window, shrink=False, history=SHORT_HISTORY),
                f"the same without shrinkage, {SHORT_HISTORY} weeks of history",
                grid=tuple({"window": w} for w in WINDOWS), sources=("alerts/eb.py",)))
register(Method("oracle", oracle_statistic,
                "the count's distribution without rises known exactly (synth's own chances), the best trailing "
                "window or the scan over 1-6 weeks: the ceiling",
                grid=tuple({"window": w} for w in (*ORACLE_WINDOWS, 0)), oracle=True, per_area=True,
                sources=("alerts/evaluation/exact.py", "synth.py")))
register(Method("oracle_approx", oracle_approx_statistic,
                "the earlier oracle: each area's three-year level x the calendar, best trailing window",
                grid=tuple({"window": w} for w in WINDOWS), per_area=True))
