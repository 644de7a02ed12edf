"""Farrington-flexible outbreak detection (Noufaily et al. 2013) on one weekly count series.

A port of R package surveillance's `farringtonFlexible` (R/farringtonFlexible.R and the helpers in
R/algo_farrington.R) to statsmodels, step for step, so that thresholds can be checked against the
package's own tests (tests/test_farrington.py). For each monitored week t:

1. Reference weeks: the same calendar week (the Monday closest to t minus 1..b years) with a
   half-window of w weeks around each; `no_periods` > 1 adds the weeks between the windows as a
   seasonal factor of no_periods - 1 blocks per year (Noufaily's "flexible" 10-level factor).
   The last `past_weeks_not_included` weeks before t are left out so that an emerging rise does not
   become its own baseline.
2. A quasi-Poisson GLM with log link (statsmodels GLM, Poisson family, scale='X2' = Pearson
   dispersion as R's quasipoisson), optionally with a linear time trend and log(population) offset.
3. Past outbreaks are down-weighted: Anscombe residuals s_i > weights_threshold get weight
   gamma * s_i^-2, the others gamma (gamma makes the weights average 1), and the model is refitted.
4. The trend is kept only if its p-value < p_threshold_trend, at least 3 years of history are used
   and the predicted count does not exceed the largest count in the reference data.
5. Upper threshold: "delta" (Farrington's 2/3-power transform with a delta-method variance),
   "nbPlugin" (the 1 - alpha quantile of a negative binomial with mean mu0 and size mu0 / (phi - 1))
   or "muan" (as nbPlugin with mu0 at its own 1 - alpha quantile).
6. No alarm with fewer than limit54[0] cases in the last limit54[1] weeks (current week included).

Where the series has fewer than b earlier years, b is lowered to what exists (`years_used`), down to
`min_years`; below that the week's status is `insufficient_history`. Everything is deterministic.

Deliberate deviations from R (each small and documented here):
- weeks with a missing count inside the limit54 window are skipped in that sum (R would give NA and so
  no alarm);
- a week whose model fails to converge gets status `no_convergence` instead of an R warning.

Why one module of this length: it follows R's two source files step for step, so that each step can
be read beside its R original; split by size it would no longer map onto them.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import date, timedelta

import numpy as np
import statsmodels.api as sm
from scipy import special, stats

THRESHOLD_METHODS = ("delta", "nbPlugin", "muan")


@dataclass(frozen=True)
class FarringtonControl:
    """The control list of R's farringtonFlexible (names in snake case, R defaults in comments)."""

    b: int = 5  # years back in time (R: 5); lowered to the history that exists
    w: int = 3  # half-window around the reference weeks (R: 3)
    reweight: bool = True
    weights_threshold: float = 2.58  # Noufaily's value (R default 2.58)
    alpha: float = 0.05
    trend: bool = True
    p_threshold_trend: float = 0.05
    limit54: tuple[int, int] = (5, 4)
    powertrans: str = "2/3"  # for thresholdMethod "delta" only
    population_offset: bool = False
    no_periods: int = 10  # R default 1 (= original Farrington); Noufaily recommends 10
    past_weeks_not_included: int = 26  # R default NULL (= w); Noufaily recommends 26
    threshold_method: str = "nbPlugin"  # R default "delta"
    min_years: int = 1
    engine: str = "irls"  # not in R: "irls" (numpy) or "statsmodels", see _glm

    def __post_init__(self):
        if self.threshold_method not in THRESHOLD_METHODS:
            raise ValueError(f"threshold_method must be one of {THRESHOLD_METHODS}")
        if self.limit54[0] < 0 or self.limit54[1] <= 0:
            raise ValueError("limit54: cases >= 0 and period > 0")
        if self.b < 1 or self.min_years < 1 or self.w < 0:
            raise ValueError("b and min_years must be >= 1 and w >= 0")

    @classmethod
    def from_dict(cls, values: dict) -> FarringtonControl:
        known = {k: v for k, v in values.items() if k in cls.__dataclass_fields__}
        if "limit54" in known:
            known["limit54"] = tuple(known["limit54"])
        return cls(**known)


