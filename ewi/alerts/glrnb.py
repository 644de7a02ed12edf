"""The negative-binomial GLR/CUSUM detector of Höhle & Paul (2008) on one weekly count series.

A port of R package surveillance's `algo.glrnb` (R/algo_glrnb.R) and the C routines it calls
(src/surveillance.c: glr_nb_window, lr_cusum_nb, and for alpha = 0 the Poisson glr_cusum and
lr_cusum), kept step for step so that every week's statistic can be checked against R itself
(tests/test_glrnb.py runs Rscript on the same series).

For each week n since the chart's last reset the statistic is

    GLR_n = max over change points k (window: max(0, n - M) <= k <= n - Mtilde + 1) of
            sup over kappa >= 0 of  sum_{t=k..n} log f(x_t; mu0_t * exp(kappa)) / f(x_t; mu0_t)

with f the negative binomial with mean mu and variance mu + alpha * mu^2 (alpha = 0: Poisson).
kappa is found by Newton-Raphson exactly as R's C code does it, and clamped at 0 for an increase
(direction "inc"). With `theta` given the change is known, and the statistic is the CUSUM of the
log-likelihood ratios of x_t under mu0_t * exp(theta) against mu0_t (Page's recursion). An alarm is
raised at the first week whose statistic reaches c_ARL (R: `>=` for the GLR, `>` for the known-theta
CUSUM); the chart then restarts from the next week (R's reset after an alarm).

mu0 comes from the caller (the pipeline uses Farrington's baseline, see ewi.alerts.glrnb_runner) or,
as R does without one, from a negative-binomial GLM (MASS::glm.nb, ported in `glm_nb`) with S pairs of
harmonics and an optional trend, fitted on the weeks before the monitored range; alpha = 1 / theta of
that fit when not given.

`ret = "cases"`: the number of cases in week n that would have raised an alarm given the weeks before
it. R computes it for the known-theta CUSUM (closed form) and the Poisson GLR (a search over counts)
and refuses it for the negative-binomial GLR; here the same search is run for that too (documented
deviation, used as the pipeline's threshold).

Deviations from R, each small: alpha may be a per-week array (R: one number), which lets the pipeline
use Farrington's per-week overdispersion; weeks without data (NaN) are not allowed inside a chart (the
pipeline restarts the chart after a gap, see `glrnb_series`); the "epi" change of R is not ported.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import special

CHANGES = ("intercept",)
DIRECTIONS = ("inc", "dec")
RETURNS = ("value", "cases")
#: Newton-Raphson settings of R's C code (glr_nb_window).
_NR_START, _NR_TOL, _NR_MAX_ITER, _NR_FLOOR = 0.5, 1e-6, 1000, -18.0


@dataclass(frozen=True)
class GlrnbControl:
    """R's control list of algo.glrnb (snake case). alpha None = estimate it (1 / glm.nb's theta)."""

    c_arl: float = 5.0
    alpha: float | None = 0.0
    m_tilde: int = 1  # R: Mtilde, weeks needed to estimate a change
    m: int = -1  # R: M, the furthest change point back (-1 = every week since the last reset)
    change: str = "intercept"
    theta: float | None = None  # a known change exp(theta); None = GLR over kappa
    direction: str = "inc"
    ret: str = "value"
    # mu0 model when mu0 is not given (R: control$mu0 = list(S, trend)); freq = weeks per year
    s: int = 1
    trend: bool = False
    freq: int = 52

    def __post_init__(self):
        if self.change not in CHANGES:
            raise ValueError(f"change must be one of {CHANGES} (R's 'epi' is not ported)")
        if self.direction not in DIRECTIONS or self.ret not in RETURNS:
            raise ValueError(f"direction in {DIRECTIONS}, ret in {RETURNS}")
        if self.theta is not None and self.theta == 1:
            raise ValueError("theta has to be larger than 1")  # R's (odd) check, kept
        if self.m_tilde < 1 or (self.m != -1 and self.m < self.m_tilde):
            raise ValueError("Mtilde >= 1 and M = -1 or M >= Mtilde")

    @classmethod
    def from_dict(cls, values: dict) -> GlrnbControl:
        return cls(**{k: v for k, v in values.items() if k in cls.__dataclass_fields__})


@dataclass
class GlrnbResult:
    """R's survRes as arrays over the monitored range: `upperbound` is the statistic (ret "value") or
    the cases needed for an alarm (ret "cases"); `statistic` is always the statistic."""

    alarm: np.ndarray
    upperbound: np.ndarray
    statistic: np.ndarray
    mu0: np.ndarray
    alpha: float | np.ndarray
    cases: np.ndarray | None = None
    model: dict = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# The statistics (R: src/surveillance.c)
# ---------------------------------------------------------------------------------------------

def _nb_glr_rows(X: np.ndarray, ends: np.ndarray, mu0: np.ndarray, alpha: np.ndarray, low: np.ndarray,
                 up: np.ndarray, sign: int) -> np.ndarray:
    """GLR statistics of several rows at once (R: the loop over k in glr_nb_window). Row r holds the
    counts X[r] of a chart and asks for the statistic of week ends[r], maximised over change points
    low[r] <= k <= up[r]. For each row, R runs Newton-Raphson for k = low, low + 1, ... in turn, each
    warm-started at the previous k's (clamped) estimate, the first at 0.5; that order matters where
    Newton-Raphson diverges (a mu0 far below the counts), so it is kept: the rows advance through k
    together, and only the loop over rows is vectorised. A diverged estimate (NaN) counts as 0, as C's
    fmax(0, NaN) does."""
    rows, width = X.shape
    cols = np.arange(width)[None, :]
    kappa_ml = np.full(rows, _NR_START)
    best = np.full(rows, -1e99)
    with np.errstate(all="ignore"):
        for k in range(int(low.min()), int(up.max()) + 1):
            on = (low <= k) & (k <= up)
            if not on.any():
                continue
            idx = np.nonzero(on)[0]
            last = int(ends[idx].max())
            mask = (cols[:, k:last + 1] <= ends[idx, None])
            xs = X[idx, k:last + 1]
            ms, als = mu0[None, k:last + 1], alpha[None, k:last + 1]
            new = kappa_ml[idx].copy()
            old = np.full(len(idx), 0.4)
            active = np.ones(len(idx), dtype=bool)
            for _ in range(_NR_MAX_ITER):
                active &= (new > _NR_FLOOR) & (np.abs(new - old) > _NR_TOL)
                if not active.any():
                    break
                e = np.exp(new)[:, None]
                denominator = 1 + als * e * ms
                score = np.where(mask, (xs - e * ms) / denominator, 0.0).sum(axis=1)
                fisher = e[:, 0] * np.where(mask, ms * (als * xs + 1) / denominator ** 2, 0.0).sum(axis=1)
                old = np.where(active, new, old)
                new = np.where(active, new + score / fisher, new)
            clamped = sign * np.maximum(0.0, sign * new)
            clamped = np.where(np.isnan(clamped), 0.0, clamped)  # C: fmax(0, NaN) = 0
            kappa_ml[idx] = clamped
            lnk = np.where(mask, _nb_llr(clamped[:, None], xs, ms, als), 0.0).sum(axis=1)
            best[idx] = np.where(lnk > best[idx], lnk, best[idx])
    return best


def _nb_llr(kappa, x, mu0, alpha):
    """log f(x; mu0 e^kappa) / f(x; mu0) for the negative binomial (alpha > 0) or Poisson (alpha 0)."""
    kappa, x, mu0, alpha = np.broadcast_arrays(*(np.asarray(v, dtype=float) for v in (kappa, x, mu0, alpha)))
    with np.errstate(divide="ignore", invalid="ignore"):
        nb = kappa * x + (x + 1 / alpha) * np.log((1 + alpha * mu0) / (1 + alpha * mu0 * np.exp(kappa)))
    poisson = kappa * x + (1 - np.exp(kappa)) * mu0
    return np.where(alpha > 0, nb, poisson)


def _poisson_glr_at(x: np.ndarray, mu0: np.ndarray, low: int, up: int, sign: int) -> float:
    """R's glr() / glr_window(): the Poisson GLR has kappa_ml = log(sum x / sum mu0) in closed form."""
    tail_x = np.cumsum(x[::-1])[::-1]
    tail_mu = np.cumsum(mu0[::-1])[::-1]
    sx, sm = tail_x[low:up + 1], tail_mu[low:up + 1]
    with np.errstate(divide="ignore"):
        kappa = sign * np.maximum(0.0, sign * np.log(sx / sm))
    return float((kappa * sx + (1 - np.exp(kappa)) * sm).max())


