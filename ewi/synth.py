"""Synthetic weekly extracts for all three sources, as the source systems would deliver them.

A synthetic Borlänge: about 6,000 pupils plus younger children and 19-20-year-olds, spread over
the area register in proportion to each area's 6-20 population. Every person has a latent
absence propensity and a latent risk of reports of concern and contacts, and the two are
correlated (a pupil with high invalid absence is much more likely to be referred and to meet
police or outreach workers), so the cross-source indicators have something to find.

Delivery habits (all allowed by ../shared/contracts/SOURCES.md), so the loader sees both dialects:

- school_absence: UTF-8, comma, LF; about a third of the weeks with a BOM; always a manifest.
- referrals: always Windows-1252, semicolon, CRLF (the case system's spreadsheet export); never a
  manifest.
- contacts: mostly UTF-8 with comma (half of them with a BOM), about a third of the weeks
  Windows-1252 with semicolon; CRLF; a manifest about every other week.
- Now and then a file has its columns in another order (an edited export template).

Area-level rises (the ground truth for evaluating the detection) are written to
`ground_truth.json` beside the extracts. A rise of size s multiplies the area's *own* expected level
of the indicator's measure by s (issue #5's definition: +50 % in an absence share, +100 % in a
4-week referral or contact count): absence rises add enough newly flagged pupils to the area's
expected number of flagged pupils (estimated from the pupils' latent absence, not the municipality's
share); referral and contact rises multiply the expected number of *youths with an event* (the
indicator counts youths, so the event rate is raised slightly more than s). Both measures are 4-week
quantities, so a rise reaches its full size once the 4-week window lies inside it (its 4th week);
ground_truth.json records that week, the area's baseline level and what was injected. A rise's
extra events are drawn from their own random stream on top of the week's draws, so the same seed
without rises is the exact counterfactual of everything outside the rise.

Nothing here resembles a personal identity number: ids are letters plus short digit groups, and
pseudonyms with a run of 10 or more decimal digits are re-drawn (real HMACs do contain such runs;
synthetic data must not even look like it holds one).

A tool, not part of the runtime: `ewi synth`, `make demo`, the tests, the benchmarks (ewi/bench/)
and the alert evaluation (ewi/alerts/evaluation/) use it; no runtime module may import it. It is
one generative model (population, delivery habits, rises, the week's rows), longer than 400 lines
because its parts share the population and the random streams; split, every part would take them
all as arguments.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from dataclasses import asdict, dataclass, field, replace
from datetime import date, datetime, time, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from ewi import config
from ewi.school_calendar import is_school_holiday, iso_week_of, iso_weeks, week_start
from ewi.sources import SOURCES, file_name_for

TARGET_PUPILS = 6000
SCHOOL_AGES = (6, 18)  # age (in the calendar year the school year starts) from förskoleklass to gymnasium year 3
FIRST_SCHOOL_YEAR_WEEK = 34  # weeks from 34 on belong to the school year starting that autumn
REFERRALS_PER_WEEK = 34.0
CONTACTS_PER_WEEK = 28.0
MOVER_SHARE = 0.03
INDICATORS = ("chronic_absence", "invalid_absence", "referrals", "contacts")
# SOURCES.md's absence flags: share of scheduled minutes over the trailing 4 weeks.
ABSENCE_FLAG = {"chronic_absence": 0.10, "invalid_absence": 0.05}
FLAG_WEEKS = 4
# Replicate 4-week windows per pupil when estimating an area's expected flagged share.
FLAG_REPLICATES = 64
#: Co-occurring rises (issue 18): a group forming in an area moves its youths' unexcused absence (and
#: with it their absence as a whole), reports of concern and police/outreach contacts over the same
#: weeks, each by less than its own indicator's alert finds reliably. Sizes as multiples of the
#: area's own level of the measure, as for single rises (`ewi synth --co-rises N`).
CO_RISE_SIZES = {"invalid_absence": 1.3, "referrals": 1.6, "contacts": 1.6}
ILL_DAYS = (1, 2, 3, 4, 5)
ILL_DAY_SHARES = (0.5, 0.25, 0.12, 0.07, 0.06)

# Skolenhetskoder are 8 digits. Made-up codes: nine F-9 schools, one per group of neighbouring
# areas, and three upper-secondary schools (gymnasier) that take pupils from everywhere.
PRIMARY_SCHOOLS = ("41735092", "52816370", "63927418", "74038526", "85149634", "96250742",
                   "27361850", "38472968", "49583076")
UPPER_SECONDARY_SCHOOLS = ("61470395", "72581403", "83692511")
UPPER_SECONDARY_SHARES = (0.5, 0.35, 0.15)
PRIMARY_LOCAL_SHARE = 0.88  # the rest choose another school (skolval)

REPORTERS = SOURCES["referrals"].column("reporter_category").allowed_values
CONCERNS = SOURCES["referrals"].column("concern_category").allowed_values
# Plausible mixes by age group: under 6, 6-12, 13-20. Order as in the contract's allowed values.
REPORTER_WEIGHTS = {
    "young": (0.06, 0.22, 0.24, 0.16, 0.14, 0.08, 0.10),
    "child": (0.28, 0.20, 0.10, 0.12, 0.12, 0.08, 0.10),
    "teen": (0.22, 0.34, 0.10, 0.12, 0.10, 0.05, 0.07),
}
CONCERN_WEIGHTS = {
    "young": (0.26, 0.02, 0.12, 0.00, 0.08, 0.42, 0.10),
    "child": (0.26, 0.06, 0.04, 0.10, 0.16, 0.28, 0.10),
    "teen": (0.18, 0.26, 0.14, 0.12, 0.16, 0.06, 0.08),
}
# (contact_type, agency) pairings that happen, with their shares.
CONTACT_PAIRS = (
    ("police_intervention", "police", 0.30),
    ("outreach_worker", "social_services", 0.22),
    ("outreach_worker", "leisure", 0.07),
    ("youth_centre", "leisure", 0.20),
    ("exit_programme", "social_services", 0.04),
    ("other", "school", 0.08),
    ("other", "social_services", 0.05),
    ("outreach_worker", "school", 0.04),
)
REFERRAL_WEEKDAY_WEIGHTS = (1.0, 1.0, 1.0, 1.0, 0.9, 0.1, 0.1)  # the case system registers on workdays
CONTACT_WEEKDAY_WEIGHTS = (0.8, 0.8, 0.9, 1.0, 1.3, 1.4, 0.8)  # Friday and Saturday nights


def _age_weights(bands: dict[tuple[int, int], float]) -> np.ndarray:
    weights = np.zeros(21)
    for (low, high), w in bands.items():
        weights[low : high + 1] = w
    return weights


# Reports of concern are about children; 18-20-year-olds are rare. Contacts peak in the late teens.
REFERRAL_AGE_WEIGHTS = _age_weights({(0, 5): 0.7, (6, 12): 0.8, (13, 17): 1.6, (18, 20): 0.15})
CONTACT_AGE_WEIGHTS = _age_weights({(6, 9): 0.05, (10, 12): 0.3, (13, 15): 1.0, (16, 17): 1.6, (18, 20): 1.2})

_DIGIT_RUN = re.compile(r"[0-9]{10}")


@dataclass(frozen=True)
class Rise:
    area_code: str
    indicator: str
    first_week: str
    size: float  # multiplier of the area's own expected level of `measure`
    duration_weeks: int
    # Filled in when the rise is injected (generate):
    measure: str = ""  # "share" (flagged pupils / pupils) or "4-week count" (youths with an event)
    baseline: float | None = None  # the area's expected level of the measure without the rise
    full_size_week: str = ""  # first week whose 4-week window lies inside the rise
    injected: dict | None = None  # how: pupils boosted (absence) or the event-rate multiplier (counts)

    @property
    def week_start(self) -> str:
        return week_start(self.first_week).isoformat()

    def as_dict(self) -> dict:
        return {**asdict(self), "week_start": self.week_start}


@dataclass(frozen=True)
class Dialect:
    encoding: str  # "utf-8", "utf-8-sig" (with BOM) or "cp1252"
    delimiter: str
    line_end: str


def _rng(seed: int, part: int) -> np.random.Generator:
    # One stream per part, so changing how one part draws does not reshuffle the others.
    return np.random.default_rng([seed, part])


def _pseudonym_key(seed: int) -> bytes:
    return hashlib.sha256(f"ewi-synth pseudonymisation key {seed}".encode()).digest()


def _pseudonyms(key: bytes, ids: list[str]) -> list[str]:
    out = []
    for ident in ids:
        digest = hmac.digest(key, ident.encode(), "sha256").hex()
        attempt = 0
        while _DIGIT_RUN.search(digest):
            attempt += 1
            digest = hmac.digest(key, f"{ident}#{attempt}".encode(), "sha256").hex()
        out.append(digest)
    return out


def last_complete_week(today: date | None = None) -> str:
    today = today or date.today()
    return iso_week_of(today - timedelta(days=today.weekday() + 1))


def _areas() -> pd.DataFrame:
    areas = pd.read_csv(config.AREAS_SEED, dtype={"area_code": str}).sort_values("area_code")
    areas["pop_6_20"] = areas[["pop_6_12", "pop_13_15", "pop_16_17", "pop_18_20"]].sum(axis=1)
    return areas.reset_index(drop=True)


class Population:
    """Everyone who can appear in an extract during the weeks, with their latent traits."""

    def __init__(self, areas: pd.DataFrame, periods: list[str], seed: int):
        area_codes = areas["area_code"].to_numpy(dtype=object)
        rng = _rng(seed, 1)
        first_year, last_year = int(periods[0][:4]), int(periods[-1][:4])
        n_areas = len(areas)
        # Per birth year and area, scaled so that 13 school cohorts make about TARGET_PUPILS.
        per_year_scale = TARGET_PUPILS / (SCHOOL_AGES[1] - SCHOOL_AGES[0] + 1) / areas["pop_6_20"].sum()
        youth_mean = areas["pop_6_20"].to_numpy() * per_year_scale
        young_mean = areas["pop_0_5"].to_numpy() / 6 * 15 * per_year_scale
        birth_years = np.arange(first_year - 20, last_year + 1)
        area_idx, birth_year = [], []
        for b in birth_years:
            means = young_mean if last_year - b < 6 else youth_mean
            counts = rng.poisson(means)
            area_idx.append(np.repeat(np.arange(n_areas), counts))
            birth_year.append(np.full(counts.sum(), b))
        self.area = np.concatenate(area_idx)
        self.birth_year = np.concatenate(birth_year)
        n = len(self.area)

        area_share = youth_mean / youth_mean.sum()
        self.move_week = np.full(n, len(periods))
        movers = rng.random(n) < MOVER_SHARE
        if len(periods) > 1:
            self.move_week[movers] = rng.integers(1, len(periods), movers.sum())
        new_area = rng.choice(n_areas, n, p=area_share)
        self.new_area = np.where(new_area == self.area, (new_area + 1) % n_areas, new_area)

        local = (np.arange(n_areas) * len(PRIMARY_SCHOOLS) // n_areas)[self.area]
        other = rng.integers(0, len(PRIMARY_SCHOOLS), n)
        self.primary_school = np.where(rng.random(n) < PRIMARY_LOCAL_SHARE, local, other)
        self.upper_school = rng.choice(len(UPPER_SECONDARY_SCHOOLS), n, p=UPPER_SECONDARY_SHARES)
        # Scheduled minutes differ by programme and class, not only by stage.
        self.schedule_offset = rng.normal(0, 40, n)

        # Areas differ in how vulnerable they are; the same factor lifts absence and referrals.
        area_risk = rng.lognormal(0, 0.35, n_areas)
        elevated_share = np.clip(0.09 * np.sqrt(area_risk), 0.04, 0.3)[self.area]
        self.elevated = rng.random(n) < elevated_share
        self.valid_rate = np.where(self.elevated, rng.beta(2.5, 16, n), rng.beta(1.2, 80, n))
        # Most truancy comes with high absence overall; a few otherwise ordinary pupils skip lessons.
        truant = self.elevated & (rng.random(n) < 0.6)
        skipper = ~self.elevated & (rng.random(n) < 0.02)
        self.invalid_rate = np.select([truant, skipper], [rng.beta(2.0, 20, n), rng.beta(2.0, 30, n)],
                                      rng.beta(0.4, 60, n))
        frailty = rng.gamma(0.4, 1 / 0.4, n)
        self.risk = frailty * area_risk[self.area] * (1 + 3 * self.elevated + 3 * truant)

        # From here on areas are their register codes, as they appear in the extracts.
        self.area, self.new_area = area_codes[self.area], area_codes[self.new_area]
        key = _pseudonym_key(seed)
        self.pseudonym = np.array(_pseudonyms(key, [f"person:{i}" for i in range(n)]), dtype=object)

    def __len__(self) -> int:
        return len(self.area)

    def area_at(self, week_index: int) -> np.ndarray:
        return np.where(week_index >= self.move_week, self.new_area, self.area)


def _choose_rises(areas: pd.DataFrame, periods: list[str], seed: int) -> list[Rise]:
    rng = _rng(seed, 2)
    n_weeks = len(periods)
    n_rises = int(rng.integers(3, 6))
    # Every indicator once (when there are four or more rises), then repeats.
    indicators = [*rng.permutation(INDICATORS), *rng.choice(INDICATORS, max(0, n_rises - 4))][:n_rises]
    # Larger areas, so that a rise is at least in principle detectable in small counts.
    weights = areas["pop_6_20"].to_numpy(dtype=float)
    chosen = rng.choice(len(areas), n_rises, replace=False, p=weights / weights.sum())
    holiday = np.array([is_school_holiday(p) for p in periods])
    rises = []
    for indicator, area in zip(indicators, chosen, strict=True):
        duration = int(min(rng.integers(6, 11), max(1, n_weeks // 2)))
        starts = _rise_starts([indicator], duration, periods, holiday)
        size = rng.choice([1.5, 1.75, 2.0]) if indicator in ABSENCE_FLAG else rng.choice([2.0, 2.5, 3.0])
        rises.append(
            Rise(
                area_code=str(areas["area_code"][area]),
                indicator=str(indicator),
                first_week=periods[int(rng.choice(starts))],
                size=float(size),
                duration_weeks=duration,
            )
        )
    return sorted(rises, key=lambda r: (r.first_week, r.area_code, r.indicator))


def _rise_starts(indicators, duration: int, periods: list[str], holiday: np.ndarray) -> np.ndarray:
    """Weeks a rise of `duration` may start in: in the last year, after enough weeks for a trailing
    baseline when the range allows it, and in term when it moves absence (which cannot rise while
    school is out)."""
    n_weeks = len(periods)
    earliest = max(0, min(4, n_weeks - duration), n_weeks - 52)
    starts = np.arange(earliest, n_weeks - duration + 1)
    if any(i in ABSENCE_FLAG for i in indicators):
        in_term = np.array([not holiday[s] and (~holiday[s : s + duration]).sum() >= duration - 1
                            for s in starts])
        if in_term.any():
            starts = starts[in_term]
    return starts


def _choose_co_rises(areas: pd.DataFrame, periods: list[str], seed: int, n: int, taken: set[str],
                     sizes: dict[str, float]) -> list[list[Rise]]:
    """`n` co-occurring rises: each a group of rises of `sizes`' indicators in one area over the same
    weeks. Drawn from a stream of their own (the single rises and the week's rows stay as they are
    without them), in areas without a single rise, so each rise in the ground truth is one cause."""
    if n <= 0:
        return []
    rng = _rng(seed, 9)
    free = np.flatnonzero(~areas["area_code"].astype(str).isin(taken).to_numpy())
    weights = areas["pop_6_20"].to_numpy(dtype=float)[free]
    chosen = free[rng.choice(len(free), min(n, len(free)), replace=False, p=weights / weights.sum())]
    holiday = np.array([is_school_holiday(p) for p in periods])
    groups = []
    for area in chosen:
        duration = int(min(rng.integers(6, 11), max(1, len(periods) // 2)))
        first = periods[int(rng.choice(_rise_starts(sizes, duration, periods, holiday)))]
        groups.append([Rise(area_code=str(areas["area_code"][area]), indicator=indicator, first_week=first,
                            size=float(size), duration_weeks=duration) for indicator, size in sizes.items()])
    return sorted(groups, key=lambda g: (g[0].first_week, g[0].area_code))


def _rise_weeks(rise: Rise, periods: list[str]) -> range:
    first = periods.index(rise.first_week)
    return range(first, min(first + rise.duration_weeks, len(periods)))


@dataclass
class _Injection:
    """A rise as the week builders apply it."""

    rise: Rise
    weeks: range
    boost: np.ndarray | None = None  # absence: extra absence rate per person (0 = not boosted)
    multiplier: dict[int, float] = field(default_factory=dict)  # counts: week index -> event-rate factor
    stream: tuple[int, ...] = ()  # counts: entropy of the rise's own draws of extra events


def _ill_chance(period: str) -> float:
    week_no = int(period[6:8])
    return 0.04 if week_no >= 45 or week_no <= 12 else 0.025  # more colds in winter


def _in_school(pop: Population, period: str) -> np.ndarray:
    stage_age = _school_year_age(period, pop.birth_year)
    return (stage_age >= SCHOOL_AGES[0]) & (stage_age <= SCHOOL_AGES[1])


def _flag_probability(pop: Population, pupils: np.ndarray, indicator: str, period: str,
                      rng: np.random.Generator) -> np.ndarray:
    """Each pupil's chance of being flagged over a 4-week term window without a rise: _school_week's
    weekly draws repeated FLAG_REPLICATES times (scheduled minutes taken as equal across the weeks,
    which they are to within a few per cent)."""
    shape = (FLAG_REPLICATES, FLAG_WEEKS, len(pupils))
    ill = (rng.random(shape) < _ill_chance(period)) * rng.choice(ILL_DAYS, shape, p=ILL_DAY_SHARES) / 5
    valid = pop.valid_rate[pupils] * rng.gamma(2.0, 0.5, shape) + ill
    invalid = pop.invalid_rate[pupils] * rng.gamma(1.5, 1 / 1.5, shape)
    total = valid + invalid
    scale = np.where(total > 1, 1 / np.maximum(total, 1e-9), 1.0)
    measured = (total if indicator == "chronic_absence" else invalid) * scale
    return (measured.mean(axis=1) >= ABSENCE_FLAG[indicator]).mean(axis=0)


def _absence_injection(pop: Population, rise: Rise, weeks: range, periods: list[str],
                       pick_rng: np.random.Generator, flag_rng: np.random.Generator) -> _Injection:
    """Boost the absence of enough non-elevated pupils of the area that its expected number of
    flagged pupils is multiplied by rise.size. A boosted pupil's 4-week absence ends up above the
    flag's threshold (the boosts alone exceed it), so each adds one flag unless already flagged."""
    first = periods[weeks.start]
    pupils = np.flatnonzero(_in_school(pop, first) & (pop.area_at(weeks.start) == rise.area_code))
    p = _flag_probability(pop, pupils, rise.indicator, first, flag_rng)
    target = (rise.size - 1) * p.sum()
    order = pick_rng.permutation(len(pupils))
    order = order[~pop.elevated[pupils[order]]]
    gained = np.cumsum(1 - p[order])
    # The number of pupils whose expected extra flags come closest to the target.
    k = int(np.argmin(np.abs(np.concatenate([[0.0], gained]) - target)))
    picked = pupils[order[:k]]
    low, high = (0.12, 0.25) if rise.indicator == "chronic_absence" else (0.07, 0.15)
    boost = np.zeros(len(pop))
    boost[picked] = pick_rng.uniform(low, high, k)
    added = float(gained[k - 1]) if k else 0.0
    rise = replace(rise, measure="share", baseline=round(float(p.mean()), 4),
                   injected={"pupils_boosted": k, "expected_added_flags": round(added, 2),
                             "expected_flags_without": round(float(p.sum()), 2)})
    return _Injection(rise, weeks, boost=boost)


