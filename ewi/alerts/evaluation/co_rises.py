"""The area score against single indicators on co-occurring rises (issue 18).

Data: `ewi synth` without single rises and with `co_rises` co-occurring rises per data set (a group
forming in an area: unexcused absence, reports of concern and contacts of one area rise together,
each weakly; synth.CO_RISE_SIZES), and the evaluation's quiet data sets (no rises at all) for the
false signals. Each data set's Farrington results (every component indicator, every area, the
configured parameters) are computed once and cached, so the area score's parameters and every
threshold can be swept without fitting again.

Measured, at the same false-signal budget (<= 1 new false signal per 4 weeks across the
municipality, signals as published.area_signals forms them: alerts of one series no more than
`signal_gap_weeks` quiet weeks apart are one signal):

- the area score: the share of co-occurring rises with an area-score alarm in the area within the
  rise's first three weeks;
- each single indicator, its Farrington threshold re-calibrated to the whole budget (a week alerts
  when its P(Y >= observed) <= alpha and the watched count reaches the alert minimum, which is how
  nbPlugin decides): the share with an alert of that indicator in the area within three weeks. The
  best of them is the comparison; "any of the four" at the configured alphas is reported beside it;
- the area score at its share of the budget (one sixth: the dashboard's six signal series, the five
  indicators and the area score, share it equally; its configured alpha);
- a one-sided CUSUM of the area score's weekly Stouffer Z (area_score.cusum, reset after an alarm),
  k swept, h calibrated to the whole budget and to the share, against the same.

Usage: python -m ewi.alerts.evaluation.co_rises CACHE [--budget 1.0] [--workers 1]
"""

from __future__ import annotations

import argparse
import json
import pickle
import shutil
from concurrent.futures import ProcessPoolExecutor
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

from ewi import config
from ewi.alerts import area_score, runner
from ewi.alerts.evaluation.ceiling import BUDGET_PER_4_WEEKS, SIGNAL_SERIES, new_signals
from ewi.alerts.evaluation.synth_suite import END_WEEK, QUIET_SEEDS

CO_SEED_BASE = 800  # not the seeds of any other evaluation or tuning set
CO_RISES_PER_SEED = 3
WEEKS = 156
WITHIN_WEEKS = 3
#: The area score's parameters swept (alpha is calibrated to the budget for each).
SWEEP = [{"method": m, "rising_p": 0.2, "min_rising": mr, "components": c}
         for m in ("stouffer", "fisher_kost") for mr in (1, 2)
         for c in (list(area_score.COMPONENTS), ["invalid_absence", "referrals", "contacts"],
                   ["chronic_absence", "referrals", "contacts"])]


def _farrington_for_seed(args) -> Path:
    cache, seed, co = args
    target = Path(cache) / f"farrington-{seed}-{co}.pkl"
    if target.exists():
        return target
    from ewi import synth
    from ewi.alerts.evaluation.counts import indicator_counts

    out = Path(cache) / f"synth-{seed}-{co}"
    synth.generate(out, weeks=WEEKS, end_week=END_WEEK, seed=seed, rises=False, co_rises=co)
    truth = json.loads((out / "ground_truth.json").read_text(encoding="utf-8"))
    counts = indicator_counts(out, pd.read_csv(config.AREAS_SEED, dtype={"area_code": str}))
    shutil.rmtree(out, ignore_errors=True)
    counts = counts[counts["indicator"].isin(area_score.COMPONENTS)]
    results = runner.compute(counts, runner.farrington_parameters(), rolling=runner.rolling_weeks())
    target.write_bytes(pickle.dumps({"results": results, "truth": truth}))
    return target


def _grid(frame: pd.DataFrame, value: str, areas: list[str], weeks: list[date]) -> np.ndarray:
    table = frame.pivot(index="area_code", columns="week_start", values=value)
    return table.reindex(index=areas, columns=weeks).to_numpy(dtype=float)


def _false_signals_per_4_weeks(flags: list[np.ndarray]) -> float:
    weeks = sum(f.shape[1] for f in flags)
    return 4 * sum(new_signals(f).sum() for f in flags) / weeks if weeks else float("nan")