def _bounds(ends: np.ndarray, control: GlrnbControl) -> tuple[np.ndarray, np.ndarray]:
    low = np.zeros_like(ends) if control.m == -1 else np.maximum(0, ends - control.m)
    return low, ends - (control.m_tilde - 1)


def _glr_statistics(X: np.ndarray, ends: np.ndarray, mu0, alpha, control: GlrnbControl, sign: int) -> np.ndarray:
    """The GLR statistic of week ends[r] of the chart X[r] (which starts at index 0)."""
    if np.all(alpha == 0):
        # R's glr(): every k <= n; glr_window(): max(0, n-M) <= k <= n-Mtilde. kappa in closed form.
        out = np.empty(len(ends))
        for r, n in enumerate(ends):
            up = n if control.m == -1 else n - control.m_tilde
            low = 0 if control.m == -1 else max(0, n - control.m)
            out[r] = _poisson_glr_at(X[r, :n + 1], mu0[:n + 1], low, up, sign)
        return out
    low, up = _bounds(ends, control)
    return _nb_glr_rows(X, ends, mu0, alpha, low, up, sign)


def _run_chart(x: np.ndarray, mu0: np.ndarray, alpha: np.ndarray, control: GlrnbControl,
               want_cases: bool, known: int = 0) -> tuple[int, np.ndarray, np.ndarray]:
    """One chart from index 0 until its first alarm: (index of the alarm or len(x), statistics, cases).
    Statistics after the alarm are 0 (R). All weeks are computed at once and cut at the first alarm.
    `known`: the first weeks whose results the caller has and which did not alarm (a statistic
    depends on its week and the chart's earlier weeks only); they are not computed (left 0)."""
    if control.theta is not None:
        return _run_lr(x, mu0, alpha, control, want_cases)
    sign = 1 if control.direction == "inc" else -1
    lx = len(x)
    values, cases = np.zeros(lx), np.zeros(lx)
    if np.all(alpha == 0):
        start = 0 if control.m == -1 else control.m_tilde  # R's glr_cusum_window starts at n = Mtilde
    else:
        start = max(control.m_tilde - 1, 0)
    start = max(start, known)
    ends = np.arange(start, lx)
    if len(ends) == 0:
        return lx, values, cases
    values[start:] = _glr_statistics(np.tile(x, (len(ends), 1)), ends, mu0, alpha, control, sign)
    over = np.nonzero(values[start:] >= control.c_arl)[0]
    n = int(start + over[0]) if len(over) else lx
    values[n + 1:] = 0.0
    if want_cases:
        cases[start:n + 1 if n < lx else lx] = _cases_needed(x, mu0, alpha, ends[ends <= n], control, sign)
    return n, values, cases


