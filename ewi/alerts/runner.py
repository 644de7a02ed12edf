"""The Farrington task: indicator counts in the warehouse -> alerts.farrington_results.

Run after the indicator models are built (it reads intermediate.int_area_weekly_counts, the
unsuppressed area x week x indicator grid) and before the alert models, which read its output as
source('alerts', 'farrington_results'). Parameters come from the `# alerts` block of
dbt_project.yml's vars (the same place as the EARS parameters), so one file configures every method.

Incremental: a week's result depends on that week and earlier ones only, so a run recomputes every
week from the earliest one whose input may have changed (see _first_changed_week), and everything
when the parameters changed or on a full refresh. A new week of data costs one week, not a fixed tail.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import psycopg
import yaml

from ewi import config
from ewi.alerts.farrington import FarringtonControl, farrington_flexible
from ewi.alerts.series import monitored_series, rolling_weeks_setting

log = logging.getLogger(__name__)

RESULTS_TABLE = "alerts.farrington_results"
COUNTS_TABLE = "intermediate.int_area_weekly_counts"
#: Used when dbt_project.yml has no `farrington` var (kept equal to the block there).
DEFAULTS = {
    "b": 2, "w": 3, "alpha": 0.002,  # or indicator -> alpha ("default" for the rest)
    "no_periods": 10, "past_weeks_not_included": 26,
    "weights_threshold": 2.58, "threshold_method": "nbPlugin", "p_threshold_trend": 0.05,
    "limit54": [5, 4], "population_offset": True,
}
#: Settings in the `farrington` block that do not change a result, so not part of its fingerprint.
#: refresh_weeks (the newest weeks recomputed on every run; removed) may remain in an older
#: dbt_project.yml: the weeks to recompute are now found from the data.
NOT_MODEL_PARAMETERS = ("refresh_weeks",)
#: The earliest week of data published since a moment: deliveries the gate published or superseded
#: (a school delivery is one ISO week, its period: raw.school_absence is partitioned by it) and
#: referral and contact rows (dated by the event, which may lie before the delivery's period).
_PUBLISHED_SINCE = """
    select least(
        (select min(to_date(period, 'IYYY-"W"IW')) from audit.batches
          where status in ('published', 'superseded') and decided_at > %(since)s
            and period ~ '^[0-9]{4}-W[0-9]{2}$'),
        (select min(date_trunc('week', received_date)::date) from raw.referrals where published_at > %(since)s),
        (select min(date_trunc('week', contact_date)::date) from raw.contacts where published_at > %(since)s))
"""


def project_vars(project_dir: Path | None = None) -> dict:
    path = Path(project_dir or config.DBT_PROJECT_DIR) / "dbt_project.yml"
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8")).get("vars", {}) or {}
    except FileNotFoundError:
        return {}


def farrington_parameters(project_dir: Path | None = None) -> dict:
    return {**DEFAULTS, **(project_vars(project_dir).get("farrington") or {})}


def alpha_for(params: dict, indicator: str | None = None) -> float:
    """farrington.alpha is one number or a mapping indicator -> alpha with a "default" entry: false
    alerts and detectable rises differ per indicator (docs/alerts.md)."""
    alpha = params["alpha"]
    if isinstance(alpha, dict):
        return float(alpha.get(indicator, alpha.get("default", DEFAULTS["alpha"])))
    return float(alpha)


def farrington_control(params: dict, indicator: str | None = None) -> FarringtonControl:
    """The Farrington control for one indicator's series (its own alpha applied)."""
    return FarringtonControl.from_dict({**params, "alpha": alpha_for(params, indicator)})


def rolling_weeks(project_dir: Path | None = None) -> dict[str, int]:
    """alert_rolling_weeks from dbt_project.yml as indicator -> weeks summed."""
    return rolling_weeks_setting(project_vars(project_dir).get("alert_rolling_weeks"))


def _fingerprint(params: dict) -> str:
    model = {k: v for k, v in params.items() if k not in NOT_MODEL_PARAMETERS}
    return hashlib.sha256(json.dumps(model, sort_keys=True).encode()).hexdigest()[:16]


def compute(counts: pd.DataFrame, params: dict, weeks: set[date] | None = None,
            rolling: dict[str, int] | None = None) -> pd.DataFrame:
    """Farrington results for every area x indicator series in `counts` (only for `weeks` if given)."""
    return _compute_series(monitored_series(counts, rolling), params, weeks)


