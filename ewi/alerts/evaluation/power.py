"""What is possible at all: a known-baseline bound for the count indicators (referrals, contacts):
the most any rule on trailing sums could find within three weeks at the false-alert budget if it
knew each area's level exactly."""

from __future__ import annotations

import numpy as np

from ewi.alerts.series import trailing_sum

POWER_LEVELS = (0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 8.0)
POWER_SIZES = (2.0, 2.5, 3.0)
POWER_WINDOWS = (1, 2, 3, 4, 6)
COUNT_SERIES = 48  # 24 areas x (referrals, contacts)


def known_baseline_detection(level: float, size: float, budget: float, min_count: int = 5,
                             baseline_weeks: int = 200_000, reps: int = 20_000) -> tuple[float, int, int]:
    """(share found within three weeks, window, threshold): the best any rule on trailing n-week sums
    can do for a rise from `level` to `size` x `level` youths a week (Poisson), knowing the level
    exactly, with at most `budget` new false alerts per series-week and no alert below min_count.
    An upper bound for Farrington, which has to estimate the level from about 70 earlier weeks."""
    rng = np.random.default_rng([round(level * 1000), round(size * 100)])
    base = rng.poisson(level, baseline_weeks)
    best = (0.0, 0, 0)
    for n in POWER_WINDOWS:
        sums = trailing_sum(base, n)[n - 1:]  # whole windows only
        threshold = None
        for c in range(int(sums.max()) + 1, min_count - 1, -1):
            alarm = sums >= c
            if (alarm[1:] & ~alarm[:-1]).mean() > budget:
                break
            threshold = c
        if threshold is None:
            continue
        # n - 1 weeks before the rise in the first window, then the rise's first three weeks.
        weekly = np.concatenate([rng.poisson(level, (reps, n - 1)), rng.poisson(level * size, (reps, 3))], axis=1)
        found = np.zeros(reps, dtype=bool)
        for t in range(3):
            found |= weekly[:, t:t + n].sum(axis=1) >= threshold
        best = max(best, (float(found.mean()), n, threshold))
    return best


def power_analysis(rises: list[dict], false_alerts_per_4_weeks: float = 1.0, min_count: int = 5) -> dict:
    """The bound above on a grid of levels and for every referral and contact rise of the evaluation
    (its area's own baseline from ground_truth.json), with the whole municipality's false-alert budget
    given to the 48 referral and contact series."""
    budget = false_alerts_per_4_weeks / (4 * COUNT_SERIES)
    grid = [{"level": level, "size": size, **dict(zip(("found", "window", "threshold"),
                                                      known_baseline_detection(level, size, budget, min_count),
                                                      strict=True))}
            for level in POWER_LEVELS for size in POWER_SIZES]
    per_rise = []
    for rise in rises:
        if rise["indicator"] in ("referrals", "contacts") and rise.get("baseline"):
            level = float(rise["baseline"]) / 4
            found, _, _ = known_baseline_detection(level, float(rise["size"]), budget, min_count)
            per_rise.append({"indicator": rise["indicator"], "level": level, "size": rise["size"], "bound": found})
    return {"budget": budget, "grid": grid, "rises": per_rise}
