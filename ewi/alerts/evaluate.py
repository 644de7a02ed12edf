"""`make eval`: how often the alert methods cry wolf, and how soon they see a real rise.

Two suites, both deterministic (fixed seeds), written as tables to docs/alert_evaluation.md:

1. Simulation (ewi.alerts.simulate, Noufaily et al. 2013 style): negative-binomial weekly series
   with seasonality, at mean levels from a few to hundreds a week, three years each (the history
   the pipeline will have), one outbreak per series in the last (monitored) year. Per method:
   false-positive rate per series-week on weeks without outbreak, probability of detecting the
   outbreak at all / in its first week / within 3 weeks, median weeks to detection.
2. `ewi synth`: three years of synthetic extracts without injected rises (false alerts per week
   across the municipality: 24 areas x 5 indicators) and with rises (several seeds; detection of
   each rise in ground_truth.json within 3 weeks). The area-week indicators are computed from the
   files in pandas following SOURCES.md, then watched as in ewi.alerts.series. Each rise seed is also
   generated without its rises (synth draws the same numbers otherwise), so the size of every rise
   as it shows in the watched series can be compared with its nominal size.

The seeds here are not the ones the per-indicator parameters were tuned on (docs/alerts.md), so the
figures are an honest out-of-sample measurement.

"At equal false-positive rate": EARS C2's threshold is re-calibrated so that its false-positive
rate equals the default method's, and its detection is reported at that threshold too.

Usage: python -m ewi.alerts.evaluate [--series 100] [--rise-seeds 12] [--out docs/alert_evaluation.md]
"""

from __future__ import annotations

import argparse
import io
import json
import math
import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from ewi import config
from ewi.alerts.ears import EarsControl, ears
from ewi.alerts.farrington import FarringtonControl, farrington_flexible
from ewi.alerts.runner import farrington_control, farrington_parameters, project_vars, rolling_weeks
from ewi.alerts.series import INDICATORS, monitored_series
from ewi.alerts.simulate import Scenario, rolling_sum, simulate_series

METHODS = ("farrington", "ears_c1", "ears_c2", "ears_c3")
MONITORED_WEEKS = 52
END_WEEK = "2026-W47"  # synth's default end is "last complete week"; fixed here for reproducibility
#: Not the seeds the per-indicator alpha and windows were tuned on (500-502, 600-631).
QUIET_SEEDS = (510, 511)
RISE_SEED_BASE = 700
#: Simulated series; `indicator` = watched and tested with that indicator's window and alpha
#: (None: the weekly count at the default alpha). The "target" scenarios are rises of exactly the
#: issue's size (+50 % absence, +100 % referrals/contacts) at the levels the synth areas have.
SCENARIOS = (
    Scenario("referral-like, 1/week", level=1.0, phi=1.1, indicator="referrals"),
    Scenario("contact-like, 2/week", level=2.0, phi=1.1, indicator="contacts"),
    Scenario("weekly, 5/week", level=5),
    Scenario("weekly, 20/week", level=20),
    Scenario("weekly, 60/week", level=60),
    Scenario("weekly, 200/week", level=200, phi=2.0),
    Scenario("sustained x1.5-2, 20/week", level=20, outbreak="sustained"),
    Scenario("target: x1.5 sustained, 30/week (chronic_absence)", level=30, phi=1.2, outbreak="sustained",
             size=(1.5,), indicator="chronic_absence"),
    Scenario("target: x1.5 sustained, 15/week (invalid_absence)", level=15, phi=1.2, outbreak="sustained",
             size=(1.5,), indicator="invalid_absence"),
    Scenario("target: x2 sustained, 1/week (referrals)", level=1.0, phi=1.1, outbreak="sustained",
             size=(2.0,), indicator="referrals"),
    Scenario("target: x2 sustained, 2/week (contacts)", level=2.0, phi=1.1, outbreak="sustained",
             size=(2.0,), indicator="contacts"),
)