def _calibrate(statistics: list[np.ndarray], budget: float) -> float:
    """The largest threshold t (alarm when statistic <= t) whose false signals stay within budget."""
    candidates = np.unique(np.concatenate([s[np.isfinite(s)] for s in statistics]))
    low, high = 0, len(candidates) - 1
    best = -np.inf
    while low <= high:  # false signals grow with t
        mid = (low + high) // 2
        t = candidates[mid]
        if _false_signals_per_4_weeks([np.nan_to_num(s, nan=np.inf) <= t for s in statistics]) <= budget:
            best, low = t, mid + 1
        else:
            high = mid - 1
    return float(best)


def _monitored(results: pd.DataFrame) -> tuple[list[str], list[date]]:
    weeks = sorted(pd.to_datetime(results["week_start"]).dt.date.unique())
    return sorted(results["area_code"].unique()), weeks[-52:]  # the last year, where rises fall


TUNING = {"quiet": tuple(range(500, 510)), "co": tuple(range(CO_SEED_BASE, CO_SEED_BASE + 8))}
EVALUATION = {"quiet": QUIET_SEEDS, "co": tuple(range(CO_SEED_BASE + 8, CO_SEED_BASE + 16))}


def cached(cache: Path) -> bool:
    """Whether every data set the measurement needs is in `cache` (then it takes about 2 minutes; cold,
    its 36 synth data sets take about 15 minutes more)."""
    return all((Path(cache) / f"farrington-{s}-{co}.pkl").exists()
               for seeds in (TUNING, EVALUATION)
               for s, co in [(q, 0) for q in seeds["quiet"]] + [(c, CO_RISES_PER_SEED) for c in seeds["co"]])


def _load(cache: Path, seeds: dict, workers: int) -> tuple[list[dict], list[dict]]:
    tasks = [(str(cache), s, 0) for s in seeds["quiet"]] + [(str(cache), s, CO_RISES_PER_SEED) for s in seeds["co"]]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        paths = list(pool.map(_farrington_for_seed, tasks))
    data = [pickle.loads(p.read_bytes()) for p in paths]
    return data[:len(seeds["quiet"])], data[len(seeds["quiet"]):]


def _single_statistic(indicator: str, min_count: int):
    def statistic(d: dict) -> tuple[np.ndarray, list[str], list[date]]:
        res = d["results"].assign(week_start=pd.to_datetime(d["results"]["week_start"]).dt.date)
        areas, weeks = _monitored(res)
        r = res[res["indicator"] == indicator]
        # nbPlugin: a week alerts exactly when P(Y >= observed) <= alpha (and enough cases).
        stat = np.where((r["observed"] >= min_count) & (r["status"] == "ok"), r["p_value"], np.nan)
        return _grid(r.assign(stat=stat), "stat", areas, weeks), areas, weeks
    return statistic


def _area_statistic(params: dict):
    def statistic(d: dict) -> tuple[np.ndarray, list[str], list[date]]:
        res = d["results"].assign(week_start=pd.to_datetime(d["results"]["week_start"]).dt.date)
        s = area_score.compute(res, params)
        # the alarm statistic: the combined p where enough components rise (else no alarm)
        s["stat"] = np.where(s["rising"] >= params["min_rising"], s["combined_p"].astype(float), np.nan)
        areas, weeks = _monitored(res)
        return _grid(s, "stat", areas, weeks), areas, weeks
    return statistic


#: The CUSUM on the area score's Stouffer Z (issue 18, second round): reference values k swept, the
#: threshold h calibrated on a grid (the reset after an alarm makes false signals only nearly monotone
#: in h, so the smallest h on the grid within budget is taken).
CUSUM_K = (0.5, 1.0, 1.5, 2.0)
CUSUM_H = tuple(np.round(np.arange(0.1, 40.0, 0.1), 1))


