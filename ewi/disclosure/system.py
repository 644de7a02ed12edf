"""Every published figure that is linear in the weekly cells, as a linear system over the suppressed
cells (what a reader of `published` can set up to narrow them down).

A cell is one count of area_weekly_indicators or municipality_weekly: ("area", area, indicator,
week, "numerator" | "denominator") or ("municipality", indicator, week, ...). A published cell is a
known number; a suppressed one is an unknown >= 0. Figures and the relations they publish:

- a cell's rate, rounded to 2 decimals: k * numerator / denominator in [rate - 0.005, rate + 0.005]
  (k = 100 for a share, 1000 per 1,000), linear in both when multiplied out; numerator <= denominator;
- municipality totals: the sum of the areas' cells equals the municipality's cell;
- area_trends' rolling rates (4 and 12 weeks, the year-earlier rate and the change), the same way
  over the sums of the window's numerators and denominators; the municipality's rolling rates;
- area_alerts: observed (the column, or the number its explanation text gives) is the sum of the
  cells of its window; "fewer than 5" says that sum is at most 4; EARS's expected is the mean of
  the watched sums of its baseline weeks with data (rounded to 1 decimal).

Left out, because they are not linear in the cells: Farrington's expected and threshold (a GLM fit
over two years of weeks), glrnb's (its expected is Farrington's; its threshold and score are a
likelihood ratio maximised over the weeks of its chart), EARS's threshold and score (a standard
deviation). area_alerts.sql withholds them with the figures they are built from all the same; glrnb's
observed is the same window sum as every method's and enters the system like theirs.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, timedelta

import pandas as pd

#: Half the last digit of a figure rounded to 2 (rates) or 1 (alert expectations) decimals.
RATE_HALF_STEP = 0.005
EXPECTED_HALF_STEP = 0.05
#: The number the English and Swedish explanations give for observed and expected (area_alerts.sql).
_OBSERVED_TEXT = [re.compile(r": (\d+) observed, "), re.compile(r": (\d+) observerade, ")]
_FEWER_TEXT = [re.compile(r": fewer than (\d+) observed"), re.compile(r": färre än (\d+) observerade")]
_EXPECTED_TEXT = [re.compile(r"observed, (\d+(?:\.\d+)?) expected"),
                  re.compile(r"observerade, (\d+(?:\.\d+)?) förväntade")]


@dataclass
class Constraint:
    """lower <= sum(coefficient * unknown) <= upper, after the known cells were moved to the bounds."""

    terms: dict[tuple, float]
    lower: float
    upper: float
    figure: str  # which published figures say this (for the report), joined by " & "


@dataclass
class LinearSystem:
    unknowns: set[tuple] = field(default_factory=set)
    constraints: list[Constraint] = field(default_factory=list)
    figures: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    #: the same sum published again (an alert's observed under four methods) narrows one constraint
    _index: dict[frozenset, int] = field(default_factory=dict)

    def add(self, terms: list[tuple[tuple, float]], known: dict, lower: float, upper: float, figure: str) -> None:
        """Add lower <= sum(coefficient * cell) <= upper; cells in `known` become constants."""
        self.figures[figure] += 1
        unknown: dict[tuple, float] = defaultdict(float)
        constant = 0.0
        for cell, coefficient in terms:
            if cell in self.unknowns:
                unknown[cell] += coefficient
            else:
                value = known.get(cell)
                if value is None:  # a cell outside the published grid: no relation to use
                    return
                constant += coefficient * value
        unknown = {cell: c for cell, c in unknown.items() if c != 0}
        if not unknown:
            return
        key = frozenset(unknown.items())
        if key in self._index:
            same = self.constraints[self._index[key]]
            same.lower, same.upper = max(same.lower, lower - constant), min(same.upper, upper - constant)
            if figure not in same.figure.split(" & "):
                same.figure += " & " + figure
        else:
            self._index[key] = len(self.constraints)
            self.constraints.append(Constraint(unknown, lower - constant, upper - constant, figure))


def _first_number(patterns: list[re.Pattern], *texts) -> float | None:
    for text in texts:
        if not isinstance(text, str):
            continue
        for pattern in patterns:
            found = pattern.search(text)
            if found:
                return float(found.group(1))
    return None


def _value(x) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) or pd.isna(x) else float(x)


def _scale(rate_unit: str) -> float:
    return 100.0 if rate_unit == "percent" else 1000.0


def build_system(
    cells: pd.DataFrame,
    municipality: pd.DataFrame,
    trends: pd.DataFrame | None,
    alerts: pd.DataFrame | None,
    rolling_weeks: dict[str, int],
    ears_baseline_weeks: int,
) -> LinearSystem:
    """The linear system of the published figures. `cells`: area_weekly_indicators; `municipality`:
    municipality_weekly; `trends`: area_trends; `alerts`: area_alerts (None when not published)."""
    system = LinearSystem()
    known: dict[tuple, float] = {}
    unit: dict[str, str] = {}

    def cell_keys(frame: pd.DataFrame, prefix: tuple) -> None:
        for row in frame.itertuples(index=False):
            unit[row.indicator] = row.rate_unit
            base = (*prefix(row), row.indicator, row.week_start)
            for part in ("numerator", "denominator"):
                value = _value(getattr(row, part))
                if value is None:
                    system.unknowns.add((*base, part))
                else:
                    known[(*base, part)] = value

    cell_keys(cells, lambda r: ("area", r.area_code))
    cell_keys(municipality, lambda r: ("municipality",))

    def rate_relation(numerators: list[tuple], denominators: list[tuple], rate: float, indicator: str,
                      figure: str) -> None:
        k = _scale(unit.get(indicator, "per_1000"))
        low, high = rate - RATE_HALF_STEP, rate + RATE_HALF_STEP
        if not any(c in system.unknowns for c in numerators + denominators):
            return
        system.add([(c, k) for c in numerators] + [(c, -high) for c in denominators], known, -math.inf, 0, figure)
        system.add([(c, k) for c in numerators] + [(c, -low) for c in denominators], known, 0, math.inf, figure)

    # the weekly cells: rates and numerator <= denominator
    for frame, prefix, name in ((cells, lambda r: ("area", r.area_code), "area_weekly_indicators"),
                                (municipality, lambda r: ("municipality",), "municipality_weekly")):
        for row in frame.itertuples(index=False):
            base = (*prefix(row), row.indicator, row.week_start)
            num, den = (*base, "numerator"), (*base, "denominator")
            if num in system.unknowns or den in system.unknowns:
                system.add([(num, 1.0), (den, -1.0)], known, -math.inf, 0, f"{name}: numerator <= denominator")
                rate = _value(row.rate)
                if rate is not None:
                    rate_relation([num], [den], rate, row.indicator, f"{name}.rate")

    # municipality totals: the sum of the areas
    areas = sorted(cells["area_code"].unique())
    for row in municipality.itertuples(index=False):
        for part in ("numerator", "denominator"):
            terms = [(("area", a, row.indicator, row.week_start, part), 1.0) for a in areas]
            terms.append((("municipality", row.indicator, row.week_start, part), -1.0))
            system.add(terms, known, 0, 0, f"municipality_weekly.{part} = sum of the areas")

    # each series' weeks in order: windows are rows of consecutive weeks, as the marts compute them
    weeks = sorted(cells["week_start"].unique())
    position = {w: i for i, w in enumerate(weeks)}

    def window(prefix: tuple, indicator: str, week, length: int, part: str) -> list[tuple] | None:
        end = position.get(week)
        if end is None or end - length + 1 < 0:
            return None
        return [(*prefix, indicator, weeks[i], part) for i in range(end - length + 1, end + 1)]

    if trends is not None and len(trends):
        _trend_relations(trends, window, rate_relation)

    if alerts is not None and len(alerts):
        _alert_relations(system, known, alerts, window, rolling_weeks, ears_baseline_weeks)
    return system


def _trend_relations(trends: pd.DataFrame, window, rate_relation) -> None:
    by_key = {(r.area_code, r.indicator, r.week_start): r for r in trends.itertuples(index=False)}
    for r in trends.itertuples(index=False):
        rate_4w = _value(r.rate_4w)
        change, earlier = _value(r.rate_4w_change_1y), _value(r.rate_4w_year_earlier)
        if rate_4w is None and change is not None and earlier is not None:
            rate_4w = round(change + earlier, 2)
        later = by_key.get((r.area_code, r.indicator, r.week_start + timedelta(days=364)))
        if rate_4w is None and later is not None:
            rate_4w = _value(later.rate_4w_year_earlier)
        prefix = ("area", r.area_code)
        for weeks, rate, figure in ((4, rate_4w, "area_trends.rate_4w"), (12, _value(r.rate_12w), "area_trends.rate_12w")):
            nums = window(prefix, r.indicator, r.week_start, weeks, "numerator")
            if rate is not None and nums:
                rate_relation(nums, window(prefix, r.indicator, r.week_start, weeks, "denominator"), rate,
                              r.indicator, figure)
    municipal = trends.drop_duplicates(["indicator", "week_start"])
    for r in municipal.itertuples(index=False):
        for weeks, rate, figure in ((4, _value(r.municipality_rate_4w), "area_trends.municipality_rate_4w"),
                                    (12, _value(r.municipality_rate_12w), "area_trends.municipality_rate_12w")):
            nums = window(("municipality",), r.indicator, r.week_start, weeks, "numerator")
            if rate is not None and nums:
                rate_relation(nums, window(("municipality",), r.indicator, r.week_start, weeks, "denominator"),
                              rate, r.indicator, figure)


def _alert_relations(system: LinearSystem, known: dict, alerts: pd.DataFrame, window,
                     rolling_weeks: dict[str, int], ears_baseline_weeks: int) -> None:
    no_data = {(r.area_code, r.indicator, r.week_start)
               for r in alerts.itertuples(index=False) if r.status == "no_data"}
    has_row = {(r.area_code, r.indicator, r.week_start) for r in alerts.itertuples(index=False)}
    one_week = timedelta(days=7)

    def watched(area: str, indicator: str, week: date) -> list[tuple] | None:
        return window(("area", area), indicator, week, rolling_weeks.get(indicator, 1), "numerator")

    for r in alerts.itertuples(index=False):
        texts = (getattr(r, "explanation_en", None), getattr(r, "explanation_sv", None))
        cells = watched(r.area_code, r.indicator, r.week_start)
        if cells is None:
            continue
        observed = _value(r.observed)
        if observed is None:
            observed = _first_number(_OBSERVED_TEXT, *texts)
        if observed is not None:
            system.add([(c, 1.0) for c in cells], known, observed, observed, "area_alerts.observed")
        else:
            fewer = _first_number(_FEWER_TEXT, *texts)
            if fewer is not None:
                system.add([(c, 1.0) for c in cells], known, 0, fewer - 1, "area_alerts: fewer than")
        if not str(r.method).startswith("ears_"):
            continue
        expected = _value(r.expected)
        if expected is None:
            expected = _first_number(_EXPECTED_TEXT, *texts)
        if expected is None:
            continue
        lag = 1 if r.method == "ears_c1" else 3
        baseline = [r.week_start - one_week * (lag + i) for i in range(ears_baseline_weeks)]
        with_data = [w for w in baseline
                     if (r.area_code, r.indicator, w) in has_row and (r.area_code, r.indicator, w) not in no_data]
        terms = []
        for w in with_data:
            cells = watched(r.area_code, r.indicator, w)
            if cells is None:
                break
            terms += [(c, 1.0) for c in cells]
        else:
            n = len(with_data)
            if n:
                system.add(terms, known, n * (expected - EXPECTED_HALF_STEP), n * (expected + EXPECTED_HALF_STEP),
                           "area_alerts.expected (EARS baseline mean)")