@dataclass(frozen=True)
class Settings:
    """Everything the methods are configured with (dbt_project.yml's # alerts block)."""

    farrington: dict  # farrington var (alpha may be per indicator)
    rolling: dict  # indicator -> weeks summed
    ears: EarsControl
    default: str
    min_count: int  # the mart's alert_min_count: no alert on a smaller watched count

    def farrington_for(self, indicator: str | None) -> FarringtonControl:
        return farrington_control(self.farrington, indicator)


def _controls() -> Settings:
    vars_ = project_vars()
    min_count = int(vars_.get("alert_min_count", 5))
    ears_control = EarsControl(
        baseline=int(vars_.get("ears_baseline_weeks", 7)), z=float(vars_.get("ears_z", 3.0)),
        min_sigma=float(vars_.get("ears_min_sigma", 1.0)), c3_threshold=float(vars_.get("ears_c3_threshold", 2.0)),
        min_count=min_count,
    )
    return Settings(farrington_parameters(), rolling_weeks(), ears_control,
                    str(vars_.get("ewi_default_alert_method", "farrington")), min_count)


@dataclass
class Scored:
    """Alerts and calibration statistics of every method over the monitored weeks of one series."""

    alerts: dict[str, np.ndarray] = field(default_factory=dict)
    c2_statistic: np.ndarray | None = None  # -inf where C2 cannot alert (no baseline, < min_count)


def score_series(observed: np.ndarray, week_starts: list[date], population: np.ndarray | None,
                 monitored: range, fc: FarringtonControl, ec: EarsControl) -> Scored:
    scored = Scored()
    results = farrington_flexible(observed, week_starts, fc, population=population, weeks=monitored)
    # The mart's rule (area_alerts.sql): no alert on a watched count below alert_min_count.
    scored.alerts["farrington"] = np.array([r.is_alert and r.observed >= ec.min_count for r in results])
    values = [None if not np.isfinite(v) else float(v) for v in observed]
    for method in ("ears_c1", "ears_c2", "ears_c3"):
        weeks = ears(values, method, ec)
        scored.alerts[method] = np.array([weeks[k].is_alert for k in monitored])
        if method == "ears_c2":
            scored.c2_statistic = np.array([
                weeks[k].statistic if weeks[k].statistic is not None and weeks[k].observed >= ec.min_count
                else -np.inf for k in monitored])
    return scored


# ---------------------------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------------------------

def detection_metrics(alerts: np.ndarray, outbreak: np.ndarray, starts: list[int]) -> dict:
    """alerts, outbreak: series x monitored-week booleans (outbreak = weeks affected by the outbreak);
    starts: the outbreak's first monitored week per series."""
    fp_weeks = ~outbreak
    fpr = float(alerts[fp_weeks].mean()) if fp_weeks.any() else math.nan
    delays, within1, within3 = [], 0, 0
    for i, start in enumerate(starts):
        hits = np.flatnonzero(alerts[i] & outbreak[i])
        hits = hits[hits >= start]
        if len(hits):
            delay = int(hits[0] - start)
            delays.append(delay)
            within1 += delay == 0
            within3 += delay <= 2
    n = len(starts)
    return {
        "fpr": fpr, "pod": len(delays) / n if n else math.nan, "pod_week1": within1 / n if n else math.nan,
        "pod_3weeks": within3 / n if n else math.nan,
        "median_delay": float(np.median(delays)) if delays else math.nan, "n": n,
    }


def _calibrated_threshold(statistic: np.ndarray, outbreak: np.ndarray, fpr: float) -> float:
    """The C2 threshold whose false-positive rate on non-outbreak weeks is (at most) fpr."""
    values = np.sort(statistic[~outbreak])[::-1]
    allowed = int(math.floor(fpr * len(values)))
    if allowed >= len(values):
        return -np.inf
    return float(values[allowed]) if np.isfinite(values[allowed]) else float(values[values > -np.inf].min(initial=0))


# ---------------------------------------------------------------------------------------------
# Suite 1: simulation
# ---------------------------------------------------------------------------------------------