def _compute_series(series: pd.DataFrame, params: dict, weeks: set[date] | None) -> pd.DataFrame:
    rows = []
    for (area_code, indicator), group in series.groupby(["area_code", "indicator"], sort=True):
        control = farrington_control(params, indicator)
        week_starts = list(group["week_start"])
        wanted = [i for i, d in enumerate(week_starts) if weeks is None or d in weeks]
        if not wanted:
            continue
        population = group["population"].to_numpy() if control.population_offset else None
        for result in farrington_flexible(group["observed"].to_numpy(), week_starts, control,
                                          population=population, weeks=wanted):
            rows.append({
                "area_code": area_code, "indicator": indicator, "week_start": week_starts[result.index],
                "observed": result.observed, "expected": result.expected, "upper_threshold": result.upper,
                "score": result.score, "p_value": result.p_value, "phi": result.phi,
                "is_alert": result.is_alert, "status": result.status, "years_used": result.years_used,
                "years_configured": control.b, "trend": result.trend, "reweighted": result.reweighted,
            })
    return pd.DataFrame(rows)


def run_farrington(conn: psycopg.Connection, full: bool = False, project_dir: Path | None = None) -> int:
    """Compute Farrington-flexible for the weeks that need it and upsert them into
    alerts.farrington_results; returns the number of rows written. Deterministic for given input."""
    params = farrington_parameters(project_dir)
    rolling = rolling_weeks(project_dir)
    sha = _fingerprint({**params, "alert_rolling_weeks": rolling})
    counts = pd.DataFrame(
        conn.execute(
            f"select area_code, week_start, indicator, numerator, denominator, is_share, note from {COUNTS_TABLE}"  # noqa: S608
        ).fetchall(),
        columns=["area_code", "week_start", "indicator", "numerator", "denominator", "is_share", "note"],
    )
    if counts.empty:
        log.info("farrington: no indicator counts yet")
        return 0
    series = monitored_series(counts, rolling)
    all_weeks = sorted(set(series["week_start"]))
    everything = full or bool(conn.execute(
        f"select exists (select from {RESULTS_TABLE} where parameters_sha <> %s)", (sha,)).fetchone()[0])  # noqa: S608
    start = all_weeks[0] if everything else _first_changed_week(conn, series, sha)
    if start is None:
        log.info("farrington: no input changed since the last run")
        return 0
    weeks = {d for d in all_weeks if d >= start}
    results = _compute_series(series, params, weeks)
    if results.empty:
        return 0
    results["parameters_sha"] = sha
    columns = list(results.columns)
    records = [
        tuple(None if isinstance(v, float) and np.isnan(v) else (v.item() if hasattr(v, "item") else v)
              for v in row)
        for row in results.itertuples(index=False, name=None)
    ]
    with conn.transaction():
        if everything:
            conn.execute(f"delete from {RESULTS_TABLE}")  # noqa: S608
        conn.execute(f"delete from {RESULTS_TABLE} where week_start = any(%s)", (sorted(weeks),))  # noqa: S608
        with conn.cursor().copy(f"copy {RESULTS_TABLE} ({', '.join(columns)}) from stdin") as copy:
            for record in records:
                copy.write_row(record)
    log.info("farrington: %d rows for %d weeks (parameters %s)", len(records), len(weeks), sha)
    return len(records)


def _first_changed_week(conn: psycopg.Connection, series: pd.DataFrame, sha: str) -> date | None:
    """The earliest week whose stored result may be out of date, or None: a week of the watched series
    without a result, a week whose watched count differs from the one its result was computed from
    (this also catches weeks that gained or lost data, e.g. school weeks filled in later), or the
    earliest week of data published since the last run (which can change a denominator, the
    population offset, without changing the count). A changed area register changes the population
    of every week: ewi.transform asks for a full recompute when the seeds were reloaded."""
    stored = pd.DataFrame(
        conn.execute(f"select area_code, indicator, week_start, observed from {RESULTS_TABLE} "  # noqa: S608
                     "where parameters_sha = %s", (sha,)).fetchall(),
        columns=["area_code", "indicator", "week_start", "stored"])
    merged = series.merge(stored, on=["area_code", "indicator", "week_start"], how="left", indicator=True)
    now, before = merged["observed"].astype(float), merged["stored"].astype(float)
    changed = (merged["_merge"] == "left_only") | ~((now == before) | (now.isna() & before.isna()))
    candidates = [merged.loc[changed, "week_start"].min()] if changed.any() else []
    since = conn.execute(f"select max(computed_at) from {RESULTS_TABLE} where parameters_sha = %s",  # noqa: S608
                         (sha,)).fetchone()[0]
    if since is not None:
        published = conn.execute(_PUBLISHED_SINCE, {"since": since}).fetchone()[0]
        if published is not None:
            candidates.append(published)
    return min(candidates) if candidates else None


def parameters_summary(params: dict) -> dict:
    return {"control": asdict(farrington_control(params))}