@dataclass
class WeekResult:
    """One monitored week. `expected` and `upper` are counts on the response scale."""

    index: int
    observed: float | None
    status: str  # ok | few_cases | no_data | insufficient_history | no_convergence
    years_used: int = 0
    expected: float | None = None
    upper: float | None = None
    score: float | None = None  # R's score: (y - pred) / (upper - pred); > 1 means above threshold
    p_value: float | None = None  # P(Y >= observed) under the baseline (R's `prob`)
    phi: float | None = None
    trend: bool = False
    is_alert: bool = False
    reweighted: int = 0  # reference weeks down-weighted as past outbreaks
    extra: dict = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# Thresholds (R: algo.farrington.threshold.farrington / .noufaily)
# ---------------------------------------------------------------------------------------------

_EXPONENTS = {"none": 1.0, "1/2": 0.5, "2/3": 2.0 / 3.0}


def threshold_farrington(pred_fit: float, pred_se_fit: float, phi: float, skewness_transform: str,
                         alpha: float, y: float) -> tuple[float, float, float, float]:
    """(lower, upper, prob, score) of Farrington's power-transformed normal prediction interval.

    pred_fit and pred_se_fit are on the response scale (mu0 and the delta-method se of mu0)."""
    if skewness_transform not in _EXPONENTS:
        raise ValueError("No proper exponent in threshold_farrington")
    mu0 = pred_fit
    tau = phi + pred_se_fit**2 / mu0
    exponent = _EXPONENTS[skewness_transform]
    if skewness_transform == "none":
        se = math.sqrt(mu0 * tau)
    elif skewness_transform == "1/2":
        se = math.sqrt(tau / 4)
    else:
        se = math.sqrt(4 / 9 * mu0 ** (1 / 3) * tau)
    z = stats.norm.ppf(1 - alpha)
    bounds = []
    for sign in (-1, 1):
        base = mu0**exponent + sign * z * se
        # A negative base has no real root (R gives NaN and then clamps the lower bound to 0).
        bounds.append(base ** (1 / exponent) if base >= 0 else math.nan)
    lower, upper = sorted(bounds, key=lambda v: (not math.isnan(v), v))
    lower = 0.0 if math.isnan(lower) else max(0.0, lower)
    prob = float(stats.norm.sf(y**exponent, loc=mu0**exponent, scale=se))
    score = (y - pred_fit) / (upper - pred_fit) if not math.isnan(upper) else math.nan
    return lower, upper, prob, score


def threshold_noufaily(pred_fit: float, pred_se_fit: float, phi: float, alpha: float, y: float,
                       method: str) -> tuple[float, float, float, float]:
    """(lower, upper, prob, score) from a negative binomial with mean mu0 and size mu0 / (phi - 1).

    pred_fit and pred_se_fit are on the link (log) scale, as in R; so is `score`'s reference point
    (R computes (y - eta0) / (upper - eta0); kept for comparability, the alarm is y > upper)."""
    eta0, se_eta0 = pred_fit, pred_se_fit
    # np.exp: a huge prediction error (a reference period of zeros) overflows to inf as in R, where
    # math.exp would raise.
    with np.errstate(over="ignore"):
        if method == "nbPlugin":
            mu0 = float(np.exp(eta0))
        else:
            mu0 = float(np.exp(stats.norm.ppf(1 - alpha, loc=eta0, scale=se_eta0)))
    if math.isinf(mu0):
        return math.nan, math.nan, math.nan, math.nan
    lower = max(0.0, _count_quantile(alpha, mu0, phi))
    upper = _count_quantile(1 - alpha, mu0, phi)
    prob = _count_sf(y - 1, mu0, phi)
    # R divides by zero to Inf/NaN when the threshold equals eta0 (possible at large alpha).
    with np.errstate(divide="ignore", invalid="ignore"):
        score = float(np.float64(y - pred_fit) / np.float64(upper - pred_fit))
    return lower, upper, prob, score