def _distinct_multiplier(rate: np.ndarray, size: float) -> float:
    """The event-rate factor m that multiplies the expected number of people with at least one
    (Poisson) event by `size`: sum(1 - exp(-m r)) = size * sum(1 - exp(-r)). Slightly above size,
    because a youth with two events in a week counts once."""
    goal = size * -np.expm1(-rate).sum()
    low, high = size, 4 * size
    for _ in range(60):
        mid = (low + high) / 2
        low, high = (mid, high) if -np.expm1(-mid * rate).sum() < goal else (low, mid)
    return (low + high) / 2


def _count_injection(pop: Population, rise: Rise, weeks: range, periods: list[str],
                     stream: tuple[int, ...]) -> _Injection:
    """Per rise week the event-rate factor that multiplies the area's expected youths with an event
    by rise.size; the baseline is the expected 4-week count of those youths at the rise's start."""
    multiplier, expected = {}, []
    for w in weeks:
        rate = _event_rates(pop, periods[w], rise.indicator)
        in_area = pop.area_at(w) == rise.area_code
        multiplier[w] = _distinct_multiplier(rate[in_area], rise.size)
        expected.append(float(-np.expm1(-rate[in_area]).sum()))
    rise = replace(rise, measure="4-week count", baseline=round(sum(expected[:FLAG_WEEKS]), 2),
                   injected={"rate_multiplier": round(float(np.mean(list(multiplier.values()))), 3)})
    return _Injection(rise, weeks, multiplier=multiplier, stream=stream)