def _cases_needed(x, mu0, alpha, ends: np.ndarray, control: GlrnbControl, sign: int) -> np.ndarray:
    """For each week n in `ends`: the smallest count in week n whose statistic reaches c_ARL given the
    weeks before it (R's search in glr_cusum counts up from 0). The statistic grows with the count, so
    a doubling search and then bisection find the same number; all weeks are searched together."""
    def reaches(counts: np.ndarray) -> np.ndarray:
        X = np.tile(x, (len(ends), 1))
        X[np.arange(len(ends)), ends] = counts
        return _glr_statistics(X, ends, mu0, alpha, control, sign) * sign >= control.c_arl * sign

    if len(ends) == 0:
        return np.zeros(0)
    high = np.maximum(1.0, np.ceil(mu0[ends]))
    low = np.full(len(ends), -1.0)  # largest count known not to reach (-1: none tested)
    at_zero = reaches(np.zeros(len(ends)))
    low[~at_zero] = 0.0
    found = at_zero.copy()
    high[at_zero] = 0.0
    for _ in range(40):
        pending = ~found
        if not pending.any():
            break
        hit = reaches(np.where(pending, high, 0.0))
        newly = pending & hit
        found |= newly
        low = np.where(pending & ~hit, high, low)
        high = np.where(pending & ~hit, high * 2, high)
    high = np.where(found, high, np.inf)
    while True:
        gap = found & (high - low > 1)
        if not gap.any():
            break
        middle = np.floor((low + high) / 2)
        hit = reaches(np.where(gap, middle, high))
        high = np.where(gap & hit, middle, high)
        low = np.where(gap & ~hit, middle, low)
    return high


