"""The Farrington task: indicator counts in the warehouse -> alerts.farrington_results.

Run after the indicator models are built (it reads intermediate.int_area_weekly_counts, the
unsuppressed area x week x indicator grid) and before the alert models, which read its output as
source('alerts', 'farrington_results'). Parameters come from the `# alerts` block of
dbt_project.yml's vars (the same place as the EARS parameters), so one file configures every method.

Incremental: a week is recomputed when it has no row yet, when it is among the last `refresh_weeks`
weeks of the data (late corrections land there), or when the parameters changed (full recompute).
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
    "b": 2, "w": 3, "alpha": 0.002,  # or indicator -> alpha ("default" for the rest) "no_periods": 10, "past_weeks_not_included": 26,
    "weights_threshold": 2.58, "threshold_method": "nbPlugin", "p_threshold_trend": 0.05,
    "limit54": [5, 4], "population_offset": True, "refresh_weeks": 26,
}


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
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:16]


def compute(counts: pd.DataFrame, params: dict, weeks: set[date] | None = None,
            rolling: dict[str, int] | None = None) -> pd.DataFrame:
    """Farrington results for every area x indicator series in `counts` (only for `weeks` if given)."""
    series = monitored_series(counts, rolling)
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
    all_weeks = sorted(set(counts["week_start"]))
    done = {
        row[0] for row in conn.execute(
            f"select distinct week_start from {RESULTS_TABLE} where parameters_sha = %s",  # noqa: S608
            (sha,)).fetchall()
    }
    if full or conn.execute(
            f"select count(*) from {RESULTS_TABLE} where parameters_sha <> %s", (sha,)).fetchone()[0]:  # noqa: S608
        done = set()
    refresh = set(all_weeks[-int(params["refresh_weeks"]):])
    weeks = {d for d in all_weeks if d not in done or d in refresh}
    results = compute(counts, params, weeks, rolling)
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
        if not done:
            conn.execute(f"delete from {RESULTS_TABLE}")  # noqa: S608
        conn.execute(f"delete from {RESULTS_TABLE} where week_start = any(%s)", (sorted(weeks),))  # noqa: S608
        with conn.cursor().copy(f"copy {RESULTS_TABLE} ({', '.join(columns)}) from stdin") as copy:
            for record in records:
                copy.write_row(record)
    log.info("farrington: %d rows for %d weeks (parameters %s)", len(records), len(weeks), sha)
    return len(records)


def parameters_summary(params: dict) -> dict:
    return {"control": asdict(farrington_control(params)), "refresh_weeks": params["refresh_weeks"]}
