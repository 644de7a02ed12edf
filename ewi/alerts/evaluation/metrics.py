"""Detection metrics: false-positive rate, probability and delay of detection, new alerts."""

from __future__ import annotations

import math

import numpy as np


def detection_metrics(alerts: np.ndarray, outbreak: np.ndarray, starts: list[int]) -> dict:
    """alerts, outbreak: series x monitored-week booleans (outbreak = weeks affected by the outbreak);
    starts: the outbreak's first monitored week per series."""
    fp_weeks = ~outbreak
    fpr = float(alerts[fp_weeks].mean()) if fp_weeks.any() else math.nan
    delays, within1, within3 = [], 0, 0
    for i, start in enumerate(starts):
        hits = np.flatnonzero(alerts[i] & outbreak[i])
        hits = hits[hits >= start]
        if len(hits):
            delay = int(hits[0] - start)
            delays.append(delay)
            within1 += delay == 0
            within3 += delay <= 2
    n = len(starts)
    return {
        "fpr": fpr, "pod": len(delays) / n if n else math.nan, "pod_week1": within1 / n if n else math.nan,
        "pod_3weeks": within3 / n if n else math.nan,
        "median_delay": float(np.median(delays)) if delays else math.nan, "n": n,
    }


def calibrated_threshold(statistic: np.ndarray, outbreak: np.ndarray, fpr: float) -> float:
    """The C2 threshold whose false-positive rate on non-outbreak weeks is (at most) fpr."""
    values = np.sort(statistic[~outbreak])[::-1]
    allowed = int(math.floor(fpr * len(values)))
    if allowed >= len(values):
        return -np.inf
    return float(values[allowed]) if np.isfinite(values[allowed]) else float(values[values > -np.inf].min(initial=0))


def new_alerts(stack: np.ndarray) -> np.ndarray:
    """The first week of each run of consecutive alert weeks (series x weeks booleans)."""
    return stack & ~np.pad(stack, ((0, 0), (1, 0)))[:, :-1]
