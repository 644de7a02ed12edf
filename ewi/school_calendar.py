"""School holiday weeks in Borlänge (Dalarna): the one place that knows them.

The synthetic school extracts (scheduled minutes are 0 in a holiday week) and the dbt seed
`dbt_project/seeds/iso_calendar.csv` are both derived from this module; regenerate the seed with

    python -m ewi.school_calendar --first-year 2015 --last-year 2035 > dbt_project/seeds/iso_calendar.csv

A week counts as a holiday week when pupils have (next to) no teaching that week. The choice follows
Borlänge kommun's published school year ("Läsårstider, lov, ledighet", borlange.se, 2024/25):
term ends mid-June (12 June 2025, week 24) and starts in the second half of August (21 August
2024, a Wednesday of week 34); höstlov week 44; Christmas break from about 20 December to
about 8 January; sportlov week 9 (Dalarna's week; 24 February - 2 March 2025); påsklov the week
after Easter Sunday (week 17 in 2025, Easter Sunday 20 April). So:

- sommarlov: ISO weeks 25-33 (weeks 24 and 34 still have teaching days)
- höstlov: week 44
- jullov: weeks 52, 53 (in 53-week years) and 1 (week 51 and week 2 have teaching days)
- sportlov: week 9
- påsklov: the ISO week that starts on Easter Monday (dateutil.easter, western Easter)

Single lovdagar (Ascension Day, 6 June, studiedagar) are left out: they are days, not weeks.
"""

from __future__ import annotations

import argparse
import csv
import sys
from datetime import date, timedelta
from functools import cache

from dateutil.easter import easter

SUMMER_WEEKS = range(25, 34)
AUTUMN_WEEK = 44
CHRISTMAS_WEEKS = (52, 53, 1)
SPORTS_WEEK = 9

CALENDAR_COLUMNS = (
    "iso_week",
    "iso_year",
    "week_number",
    "week_start",
    "week_end",
    "is_school_holiday",
    "holiday_name",
)


def _parse(period: str) -> tuple[int, int]:
    try:
        year, week = int(period[:4]), int(period[6:8])
        if len(period) != 8 or period[4:6] != "-W":
            raise ValueError
        date.fromisocalendar(year, week, 1)  # rejects week 53 in a 52-week year
    except ValueError:
        raise ValueError(f"not an ISO week (YYYY-Www): {period!r}") from None
    return year, week


@cache
def _easter_week(year: int) -> int:
    return (easter(year) + timedelta(days=1)).isocalendar().week


def holiday_name(period: str) -> str | None:
    """The school break an ISO week belongs to (sommarlov, höstlov, jullov, sportlov, påsklov)."""
    year, week = _parse(period)
    if week in SUMMER_WEEKS:
        return "sommarlov"
    if week == AUTUMN_WEEK:
        return "höstlov"
    if week in CHRISTMAS_WEEKS:
        return "jullov"
    if week == SPORTS_WEEK:
        return "sportlov"
    if week == _easter_week(year):
        return "påsklov"
    return None


def is_school_holiday(period: str) -> bool:
    return holiday_name(period) is not None


def week_start(period: str) -> date:
    year, week = _parse(period)
    return date.fromisocalendar(year, week, 1)


def iso_week_of(day: date) -> str:
    iso = day.isocalendar()
    return f"{iso.year}-W{iso.week:02d}"


def iso_weeks(first: str, last: str) -> list[str]:
    """Every ISO week from first to last, both included (empty when last is before first)."""
    start, end = week_start(first), week_start(last)
    return [iso_week_of(start + timedelta(weeks=i)) for i in range((end - start).days // 7 + 1)]


def calendar_rows(first_year: int, last_year: int) -> list[dict]:
    """One row per ISO week of the ISO years first_year..last_year."""
    first = f"{first_year}-W01"
    last = iso_week_of(date(last_year, 12, 28))  # 28 December is always in the year's last week
    rows = []
    for period in iso_weeks(first, last):
        start = week_start(period)
        name = holiday_name(period)
        rows.append(
            {
                "iso_week": period,
                "iso_year": int(period[:4]),
                "week_number": int(period[6:]),
                "week_start": start.isoformat(),
                "week_end": (start + timedelta(days=6)).isoformat(),
                "is_school_holiday": name is not None,
                "holiday_name": name,
            }
        )
    return rows


def write_csv(rows: list[dict], out) -> None:
    # Lower-case true/false and empty for "no holiday" are what dbt seeds read as boolean and null.
    writer = csv.DictWriter(out, fieldnames=CALENDAR_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(
            {
                **row,
                "is_school_holiday": "true" if row["is_school_holiday"] else "false",
                "holiday_name": row["holiday_name"] or "",
            }
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write the ISO-week school calendar seed as CSV.")
    parser.add_argument("--first-year", type=int, default=2015)
    parser.add_argument("--last-year", type=int, default=2035)
    args = parser.parse_args(argv)
    sys.stdout.reconfigure(encoding="utf-8", newline="\n")
    write_csv(calendar_rows(args.first_year, args.last_year), sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