def _inject(pop: Population, rises: list[Rise], periods: list[str], seed: int,
            streams: tuple[int, int, int] = (4, 7, 8)) -> list[_Injection]:
    """The rises as the week builders apply them; `streams` number the random streams that pick the
    boosted pupils, estimate their flags and draw extra events (co-occurring rises use their own)."""
    pick_rng, flag_rng = _rng(seed, streams[0]), _rng(seed, streams[1])
    out = []
    for number, rise in enumerate(rises):
        weeks = _rise_weeks(rise, periods)
        full = weeks.start + FLAG_WEEKS - 1
        rise = replace(rise, full_size_week=periods[full] if full < len(periods) else "")
        if rise.indicator in ABSENCE_FLAG:
            out.append(_absence_injection(pop, rise, weeks, periods, pick_rng, flag_rng))
        else:
            out.append(_count_injection(pop, rise, weeks, periods, (seed, streams[2], number)))
    return out


def _write_extract(out: Path, source: str, period: str, delivered: datetime, frame: pd.DataFrame,
                   dialect: Dialect, columns: list[str], manifest: bool) -> tuple[str, bool]:
    text = frame[columns].to_csv(index=False, sep=dialect.delimiter, lineterminator=dialect.line_end)
    data = text.encode(dialect.encoding)
    name = file_name_for(source, period, delivered)
    (out / name).write_bytes(data)
    if manifest:
        sidecar = {"source": source, "period": period, "row_count": len(frame),
                   "sha256": hashlib.sha256(data).hexdigest()}
        (out / f"{name}.manifest.json").write_text(json.dumps(sidecar, indent=2) + "\n", encoding="utf-8")
    return name, manifest


