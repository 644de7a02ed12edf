"""From synthetic extract files to published rows, on a real embedded PostgreSQL with real GX and
real dbt, and an independent check: every indicator recomputed in plain pandas from the extract
files (SOURCES.md's definitions) equals the warehouse's counts before suppression, and the
published value wherever it is not suppressed."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pandas as pd
import psycopg
import pytest

from ewi import config
from ewi.sources import SOURCES, iso_week_start, parse_file_name

pytestmark = pytest.mark.slow

WEEKS = 20
END_WEEK = "2026-W10"  # spans the Christmas and sports holidays
WAREHOUSE_DB, SYNTH_SEED = "ewi_end_to_end", 5


@pytest.fixture(scope="module")
def pipeline(module_warehouse, synthetic_extracts):
    from ewi import transform
    from ewi.ingest import ingest_files

    out = synthetic_extracts
    files = sorted(out.glob("*.csv"))
    results = ingest_files(files)
    build = transform.build()
    with psycopg.connect(module_warehouse, autocommit=True) as conn:
        yield {"out": out, "files": files, "results": results, "build": build, "conn": conn}


def read_extract(path: Path) -> pd.DataFrame:
    raw = path.read_bytes()
    if raw.startswith(b"\xef\xbb\xbf") or b"," in raw.split(b"\n", 1)[0]:
        return pd.read_csv(path, encoding="utf-8-sig", sep=",", dtype=str)
    return pd.read_csv(path, encoding="cp1252", sep=";", dtype=str)


def extracts(files: list[Path], source: str) -> pd.DataFrame:
    frames = [read_extract(f) for f in files if parse_file_name(f.name).source.name == source]
    return pd.concat(frames, ignore_index=True)


def expected_counts(files: list[Path]) -> pd.DataFrame:
    """The five indicators per area and week, straight from SOURCES.md, in pandas."""
    school = extracts(files, "school_absence")
    for c in ("scheduled_minutes", "valid_absence_minutes", "invalid_absence_minutes"):
        school[c] = school[c].astype(int)
    school["week_start"] = school["iso_week"].map(iso_week_start)
    weeks = sorted(school["week_start"].unique())

    absence_rows, invalid_flags = [], []
    for week in weeks:
        window = school[(school.week_start <= week) & (school.week_start >= week - timedelta(days=21))]
        window = window.sort_values("week_start")
        per_pupil = window.groupby("person_pseudonym").agg(
            area_code=("home_area_code", "last"),
            scheduled=("scheduled_minutes", "sum"),
            valid=("valid_absence_minutes", "sum"),
            invalid=("invalid_absence_minutes", "sum"),
        )
        per_pupil = per_pupil[per_pupil.scheduled > 0]
        chronic = (per_pupil.valid + per_pupil.invalid) / per_pupil.scheduled >= 0.10
        invalid = per_pupil.invalid / per_pupil.scheduled >= 0.05
        for indicator, flag in (("chronic_absence", chronic), ("invalid_absence", invalid)):
            g = pd.DataFrame({"area_code": per_pupil.area_code, "flag": flag}).groupby("area_code")
            for area, grp in g:
                absence_rows.append((area, week, indicator, int(grp.flag.sum()), len(grp)))
        invalid_flags += [(p, week) for p in per_pupil.index[invalid]]

    events = {}
    for source, date_col, id_col in (("referrals", "received_date", "referral_id"),
                                     ("contacts", "contact_date", "contact_id")):
        df = extracts(files, source)
        df["date"] = pd.to_datetime(df[date_col]).dt.date
        df["week_start"] = df["date"].map(lambda d: d - timedelta(days=d.weekday()))
        events[source] = df.sort_values(["date", id_col])

    rows = list(absence_rows)
    for source in ("referrals", "contacts"):
        df = events[source]
        latest = df.groupby(["person_pseudonym", "week_start"]).last().reset_index()
        for (area, week), grp in latest.groupby(["home_area_code", "week_start"]):
            rows.append((area, week, source, grp.person_pseudonym.nunique(), None))

    # multi_signal: at least two of {invalid-absence flag, a referral, a contact} within the trailing
    # 12 weeks, counted in the area of the person's latest record (any source) in those weeks.
    signals = pd.concat([
        pd.DataFrame(invalid_flags, columns=["person_pseudonym", "week_start"]).assign(signal="invalid_absence"),
        events["referrals"][["person_pseudonym", "week_start"]].assign(signal="referral"),
        events["contacts"][["person_pseudonym", "week_start"]].assign(signal="contact"),
    ])
    records = pd.concat([
        school.assign(record_date=school.week_start + timedelta(days=4), order=0)[
            ["person_pseudonym", "week_start", "record_date", "order", "home_area_code"]],
        events["referrals"].assign(record_date=events["referrals"]["date"], order=1)[
            ["person_pseudonym", "week_start", "record_date", "order", "home_area_code"]],
        events["contacts"].assign(record_date=events["contacts"]["date"], order=2)[
            ["person_pseudonym", "week_start", "record_date", "order", "home_area_code"]],
    ])
    all_weeks = sorted(set(weeks) | set(signals.week_start))
    for week in all_weeks:
        lo = week - timedelta(days=77)
        s = signals[(signals.week_start <= week) & (signals.week_start >= lo)]
        kinds = s.groupby("person_pseudonym").signal.nunique()
        persons = kinds.index[kinds >= 2]
        r = records[(records.week_start <= week) & (records.week_start >= lo)
                    & records.person_pseudonym.isin(persons)]
        r = r.sort_values(["record_date", "order", "home_area_code"], ascending=[True, True, False])
        area = r.groupby("person_pseudonym").home_area_code.last()
        for a, n in area.value_counts().items():
            rows.append((a, week, "multi_signal", int(n), None))
    return pd.DataFrame(rows, columns=["area_code", "week_start", "indicator", "numerator", "denominator"])


def test_every_file_is_published(pipeline):
    statuses = {r.status for r in pipeline["results"]}
    assert statuses == {"published"}, [r.as_dict() for r in pipeline["results"] if r.status != "published"]
    assert len(pipeline["results"]) == 3 * WEEKS


def test_rows_published_equal_rows_delivered(pipeline):
    conn = pipeline["conn"]
    for source in SOURCES:
        delivered = len(extracts(pipeline["files"], source))
        assert conn.execute(f"select count(*) from raw.{source}").fetchone()[0] == delivered  # noqa: S608


def test_dbt_build_passed_and_published(pipeline):
    build = pipeline["build"]
    assert build["success"] and build["published"], build.get("failures")


def test_indicators_recomputed_in_pandas_equal_the_warehouse(pipeline):
    conn = pipeline["conn"]
    expected = expected_counts(pipeline["files"])
    cur = conn.execute("select area_code, week_start, indicator, numerator, denominator "
                       "from intermediate.int_area_weekly_counts")
    actual = pd.DataFrame(cur.fetchall(), columns=[d.name for d in cur.description])
    merged = actual.merge(expected, on=["area_code", "week_start", "indicator"], how="left",
                          suffixes=("", "_pandas"))
    merged["numerator_pandas"] = merged["numerator_pandas"].fillna(0).astype(int)
    for indicator in ("chronic_absence", "invalid_absence", "referrals", "contacts", "multi_signal"):
        part = merged[merged.indicator == indicator]
        observed = part[part.numerator_pandas > 0]
        assert len(observed) > 0, f"no {indicator} cases in the test data"
        wrong = part[part.numerator != part.numerator_pandas]
        assert wrong.empty, f"{indicator}: {len(wrong)} of {len(part)} cells differ"
        if indicator.endswith("absence"):
            shares = part[part.numerator_pandas > 0]
            assert (shares.denominator == shares.denominator_pandas).all(), indicator
    # every expected cell exists in the warehouse
    keys = set(zip(actual.area_code, actual.week_start, actual.indicator, strict=True))
    missing = [k for k in zip(expected.area_code, expected.week_start, expected.indicator, strict=True)
               if k not in keys]
    assert not missing


def test_published_values_equal_the_counts_where_not_suppressed(pipeline):
    conn = pipeline["conn"]
    bad = conn.execute(
        """select count(*) from published.area_weekly_indicators p
           join intermediate.int_area_weekly_counts c using (area_code, week_start, indicator)
           where not p.is_suppressed and (p.numerator <> c.numerator or p.denominator <> c.denominator)"""
    ).fetchone()[0]
    assert bad == 0
    small = conn.execute(
        """select count(*) from published.area_weekly_indicators
           where numerator between 1 and 4 or denominator between 1 and 4"""
    ).fetchone()[0]
    assert small == 0
    suppressed = conn.execute(
        "select count(*) from published.area_weekly_indicators where is_suppressed").fetchone()[0]
    assert suppressed > 0


def test_every_area_week_and_indicator_is_a_row(pipeline):
    conn = pipeline["conn"]
    areas = len(pd.read_csv(config.AREAS_SEED))
    weeks, cells = conn.execute(
        "select count(distinct week_start), count(*) from published.area_weekly_indicators").fetchone()
    assert cells == areas * weeks * 5
    assert weeks >= WEEKS


def test_farrington_ran_inside_the_build_and_alerts_are_published(pipeline):
    conn = pipeline["conn"]
    computed = conn.execute("select count(*) from alerts.farrington_results").fetchone()[0]
    assert computed > 0
    methods = {r[0] for r in conn.execute("select distinct method from published.area_alerts").fetchall()}
    assert "farrington" in methods
    small = conn.execute("select count(*) from published.area_alerts where observed between 1 and 4").fetchone()[0]
    assert small == 0
