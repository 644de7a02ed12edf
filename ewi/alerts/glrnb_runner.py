"""The glrnb task: Farrington's weekly expectations -> the negative-binomial GLR -> alerts.glrnb_results.

Runs right after the Farrington task (ewi.alerts.run_farrington) on the same thread of the build, and
reads what that task wrote: every area x indicator x week's watched count, Farrington's expectation
(mu0, the in-control mean) and its dispersion phi. Why Farrington's baseline rather than R's default
(a glm.nb with harmonics fitted once on a training period): the warehouse holds 1-3 years and grows
every week, and Farrington's expectation for a week is already predicted from earlier years only,
with the population offset, past outbreaks down-weighted and the last 26 weeks left out, so a rise
does not become its own baseline; the GLR then adds what Farrington lacks, accumulating the excess
over consecutive weeks. Overdispersion: `alpha: farrington` (default) turns Farrington's quasi-Poisson
variance phi * mu0 into the negative binomial's mu0 + alpha * mu0^2 week by week,
alpha = (phi - 1) / mu0; a number fixes it.

Incremental: a week's statistic depends on that week and the earlier weeks of its chart (since the
last alarm or gap) only. So per series the task finds the first week whose input (count, mu0, alpha)
differs from what its stored result was computed from, and recomputes from there, resuming the chart
that week belongs to from the chart's first week (stored); earlier weeks keep their results. Everything
is recomputed when the parameters changed. A new week of data costs about one week per series; a full
computation of three years of 120 series takes about a minute (docs/alerts.md, measured).
Parameters: the `glrnb` block of dbt_project.yml's vars (see DEFAULTS).
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import psycopg

from ewi.alerts.glrnb import GlrnbControl, glrnb_series
from ewi.alerts.runner import project_vars

log = logging.getLogger(__name__)

RESULTS_TABLE = "alerts.glrnb_results"
SOURCE_TABLE = "alerts.farrington_results"
#: Used where dbt_project.yml has no `glrnb` var (kept equal to the block there).
DEFAULTS = {
    "c_arl": 5.0,  # or indicator -> c_arl ("default" for the rest)
    "alpha": "farrington",  # or a number (0 = Poisson)
    "m": -1,  # furthest change point back (-1: every week since the chart started)
    "m_tilde": 1,
    "direction": "inc",
}
COLUMNS = ["area_code", "indicator", "week_start", "observed", "expected", "alpha", "statistic", "c_arl",
           "cases_needed", "is_alert", "status", "chart_start"]


def glrnb_parameters(project_dir: Path | None = None) -> dict:
    return {**DEFAULTS, **(project_vars(project_dir).get("glrnb") or {})}


def c_arl_for(params: dict, indicator: str | None = None) -> float:
    value = params["c_arl"]
    if isinstance(value, dict):
        return float(value.get(indicator, value.get("default", DEFAULTS["c_arl"])))
    return float(value)


def glrnb_control(params: dict, indicator: str | None = None, ret: str = "value") -> GlrnbControl:
    return GlrnbControl(c_arl=c_arl_for(params, indicator), alpha=0.0, m=int(params["m"]),
                        m_tilde=int(params["m_tilde"]), direction=params["direction"], ret=ret)


def overdispersion(params: dict, expected: np.ndarray, phi: np.ndarray) -> np.ndarray:
    """alpha per week: from Farrington's phi (variance phi * mu0 = mu0 + alpha * mu0^2), or fixed."""
    if params["alpha"] == "farrington":
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.maximum(0.0, (np.asarray(phi, dtype=float) - 1) / np.asarray(expected, dtype=float))
    return np.full(len(expected), float(params["alpha"]))


def glrnb_alarms(series: pd.DataFrame, params: dict | None = None, indicator: str | None = None) -> np.ndarray:
    """The weeks where glrnb alarms, for one area x indicator series: `series` has one row per week
    in order with `observed`, `expected` (Farrington's) and `phi`; params is the `glrnb` block (default
    DEFAULTS). The alarm alone, before the pipeline's minimum count (alert_min_count) is applied.
    For the alert evaluation (ewi.alerts.evaluation)."""
    params = {**DEFAULTS, **(params or {})}
    expected = series["expected"].to_numpy(dtype=float)
    alpha = overdispersion(params, expected, series["phi"].to_numpy(dtype=float))
    alarm, _, _ = glrnb_series(series["observed"].to_numpy(dtype=float), expected, alpha,
                               glrnb_control(params, indicator))
    return alarm


def _chart_starts(usable: np.ndarray, alarm: np.ndarray) -> np.ndarray:
    """Index of the first week of the chart each usable week belongs to (-1 for unusable weeks): a
    chart starts at the first usable week after a gap or after an alarm."""
    starts = np.full(len(usable), -1)
    current = -1
    for i in range(len(usable)):
        if not usable[i]:
            current = -1
            continue
        if current == -1:
            current = i
        starts[i] = current
        if alarm[i]:
            current = -1
    return starts