def _delivery_habits(seed: int, periods: list[str]) -> dict[str, list[tuple[Dialect, bool, bool, int]]]:
    """Per source and week: dialect, shuffled columns?, manifest?, delivery minute past 06:00."""
    rng = _rng(seed, 3)
    n = len(periods)
    habits = {}
    for source in SOURCES:
        bom, semicolon, shuffled, manifest = rng.random((4, n))
        minutes = rng.integers(0, 31, n)
        rows = []
        for i in range(n):
            if source == "school_absence":
                dialect = Dialect("utf-8-sig" if bom[i] < 0.3 else "utf-8", ",", "\n")
                with_manifest = True
            elif source == "referrals":
                dialect = Dialect("cp1252", ";", "\r\n")
                with_manifest = False
            elif semicolon[i] < 0.35:
                dialect = Dialect("cp1252", ";", "\r\n")
                with_manifest = manifest[i] < 0.5
            else:
                dialect = Dialect("utf-8-sig" if bom[i] < 0.5 else "utf-8", ",", "\r\n")
                with_manifest = manifest[i] < 0.5
            rows.append((dialect, bool(shuffled[i] < 0.1), bool(with_manifest), int(minutes[i])))
        habits[source] = rows
    return habits


def _column_order(source: str, shuffled: bool, rng: np.random.Generator) -> list[str]:
    columns = list(SOURCES[source].column_names)
    return [columns[i] for i in rng.permutation(len(columns))] if shuffled else columns