def _area_z(params: dict):
    """Per data set: the Stouffer Z and the rising components per area x week over the whole history
    (the CUSUM runs from the start), and the monitored areas and weeks."""
    def grids(d: dict) -> tuple[np.ndarray, np.ndarray, list[str], list[date]]:
        res = d["results"].assign(week_start=pd.to_datetime(d["results"]["week_start"]).dt.date)
        s = area_score.compute(res, {**params, "method": "stouffer"})
        areas, weeks = _monitored(res)
        every = sorted(s["week_start"].unique())
        return _grid(s, "statistic", areas, every), _grid(s, "rising", areas, every), areas, weeks
    return grids


def _cusum_flags(grid, k: float, h: float, min_rising: int) -> tuple[np.ndarray, list[str], list[date]]:
    """The CUSUM's alarms as a statistic for _found/_false (0 = alarm, 1 = none) over the monitored weeks;
    an alarm needs min_rising components rising that week, as the area score's."""
    z, rising, areas, weeks = grid
    _, alarms = area_score.cusum(z, k, h)
    alarms &= np.nan_to_num(rising, nan=0) >= min_rising
    return np.where(alarms, 0.0, 1.0)[:, -len(weeks):], areas, weeks


def _cusum_rows(grids: dict, rises: dict, budget: float, min_rising: int, label: str) -> list[dict]:
    rows = []
    for k in CUSUM_K:
        h = next((h for h in CUSUM_H
                  if _false([_cusum_flags(g, k, h, min_rising) for g in grids["tune_quiet"]], 0.5) <= budget),
                 float("inf"))
        flags = {name: [_cusum_flags(g, k, h, min_rising) for g in gs] for name, gs in grids.items()}
        rows.append({"name": f"{label}:cusum:k={k:g}", "k": k, "h": h, "budget": budget,
                     "tuning_false": _false(flags["tune_quiet"], 0.5),
                     "tuning_found": _found(flags["tune_co"], rises["tune"], 0.5),
                     "eval_false": _false(flags["eval_quiet"], 0.5),
                     **{f"eval_found_{w}": _found(flags["eval_co"], rises["eval"], 0.5, w) for w in (3, 4, 6)}})
    return rows


def _indicator_false(quiet: list[dict], min_count: int, farrington: dict) -> float:
    """New false signals per 4 weeks of the four component indicators' alerts at their configured
    alphas, each indicator its own signal series (as area_signals lists them)."""
    flags = []
    for ind in area_score.COMPONENTS:
        alpha = runner.alpha_for(farrington, ind)
        flags += [np.nan_to_num(_single_statistic(ind, min_count)(d)[0], nan=1) <= alpha for d in quiet]
    return _false_signals_per_4_weeks(flags) * len(area_score.COMPONENTS)


def _found(per_seed: list, rises: list[tuple[int, dict]], threshold: float, within: int = WITHIN_WEEKS) -> int:
    """Rises with an alarm (statistic <= threshold) in their area within `within` weeks of the start."""
    hits = 0
    for i, group in rises:
        stat, areas, weeks = per_seed[i]
        start = date.fromisoformat(group["week_start"])
        if start in weeks:
            a, w = areas.index(group["area_code"]), weeks.index(start)
            hits += bool((np.nan_to_num(stat[a, w:w + within], nan=1) <= threshold).any())
    return hits


def _false(per_seed: list, threshold: float) -> float:
    return _false_signals_per_4_weeks([np.nan_to_num(s[0], nan=1) <= threshold for s in per_seed])


CHOSEN = "area_score:stouffer:min_rising=2:chron+inval+refer+conta"


