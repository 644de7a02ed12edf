"""Simulated weekly count series with outbreaks, in the style of Noufaily et al. (2013).

Baseline: negative binomial counts with mean
    mu(t) = exp(theta + beta * t + gamma1 * cos(2 pi t / 52) + gamma2 * sin(2 pi t / 52))
and variance phi * mu (phi = 1: Poisson). theta is set so that the mean over the series is `level`.

Outbreaks, one per series, starting at a random week of the monitored (last) year:
- "spread" (Noufaily): a number of extra cases drawn from Poisson(k * sd), sd the baseline standard
  deviation at the start week, spread over the following weeks by a log-normal (meanlog 0, sdlog 0.5)
  delay in weeks, so most cases fall in the first 1-3 weeks;
- "sustained": the mean is multiplied by `size` for `duration` weeks (how ewi synth injects its rises:
  +50 % absence, +100 % referral/contact counts, kept for 6-10 weeks).

Everything is drawn from numpy's default generator with a given seed: the same arguments give the
same series.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np

WEEKS_PER_YEAR = 52


@dataclass(frozen=True)
class Scenario:
    name: str
    level: float  # mean weekly count
    phi: float = 1.5  # variance / mean
    trend: float = 0.0  # beta, per week on the log scale
    seasonal: tuple[float, float] = (0.2, 0.1)  # gamma1, gamma2
    outbreak: str = "spread"  # spread | sustained
    k: tuple[float, ...] = (2.0, 3.0, 5.0)  # spread: outbreak size in baseline sds (drawn per series)
    size: tuple[float, ...] = (1.5, 2.0)  # sustained: multiplier (drawn per series)
    duration: tuple[int, int] = (6, 10)  # sustained: weeks (drawn per series, inclusive)
    indicator: str | None = None  # watched and tested as this indicator is (its window and alpha)


@dataclass
class SimulatedSeries:
    week_starts: list[date]
    observed: np.ndarray
    baseline_mean: np.ndarray
    outbreak: np.ndarray  # extra cases (spread) or extra mean (sustained) per week; > 0 = outbreak week
    outbreak_start: int
    outbreak_size: float


def _nb(rng: np.random.Generator, mu: np.ndarray, phi: float) -> np.ndarray:
    if phi <= 1:
        return rng.poisson(mu)
    size = mu / (phi - 1)
    return rng.negative_binomial(size, size / (size + mu))


def simulate_series(scenario: Scenario, seed: int, weeks: int = 156, monitored: int = 52,
                    first_week: date = date(2023, 1, 2)) -> SimulatedSeries:
    """One series of `weeks` weeks whose outbreak starts inside the last `monitored` weeks (leaving
    at least 4 weeks after its start)."""
    rng = np.random.default_rng(seed)
    t = np.arange(weeks)
    g1, g2 = scenario.seasonal
    shape = scenario.trend * t + g1 * np.cos(2 * np.pi * t / WEEKS_PER_YEAR) + g2 * np.sin(2 * np.pi * t / WEEKS_PER_YEAR)
    mu = scenario.level * np.exp(shape) / np.mean(np.exp(shape))
    start = int(rng.integers(weeks - monitored, weeks - 4))
    extra = np.zeros(weeks)
    if scenario.outbreak == "spread":
        size = float(rng.choice(scenario.k))
        sd = np.sqrt(scenario.phi * mu[start])
        cases = int(rng.poisson(size * sd))
        delays = np.floor(rng.lognormal(0.0, 0.5, cases)).astype(int)
        np.add.at(extra, np.clip(start + delays, 0, weeks - 1), 1)
        observed = _nb(rng, mu, scenario.phi) + extra
    else:
        size = float(rng.choice(scenario.size))
        duration = int(rng.integers(scenario.duration[0], scenario.duration[1] + 1))
        extra[start: start + duration] = mu[start: start + duration] * (size - 1)
        observed = _nb(rng, mu + extra, scenario.phi)
    return SimulatedSeries(
        week_starts=[first_week + timedelta(weeks=i) for i in range(weeks)],
        observed=observed.astype(float), baseline_mean=mu, outbreak=extra,
        outbreak_start=start, outbreak_size=size,
    )