def _resume_point(observed, expected, alpha, stored: pd.DataFrame | None) -> tuple[int, int | None]:
    """(first week to recompute, first week of its chart) for one series against its stored results
    (same order and weeks; None = nothing stored): the first week whose count, mu0 or alpha differs
    from the stored one's, or that has no stored result. len(series) when nothing changed."""
    n = len(observed)
    if stored is None or len(stored) == 0:
        return 0, None
    usable = ~(np.isnan(observed) | np.isnan(expected) | np.isnan(alpha)) & (np.nan_to_num(expected) > 0)
    # as stored: mu0 and alpha only where the week has a statistic
    now = np.column_stack([observed, np.where(usable, expected, np.nan), np.where(usable, alpha, np.nan)])
    before = stored[["observed", "expected", "alpha"]].to_numpy(dtype=float)
    same = np.all((now == before) | (np.isnan(now) & np.isnan(before)), axis=1) & stored["present"].to_numpy()
    changed = np.flatnonzero(~same)
    first = int(changed[0]) if len(changed) else n
    if first == 0 or first == n:
        return first, None
    previous = stored.iloc[first - 1]
    if pd.isna(previous["chart_start"]) or bool(previous["is_alert"]):
        return first, first  # week first starts a chart (after a gap or an alarm)
    return first, int(stored.index.get_loc(previous["chart_start"])) if previous["chart_start"] in stored.index else 0


def compute(farrington: pd.DataFrame, params: dict, with_cases: bool = True,
            stored: pd.DataFrame | None = None) -> pd.DataFrame:
    """glrnb results for every area x indicator series of Farrington's results (columns area_code,
    indicator, week_start, observed, expected, phi, status). With `stored` (earlier results for the
    same parameters, COLUMNS) only the weeks from each series' first changed one are recomputed."""
    parts = []
    frame = farrington.sort_values(["area_code", "indicator", "week_start"], kind="stable")
    stored_by_series = {} if stored is None else {key: g for key, g in stored.groupby(["area_code", "indicator"])}
    for (area_code, indicator), group in frame.groupby(["area_code", "indicator"], sort=True):
        observed = group["observed"].to_numpy(dtype=float)
        expected = group["expected"].to_numpy(dtype=float)
        alpha = overdispersion(params, expected, group["phi"].to_numpy(dtype=float))
        control = glrnb_control(params, indicator, "cases" if with_cases else "value")
        weeks = group["week_start"].to_numpy()
        earlier = None
        if (area_code, indicator) in stored_by_series:
            earlier = (stored_by_series[(area_code, indicator)].set_index("week_start")
                       .reindex(weeks).assign(present=lambda f: f["status"].notna()))
            earlier["present"] = earlier["present"].astype(bool)
        first, chart_start = _resume_point(observed, expected, alpha, earlier)
        alarm, statistic, cases = glrnb_series(observed, expected, alpha, control, resume_from=first,
                                               chart_start=chart_start)
        if first > 0:
            keep = slice(0, first)
            alarm[keep] = earlier["is_alert"].to_numpy(dtype=bool)[keep]
            statistic[keep] = earlier["statistic"].to_numpy(dtype=float)[keep]
            cases[keep] = earlier["cases_needed"].to_numpy(dtype=float)[keep]
        usable = ~np.isnan(statistic)
        starts = _chart_starts(usable, alarm)
        farrington_status = group["status"].to_numpy()
        status = np.where(np.isnan(observed), "no_data",
                          np.where(usable, "ok",
                                   np.where(farrington_status == "no_convergence", "no_convergence",
                                            "insufficient_history")))
        parts.append(pd.DataFrame({
            "area_code": area_code, "indicator": indicator, "week_start": weeks,
            "observed": observed, "expected": np.where(usable, expected, np.nan),
            "alpha": np.where(usable, alpha, np.nan), "statistic": statistic, "c_arl": control.c_arl,
            "cases_needed": cases if with_cases else np.nan, "is_alert": alarm, "status": status,
            "chart_start": [weeks[s] if s >= 0 else None for s in starts],
        }))
    if not parts:
        return pd.DataFrame(columns=COLUMNS)
    return pd.concat(parts, ignore_index=True)[COLUMNS]


def _fingerprint(params: dict) -> str:
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:16]


def run_glrnb(conn: psycopg.Connection, project_dir: Path | None = None) -> int:
    """Compute glrnb for every series from alerts.farrington_results and replace alerts.glrnb_results
    with it; returns the number of rows written. Deterministic for given input."""
    params = glrnb_parameters(project_dir)
    farrington = pd.DataFrame(
        conn.execute(f"select area_code, indicator, week_start, observed, expected, phi, status from {SOURCE_TABLE}"  # noqa: S608
                     ).fetchall(),
        columns=["area_code", "indicator", "week_start", "observed", "expected", "phi", "status"])
    sha = _fingerprint(params)
    stored = pd.DataFrame(
        conn.execute(f"select {', '.join(COLUMNS)} from {RESULTS_TABLE} where parameters_sha = %s", (sha,)).fetchall(),  # noqa: S608
        columns=COLUMNS)
    results = compute(farrington, params, stored=stored if len(stored) else None)
    results["parameters_sha"] = sha
    columns = list(results.columns)
    records = [
        tuple(None if (isinstance(v, float) and np.isnan(v)) else (v.item() if hasattr(v, "item") else v)
              for v in row)
        for row in results.itertuples(index=False, name=None)
    ]
    with conn.transaction():
        conn.execute(f"delete from {RESULTS_TABLE}")  # noqa: S608
        with conn.cursor().copy(f"copy {RESULTS_TABLE} ({', '.join(columns)}) from stdin") as copy:
            for record in records:
                copy.write_row(record)
    log.info("glrnb: %d rows (parameters %s)", len(records), _fingerprint(params))
    return len(records)