def evaluate(cache: Path, workers: int = 1, budget: float = BUDGET_PER_4_WEEKS) -> dict:
    """Thresholds calibrated to `budget` on the tuning seeds, then applied unchanged to the evaluation
    seeds: the area score (the variant that finds most on the tuning seeds) against each single indicator."""
    cache.mkdir(parents=True, exist_ok=True)
    tune_quiet, tune_co = _load(cache, TUNING, workers)
    eval_quiet, eval_co = _load(cache, EVALUATION, workers)
    tune_rises = [(i, g) for i, d in enumerate(tune_co) for g in d["truth"]["co_rises"]]
    eval_rises = [(i, g) for i, d in enumerate(eval_co) for g in d["truth"]["co_rises"]]
    base = area_score.parameters()
    farrington = runner.farrington_parameters()
    candidates = {f"single:{ind}": _single_statistic(ind, base["min_count"]) for ind in area_score.COMPONENTS}
    for variant in SWEEP:
        name = (f"area_score:{variant['method']}:min_rising={variant['min_rising']}:"
                f"{'+'.join(c.split('_')[0][:5] for c in variant['components'])}")
        candidates[name] = _area_statistic({**base, **variant})
    rows, chosen = [], {}
    for name, statistic in candidates.items():
        tq, tc = [statistic(d) for d in tune_quiet], [statistic(d) for d in tune_co]
        threshold = _calibrate([q[0] for q in tq], budget)
        row = {"name": name, "threshold": threshold, "tuning_false": _false(tq, threshold),
               "tuning_found": _found(tc, tune_rises, threshold)}
        eq, ec = [statistic(d) for d in eval_quiet], [statistic(d) for d in eval_co]
        if name == CHOSEN:
            chosen = {"tq": tq, "eq": eq, "ec": ec}
        row.update(eval_false=_false(eq, threshold),
                   **{f"eval_found_{w}": _found(ec, eval_rises, threshold, w) for w in (3, 4, 6)})
        if name.startswith("single:"):
            alpha = runner.alpha_for(farrington, name.split(":")[1])
            row.update(configured_alpha=alpha, eval_false_configured=_false(eq, alpha),
                       eval_found_configured=_found(ec, eval_rises, alpha))
        rows.append(row)
    # today's alerts: any of the four at its configured alpha (as one flag per area and week)
    def any_configured(d: dict) -> tuple[np.ndarray, list[str], list[date]]:
        parts = [(candidates[f"single:{ind}"](d), runner.alpha_for(farrington, ind)) for ind in area_score.COMPONENTS]
        flags = np.any([np.nan_to_num(stat, nan=1) <= alpha for (stat, _, _), alpha in parts], axis=0)
        return np.where(flags, 0.0, 1.0), parts[0][0][1], parts[0][0][2]
    eq, ec = [any_configured(d) for d in eval_quiet], [any_configured(d) for d in eval_co]
    rows.append({"name": "any single at its configured alpha", "eval_false": _false(eq, 0.5),
                 **{f"eval_found_{w}": _found(ec, eval_rises, 0.5, w) for w in (3, 4, 6)}})
    # The area score's share of the budget: one of the dashboard's signal series, each with an equal share
    # (ceiling.SIGNAL_SERIES: the five indicators, each calibrated to its share there, and the area score)
    indicators = _indicator_false(tune_quiet, base["min_count"], farrington)
    share = budget / SIGNAL_SERIES
    threshold = _calibrate([q[0] for q in chosen["tq"]], share)
    rows.append({"name": "area_score:share", "threshold": threshold, "budget": share,
                 "tuning_false": _false(chosen["tq"], threshold), "eval_false": _false(chosen["eq"], threshold),
                 **{f"eval_found_{w}": _found(chosen["ec"], eval_rises, threshold, w) for w in (3, 4, 6)}})
    # The cumulative element: a CUSUM of the same Stouffer Z, at the whole budget and at the share
    z = _area_z(base)
    grids = {"tune_quiet": [z(d) for d in tune_quiet], "tune_co": [z(d) for d in tune_co],
             "eval_quiet": [z(d) for d in eval_quiet], "eval_co": [z(d) for d in eval_co]}
    rises = {"tune": tune_rises, "eval": eval_rises}
    for label, b in (("whole", budget), ("share", share)):
        rows += _cusum_rows(grids, rises, b, int(base["min_rising"]), label)
    return {"budget": budget, "indicators_false_tuning": indicators, "share": share, "tuning_seeds": TUNING, "evaluation_seeds": EVALUATION,
            "tuning_rises": len(tune_rises), "evaluation_rises": len(eval_rises), "rows": rows}


