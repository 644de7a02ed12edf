"""EARS C1, C2 and C3 (CDC's Early Aberration Reporting System) on one weekly series, in Python.

The warehouse computes these in SQL (dbt_project/models/intermediate/alert_ears.sql); this is the
reference the SQL is tested against and what the evaluation (ewi.alerts.evaluation) runs.

- C1: baseline = weeks t-7..t-1; statistic (y_t - mean) / max(sd, min_sigma).
- C2: the same with baseline t-9..t-3 (a two-week guard band, so a rise does not lift its own
  baseline in its first weeks).
- C3: sum over t, t-1, t-2 of max(0, C2_statistic - 1); weeks without a C2 statistic count 0.

C1 and C2 alert when the statistic exceeds z, C3 when it exceeds c3_threshold; none alerts when the
observed count is below min_count (as Farrington's "5 cases in 4 weeks"). The baseline's mean and
(sample) sd use the weeks with data in the window, and need at least `min_baseline` of them (R's
earsC refuses a baseline shorter than 3). `score` is the statistic divided by its threshold, so that
score > 1 means an alert for every method. `upper` is the count above which the week alerts
(for C3 given the two previous weeks).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

METHODS = ("ears_c1", "ears_c2", "ears_c3")


@dataclass(frozen=True)
class EarsControl:
    baseline: int = 7
    z: float = 3.0
    min_sigma: float = 1.0
    c3_threshold: float = 2.0
    min_count: int = 5
    min_baseline: int = 3

    @classmethod
    def from_dict(cls, values: dict) -> EarsControl:
        return cls(**{k: v for k, v in values.items() if k in cls.__dataclass_fields__})


@dataclass(frozen=True)
class EarsWeek:
    observed: float | None
    expected: float | None
    sd: float | None
    upper: float | None
    statistic: float | None
    score: float | None
    is_alert: bool


def _baseline(values: Sequence[float | None], t: int, lag: int, length: int, min_baseline: int):
    window = [v for v in values[max(0, t - lag - length + 1): max(0, t - lag + 1)] if v is not None]
    if t - lag < 0 or len(window) < max(min_baseline, 2):
        return None, None
    mean = sum(window) / len(window)
    sd = math.sqrt(sum((v - mean) ** 2 for v in window) / (len(window) - 1))
    return mean, sd


def _clean(values: Sequence[float | None]) -> list[float | None]:
    return [None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v) for v in values]


def ears(values: Sequence[float | None], method: str, control: EarsControl | None = None) -> list[EarsWeek]:
    """EARS `method` ("ears_c1", "ears_c2" or "ears_c3") for every week of a consecutive weekly series
    (None or NaN = no data that week)."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}")
    c = control or EarsControl()
    values = _clean(values)
    lag = 1 if method == "ears_c1" else 3
    stats: list[tuple[float | None, float | None, float | None]] = []
    for t, y in enumerate(values):
        mean, sd = _baseline(values, t, lag, c.baseline, c.min_baseline)
        if mean is None or y is None:
            stats.append((mean, None if sd is None else max(sd, c.min_sigma), None))
        else:
            sigma = max(sd, c.min_sigma)
            stats.append((mean, sigma, (y - mean) / sigma))
    out = []
    for t, y in enumerate(values):
        mean, sigma, stat = stats[t]
        if method == "ears_c3":
            previous = sum(max(0.0, s[2] - 1) for s in stats[max(0, t - 2): t] if s[2] is not None)
            statistic = None if stat is None else max(0.0, stat - 1) + previous
            threshold = c.c3_threshold
            upper = None if sigma is None else mean + sigma * (1 + c.c3_threshold - previous)
        else:
            statistic = stat
            threshold = c.z
            upper = None if sigma is None else mean + c.z * sigma
        is_alert = bool(statistic is not None and statistic > threshold and y >= c.min_count)
        out.append(EarsWeek(y, mean, sigma, upper, statistic,
                            None if statistic is None else statistic / threshold, is_alert))
    return out
