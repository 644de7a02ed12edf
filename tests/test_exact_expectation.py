"""The exact oracle's baseline (ewi/alerts/evaluation/exact.py) against synth's own draws: the expected
count of every area equals the mean of many draws of the same synth population's weeks, and its
variance the draws' variance."""

from __future__ import annotations

import numpy as np
import pytest

from ewi import synth
from ewi.alerts.evaluation.exact import expected_counts, periods_of

SEED, WEEKS, END_WEEK = 31, 6, "2026-W47"  # weeks 42-47: term weeks around the autumn break (week 44)
DRAWS = 150


@pytest.fixture(scope="module")
def world():
    periods = periods_of(WEEKS, END_WEEK)
    areas = synth._areas()
    pop = synth.Population(areas, periods, SEED)
    return periods, list(areas["area_code"]), pop, expected_counts(SEED, WEEKS, END_WEEK)


def _per_area(codes, area_of_each):
    index = {c: i for i, c in enumerate(codes)}
    return np.bincount([index[a] for a in area_of_each], minlength=len(codes))


@pytest.mark.parametrize("kind", ["referrals", "contacts"])
def test_youths_with_an_event_expected_exactly(world, kind):
    periods, codes, pop, exact = world
    mean, var = exact[kind]
    w = WEEKS - 1
    draws = []
    for r in range(DRAWS):
        people, area = synth._events(pop, w, periods[w], kind, [], np.random.default_rng([r, 77]))
        youths = dict(zip(people, area, strict=True))  # a youth with two events counts once
        draws.append(_per_area(codes, list(youths.values())))
    draws = np.array(draws, dtype=float)
    # The municipality's total within 4 standard errors; every area's mean within 4 of its own.
    assert draws.sum(axis=1).mean() == pytest.approx(mean[:, w].sum(), abs=4 * np.sqrt(var[:, w].sum() / DRAWS))
    z = (draws.mean(axis=0) - mean[:, w]) / np.sqrt(var[:, w] / DRAWS)
    assert np.abs(z).max() < 4.5
    assert draws.var(axis=0).sum() == pytest.approx(var[:, w].sum(), rel=0.15)


def test_flagged_pupils_expected_within_a_percent(world):
    """Weeks 44-47 (the autumn break in week 44: three term weeks in the 4-week window) drawn as
    synth._school_week draws them, flags as SOURCES.md defines them over the trailing four weeks."""
    periods, codes, pop, exact = world
    w = WEEKS - 1
    window = range(w - synth.FLAG_WEEKS + 1, w + 1)
    assert synth.is_school_holiday(periods[2]) and not synth.is_school_holiday(periods[w])
    totals = {ind: [] for ind in synth.ABSENCE_FLAG}
    per_area = {ind: [] for ind in synth.ABSENCE_FLAG}
    for r in range(DRAWS // 3):
        frames = [synth._school_week(pop, j, periods[j], [], np.random.default_rng([r, 78, j])) for j in window]
        sums = sum(f.set_index("person_pseudonym")[["scheduled_minutes", "valid_absence_minutes",
                                                     "invalid_absence_minutes"]] for f in frames)
        last = frames[-1].set_index("person_pseudonym")
        sums = sums.loc[last.index]
        flags = {"chronic_absence": (sums["valid_absence_minutes"] + sums["invalid_absence_minutes"]
                                     >= 0.10 * sums["scheduled_minutes"]) & (sums["scheduled_minutes"] > 0),
                 "invalid_absence": (sums["invalid_absence_minutes"] >= 0.05 * sums["scheduled_minutes"])
                 & (sums["scheduled_minutes"] > 0)}
        for ind, flag in flags.items():
            counts = _per_area(codes, last.loc[flag.to_numpy(), "home_area_code"])
            per_area[ind].append(counts)
            totals[ind].append(counts.sum())
    for ind in synth.ABSENCE_FLAG:
        mean, var = exact[ind]
        total = mean[:, w].sum()
        assert np.mean(totals[ind]) == pytest.approx(total, rel=0.02), ind
        # Each area: within 4 standard errors of the draws' mean, allowing the chances' own Monte Carlo
        # error (REPLICATES draws per pupil) and the 1 % the equal-minutes approximation leaves.
        draws = np.array(per_area[ind], dtype=float)
        se = np.sqrt(var[:, w] / len(draws) + var[:, w] / 400 + (0.01 * mean[:, w]) ** 2)
        assert np.abs((draws.mean(axis=0) - mean[:, w]) / se).max() < 4.5, ind
        # The Poisson-binomial variance of one week's count: the draws' variance, within sampling error.
        assert draws.var(axis=0).sum() == pytest.approx(var[:, w].sum(), rel=0.25), ind


def test_no_data_where_no_term_week_and_no_multi_signal(world):
    periods, _, _, exact = world
    mean, _ = exact["chronic_absence"]
    assert np.isfinite(mean).all()  # every window here has a term week
    assert np.isnan(exact["multi_signal"][0]).all()
    assert exact["referrals"][0].shape == (len(world[1]), len(periods))
