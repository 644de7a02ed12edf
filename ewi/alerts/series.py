"""Which series the alert methods watch, per indicator (the Python twin of
dbt_project/models/intermediate/alert_series.sql; see docs/alerts.md for the reasons).

- chronic_absence, invalid_absence: the weekly count of flagged pupils, with the pupils having
  scheduled minutes (the share's denominator) as the population offset. No data (NULL) where that
  denominator is 0 (holidays) or the week has no school data, and in the first 3 weeks of the data
  (the trailing 4-week flag is not yet complete).
- referrals, contacts: a rolling count (weeks t-n+1..t; n per indicator, dbt var
  alert_rolling_weeks: 3 for both) of youths with an event in the week; single weeks hold 0-3
  youths per area, too few for any test. NULL in the first n-1 weeks.
- multi_signal: the weekly count as published (already a trailing 12-week flag); NULL in the first
  11 weeks of the data.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

INDICATORS = ("chronic_absence", "invalid_absence", "referrals", "contacts", "multi_signal")
#: Weeks summed into the watched count (1 = the weekly count as it is); the default of the dbt var
#: alert_rolling_weeks (docs/alerts.md: measured choices).
ROLLING_WEEKS = {"referrals": 3, "contacts": 3}
#: Weeks at the start of the data whose count is incomplete (the indicator's own trailing window);
#: a rolling sum adds its window minus one.
WARM_UP_WEEKS = {"chronic_absence": 3, "invalid_absence": 3, "multi_signal": 11}
SERIES_LABEL = {
    "chronic_absence": ("elever med hög frånvaro (vecka)", "pupils with high absence (week)"),
    "invalid_absence": ("elever med ogiltig frånvaro (vecka)", "pupils with unexcused absence (week)"),
    "referrals": ("unga med orosanmälan", "youths with a referral"),
    "contacts": ("unga med polis-/fältkontakt", "youths with a police/outreach contact"),
    "multi_signal": ("unga med flera signaler (12 v)", "youths with several signals (12 wk)"),
}


def trailing_sum(values, window: int, *, partial: bool = False) -> np.ndarray:
    """Sums over weeks t-window+1..t along the last axis (weeks), as floats. In the first window - 1
    weeks the window is incomplete: NaN there by default, as a watched rolling count is (not yet
    comparable with later weeks); with partial=True the sum of the weeks there are, as SQL's
    `rows between n preceding and current row` gives, which is how the marts' trailing flags start.
    A NaN week makes NaN only the sums whose window holds it."""
    values = np.asarray(values, dtype=float)
    before = [(0, 0)] * (values.ndim - 1) + [(window - 1, 0)]
    padded = np.pad(values, before, constant_values=0.0 if partial else np.nan)
    return sliding_window_view(padded, window, axis=-1).sum(axis=-1)


def rolling_weeks_setting(value) -> dict[str, int]:
    """The dbt var alert_rolling_weeks as indicator -> weeks: a mapping (indicators left out: 1), or
    one number for referrals and contacts (the older form)."""
    if value is None:
        return dict(ROLLING_WEEKS)
    if isinstance(value, dict):
        return {str(k): int(v) for k, v in value.items()}
    return dict.fromkeys(ROLLING_WEEKS, int(value))


def monitored_series(counts: pd.DataFrame, rolling_weeks: dict[str, int] | None = None) -> pd.DataFrame:
    """From area x week x indicator counts (columns area_code, week_start, indicator, numerator,
    denominator, is_share, note; a complete grid as intermediate.int_area_weekly_counts) to the
    watched series: area_code, indicator, week_start, observed (float, NaN = no data), population."""
    rolling_weeks = ROLLING_WEEKS if rolling_weeks is None else rolling_weeks
    frame = counts.copy()
    frame["week_start"] = pd.to_datetime(frame["week_start"]).dt.date
    frame = frame.sort_values(["area_code", "indicator", "week_start"], kind="stable", ignore_index=True)
    first_week = frame["week_start"].min()
    week_no = frame["week_start"].map(lambda d: (d - first_week).days // 7)
    observed = frame["numerator"].astype(float)
    is_share = frame["is_share"].astype(bool)
    no_data = frame["note"].notna() | (is_share & (frame["denominator"].fillna(0) <= 0))
    observed = observed.mask(no_data)
    parts = []
    for indicator, group in frame.groupby("indicator", sort=True):
        values = observed.loc[group.index]
        window = rolling_weeks.get(indicator, 1)
        if window > 1:
            values = values.groupby(group["area_code"]).transform(lambda s, n=window: trailing_sum(s.to_numpy(), n))
        warm_up = WARM_UP_WEEKS.get(indicator, 0) + window - 1
        values = values.mask(week_no.loc[group.index] < warm_up)
        parts.append(values)
    frame["observed"] = pd.concat(parts).sort_index()
    frame["population"] = frame["denominator"].astype(float).where(frame["denominator"] > 0, np.nan)
    return frame[["area_code", "indicator", "week_start", "observed", "population"]]