def _simulate_chunk(args) -> dict:
    scenario, seeds, settings, weeks = args
    # Simulated series have no population.
    fc = replace(settings.farrington_for(scenario.indicator), population_offset=False)
    ec = settings.ears
    window = settings.rolling.get(scenario.indicator, 1)
    rows = {m: [] for m in METHODS}
    c2, masks, starts = [], [], []
    for seed in seeds:
        s = simulate_series(scenario, seed, weeks=weeks, monitored=min(MONITORED_WEEKS, weeks - 8))
        observed = rolling_sum(s.observed, window)
        n = len(observed)
        monitored = range(n - min(MONITORED_WEEKS, weeks - 8), n)
        scored = score_series(observed, s.week_starts, None, monitored, fc, ec)
        affected = rolling_sum((s.outbreak > 0).astype(float), window) > 0
        affected = np.nan_to_num(affected, nan=0).astype(bool)[monitored.start:]
        for m in METHODS:
            rows[m].append(scored.alerts[m])
        c2.append(scored.c2_statistic)
        masks.append(affected)
        starts.append(s.outbreak_start - monitored.start)
    return {"rows": {m: np.array(v) for m, v in rows.items()}, "c2": np.array(c2), "mask": np.array(masks),
            "starts": starts}


def simulation_suite(n_series: int, settings: Settings, pool, weeks: int = 156) -> list[dict]:
    tasks = []
    for i, scenario in enumerate(SCENARIOS):
        seeds = [1000 * (i + 1) + j for j in range(n_series)]
        half = len(seeds) // 2 or 1
        tasks += [(i, (scenario, seeds[:half], settings, weeks)), (i, (scenario, seeds[half:], settings, weeks))]
    chunks = list(pool.map(_simulate_chunk, [t[1] for t in tasks]))
    out = []
    for i, scenario in enumerate(SCENARIOS):
        parts = [c for (j, _), c in zip(tasks, chunks, strict=True) if j == i and len(c["starts"])]
        mask = np.concatenate([p["mask"] for p in parts])
        starts = sum((p["starts"] for p in parts), [])
        c2 = np.concatenate([p["c2"] for p in parts])
        metrics = {}
        for m in METHODS:
            metrics[m] = detection_metrics(np.concatenate([p["rows"][m] for p in parts]), mask, starts)
        threshold = _calibrated_threshold(c2, mask, metrics["farrington"]["fpr"])
        metrics["ears_c2 @ farrington FPR"] = {**detection_metrics(c2 > threshold, mask, starts),
                                               "z": threshold}
        window = settings.rolling.get(scenario.indicator, 1)
        out.append({"scenario": scenario.name, "metrics": metrics, "window": window,
                    "alpha": settings.farrington_for(scenario.indicator).alpha})
    return out


# ---------------------------------------------------------------------------------------------
# Suite 2: ewi synth
# ---------------------------------------------------------------------------------------------

def _read_extract(path: Path) -> pd.DataFrame:
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("cp1252")
    first = text.split("\n", 1)[0]
    return pd.read_csv(io.StringIO(text), sep=";" if ";" in first else ",", dtype=str)


def _read_source(folder: Path, source: str) -> pd.DataFrame:
    frames = [_read_extract(p) for p in sorted(folder.glob(f"{source}_*.csv"))]
    return pd.concat(frames, ignore_index=True)


def _trailing(matrix: np.ndarray, window: int) -> np.ndarray:
    c = np.cumsum(matrix, axis=1)
    out = c.copy()
    out[:, window:] = c[:, window:] - c[:, :-window]
    return out


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
    sched4, absent4, invalid4 = (_trailing(m, 4) for m in (sched, valid + invalid, invalid))
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
    signals = sum((_trailing(m.astype(float), 12) > 0).astype(int) for m in (invalid_flag, has_referral, has_contact))
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


def _synth_counts(folder: Path, seed: int, rises: bool, weeks: int) -> tuple[pd.DataFrame, list[dict]]:
    from ewi import synth

    out = folder / f"seed{seed}-{'rises' if rises else 'none'}"
    synth.generate(out, weeks=weeks, end_week=END_WEEK, seed=seed, rises=rises)
    truth = json.loads((out / "ground_truth.json").read_text(encoding="utf-8"))["rises"]
    areas = pd.read_csv(config.AREAS_SEED, dtype={"area_code": str})
    counts = indicator_counts(out, areas)
    shutil.rmtree(out, ignore_errors=True)
    return counts, truth


