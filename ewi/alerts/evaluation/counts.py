"""Area x week x indicator counts computed from extract files in pandas, by SOURCES.md's definitions:
the twin of intermediate.int_area_weekly_counts that the evaluation watches synth's data through
(good enough to evaluate the detection on; the published figures are dbt's). The files are read
as the ingest reads them: its inspection decides encoding, delimiter and header, and refuses what
the ingest refuses."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from ewi.alerts.series import INDICATORS, trailing_sum
from ewi.ingest.reading import inspect

#: The inspection names the encoding as COPY does; the same text as Python reads it (a BOM, when
#: there is one, is not part of the header).
_PYTHON_CODEC = {"UTF8": "utf-8-sig", "WIN1252": "cp1252"}


def read_extract(path: Path) -> pd.DataFrame:
    """One delivered extract, every value as text, its columns named as the ingest names them."""
    found = inspect(path)
    return pd.read_csv(path, sep=found.delimiter, encoding=_PYTHON_CODEC[found.encoding], dtype=str,
                       header=0, names=found.header)


def _read_source(folder: Path, source: str) -> pd.DataFrame:
    frames = [read_extract(p) for p in sorted(folder.glob(f"{source}_*.csv"))]
    return pd.concat(frames, ignore_index=True)


def indicator_counts(folder: Path, areas: pd.DataFrame) -> pd.DataFrame:
    """Area x week x indicator counts from extract files, by SOURCES.md's definitions (pandas twin of
    intermediate.int_area_weekly_counts, good enough to evaluate the detection on)."""
    school = _read_source(folder, "school_absence")
    referrals = _read_source(folder, "referrals")
    contacts = _read_source(folder, "contacts")
    school["week_start"] = school["iso_week"].map(lambda w: date.fromisocalendar(int(w[:4]), int(w[6:8]), 1))
    referrals["week_start"] = pd.to_datetime(referrals["received_date"]).dt.date.map(
        lambda d: d - timedelta(days=d.weekday()))
    contacts["week_start"] = pd.to_datetime(contacts["contact_date"]).dt.date.map(
        lambda d: d - timedelta(days=d.weekday()))
    first = min(school["week_start"].min(), referrals["week_start"].min(), contacts["week_start"].min())
    last = max(school["week_start"].max(), referrals["week_start"].max(), contacts["week_start"].max())
    weeks = [first + timedelta(weeks=i) for i in range((last - first).days // 7 + 1)]
    week_index = {d: i for i, d in enumerate(weeks)}
    area_codes = list(areas["area_code"])
    area_index = {a: i for i, a in enumerate(area_codes)}
    people, _ = pd.factorize(pd.concat([school["person_pseudonym"], referrals["person_pseudonym"],
                                        contacts["person_pseudonym"]], ignore_index=True))
    n_school, n_ref = len(school), len(referrals)
    n_people, n_weeks, n_areas = people.max() + 1, len(weeks), len(area_codes)

    def matrix(rows, cols, values):
        m = np.zeros((n_people, n_weeks))
        np.add.at(m, (rows, cols), values)
        return m

    def area_matrix(rows, cols, area_values):
        m = np.full((n_people, n_weeks), np.nan)
        m[rows, cols] = area_values
        return m

    s_rows, s_cols = people[:n_school], school["week_start"].map(week_index).to_numpy()
    sched = matrix(s_rows, s_cols, school["scheduled_minutes"].astype(float).to_numpy())
    valid = matrix(s_rows, s_cols, school["valid_absence_minutes"].astype(float).to_numpy())
    invalid = matrix(s_rows, s_cols, school["invalid_absence_minutes"].astype(float).to_numpy())
    sched4, absent4, invalid4 = (trailing_sum(m, 4, partial=True) for m in (sched, valid + invalid, invalid))
    has_schedule = sched4 > 0
    chronic = has_schedule & (absent4 >= 0.10 * sched4)
    invalid_flag = has_schedule & (invalid4 >= 0.05 * sched4)
    school_area = pd.DataFrame(area_matrix(s_rows, s_cols, school["home_area_code"].map(area_index)))
    pupil_area = school_area.ffill(axis=1, limit=3).to_numpy()

    r_rows, r_cols = people[n_school:n_school + n_ref], referrals["week_start"].map(week_index).to_numpy()
    c_rows, c_cols = people[n_school + n_ref:], contacts["week_start"].map(week_index).to_numpy()
    has_referral = matrix(r_rows, r_cols, 1.0) > 0
    has_contact = matrix(c_rows, c_cols, 1.0) > 0
    referral_area = area_matrix(r_rows, r_cols, referrals["home_area_code"].map(area_index))
    contact_area = area_matrix(c_rows, c_cols, contacts["home_area_code"].map(area_index))
    any_area = pd.DataFrame(np.where(np.isnan(contact_area), np.where(np.isnan(referral_area), school_area,
                                                                      referral_area), contact_area))
    latest_area = any_area.ffill(axis=1, limit=11).to_numpy()
    signals = sum((trailing_sum(m, 12, partial=True) > 0).astype(int) for m in (invalid_flag, has_referral, has_contact))
    multi = signals >= 2

    def per_area(flags, area):
        counts = np.zeros((n_areas, n_weeks))
        rows, cols = np.nonzero(flags & ~np.isnan(area))
        np.add.at(counts, (area[rows, cols].astype(int), cols), 1)
        return counts

    youth = areas[["pop_6_12", "pop_13_15", "pop_16_17", "pop_18_20"]].sum(axis=1).to_numpy()
    pupils = per_area(has_schedule, pupil_area)
    numerators = {
        "chronic_absence": per_area(chronic, pupil_area), "invalid_absence": per_area(invalid_flag, pupil_area),
        "referrals": per_area(has_referral, referral_area), "contacts": per_area(has_contact, contact_area),
        "multi_signal": per_area(multi, latest_area),
    }
    frames = []
    for indicator in INDICATORS:
        is_share = indicator.endswith("absence")
        denominator = pupils if is_share else np.repeat(youth[:, None], n_weeks, axis=1)
        frame = pd.DataFrame({
            "area_code": np.repeat(area_codes, n_weeks), "week_start": weeks * n_areas,
            "indicator": indicator, "numerator": numerators[indicator].ravel().astype(int),
            "denominator": denominator.ravel().astype(int), "is_share": is_share,
        })
        frame["note"] = np.where(is_share & (frame["denominator"] == 0), "no_scheduled_minutes", None)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)