def _school_year_age(period: str, birth_year: np.ndarray) -> np.ndarray:
    year, week = int(period[:4]), int(period[6:8])
    school_year = year if week >= FIRST_SCHOOL_YEAR_WEEK else year - 1
    return school_year - birth_year


def _school_week(pop: Population, w: int, period: str, rises: list[_Injection],
                 rng: np.random.Generator) -> pd.DataFrame:
    stage_age = _school_year_age(period, pop.birth_year)
    pupils = np.flatnonzero((stage_age >= SCHOOL_AGES[0]) & (stage_age <= SCHOOL_AGES[1]))
    stage_age = stage_age[pupils]
    n = len(pupils)
    upper = stage_age >= 16
    school = np.where(upper, np.array(UPPER_SECONDARY_SCHOOLS)[pop.upper_school[pupils]],
                      np.array(PRIMARY_SCHOOLS)[pop.primary_school[pupils]])
    area = pop.area_at(w)[pupils]

    base_minutes = np.select([stage_age <= 9, stage_age <= 12, stage_age <= 15], [1180, 1340, 1480], 1590)
    scheduled = base_minutes + pop.schedule_offset[pupils] * upper + rng.normal(0, 30, n)
    scheduled = (np.clip(scheduled, 1100, 1700) // 5 * 5).astype(int)
    # Draw everything even in holiday weeks, so a week's numbers do not depend on earlier holidays.
    ill = (rng.random(n) < _ill_chance(period)) * rng.choice(ILL_DAYS, n, p=ILL_DAY_SHARES) / 5
    valid = pop.valid_rate[pupils] * rng.gamma(2.0, 0.5, n) + ill
    invalid = pop.invalid_rate[pupils] * rng.gamma(1.5, 1 / 1.5, n)
    for injection in rises:
        if w in injection.weeks and injection.boost is not None:
            boost = injection.boost[pupils] * (area == injection.rise.area_code)
            if injection.rise.indicator == "chronic_absence":
                valid = valid + boost * 0.6
                invalid = invalid + boost * 0.4
            else:
                invalid = invalid + boost
    total = valid + invalid
    scale = np.where(total > 1, 1 / np.maximum(total, 1e-9), 1.0)
    if is_school_holiday(period):
        scheduled = np.zeros(n, dtype=int)
    valid_minutes = np.floor(scheduled * valid * scale).astype(int)
    invalid_minutes = np.floor(scheduled * invalid * scale).astype(int)

    frame = pd.DataFrame(
        {
            "person_pseudonym": pop.pseudonym[pupils],
            "iso_week": period,
            "school_unit_code": school,
            "home_area_code": area,
            "birth_year": pop.birth_year[pupils],
            "scheduled_minutes": scheduled,
            "valid_absence_minutes": valid_minutes,
            "invalid_absence_minutes": invalid_minutes,
        }
    )
    return frame.sort_values(["school_unit_code", "person_pseudonym"], ignore_index=True)


def _event_rates(pop: Population, period: str, kind: str) -> np.ndarray:
    """Each person's expected number of referrals (or contacts) in the week, without rises."""
    if kind == "referrals":
        expected = REFERRALS_PER_WEEK * (0.7 if is_school_holiday(period) else 1.0)
        age_weights = REFERRAL_AGE_WEIGHTS
    else:
        summer = 25 <= int(period[6:8]) <= 33
        expected, age_weights = CONTACTS_PER_WEEK * (1.15 if summer else 1.0), CONTACT_AGE_WEIGHTS
    age = int(period[:4]) - pop.birth_year
    weight = np.where((age >= 0) & (age <= 20), age_weights[np.clip(age, 0, 20)], 0.0) * pop.risk
    return weight * expected / weight.sum()


def _events(pop: Population, w: int, period: str, kind: str, rises: list[_Injection],
            rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Who has a referral (or contact) this week, one entry per event, and their home area."""
    rate = _event_rates(pop, period, kind)
    area = pop.area_at(w)
    counts = rng.poisson(rate)
    for injection in rises:
        if w in injection.weeks and injection.rise.indicator == kind:
            # The rise's extra events come from its own stream: the week's other draws stay as without it.
            extra_rate = np.where(area == injection.rise.area_code, rate * (injection.multiplier[w] - 1), 0.0)
            counts = counts + np.random.default_rng([*injection.stream, w]).poisson(extra_rate)
    people = np.repeat(np.arange(len(pop)), counts)
    return people, area[people]


def _dates(period: str, n: int, weekday_weights: tuple[float, ...], rng: np.random.Generator) -> np.ndarray:
    p = np.array(weekday_weights) / sum(weekday_weights)
    start = week_start(period)
    days = np.array([(start + timedelta(days=i)).isoformat() for i in range(7)], dtype=object)
    return days[rng.choice(7, n, p=p)]


def _age_group(age: np.ndarray) -> np.ndarray:
    return np.select([age < 6, age < 13], ["young", "child"], "teen")


def _referral_week(pop: Population, w: int, period: str, rises, rng) -> pd.DataFrame:
    people, area = _events(pop, w, period, "referrals", rises, rng)
    n = len(people)
    group = _age_group(int(period[:4]) - pop.birth_year[people])
    reporter = np.empty(n, dtype=object)
    concern = np.empty(n, dtype=object)
    for name in ("young", "child", "teen"):
        rows = group == name
        reporter[rows] = np.array(REPORTERS, dtype=object)[
            rng.choice(len(REPORTERS), rows.sum(), p=_normalised(REPORTER_WEIGHTS[name]))]
        concern[rows] = np.array(CONCERNS, dtype=object)[
            rng.choice(len(CONCERNS), rows.sum(), p=_normalised(CONCERN_WEIGHTS[name]))]
    frame = pd.DataFrame(
        {
            "person_pseudonym": pop.pseudonym[people],
            "received_date": _dates(period, n, REFERRAL_WEEKDAY_WEIGHTS, rng),
            "home_area_code": area,
            "birth_year": pop.birth_year[people],
            "reporter_category": reporter,
            "concern_category": concern,
        }
    )
    frame = frame.sort_values("received_date", kind="stable", ignore_index=True)
    frame.insert(0, "referral_id", [f"R{period[:4]}W{period[6:]}-{i + 1:04d}" for i in range(n)])
    return frame


def _contact_week(pop: Population, w: int, period: str, rises, rng) -> pd.DataFrame:
    people, area = _events(pop, w, period, "contacts", rises, rng)
    n = len(people)
    shares = _normalised(tuple(p[2] for p in CONTACT_PAIRS))
    pair = rng.choice(len(CONTACT_PAIRS), n, p=shares)
    frame = pd.DataFrame(
        {
            "person_pseudonym": pop.pseudonym[people],
            "contact_date": _dates(period, n, CONTACT_WEEKDAY_WEIGHTS, rng),
            "home_area_code": area,
            "birth_year": pop.birth_year[people],
            "contact_type": np.array([p[0] for p in CONTACT_PAIRS], dtype=object)[pair],
            "agency": np.array([p[1] for p in CONTACT_PAIRS], dtype=object)[pair],
        }
    )
    frame = frame.sort_values("contact_date", kind="stable", ignore_index=True)
    frame.insert(0, "contact_id", [f"C{period[:4]}W{period[6:]}-{i + 1:04d}" for i in range(n)])
    return frame


def _normalised(weights: tuple[float, ...]) -> np.ndarray:
    p = np.array(weights, dtype=float)
    return p / p.sum()


def _delivered(period: str, minute: int) -> datetime:
    # Extracts run over the weekend and land on the Monday after the week, shortly after six.
    return datetime.combine(week_start(period) + timedelta(days=7), time(6, minute))


def generate(out: Path, weeks: int = 104, end_week: str | None = None, seed: int = 1,
             rises: bool = True, co_rises: int = 0, co_sizes: dict[str, float] | None = None) -> dict:
    """Write `weeks` weekly extracts per source ending with `end_week` into `out`; see the module doc.
    `co_rises`: that many co-occurring rises (CO_RISE_SIZES, or `co_sizes`) besides the single ones,
    recorded in ground_truth.json's "co_rises"."""
    if weeks < 1:
        raise ValueError("weeks must be at least 1")
    end_week = end_week or last_complete_week()
    last = week_start(end_week)
    periods = iso_weeks(iso_week_of(last - timedelta(weeks=weeks - 1)), end_week)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)

    areas = _areas()
    pop = Population(areas, periods, seed)

    active = _inject(pop, _choose_rises(areas, periods, seed), periods, seed) if rises else []
    injected = [a.rise for a in active]
    groups = _choose_co_rises(areas, periods, seed, co_rises, {r.area_code for r in injected},
                              dict(co_sizes or CO_RISE_SIZES))
    co_active = _inject(pop, [r for g in groups for r in g], periods, seed, streams=(10, 11, 12))
    active = active + co_active
    co_truth = []
    for number, group in enumerate(groups):
        parts = [a.rise.as_dict() for a in co_active if a.rise.area_code == group[0].area_code
                 and a.rise.first_week == group[0].first_week]
        co_truth.append({"group": f"co-{number + 1}", "area_code": group[0].area_code,
                         "first_week": group[0].first_week, "week_start": group[0].week_start,
                         "duration_weeks": group[0].duration_weeks, "components": parts})

    habits = _delivery_habits(seed, periods)
    order_rng = _rng(seed, 5)
    builders = {"school_absence": _school_week, "referrals": _referral_week, "contacts": _contact_week}
    rows = dict.fromkeys(SOURCES, 0)
    files = dict.fromkeys(SOURCES, 0)
    manifests = 0
    for w, period in enumerate(periods):
        for part, (source, build) in enumerate(builders.items()):
            frame = build(pop, w, period, active, _rng(seed, 100 + 3 * w + part))
            dialect, shuffled, with_manifest, minute = habits[source][w]
            columns = _column_order(source, shuffled, order_rng)
            _write_extract(out, source, period, _delivered(period, minute), frame, dialect, columns, with_manifest)
            rows[source] += len(frame)
            files[source] += 1
            manifests += with_manifest

    truth = {"seed": seed, "weeks": [periods[0], periods[-1]], "rises": [r.as_dict() for r in injected],
             "co_rises": co_truth}
    (out / "ground_truth.json").write_text(json.dumps(truth, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return {
        "out": str(out),
        "seed": seed,
        "weeks": [periods[0], periods[-1]],
        "files": files,
        "manifests": manifests,
        "rows": rows,
        "persons": len(pop),
        "rises": len(injected),
        "co_rises": len(co_truth),
        "ground_truth": "ground_truth.json",
    }


def write_school_absence_week(path: Path, rows: int, period: str, seed: int, chunk_rows: int = 100_000) -> Path:
    """One contract-valid school_absence file with exactly `rows` pupils, streamed in chunks.

    `path` is either a directory (the file gets its contract name, delivered the Monday after) or
    the file to write. A manifest is written beside it. Meant for ingest benchmarks at national scale.
    """
    path = Path(path)
    if path.is_dir():
        path = path / file_name_for("school_absence", period, _delivered(period, 0))
    rng = _rng(seed, 6)
    areas = _areas()
    area_codes = areas["area_code"].to_numpy(dtype=object)
    area_share = _normalised(tuple(areas["pop_6_20"]))
    schools = np.array([f"{c}" for c in 10_000_000 + rng.choice(90_000_000, 5000, replace=False)], dtype=object)
    holiday = is_school_holiday(period)
    year = int(period[:4])
    key = _pseudonym_key(seed)
    digest = hashlib.sha256()
    columns = list(SOURCES["school_absence"].column_names)
    with path.open("wb") as f:
        header = (",".join(columns) + "\n").encode()
        f.write(header)
        digest.update(header)
        for start in range(0, rows, chunk_rows):
            n = min(chunk_rows, rows - start)
            age = rng.integers(7, 19, n)
            scheduled = np.zeros(n, dtype=int) if holiday else (rng.integers(220, 341, n) * 5)
            absent = np.minimum(rng.beta(1.2, 20, n), 1.0)
            invalid_part = rng.beta(0.5, 4, n)
            valid = np.floor(scheduled * absent * (1 - invalid_part)).astype(int)
            invalid = np.floor(scheduled * absent * invalid_part).astype(int)
            frame = pd.DataFrame(
                {
                    "person_pseudonym": _pseudonyms(key, [f"bench:{i}" for i in range(start, start + n)]),
                    "iso_week": period,
                    "school_unit_code": schools[rng.integers(0, len(schools), n)],
                    "home_area_code": area_codes[rng.choice(len(area_codes), n, p=area_share)],
                    "birth_year": year - age,
                    "scheduled_minutes": scheduled,
                    "valid_absence_minutes": valid,
                    "invalid_absence_minutes": invalid,
                }
            )
            data = frame.to_csv(index=False, header=False, lineterminator="\n").encode()
            f.write(data)
            digest.update(data)
    sidecar = {"source": "school_absence", "period": period, "row_count": rows, "sha256": digest.hexdigest()}
    Path(f"{path}.manifest.json").write_text(json.dumps(sidecar, indent=2) + "\n", encoding="utf-8")
    return path


__all__ = ["Rise", "generate", "last_complete_week", "write_school_absence_week"]