def _count_cdf(k: np.ndarray, mu: float, phi: float) -> np.ndarray:
    """CDF of the baseline count distribution: negative binomial with mean mu and size mu / (phi - 1)
    (R's qnbinom(size = mu / (phi - 1), prob = 1 / phi)) when phi > 1, else Poisson(mu). Written
    with the regularised incomplete beta/gamma functions: scipy's frozen distributions cost
    milliseconds per call."""
    k = np.asarray(k, dtype=float)
    if phi > 1:
        return np.where(k < 0, 0.0, special.betainc(mu / (phi - 1), np.floor(k) + 1, 1 / phi))
    return np.where(k < 0, 0.0, special.gammaincc(np.floor(k) + 1, mu))


def _count_quantile(q: float, mu: float, phi: float) -> float:
    """Smallest k with P(Y <= k) >= q (R's q*binom/qpois, with R's fuzz of 64 machine epsilons)."""
    sd = math.sqrt(mu * max(phi, 1.0))
    top = int(mu + 40 * sd + 50)
    cdf = _count_cdf(np.arange(top + 1), mu, phi)
    hits = np.flatnonzero(cdf >= q * (1 - 64 * np.finfo(float).eps))
    return float(hits[0]) if len(hits) else float(top)


def _count_sf(k: float, mu: float, phi: float) -> float:
    """P(Y > k)."""
    return float(1.0 - _count_cdf(np.array(k), mu, phi))


# ---------------------------------------------------------------------------------------------
# Residuals and weights (R: anscombe.residuals, algo.farrington.assign.weights)
# ---------------------------------------------------------------------------------------------

def anscombe_residuals(y: np.ndarray, mu: np.ndarray, hat: np.ndarray, phi: float) -> np.ndarray:
    raw = 1.5 * (y ** (2 / 3) * mu ** (-1 / 6) - mu**0.5)
    return raw / np.sqrt(phi * (1 - hat))


def assign_weights(s: np.ndarray, weights_threshold: float) -> np.ndarray:
    """gamma * s^-2 above the threshold, gamma below; gamma makes the weights sum to len(s)."""
    high = s > weights_threshold
    with np.errstate(divide="ignore"):
        inverse_square = np.where(high, s ** -2.0, 1.0)
    gamma = len(s) / np.sum(inverse_square)
    return gamma * inverse_square


# ---------------------------------------------------------------------------------------------
# Reference weeks and seasonal blocks (R: algo.farrington.referencetimepoints, blocks)
# ---------------------------------------------------------------------------------------------

def _years_back(day: date, years: int) -> date:
    try:
        return day.replace(year=day.year - years)
    except ValueError:  # 29 February: R's seq.Date by "-1 year" rolls over to 1 March
        return date(day.year - years, 3, 1)


def reference_time_points(day: date, b: int) -> list[date]:
    """`day` and the same weekday closest to `day` minus 1..b years (R's reference time points)."""
    points = []
    for j in range(b + 1):
        ref = _years_back(day, j)
        a = ref - timedelta(days=ref.isoweekday() % 7 - day.isoweekday() % 7)
        other = a + timedelta(days=-7 if a > ref else 7)
        points.append(other if abs((a - ref).days) > abs((other - ref).days) else a)
    return points