def render_section(result: dict) -> list[str]:
    """The report's section on the area score (markdown lines)."""
    rows = {r["name"]: r for r in result["rows"]}
    n = result["evaluation_rises"]
    chosen = "area_score:stouffer:min_rising=2:chron+inval+refer+conta"
    lines = [
        "## The area score on co-occurring rises (issue 18)",
        "",
        "Generated by `python -m ewi.alerts.evaluation --co-rises` (`ewi/alerts/evaluation/co_rises.py`;",
        "method and choices in [alerts.md](alerts.md), \"The area score\"). synth data with three co-occurring",
        "rises each (unexcused absence, referrals and contacts of one area together, each weakly); every",
        f"threshold calibrated to <= {result['budget']:g} new false signal(s) per 4 weeks across the municipality on the",
        f"tuning seeds (quiet {min(result['tuning_seeds']['quiet'])}-{max(result['tuning_seeds']['quiet'])}, "
        f"co-rises {min(result['tuning_seeds']['co'])}-{max(result['tuning_seeds']['co'])}), then applied to the "
        f"evaluation seeds (quiet {min(result['evaluation_seeds']['quiet'])}-{max(result['evaluation_seeds']['quiet'])}, "
        f"co-rises {min(result['evaluation_seeds']['co'])}-{max(result['evaluation_seeds']['co'])}, {n} rises).",
        "",
        "| method | alpha (tuned) | false signals / 4 wk | found <= 3 wk | <= 4 wk | <= 6 wk |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    def line(label: str, alpha: str, r: dict) -> str:
        return (f"| {label} | {alpha} | {r['eval_false']:.2f} | {r['eval_found_3']} / {n} | "
                f"{r['eval_found_4']} / {n} | {r['eval_found_6']} / {n} |")

    for name, r in rows.items():
        if name.startswith(("area_score", "whole:", "share:")) and name != chosen \
                and "fisher_kost:min_rising=2:chron+inval" not in name:
            continue
        label = {chosen: "**area score** (stouffer, 4 components, min_rising 2)"}.get(name, name.replace("single:", ""))
        alpha = f"{r['threshold']:.3g}" if "threshold" in r else "configured"
        lines.append(line(label, alpha, r))
    share = rows.get("area_score:share")
    if share:  # the area score's part of the budget, and the CUSUM on its Z at the same budgets
        lines.append(line(f"area score at its share ({share['budget']:.2f} / 4 wk, one of {SIGNAL_SERIES} signal series; "
                          f"the four indicators' alerts give {result.get('indicators_false_tuning', 0):.2f})",
                          f"{share['threshold']:.2g}", share))
        for label in ("whole", "share"):
            cusums = [r for name, r in rows.items() if name.startswith(f"{label}:cusum")]
            best = max(cusums, key=lambda r: (r["tuning_found"], -r["k"]))  # chosen on the tuning seeds
            lines.append(line(f"CUSUM of the area score's Z, k {best['k']:g} (best on tuning), "
                              f"{'whole budget' if label == 'whole' else 'its share'}", f"h {best['h']:g}", best))
    return lines + [""]


def render_missing() -> list[str]:
    """The section's place when its data sets are not cached (computing them cold takes ~15 minutes)."""
    return ["## The area score on co-occurring rises (issue 18)", "",
            "Not measured in this run: its 36 synth data sets are not cached yet (about 15 minutes the first",
            "time). `python -m ewi.alerts.evaluation --co-rises` fills the cache and writes this section; with",
            "the cache warm, `make eval` includes it (about 2 minutes more).", ""]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ewi.alerts.evaluation.co_rises")
    parser.add_argument("cache", type=Path)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--budget", type=float, default=BUDGET_PER_4_WEEKS)
    args = parser.parse_args(argv)
    result = evaluate(args.cache, args.workers, args.budget)
    with pd.option_context("display.width", 250, "display.max_columns", 30):
        print(pd.DataFrame(result["rows"]).round(4).to_string(index=False))
    print(json.dumps({k: v for k, v in result.items() if k != "rows"}, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
