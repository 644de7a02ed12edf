from __future__ import annotations

import subprocess
import sys
from datetime import date

import pytest

from ewi import config
from ewi.school_calendar import calendar_rows, holiday_name, is_school_holiday, iso_weeks

SEED = config.DBT_PROJECT_DIR / "seeds" / "iso_calendar.csv"


@pytest.mark.parametrize(
    ("period", "name"),
    [
        # Borlänge's published school year 2024/25: höstlov v44, sportlov v9, påsklov v17.
        ("2024-W44", "höstlov"),
        ("2025-W09", "sportlov"),
        ("2025-W17", "påsklov"),
        ("2024-W52", "jullov"),
        ("2025-W01", "jullov"),
        ("2025-W25", "sommarlov"),
        ("2025-W33", "sommarlov"),
        ("2026-W53", "jullov"),  # 2026 has 53 ISO weeks
        ("2024-W14", "påsklov"),  # Easter Sunday 31 March 2024
        ("2026-W15", "påsklov"),  # Easter Sunday 5 April 2026
        # Weeks with teaching days at either end of a break.
        ("2025-W24", None),
        ("2025-W34", None),
        ("2024-W51", None),
        ("2025-W02", None),
        ("2025-W16", None),  # Easter week itself: Good Friday only
        ("2025-W10", None),
    ],
)
def test_holiday_weeks(period, name):
    assert holiday_name(period) == name
    assert is_school_holiday(period) is (name is not None)


def test_one_easter_break_per_year():
    for year in range(2015, 2036):
        easter_weeks = [r for r in calendar_rows(year, year) if r["holiday_name"] == "påsklov"]
        assert len(easter_weeks) == 1
        assert 12 <= easter_weeks[0]["week_number"] <= 17


@pytest.mark.parametrize("bad", ["2025-W53", "2025W10", "2025-W00", "25-W10", "2025-W1"])
def test_rejects_what_is_not_an_iso_week(bad):
    with pytest.raises(ValueError):
        holiday_name(bad)


def test_iso_weeks_crosses_a_53_week_year():
    assert iso_weeks("2026-W52", "2027-W02") == ["2026-W52", "2026-W53", "2027-W01", "2027-W02"]
    assert iso_weeks("2025-W10", "2025-W10") == ["2025-W10"]
    assert iso_weeks("2025-W10", "2025-W09") == []


def test_calendar_rows_are_contiguous_weeks():
    rows = calendar_rows(2015, 2035)
    assert rows[0]["iso_week"] == "2015-W01" and rows[-1]["iso_week"] == "2035-W52"
    assert sum(r["week_number"] == 53 for r in rows) == 4  # 2015, 2020, 2026, 2032
    for previous, row in zip(rows, rows[1:], strict=False):
        assert (date.fromisoformat(row["week_start"]) - date.fromisoformat(previous["week_start"])).days == 7
    for row in rows:
        start, end = date.fromisoformat(row["week_start"]), date.fromisoformat(row["week_end"])
        assert start.isoweekday() == 1 and (end - start).days == 6
        assert start.isocalendar()[:2] == (row["iso_year"], row["week_number"])
        assert row["iso_week"] == f"{row['iso_year']}-W{row['week_number']:02d}"
        assert row["is_school_holiday"] is (row["holiday_name"] is not None)
    # 9 summer + autumn + sports + Easter + 2 or 3 Christmas weeks per year
    assert {sum(r["is_school_holiday"] for r in rows if r["iso_year"] == y) for y in range(2015, 2036)} <= {14, 15}


def test_seed_file_is_generated_from_the_module():
    """The dbt seed must be exactly what the module writes, so the calendar lives in one place."""
    written = subprocess.run(
        [sys.executable, "-m", "ewi.school_calendar", "--first-year", "2015", "--last-year", "2035"],
        check=True,
        capture_output=True,
        cwd=config.PROJECT_ROOT,
    ).stdout
    assert SEED.read_bytes() == written, (
        "dbt_project/seeds/iso_calendar.csv is stale: regenerate it with "
        "python -m ewi.school_calendar --first-year 2015 --last-year 2035 > dbt_project/seeds/iso_calendar.csv"
    )
    header = written.decode("utf-8").splitlines()[0]
    assert header == "iso_week,iso_year,week_number,week_start,week_end,is_school_holiday,holiday_name"
