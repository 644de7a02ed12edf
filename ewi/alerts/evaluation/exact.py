"""What synth's counts are expected to be without rises, known exactly: the exact oracle's baseline (issue 18).

synth draws every count from person-level chances, so for a seed the expected count of each area x week x
indicator without rises is a sum over persons, computed here from synth's own population and rates
(synth.Population, synth._event_rates, synth._in_school, synth._ill_chance), not estimated from the data:

- referrals, contacts (youths with at least one event in the week): a person with Poisson(r) events
  counts with chance p = 1 - exp(-r), independently of everyone else, so the count is Poisson-binomial:
  mean sum(p), variance sum(p(1 - p)) (exact); the weeks are independent.
- chronic_absence, invalid_absence (pupils flagged over their trailing four weeks): each pupil's chance
  of being flagged in a week depends on the term weeks in the window (holiday weeks have no scheduled
  minutes) and on how many of them are winter weeks (more colds): it is estimated per pupil by drawing
  synth._school_week's weekly absence REPLICATES times (scheduled minutes taken as equal across the
  window's weeks, as synth._flag_probability does; they differ by a few per cent). Mean sum(p),
  variance sum(p(1 - p)) for one week; consecutive weeks share three of their four weeks, so a window
  sum's variance is larger than the sum of the weeks' (exact.py does not model that covariance; the
  oracle's threshold is calibrated on quiet data anyway, so it costs power only through how the
  statistic ranks areas, not the false-signal budget).

multi_signal (three sources over 12 weeks) is not derived: NaN there (the oracle cannot alert on it,
and synth injects no rises in it).
"""

from __future__ import annotations

from datetime import timedelta

import numpy as np

from ewi import synth
from ewi.alerts.series import INDICATORS
from ewi.school_calendar import is_school_holiday, iso_week_of, iso_weeks, week_start

REPLICATES = 400  # per pupil and window composition: the error of an area's expected count is ~1 %
COUNT_KINDS = ("referrals", "contacts")


def periods_of(weeks: int, end_week: str) -> list[str]:
    """The ISO weeks synth.generate writes for `weeks` ending with `end_week`."""
    last = week_start(end_week)
    return iso_weeks(iso_week_of(last - timedelta(weeks=weeks - 1)), end_week)


def _absence_chances(pop: synth.Population, pupils: np.ndarray, minutes: np.ndarray, winter: int, other: int,
                     rng: np.random.Generator, chunk: int = 1000) -> dict[str, np.ndarray]:
    """Each pupil's chance of each absence flag over a window of `winter` + `other` term weeks:
    the mean over those weeks of _school_week's measured share at or over the flag's threshold. The
    extracts hold whole minutes (floored): on average half a minute less of each kind of absence a
    week, i.e. a threshold higher by 0.5 / scheduled minutes per kind (`minutes`: the pupil's typical
    scheduled minutes)."""
    k = winter + other
    ill_chance = np.array([0.04] * winter + [0.025] * other)[None, :, None]  # synth._ill_chance's two values
    out = {ind: np.empty(len(pupils)) for ind in synth.ABSENCE_FLAG}
    for lo in range(0, len(pupils), chunk):
        who = pupils[lo:lo + chunk]
        shape = (REPLICATES, k, len(who))
        ill = (rng.random(shape) < ill_chance) * rng.choice(synth.ILL_DAYS, shape, p=synth.ILL_DAY_SHARES) / 5
        valid = pop.valid_rate[who] * rng.gamma(2.0, 0.5, shape) + ill
        invalid = pop.invalid_rate[who] * rng.gamma(1.5, 1 / 1.5, shape)
        total = valid + invalid
        scale = np.where(total > 1, 1 / np.maximum(total, 1e-9), 1.0)
        for indicator, threshold in synth.ABSENCE_FLAG.items():
            chronic = indicator == "chronic_absence"
            measured = (total if chronic else invalid) * scale
            floored = threshold + (1.0 if chronic else 0.5) / minutes[lo:lo + chunk]
            out[indicator][lo:lo + chunk] = (measured.mean(axis=1) >= floored).mean(axis=0)
    return out


def expected_counts(seed: int, weeks: int, end_week: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per indicator (mean, variance), each areas (synth's area order: sorted codes) x weeks, of the count
    synth draws for `seed` without rises; NaN where the indicator has no data (no term week in an
    absence window) or is not derived (multi_signal)."""
    periods = periods_of(weeks, end_week)
    areas = synth._areas()
    codes = list(areas["area_code"])
    index = {c: i for i, c in enumerate(codes)}
    pop = synth.Population(areas, periods, seed)
    n_areas, n_weeks = len(codes), len(periods)
    area_of = [np.array([index[a] for a in pop.area_at(w)]) for w in range(n_weeks)]
    out = {ind: (np.full((n_areas, n_weeks), np.nan), np.full((n_areas, n_weeks), np.nan)) for ind in INDICATORS}

    for kind in COUNT_KINDS:
        mean, var = out[kind]
        for w, period in enumerate(periods):
            p = -np.expm1(-synth._event_rates(pop, period, kind))
            mean[:, w] = np.bincount(area_of[w], p, n_areas)
            var[:, w] = np.bincount(area_of[w], p * (1 - p), n_areas)

    # Absence: the window's composition (winter term weeks, other term weeks) per week; chances per pupil
    # for each composition that occurs, from one random stream per composition (reproducible).
    term = [not is_school_holiday(p) for p in periods]
    winter = [synth._ill_chance(p) > 0.03 for p in periods]
    in_school = [synth._in_school(pop, p) for p in periods]
    ever = np.flatnonzero(np.any(in_school, axis=0))
    # Each pupil's typical scheduled minutes (synth._school_week's mean schedule by stage), over its school weeks.
    minutes, weeks_in = np.zeros(len(pop)), np.zeros(len(pop))
    for w, period in enumerate(periods):
        stage = synth._school_year_age(period, pop.birth_year)
        base = np.select([stage <= 9, stage <= 12, stage <= 15], [1180, 1340, 1480], 1590)
        scheduled = np.clip(base + pop.schedule_offset * (stage >= 16), 1100, 1700)
        minutes += np.where(in_school[w], scheduled, 0)
        weeks_in += in_school[w]
    minutes = minutes[ever] / weeks_in[ever]
    composition = {}
    for w in range(n_weeks):
        window = [j for j in range(max(0, w - synth.FLAG_WEEKS + 1), w + 1) if term[j]]
        composition[w] = (sum(winter[j] for j in window), sum(not winter[j] for j in window))
    chances = {c: _absence_chances(pop, ever, minutes, *c, np.random.default_rng([seed, 9, *c]))
               for c in sorted(set(composition.values())) if sum(c) > 0}
    position = np.full(len(pop), -1)
    position[ever] = np.arange(len(ever))
    for w in range(n_weeks):
        c = composition[w]
        if sum(c) == 0:
            continue
        pupils = np.flatnonzero(in_school[w])
        for indicator in synth.ABSENCE_FLAG:
            p = chances[c][indicator][position[pupils]]
            mean, var = out[indicator]
            mean[:, w] = np.bincount(area_of[w][pupils], p, n_areas)
            var[:, w] = np.bincount(area_of[w][pupils], p * (1 - p), n_areas)
    return out
