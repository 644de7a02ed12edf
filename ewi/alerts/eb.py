"""Empirical-Bayes baselines: each area's expected level shrunk towards the municipality's.

Small areas' own histories are noisy: an area with one youth a week has seen ~100 in two years, so
its own rate is known to +-10 % at best and a chance quiet or busy spell moves its baseline. The
gamma-Poisson model borrows strength across the areas of one indicator:

    O_a ~ Poisson(theta_a * E_a),   theta_a ~ Gamma(mean m, variance v)

where O_a is the area's observed count over its history window, E_a what the municipality's rate
(without the area) would give its population over the same weeks, and theta_a its relative level.
Marshall's (1991) method-of-moments estimates of the prior across the areas,

    m = sum O / sum E,   s2 = sum E_a (O_a/E_a - m)^2 / sum E,   v = max(0, s2 - m / mean(E)),

give the posterior mean theta_a = m + C_a (O_a/E_a - m) with C_a = v / (v + m / E_a): an area with
much history (large E_a) keeps nearly its own rate, a small one is pulled towards m. This is R
DCluster's `empbaysmooth` (Marshall's global estimator) and the estimator of Bailey & Gatrell (1995,
ch. 7) used for the Scottish lip cancer data.

The detector (ewi.alerts.evaluation's `eb` method) compares a trailing window's count with
theta_a times the rest of the municipality's rate over the same weeks (which carries the season and
the school holidays without a seasonal model), scaled by the indicator's overdispersion.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Shrinkage:
    """Marshall's global empirical-Bayes estimates for a set of areas."""

    theta: np.ndarray  # posterior mean relative level per area
    raw: np.ndarray  # O / E (nan where E == 0)
    weight: np.ndarray  # C_a: the weight of the area's own rate (0 = fully the municipality's)
    prior_mean: float  # m
    prior_variance: float  # v (0: no between-area variation beyond Poisson noise)


def marshall(observed, expected) -> Shrinkage:
    """Marshall (1991) global method-of-moments empirical-Bayes rates of observed/expected counts."""
    o = np.asarray(observed, dtype=float)
    e = np.asarray(expected, dtype=float)
    ok = e > 0
    raw = np.full(len(o), np.nan)
    raw[ok] = o[ok] / e[ok]
    if not ok.any() or e[ok].sum() == 0:
        return Shrinkage(np.full(len(o), np.nan), raw, np.zeros(len(o)), float("nan"), 0.0)
    m = o[ok].sum() / e[ok].sum()
    s2 = (e[ok] * (raw[ok] - m) ** 2).sum() / e[ok].sum()
    v = max(0.0, s2 - m / e[ok].mean())
    weight = np.zeros(len(o))
    if v > 0:
        weight[ok] = v / (v + m / e[ok])
    theta = np.where(ok, m + weight * (np.nan_to_num(raw) - m), m)
    return Shrinkage(theta, raw, weight, float(m), float(v))


def window_sum(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing sums over `window` weeks along the last axis, NaN (no data) counted as 0; NaN where
    the window is incomplete (the first window - 1 weeks)."""
    v = np.nan_to_num(np.asarray(values, dtype=float))
    c = np.cumsum(np.pad(v, [(0, 0)] * (v.ndim - 1) + [(1, 0)]), axis=-1)
    out = c[..., window:] - c[..., :-window]
    pad = np.full(v.shape[:-1] + (window - 1,), np.nan)
    return np.concatenate([pad, out], axis=-1)


def eb_statistic(weekly: np.ndarray, population: np.ndarray, monitored: range, window: int,
                 history: int = 104, guard: int = 3, min_count: int = 5, shrink: bool = True) -> np.ndarray:
    """Per area x monitored week: (S - mu) / sqrt(phi * mu) for the trailing `window`-week count S,
    mu = theta_a * (the other areas' rate over the window) * the area's population over it; theta_a
    from the `history` weeks ending `guard` weeks before the window (shrunk with Marshall's estimator,
    or the area's own ratio with shrink=False); phi the indicator's Pearson overdispersion of the
    window counts over that history, pooled across areas (at least 1). -inf where S < min_count or
    there is no baseline.

    weekly, population: areas x weeks (NaN = no data that week; population NaN counts as 0)."""
    y = np.nan_to_num(np.asarray(weekly, dtype=float))
    has = np.isfinite(np.asarray(weekly, dtype=float))
    pop = np.where(has, np.nan_to_num(np.asarray(population, dtype=float)), 0.0)
    n_areas, _ = y.shape
    total_y, total_pop = y.sum(axis=0), pop.sum(axis=0)
    rest_rate = np.divide(total_y - y, total_pop - pop, out=np.zeros_like(y), where=(total_pop - pop) > 0)
    base = rest_rate * pop  # per area-week: what the rest of the municipality's rate gives the area
    s_obs, s_base = window_sum(y, window), window_sum(base, window)
    out = np.full((n_areas, len(monitored)), -np.inf)
    for j, t in enumerate(monitored):
        end = t - window + 1 - guard  # the history ends `guard` weeks before the window starts
        start = max(0, end - history)
        if end - start < 26:
            continue
        o, e = y[:, start:end].sum(axis=1), base[:, start:end].sum(axis=1)
        theta = marshall(o, e).theta if shrink else np.divide(o, e, out=np.full(n_areas, np.nan), where=e > 0)
        # Overdispersion of the window counts in the history, pooled over areas (own theta as baseline).
        hist_obs = s_obs[:, max(start, window - 1):end]
        hist_mu = theta[:, None] * s_base[:, max(start, window - 1):end]
        ok = np.isfinite(hist_obs) & (hist_mu > 0)
        phi = max(1.0, float(((hist_obs[ok] - hist_mu[ok]) ** 2 / hist_mu[ok]).sum() / max(1, ok.sum() - n_areas)))
        mu = theta * s_base[:, t]
        obs = s_obs[:, t]
        good = np.isfinite(obs) & np.isfinite(mu) & (mu > 0) & (obs >= min_count)
        out[good, j] = (obs[good] - mu[good]) / np.sqrt(phi * mu[good])
    return out