def blocks(reference_indices: Sequence[int], n: int, now: int, b: int, w: int, p: int) -> np.ndarray:
    """Seasonal factor level (1..p, NaN = not used) per index of a series of length n.

    reference_indices are the positions of the reference time points, `now` first then going back.
    The windows around them (and now - w..now) get level p; each gap between two windows is split into
    p - 1 blocks of (almost) equal length, the remainder going to the first blocks."""
    factors = np.full(n, np.nan)
    factors[max(0, now - w): now + 1] = p
    for i in range(1, b + 1):
        ref = reference_indices[i]
        factors[ref - w: ref + w + 1] = p
        if p != 1:
            period = reference_indices[i - 1] - 2 * w - 1 - ref
            if period < p - (2 * w + 1):
                raise ValueError("Number of factors too big!")
            lengths = np.full(p - 1, period // (p - 1))
            lengths[: period % (p - 1)] += 1
            edges = ref + w + 1 + np.concatenate([[0], np.cumsum(lengths)])
            for j in range(p - 1):
                factors[edges[j]: edges[j + 1]] = j + 1
    return factors


# ---------------------------------------------------------------------------------------------
# GLM (R: algo.farrington.fitGLM.flexible, algo.farrington.glm)
# ---------------------------------------------------------------------------------------------

@dataclass
class _Fit:
    params: np.ndarray
    cov: np.ndarray
    dispersion: float  # summary(model)$dispersion: Pearson chi2 / residual df
    phi: float  # max(dispersion, 1)
    df_resid: float
    mu: np.ndarray
    weights: np.ndarray


def _glm(y, X, offset, weights, engine: str = "irls") -> _Fit | None:
    """Quasi-Poisson GLM with log link: (coefficients, their covariance scaled by the Pearson
    dispersion, ...). engine "statsmodels" is statsmodels' GLM (Poisson family, scale='X2');
    "irls" is the same iteratively reweighted least squares in a few lines of numpy, about ten times
    faster on these small designs (the evaluation fits ~10^5 models), and checked against statsmodels
    to 1e-6 in tests/test_farrington.py."""
    if engine == "statsmodels":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                res = sm.GLM(y, X, family=sm.families.Poisson(), offset=offset,
                             var_weights=weights).fit(scale="X2", maxiter=50, tol=1e-8)
            except (ValueError, np.linalg.LinAlgError, FloatingPointError):
                return None
        if not res.converged or not np.all(np.isfinite(res.params)):
            return None
        dispersion = float(res.scale) if res.df_resid > 0 else 1.0
        return _Fit(np.asarray(res.params), np.asarray(res.cov_params()), dispersion, max(dispersion, 1.0),
                    float(res.df_resid), np.asarray(res.fittedvalues), weights)
    return _irls(y, X, offset, weights)


def _irls(y, X, offset, weights, tol: float = 1e-10, max_iter: int = 50) -> _Fit | None:
    off = np.zeros(len(y)) if offset is None else offset
    mu = y + 0.1  # R's starting values for the Poisson family
    eta = np.log(mu)
    deviance_before = np.inf
    with np.errstate(all="ignore"):
        for _ in range(max_iter):
            working = eta - off + (y - mu) / mu
            sqrt_w = np.sqrt(weights * mu)
            try:
                beta = np.linalg.lstsq(X * sqrt_w[:, None], working * sqrt_w, rcond=None)[0]
            except np.linalg.LinAlgError:
                return None
            eta = X @ beta + off
            mu = np.exp(eta)
            deviance = 2 * np.sum(weights * (np.where(y > 0, y * np.log(np.where(y > 0, y, 1) / mu), 0)
                                             - (y - mu)))
            if not np.isfinite(deviance):
                return None
            if abs(deviance - deviance_before) / (abs(deviance) + 0.1) < tol:
                break
            deviance_before = deviance
        else:
            return None
        df_resid = len(y) - np.linalg.matrix_rank(X)
        dispersion = float(np.sum(weights * (y - mu) ** 2 / mu) / df_resid) if df_resid > 0 else 1.0
        try:
            cov = dispersion * np.linalg.inv(X.T @ (X * (weights * mu)[:, None]))
        except np.linalg.LinAlgError:
            return None
    if not (np.all(np.isfinite(beta)) and np.isfinite(dispersion)):
        return None
    return _Fit(beta, cov, dispersion, max(dispersion, 1.0), float(df_resid), mu, weights)


def _hat_values(X: np.ndarray, mu: np.ndarray) -> np.ndarray:
    # Leverages of the IRLS fit: diag(W^1/2 X (X'WX)^-1 X' W^1/2) with W = mu (Poisson, log link).
    xw = X * np.sqrt(mu)[:, None]
    q, _ = np.linalg.qr(xw)
    return np.sum(q**2, axis=1)


def _fit_flexible(y, X, offset, control: FarringtonControl) -> tuple[_Fit, int] | None:
    """Fit, then (if asked) down-weight past outbreaks by their Anscombe residuals and refit."""
    ones = np.ones(len(y))
    fit = _glm(y, X, offset, ones, control.engine)
    if fit is None:
        return None
    if not control.reweight:
        return fit, 0
    s = anscombe_residuals(y, fit.mu, np.clip(_hat_values(X, fit.mu), 0, 1 - 1e-12), fit.phi)
    omega = assign_weights(s, control.weights_threshold)
    refit = _glm(y, X, offset, omega, control.engine)
    if refit is None:
        return None
    return _as_r_returns_it(refit, y, omega), int(np.sum(s > control.weights_threshold))


def _as_r_returns_it(fit: _Fit, y: np.ndarray, omega: np.ndarray) -> _Fit:
    """R's fitGLM.flexible sets `model$weights <- omega` after the reweighted fit, overwriting the
    IRLS working weights that summary.glm reads. So the dispersion behind the trend's p-value and the
    prediction's standard error (summary.glm and predict.glm) is sum(omega * ((y - mu) / mu)^2) / df
    (the working residuals weighted by omega), not the Pearson dispersion; phi (taken before the
    overwrite) stays Pearson. Found by comparing whole series with R (tests/test_farrington.py)."""
    if fit.df_resid <= 0 or fit.dispersion <= 0:
        return fit
    r_dispersion = float(np.sum(omega * ((y - fit.mu) / fit.mu) ** 2) / fit.df_resid)
    return replace(fit, cov=fit.cov / fit.dispersion * r_dispersion)


def _design(wtime, seasgroups, levels, with_trend: bool) -> np.ndarray:
    columns = [np.ones(len(wtime))]
    if with_trend:
        columns.append(np.asarray(wtime, dtype=float))
    for level in levels[1:]:  # treatment contrasts: the first level is the reference
        columns.append((seasgroups == level).astype(float))
    return np.column_stack(columns)


def _t_p_value(fit: _Fit, column: int) -> float:
    se = math.sqrt(fit.cov[column, column])
    if se == 0 or fit.df_resid <= 0:
        return math.nan
    return float(2 * stats.t.sf(abs(fit.params[column] / se), fit.df_resid))


def _predict(fit: _Fit, x0: np.ndarray, offset0: float) -> tuple[float, float]:
    """Linear predictor and its standard error at x0 (uses the model's own dispersion, as R's
    predict.glm does: the `dispersion` column R passes in newdata is not the argument)."""
    eta = float(x0 @ fit.params + offset0)
    se = float(math.sqrt(max(x0 @ fit.cov @ x0, 0.0)))
    return eta, se


# ---------------------------------------------------------------------------------------------
# One series
# ---------------------------------------------------------------------------------------------

def available_years(week_starts: Sequence[date], k: int, control: FarringtonControl) -> int:
    """How many of the b years back exist in the series for week k (with room for the window)."""
    index = {d: i for i, d in enumerate(week_starts)}
    years = 0
    for j, point in enumerate(reference_time_points(week_starts[k], control.b)[1:], start=1):
        i = index.get(point)
        if i is None or i - control.w < 0:
            break
        years = j
    return years


def farrington_week(observed: np.ndarray, week_starts: Sequence[date], k: int,
                    control: FarringtonControl, population: np.ndarray | None = None) -> WeekResult:
    """Farrington-flexible for week index k of a weekly series (observed may hold NaN = no data)."""
    y_now = observed[k]
    if not np.isfinite(y_now):
        return WeekResult(k, None, "no_data")
    years = available_years(week_starts, k, control)
    if years < control.min_years:
        return WeekResult(k, float(y_now), "insufficient_history", years_used=years)
    ctl = replace(control, b=years)
    index = {d: i for i, d in enumerate(week_starts)}
    refs = [index[d] for d in reference_time_points(week_starts[k], years)]
    try:
        factor = blocks(refs, len(observed), k, years, ctl.w, ctl.no_periods)
    except ValueError:
        return WeekResult(k, float(y_now), "insufficient_history", years_used=years)
    used = factor.copy()
    used[max(0, k - ctl.past_weeks_not_included): k + 1] = np.nan
    rows = np.flatnonzero(~np.isnan(used))
    # wtime counts weeks from the first reference week; R drops rows with a missing count only
    # after that, and then predicts relative to the first remaining row (kept as in R).
    wtime_all = rows - rows[0]
    keep = np.isfinite(observed[rows])
    rows, wtime = rows[keep], wtime_all[keep]
    if len(rows) < 3:
        return WeekResult(k, float(y_now), "insufficient_history", years_used=years)
    y = observed[rows].astype(float)
    seas = factor[rows]
    levels = np.unique(seas)
    if ctl.no_periods not in levels and ctl.no_periods != 1:
        return WeekResult(k, float(y_now), "insufficient_history", years_used=years)
    if ctl.population_offset:
        if population is None:
            raise ValueError("population_offset needs a population series")
        offset, offset0 = np.log(population[rows].astype(float)), float(np.log(population[k]))
    else:
        offset, offset0 = None, 0.0
    factors_bool = ctl.no_periods != 1
    levels = levels if factors_bool else levels[:1]
    wtime_now = float(k - rows[0])

    def x_now(with_trend: bool) -> np.ndarray:
        row = [1.0] + ([wtime_now] if with_trend else [])
        row += [1.0 if level == ctl.no_periods else 0.0 for level in levels[1:]]
        return np.array(row)

    # R fits the trend and then drops it unless >= 3 years are used; with fewer years the final model is
    # the one without trend either way, so that fit is skipped.
    trend = ctl.trend and years >= 3
    fitted = _fit_flexible(y, _design(wtime, seas, levels, trend), offset, ctl)
    if fitted is None and trend:  # R: no convergence with the trend -> try without
        trend = False
        fitted = _fit_flexible(y, _design(wtime, seas, levels, False), offset, ctl)
    if fitted is None:
        return WeekResult(k, float(y_now), "no_convergence", years_used=years)
    fit, reweighted = fitted
    if trend:
        eta, _ = _predict(fit, x_now(True), offset0)
        keep_trend = (years >= 3 and _t_p_value(fit, 1) < ctl.p_threshold_trend
                      and math.exp(eta) <= np.max(y))
        if not keep_trend:
            trend = False
            fitted = _fit_flexible(y, _design(wtime, seas, levels, False), offset, ctl)
            if fitted is None:
                return WeekResult(k, float(y_now), "no_convergence", years_used=years)
            fit, reweighted = fitted
    eta, se_eta = _predict(fit, x_now(trend), offset0)
    if ctl.threshold_method == "delta":
        mu = math.exp(eta)
        _, upper, prob, score = threshold_farrington(mu, mu * se_eta, fit.phi, ctl.powertrans, ctl.alpha,
                                                     float(y_now))
    else:
        _, upper, prob, score = threshold_noufaily(eta, se_eta, fit.phi, ctl.alpha, float(y_now),
                                                   ctl.threshold_method)
    window = observed[max(0, k - ctl.limit54[1] + 1): k + 1]
    enough_cases = np.nansum(window) >= ctl.limit54[0]
    is_alert = bool(enough_cases and np.isfinite(score) and score > 1 and y_now != 0)
    return WeekResult(
        k, float(y_now), "ok" if enough_cases else "few_cases", years_used=years,
        expected=math.exp(eta), upper=None if math.isnan(upper) else float(upper),
        score=None if math.isnan(score) else float(score), p_value=None if math.isnan(prob) else prob,
        phi=fit.phi, trend=trend, is_alert=is_alert, reweighted=reweighted,
    )


def farrington_flexible(observed: Sequence[float], week_starts: Sequence[date],
                        control: FarringtonControl | None = None, population: Sequence[float] | None = None,
                        weeks: Sequence[int] | None = None) -> list[WeekResult]:
    """Farrington-flexible for the given week indices (default: every week) of one weekly series.

    week_starts must be consecutive Mondays (a zero-filled grid: a week without events is 0, a week
    without data NaN)."""
    control = control or FarringtonControl()
    y = np.asarray(observed, dtype=float)
    pop = None if population is None else np.asarray(population, dtype=float)
    week_starts = list(week_starts)
    if len(week_starts) != len(y):
        raise ValueError("observed and week_starts differ in length")
    if any((b - a).days != 7 for a, b in zip(week_starts, week_starts[1:], strict=False)):
        raise ValueError("week_starts must be consecutive weeks")
    indices = range(len(y)) if weeks is None else weeks
    return [farrington_week(y, week_starts, k, control, pop) for k in indices]