def _rise_sizes(with_rises: pd.DataFrame, without: pd.DataFrame, truth: list[dict]) -> list[dict]:
    """Each rise as it shows in its watched series: observed with the rise / observed without it (the
    same seed generated without rises), over the rise's first three weeks and over all of it."""
    a = with_rises.set_index(["area_code", "indicator", "week_start"])["observed"]
    b = without.set_index(["area_code", "indicator", "week_start"])["observed"]
    sizes = []
    for rise in truth:
        first = date.fromisoformat(rise["week_start"])
        days = [first + timedelta(weeks=j) for j in range(rise["duration_weeks"])]
        keys = [(rise["area_code"], rise["indicator"], d) for d in days if (rise["area_code"], rise["indicator"], d) in a.index]
        with_, base = a.reindex(keys).to_numpy(), b.reindex(keys).to_numpy()
        ok = np.isfinite(with_) & np.isfinite(base)
        first3 = ok & (np.arange(len(keys)) < 3)
        sizes.append({"indicator": rise["indicator"], "size": rise["size"],
                      "first3": float(with_[first3].sum() / base[first3].sum()) if base[first3].sum() else math.nan,
                      "whole": float(with_[ok].sum() / base[ok].sum()) if base[ok].sum() else math.nan,
                      "baseline_weekly": float(base[ok].mean()) if ok.any() else math.nan})
    return sizes


def _score_synth(args) -> dict:
    folder, seed, rises, settings, weeks = args
    folder = Path(folder)
    counts, truth = _synth_counts(folder, seed, rises, weeks)
    series = monitored_series(counts, settings.rolling)
    result = {"alerts": {}, "c2": {}, "weeks": None, "truth": truth, "sizes": []}
    if rises:
        # The same seed without rises: synth's draws do not depend on the rises, so this is the
        # counterfactual of every rise series (weekly counts, to size the rises as injected).
        quiet_counts, _ = _synth_counts(folder, seed, False, weeks)
        weekly = dict.fromkeys(INDICATORS, 1)
        result["sizes"] = _rise_sizes(monitored_series(counts, weekly), monitored_series(quiet_counts, weekly), truth)
    wanted = {(r["area_code"], r["indicator"]) for r in truth} if rises else None
    for (area, indicator), group in series.groupby(["area_code", "indicator"], sort=True):
        if wanted is not None and (area, indicator) not in wanted:
            continue
        fc = settings.farrington_for(indicator)
        week_starts = list(group["week_start"])
        monitored = range(max(0, len(week_starts) - MONITORED_WEEKS), len(week_starts))
        population = group["population"].to_numpy() if fc.population_offset else None
        scored = score_series(group["observed"].to_numpy(), week_starts, population, monitored, fc, settings.ears)
        result["alerts"][(area, indicator)] = scored.alerts
        result["c2"][(area, indicator)] = scored.c2_statistic
        result["weeks"] = week_starts[monitored.start:]
    return result


def _new_alerts(stack: np.ndarray) -> np.ndarray:
    """The first week of each run of consecutive alert weeks (series x weeks booleans)."""
    return stack & ~np.pad(stack, ((0, 0), (1, 0)))[:, :-1]


