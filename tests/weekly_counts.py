"""A hand-made intermediate.int_area_weekly_counts for the tests of the alert and signal models: two
areas, 120 weeks, every indicator, deterministic Poisson counts, so those tests depend on the alert
models only, not on ingest."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd

from ewi.alerts.series import INDICATORS

AREAS = {"2081C1010": 827, "2081C1020": 755}  # youth population
WEEKS = [date(2024, 1, 1) + timedelta(weeks=i) for i in range(120)]
MEANS = {"chronic_absence": 30, "invalid_absence": 15, "referrals": 1.5, "contacts": 1.5, "multi_signal": 4}


def iso_week(d: date) -> str:
    year, week, _ = d.isocalendar()
    return f"{year}-W{week:02d}"


def weekly_counts(seed: int, rises: dict, weeks: int = len(WEEKS), holidays: bool = False) -> pd.DataFrame:
    """The first `weeks` of WEEKS. rises: {(area, indicator): (from week, factor)}, the mean multiplied
    by factor from that week on. With holidays, week 30 of every 52 has no scheduled minutes for the
    absence shares (nothing drawn). Every other week is drawn even when cut, so a shorter series is
    the start of the longer one."""
    rng = np.random.default_rng(seed)
    rows = []
    for area, youth in AREAS.items():
        for indicator in INDICATORS:
            is_share = indicator.endswith("absence")
            for i, week in enumerate(WEEKS):
                start, factor = rises.get((area, indicator), (len(WEEKS), 1))
                holiday = holidays and is_share and i % 52 == 30
                count = 0 if holiday else int(rng.poisson(MEANS[indicator] * (factor if i >= start else 1)))
                if i >= weeks:
                    continue
                rows.append({
                    "area_code": area, "week_start": week, "iso_week": iso_week(week), "indicator": indicator,
                    "numerator": count, "denominator": (0 if holiday else 240) if is_share else youth,
                    "is_share": is_share, "note": "no_scheduled_minutes" if holiday else None,
                })
    return pd.DataFrame(rows)


def load_weekly_counts(db, counts: pd.DataFrame) -> None:
    """Replaces intermediate.int_area_weekly_counts with `counts`, as the indicator models would have
    built it."""
    db.execute("drop table if exists intermediate.int_area_weekly_counts cascade")
    db.execute("""create table intermediate.int_area_weekly_counts (area_code text, week_start date, iso_week text,
                  indicator text, numerator integer, denominator integer, is_share boolean, note text)""")
    with db.cursor().copy("copy intermediate.int_area_weekly_counts from stdin") as copy:
        for row in counts.astype(object).where(counts.notna(), None).itertuples(index=False, name=None):
            copy.write_row(row)