def _run_lr(x, mu0, alpha, control: GlrnbControl, want_cases: bool):
    """R's lr_cusum_nb / lr_cusum: Page's CUSUM of log-likelihood ratios for the known change theta;
    alarm when the sum exceeds c_ARL (strictly, as R); cases in closed form (R's backcalc)."""
    kappa, c = float(control.theta), control.c_arl
    lx = len(x)
    values, cases = np.zeros(lx), np.zeros(lx)
    previous = 0.0
    for n in range(lx):
        a, m = float(alpha[n]), float(mu0[n])
        z = float(_nb_llr(kappa, x[n], m, a))
        values[n] = max(0.0, previous + z)
        if want_cases:
            if a > 0:
                log_ratio = math.log((1 + a * m) / (1 + a * m * math.exp(kappa)))
                cases[n] = -(previous * a + log_ratio - c * a) / a / (kappa + log_ratio)
            else:
                cases[n] = (c - previous + m * (math.exp(kappa) - 1)) / kappa
        if values[n] > c:
            return n, values, cases
        previous = values[n]
    return lx, values, cases


def glr_detector(x: Sequence[float], mu0: Sequence[float], alpha: float | Sequence[float],
                 control: GlrnbControl, known: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The chart over a whole range with R's reset after every alarm (the loop of algo.glrnb):
    returns alarm (bool), statistic and cases-needed arrays (cases NaN unless control.ret == "cases").
    `known` leading weeks (without an alarm) are not computed: NaN there (see _run_chart)."""
    if known and control.theta is not None:
        known = 0  # the known-change CUSUM is a recursion over every week: computed whole
    x = np.asarray(x, dtype=float)
    mu0 = np.asarray(mu0, dtype=float)
    alpha_arr = np.broadcast_to(np.asarray(alpha, dtype=float), x.shape).copy()
    if np.isnan(x).any() or np.isnan(mu0).any():
        raise ValueError("a chart needs a count and mu0 in every week (restart it after a gap)")
    want_cases = control.ret == "cases"
    alarm = np.zeros(len(x), dtype=bool)
    statistic = np.zeros(len(x))
    cases = np.full(len(x), np.nan)
    done = 0
    while done < len(x):
        n, values, chart_cases = _run_chart(x[done:], mu0[done:], alpha_arr[done:], control, want_cases,
                                            known if done == 0 else 0)
        end = min(n + 1, len(x) - done)
        statistic[done:done + end] = values[:end]
        if want_cases:
            cases[done:done + end] = chart_cases[:end]
        if n < len(x) - done:
            alarm[done + n] = True
        done += n + 1
    # R: the upperbound is made non-negative and NaN-free
    statistic = np.where(np.isnan(statistic) | (statistic < 0), 0.0, statistic)
    statistic[:known] = np.nan
    cases[:known] = np.nan
    return alarm, statistic, cases


# ---------------------------------------------------------------------------------------------
# mu0 when not given: MASS::glm.nb with harmonics (R: estimateGLRNbHook)
# ---------------------------------------------------------------------------------------------

def _nb_loglik(theta: float, mu: np.ndarray, y: np.ndarray) -> float:
    return float(np.sum(special.gammaln(theta + y) - special.gammaln(theta) - special.gammaln(y + 1)
                        + theta * np.log(theta) + y * np.log(mu + (y == 0)) - (theta + y) * np.log(theta + mu)))


def theta_ml(y: np.ndarray, mu: np.ndarray, limit: int = 25, eps: float = np.finfo(float).eps ** 0.25) -> float:
    """MASS::theta.ml: Newton-Raphson for the negative binomial's size given the means."""
    n = len(y)
    t0 = n / np.sum((y / mu - 1) ** 2)
    it, delta = 0, 1.0
    while (it := it + 1) < limit and abs(delta) > eps:
        t0 = abs(t0)
        score = np.sum(special.digamma(t0 + y) - special.digamma(t0) + np.log(t0) + 1 - np.log(t0 + mu)
                       - (y + t0) / (mu + t0))
        info = np.sum(-special.polygamma(1, t0 + y) + special.polygamma(1, t0) - 1 / t0 + 2 / (mu + t0)
                      - (y + t0) / (mu + t0) ** 2)
        delta = score / info
        t0 = t0 + delta
    return max(float(t0), 0.0)


def _irls(y, X, theta: float | None, eta: np.ndarray, epsilon: float = 1e-8, maxit: int = 25) -> np.ndarray:
    """R's glm.fit for the log link: Poisson (theta None) or negative.binomial(theta); returns eta."""
    def deviance(mu):
        with np.errstate(divide="ignore", invalid="ignore"):
            if theta is None:
                return 2 * np.sum(np.where(y > 0, y * np.log(y / mu), 0.0) - (y - mu))
            return 2 * np.sum(y * np.log(np.maximum(1, y) / mu) - (y + theta) * np.log((y + theta) / (mu + theta)))

    mu = np.exp(eta)
    dev_old = deviance(mu)
    for _ in range(maxit):
        variance = mu if theta is None else mu + mu ** 2 / theta
        z = eta + (y - mu) / mu
        w = np.sqrt(mu ** 2 / variance)
        beta, *_ = np.linalg.lstsq(X * w[:, None], z * w, rcond=None)
        eta = X @ beta
        mu = np.exp(eta)
        dev = deviance(mu)
        if abs(dev - dev_old) / (abs(dev) + 0.1) < epsilon:
            break
        dev_old = dev
    return eta


def glm_nb(y: np.ndarray, X: np.ndarray, epsilon: float = 1e-8, maxit: int = 25) -> tuple[np.ndarray, float]:
    """MASS::glm.nb (log link): alternate IRLS at fixed theta and theta.ml, as R does, until the
    log-likelihood and theta settle. Returns (coefficients, theta)."""
    y = np.asarray(y, dtype=float)
    eta = _irls(y, X, None, np.log(y + 0.1), epsilon, maxit)  # poisson()$initialize: mu = y + 0.1
    mu = np.exp(eta)
    th = theta_ml(y, mu, limit=maxit)
    d1 = math.sqrt(2 * max(1, len(y) - X.shape[1]))
    d2 = delta = 1.0
    lm = _nb_loglik(th, mu, y)
    lm0 = lm + 2 * d1
    it = 0
    while (it := it + 1) <= maxit and abs(lm0 - lm) / d1 + abs(delta) / d2 > epsilon:
        eta = _irls(y, X, th, np.log(mu), epsilon, maxit)
        t0 = th
        th = theta_ml(y, mu, limit=maxit)  # R passes the previous fit's mu here
        mu = np.exp(eta)
        delta = t0 - th
        lm0, lm = lm, _nb_loglik(th, mu, y)
    beta, *_ = np.linalg.lstsq(X, eta, rcond=None)
    return beta, th


def harmonic_design(t: np.ndarray, s: int, trend: bool, freq: int) -> np.ndarray:
    """R's formula y ~ 1 [+ t] + sum_s cos(2 s pi / p t) + sin(2 s pi / p t)."""
    t = np.asarray(t, dtype=float)
    columns = [np.ones_like(t)] + ([t] if trend else [])
    for j in range(1, s + 1):
        columns += [np.cos(2 * j * np.pi / freq * t), np.sin(2 * j * np.pi / freq * t)]
    return np.column_stack(columns)


def estimate_mu0(observed: np.ndarray, first: int, last: int, control: GlrnbControl) -> tuple[np.ndarray, float, np.ndarray]:
    """R's estimateGLRNbHook: glm.nb on weeks 1..first-1 (R's t, 1-based), predicted for first..last.
    Returns (mu0 over the range, theta, coefficients)."""
    train_t = np.arange(1, first)
    X = harmonic_design(train_t, control.s, control.trend, control.freq)
    beta, theta = glm_nb(np.asarray(observed, dtype=float)[: first - 1], X)
    range_t = np.arange(first, last + 1)
    return np.exp(harmonic_design(range_t, control.s, control.trend, control.freq) @ beta), theta, beta


def algo_glrnb(observed: Sequence[float], control: GlrnbControl, range_: Sequence[int] | None = None,
               mu0: Sequence[float] | None = None) -> GlrnbResult:
    """R's algo.glrnb(disProg, control): `range_` are R's 1-based week numbers monitored (default
    all), `mu0` the in-control means over the range (None = glm.nb on the weeks before the range)."""
    observed = np.asarray(observed, dtype=float)
    range_ = np.arange(1, len(observed) + 1) if range_ is None else np.asarray(range_)
    model: dict = {}
    alpha = control.alpha
    if mu0 is None:
        mu0_arr, theta, beta = estimate_mu0(observed, int(range_[0]), int(range_[-1]), control)
        model = {"theta": theta, "coefficients": beta}
        if alpha is None:
            alpha = 1 / theta
    else:
        mu0_arr = np.asarray(mu0, dtype=float)
    if alpha is None:
        raise ValueError("alpha must be given with mu0")
    x = observed[range_ - 1]
    alarm, statistic, cases = glr_detector(x, mu0_arr, alpha, control)
    upperbound = cases if control.ret == "cases" else statistic
    return GlrnbResult(alarm=alarm, upperbound=upperbound, statistic=statistic, mu0=mu0_arr,
                       alpha=alpha, cases=cases if control.ret == "cases" else None, model=model)


def glrnb_series(observed: Sequence[float], mu0: Sequence[float], alpha: float | Sequence[float],
                 control: GlrnbControl, resume_from: int = 0,
                 chart_start: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The chart over a series with gaps: weeks without a count or mu0 (NaN) have no statistic (NaN,
    no alarm), and the chart restarts after each gap (a statistic accumulates evidence over
    consecutive weeks). Returns alarm, statistic and cases needed (NaN where not computed).

    Incremental use: with resume_from > 0 the weeks before it are the caller's (already computed, for
    the same input), and `chart_start` is the first week of the chart week resume_from belongs to
    (resume_from itself when a chart starts there); weeks before resume_from come back NaN / False."""
    x = np.asarray(observed, dtype=float)
    mu = np.asarray(mu0, dtype=float)
    a = np.broadcast_to(np.asarray(alpha, dtype=float), x.shape)
    usable = ~(np.isnan(x) | np.isnan(mu) | np.isnan(a)) & (mu > 0)
    alarm = np.zeros(len(x), dtype=bool)
    statistic = np.full(len(x), np.nan)
    cases = np.full(len(x), np.nan)
    i = resume_from if chart_start is None else min(chart_start, resume_from)
    while i < len(x):
        if not usable[i]:
            i += 1
            continue
        j = i
        while j < len(x) and usable[j]:
            j += 1
        known = max(0, resume_from - i)
        al, st, ca = glr_detector(x[i:j], mu[i:j], a[i:j], control, known=known)
        alarm[i:j], statistic[i:j], cases[i:j] = al, st, ca
        i = j
    alarm[:resume_from] = False
    return alarm, statistic, cases