def synth_suite(rise_seeds: int, settings: Settings, pool, workdir: Path, weeks: int = 156,
                quiet_seeds: tuple[int, ...] = QUIET_SEEDS) -> dict:
    tasks = [(str(workdir), seed, False, settings, weeks) for seed in quiet_seeds]
    tasks += [(str(workdir), RISE_SEED_BASE + i, True, settings, weeks) for i in range(rise_seeds)]
    results = list(pool.map(_score_synth, tasks))
    quiet, risen = results[:len(quiet_seeds)], results[len(quiet_seeds):]
    n_weeks = len(quiet[0]["weeks"]) * len(quiet)  # municipality-weeks
    false_alerts, episodes = {}, {}
    for m in METHODS:
        stack = np.array([a[m] for q in quiet for a in q["alerts"].values()])
        false_alerts[m] = stack.sum() / n_weeks
        episodes[m] = _new_alerts(stack).sum() / n_weeks
    default_by_indicator = {}
    for indicator in INDICATORS:
        stack = np.array([a[settings.default] for q in quiet for (_, i), a in q["alerts"].items() if i == indicator])
        default_by_indicator[indicator] = (_new_alerts(stack).sum() / n_weeks, stack.sum() / n_weeks)
    series_weeks = np.array([a[settings.default] for q in quiet for a in q["alerts"].values()])
    fpr_default = series_weeks.mean()
    c2_quiet = np.concatenate([c for q in quiet for c in q["c2"].values()])
    threshold = _calibrated_threshold(c2_quiet, np.zeros(len(c2_quiet), dtype=bool), fpr_default)
    calibrated_false = (c2_quiet > threshold).sum() / n_weeks

    per_rise = []
    for r in risen:
        for rise in r["truth"]:
            key = (rise["area_code"], rise["indicator"])
            start_day = date.fromisoformat(rise["week_start"])
            if key not in r["alerts"] or start_day not in r["weeks"]:
                continue
            start = r["weeks"].index(start_day)
            row = {"indicator": rise["indicator"], "size": rise["size"], "duration": rise["duration_weeks"]}
            for m in METHODS:
                hits = np.flatnonzero(r["alerts"][key][m][start:start + rise["duration_weeks"] + 3])
                row[m] = int(hits[0]) if len(hits) else None
            hits = np.flatnonzero(r["c2"][key][start:start + rise["duration_weeks"] + 3] > threshold)
            row["ears_c2 @ farrington FPR"] = int(hits[0]) if len(hits) else None
            per_rise.append(row)
    return {
        "series": len(quiet[0]["alerts"]), "weeks": len(quiet[0]["weeks"]), "quiet_seeds": list(quiet_seeds),
        "false_alerts_per_week": false_alerts, "false_episodes_per_week": episodes,
        "default_by_indicator": default_by_indicator, "fpr_default": float(fpr_default),
        "c2_calibrated_z": threshold, "c2_calibrated_false_per_week": float(calibrated_false),
        "rises": per_rise, "rise_sizes": [x for r in risen for x in r["sizes"]],
    }


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------

def _pct(v: float) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.1f} %"


def _num(v: float, digits: int = 1) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def render(sim: list[dict], syn: dict, settings: Settings, n_series: int, rise_seeds: int,
           elapsed: float) -> str:
    fc, ec, default = settings.farrington_for(None), settings.ears, settings.default
    alphas = ", ".join(f"{i} {settings.farrington_for(i).alpha:g}" for i in INDICATORS)
    windows = ", ".join(f"{i} {n}" for i, n in settings.rolling.items() if n > 1) or "none"
    lines = [
        "# Alert evaluation",
        "",
        "Generated by `python -m ewi.alerts.evaluate` (`make eval`); do not edit by hand. Methods and the",
        "series they watch: [alerts.md](alerts.md).",
        "",
        f"Parameters: Farrington-flexible b={fc.b}, w={fc.w}, alpha per indicator ({alphas}), "
        f"noPeriods={fc.no_periods}, "
        f"pastWeeksNotIncluded={fc.past_weeks_not_included}, threshold={fc.threshold_method}, "
        f"reweighting above {fc.weights_threshold}, limit54={list(fc.limit54)}; EARS baseline {ec.baseline} weeks, "
        f"z={ec.z}, min_sigma={ec.min_sigma}, C3 threshold {ec.c3_threshold}, no alert below {ec.min_count}. "
        f"Default method: `{default}`. Rolling sums (weeks): {windows}; other series weekly.",
        f"Run: {n_series} series per scenario, {rise_seeds} synth seeds with rises (seeds {RISE_SEED_BASE}-"
        f"{RISE_SEED_BASE + rise_seeds - 1}), quiet seeds {', '.join(map(str, syn['quiet_seeds']))}, {elapsed:.0f} s.",
        "",
        "## 1. Simulated series (Noufaily et al. 2013 style)",
        "",
        "Three years of negative-binomial weekly counts with seasonality; one outbreak per series in the",
        "last year, which is the monitored one. FPR = alerts per series-week without outbreak; POD = share",
        "of outbreaks with an alert while they last; wk1 / ≤3 wk = alert in the outbreak's first week / within",
        "its first three; delay = median weeks from the outbreak's start to the first alert (0 = first week).",
        "'ears_c2 @ farrington FPR' is C2 with its threshold lowered or raised to Farrington's FPR.",
        "A scenario named after an indicator is watched (window) and tested (alpha) as that indicator is;",
        "'target' scenarios are rises of exactly the issue's size at the synth areas' levels.",
        "",
        "| scenario (window, Farrington alpha) | method | FPR | POD | POD wk1 | POD ≤3 wk | median delay |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for s in sim:
        for m, v in s["metrics"].items():
            label = m + (f" (z={_num(v['z'], 2)})" if "z" in v else "")
            lines.append(f"| {s['scenario']} ({s['window']} wk, {s['alpha']:g}) | {label} | {_pct(v['fpr'])} | "
                         f"{_pct(v['pod'])} | {_pct(v['pod_week1'])} | {_pct(v['pod_3weeks'])} | "
                         f"{_num(v['median_delay'])} |")
    rises = pd.DataFrame(syn["rises"])
    lines += [
        "",
        "## 2. `ewi synth` data",
        "",
        f"Without injected rises: {syn['series']} series (24 areas x 5 indicators), the last {syn['weeks']} weeks",
        f"of three years, {len(syn['quiet_seeds'])} data sets (figures per municipality-week, averaged). Every "
        "alert is a false alert.",
        "'alert-weeks' counts every series-week with an alert; 'new alerts' counts only the first week of a run",
        "of consecutive alert weeks on a series.",
        "",
        "| method | false alert-weeks per week (municipality) | new false alerts per week | per 4 weeks |",
        "| --- | ---: | ---: | ---: |",
    ]
    for m in METHODS:
        lines.append(f"| {m} | {_num(syn['false_alerts_per_week'][m], 2)} | "
                     f"{_num(syn['false_episodes_per_week'][m], 2)} | {_num(4 * syn['false_episodes_per_week'][m], 2)} |")
    lines.append(f"| ears_c2 @ farrington FPR (z={_num(syn['c2_calibrated_z'], 2)}) | "
                 f"{_num(syn['c2_calibrated_false_per_week'], 2)} | | |")
    lines += ["", f"The default method (`{default}`) per indicator:", "",
              "| indicator | new false alerts per 4 weeks | false alert-weeks per 4 weeks |", "| --- | ---: | ---: |"]
    for indicator, (new, weeks) in syn["default_by_indicator"].items():
        lines.append(f"| {indicator} | {_num(4 * new, 2)} | {_num(4 * weeks, 2)} |")
    lines += [
        "",
        f"With injected rises ({len(rises)} rises over {rise_seeds} seeds; a rise counts as detected within",
        "three weeks when its series alerts in the rise's first three weeks):",
        "",
        "| indicator | rises | " + " | ".join(f"{m} ≤3 wk" for m in [*METHODS, "ears_c2 @ farrington FPR"]) + " |",
        "| --- | ---: | " + " | ".join("---:" for _ in range(len(METHODS) + 1)) + " |",
    ]
    columns = [*METHODS, "ears_c2 @ farrington FPR"]
    groups = [("all", rises)] + [(i, rises[rises["indicator"] == i]) for i in sorted(rises["indicator"].unique())] \
        if len(rises) else [("all", rises)]
    for name, g in groups:
        cells = [_pct(float((g[m].notna() & (g[m] <= 2)).mean())) if len(g) else "–" for m in columns]
        lines.append(f"| {name} | {len(g)} | " + " | ".join(cells) + " |")
    lines += _rise_size_table(syn["rise_sizes"])
    lines += ["", "## Targets (default method)", ""] + _targets(sim, syn, default, rises) + [""]
    return "\n".join(lines)


def _rise_size_table(sizes: list[dict]) -> list[str]:
    if not sizes:
        return []
    frame = pd.DataFrame(sizes)
    lines = [
        "",
        "How big the injected rises are in the watched series: the weekly count with the rise divided by",
        "the same seed's weekly count without it (synth draws the same numbers otherwise), summed over the",
        "rise's first three weeks and over all of it. The issue's definition: x1.5 (absence), x2 (counts).",
        "",
        "| indicator | nominal size | rises | first 3 weeks: median (min-max) | whole rise: median | "
        "rises below the issue's size in weeks 1-3 | baseline weekly count (median) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for (indicator, size), g in frame.groupby(["indicator", "size"]):
        target = 1.5 if indicator.endswith("absence") else 2.0
        lines.append(f"| {indicator} | x{size:g} | {len(g)} | x{_num(g['first3'].median(), 2)} "
                     f"({_num(g['first3'].min(), 2)}-{_num(g['first3'].max(), 2)}) | x{_num(g['whole'].median(), 2)} | "
                     f"{int((g['first3'] < target).sum())} | {_num(g['baseline_weekly'].median(), 1)} |")
    return lines


def _targets(sim: list[dict], syn: dict, default: str, rises: pd.DataFrame) -> list[str]:
    new_per_4 = 4 * syn["false_episodes_per_week"][default]
    weeks_per_4 = 4 * syn["false_alerts_per_week"][default]
    detected = float((rises[default].notna() & (rises[default] <= 2)).mean()) if len(rises) else math.nan
    better = [s["scenario"] for s in sim
              if s["metrics"]["farrington"]["pod"] > s["metrics"]["ears_c2 @ farrington FPR"]["pod"]]
    met = lambda ok: "**met**" if ok else "**not met**"  # noqa: E731
    return [
        f"- ≤ 1 false alert per 4 weeks across the municipality (data without rises): {new_per_4:.2f} new alerts "
        f"per 4 weeks ({weeks_per_4:.2f} alert-weeks per 4 weeks): {met(new_per_4 <= 1)} for new alerts, "
        f"{met(weeks_per_4 <= 1)} for alert-weeks.",
        f"- ≥ 80 % of injected sustained rises detected within three weeks: {_pct(detected)} of {len(rises)}: "
        f"{met(detected >= 0.8)}.",
        f"- Higher detection than EARS C2 at equal false-positive rate: Farrington's POD is higher in "
        f"{len(better)} of {len(sim)} simulated scenarios ({'; '.join(better) or 'none'}).",
    ]


def run(n_series: int = 100, rise_seeds: int = 12, out: Path | None = None, workers: int = 2,
        weeks: int = 156, quiet_seeds: tuple[int, ...] = QUIET_SEEDS) -> dict:
    """Both suites; `weeks` of history per series (smaller only for smoke tests)."""
    started = time.monotonic()
    settings = _controls()
    with ProcessPoolExecutor(max_workers=workers) as pool, tempfile.TemporaryDirectory(prefix="ewi-eval-") as tmp:
        sim = simulation_suite(n_series, settings, pool, weeks)
        syn = synth_suite(rise_seeds, settings, pool, Path(tmp), weeks, quiet_seeds)
    elapsed = time.monotonic() - started
    report = render(sim, syn, settings, n_series, rise_seeds, elapsed)
    if out is not None:
        Path(out).write_text(report, encoding="utf-8")
    return {"simulation": sim, "synth": syn, "report": report, "elapsed_s": elapsed}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--series", type=int, default=100, help="simulated series per scenario")
    parser.add_argument("--rise-seeds", type=int, default=12, help="ewi synth data sets with injected rises")
    parser.add_argument("--out", type=Path, default=config.PROJECT_ROOT / "docs" / "alert_evaluation.md")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    result = run(args.series, args.rise_seeds, args.out, args.workers)
    print(result["report"])
    print(f"\nwritten to {args.out} in {result['elapsed_s']:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
