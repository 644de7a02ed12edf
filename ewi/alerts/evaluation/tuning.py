"""Tuning (not part of `make eval`): the tables the per-indicator alpha and windows are chosen from,
on seeds of their own (docs/alerts.md), never the evaluation's.

    python -m ewi.alerts.evaluation --tune CACHE [--variants JSON] [--budget 0.8]
"""

from __future__ import annotations

import math
from concurrent.futures import ProcessPoolExecutor
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

from ewi.alerts.evaluation.metrics import new_alerts
from ewi.alerts.evaluation.scoring import MONITORED_WEEKS, configured_settings
from ewi.alerts.evaluation.synth_suite import synth_counts
from ewi.alerts.farrington import FarringtonControl, farrington_flexible
from ewi.alerts.series import monitored_series

#: Tuning seeds (docs/alerts.md): never the evaluation seeds above.
TUNING_QUIET_SEEDS = (*range(500, 510), *range(520, 530))
TUNING_RISE_SEEDS = tuple(range(600, 680))
TUNING_ALPHAS = (0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075,
                 0.1)
TUNING_WINDOWS = {"chronic_absence": (1,), "invalid_absence": (1,), "referrals": (1, 2, 3, 4),
                  "contacts": (1, 2, 3, 4), "multi_signal": (1,)}


def _cachedsynth_counts(cache: Path, seed: int, rises: bool, weeks: int) -> tuple[pd.DataFrame, list[dict]]:
    """_synth_counts, kept on disk: generating three years of extracts is most of a tuning run. The
    key includes synth.py's text, so a changed generator is never read from an old cache."""
    import hashlib
    import pickle

    from ewi import synth

    digest = hashlib.sha256(Path(synth.__file__).read_bytes()).hexdigest()[:12]
    path = Path(cache) / f"counts-{seed}-{'rises' if rises else 'none'}-{weeks}-{digest}.pkl"
    if path.exists():
        return pickle.loads(path.read_bytes())  # noqa: S301 - our own cache
    Path(cache).mkdir(parents=True, exist_ok=True)
    result = synth_counts(Path(cache), seed, rises, weeks)
    path.write_bytes(pickle.dumps(result))
    return result


def _tune_seed(args) -> list[dict]:
    """Farrington once per watched series, window and structural variant; alpha is applied later:
    with nbPlugin a week alerts exactly when P(Y >= observed) <= alpha (upper is the 1 - alpha quantile
    of the same distribution), so the week's p-value decides every alpha at once."""
    cache, seed, rises, windows, variants, weeks, params, min_count = args
    counts, truth = _cachedsynth_counts(Path(cache), seed, rises, weeks)
    wanted = {(r["area_code"], r["indicator"]) for r in truth} if rises else None
    rows = []
    for indicator, options in windows.items():
        for window in options:
            series = monitored_series(counts[counts["indicator"] == indicator], {indicator: window})
            for area, group in series.groupby("area_code", sort=True):
                if wanted is not None and (area, indicator) not in wanted:
                    continue
                week_starts = list(group["week_start"])
                monitored = range(max(0, len(week_starts) - MONITORED_WEEKS), len(week_starts))
                for name, overrides in variants.items():
                    p = _tuning_p_values(group, week_starts, monitored, {**params, **overrides}, min_count)
                    rows.append({"seed": seed, "rises": rises, "area_code": area, "indicator": indicator,
                                 "window": window, "variant": name, "p": p,
                                 "weeks": week_starts[monitored.start:], "truth": [
                                     r for r in truth if (r["area_code"], r["indicator"]) == (area, indicator)]})
    return rows


def _tuning_p_values(group: pd.DataFrame, week_starts: list[date], monitored: range, control: dict,
                     min_count: int) -> np.ndarray:
    """Per monitored week the smallest alpha at which it alerts (inf: none). nbPlugin: the week's
    P(Y >= observed). muan and delta move mu0 or the interval with alpha, so they are run at every
    alpha of control["alphas"] (their alerts are nested: a week alerting at alpha alerts above it)."""
    alphas = sorted(control.pop("alphas", [])) if control.get("threshold_method") != "nbPlugin" else []
    observed = group["observed"].to_numpy()
    population = group["population"].to_numpy() if control.get("population_offset") else None

    def run(alpha):
        fc = FarringtonControl.from_dict({**control, "alpha": alpha})
        return farrington_flexible(observed, week_starts, fc, population=population, weeks=monitored)

    if not alphas:
        # is_alert at alpha 0.5 carries every condition except the threshold itself.
        return np.array([r.p_value if (r.status == "ok" and r.observed and r.observed >= min_count
                                       and r.p_value is not None) else np.inf for r in run(0.5)])
    p = np.full(len(monitored), np.inf)
    for alpha in reversed(alphas):
        alerts = np.array([r.is_alert and r.observed >= min_count for r in run(alpha)])
        p[alerts] = alpha
    return p


def tuning_table(rows: list[dict], alphas: tuple[float, ...]) -> pd.DataFrame:
    """Per indicator, window, variant and alpha: new false alerts and alert-weeks per 4 weeks across
    the municipality (quiet seeds: each seed is one municipality) and rises found within 3 weeks."""
    out = []
    frame = pd.DataFrame(rows)
    for (indicator, window, variant), g in frame.groupby(["indicator", "window", "variant"]):
        quiet = g[~g["rises"]]
        risen = g[g["rises"]]
        n_weeks = len(quiet["seed"].unique()) * MONITORED_WEEKS
        q = np.array(list(quiet["p"])) if len(quiet) else np.zeros((0, MONITORED_WEEKS))
        for alpha in alphas:
            alerts = q <= alpha
            found, n, by_size = 0, 0, {}
            for _, r in risen.iterrows():
                for rise in r["truth"]:
                    start_day = date.fromisoformat(rise["week_start"])
                    if start_day not in r["weeks"]:
                        continue
                    start = r["weeks"].index(start_day)
                    hit = bool((r["p"][start:start + 3] <= alpha).any())
                    found += hit
                    n += 1
                    key = f"x{rise['size']:g}"
                    by_size[key] = (by_size.get(key, (0, 0))[0] + hit, by_size.get(key, (0, 0))[1] + 1)
            out.append({"indicator": indicator, "window": window, "variant": variant, "alpha": alpha,
                        "new_false_per_4wk": 4 * new_alerts(alerts).sum() / n_weeks if n_weeks else math.nan,
                        "false_weeks_per_4wk": 4 * alerts.sum() / n_weeks if n_weeks else math.nan,
                        "rises": n, "found": found,
                        **{f"found {k}": f"{a}/{b}" for k, (a, b) in sorted(by_size.items())}})
    return pd.DataFrame(out)


def best_combination(table: pd.DataFrame, budget: float, variant: str | None = None) -> pd.DataFrame:
    """Per indicator one (window, alpha) so that the rises found are most, with the summed new false
    alerts per 4 weeks within `budget` (an exhaustive search over each indicator's Pareto front)."""
    import itertools

    t = table if variant is None else table[table["variant"] == variant]
    fronts = []
    for _, g in t.groupby("indicator"):
        g = g.sort_values(["new_false_per_4wk", "found"], ascending=[True, False])
        front, best = [], -1
        for _, row in g.iterrows():
            if row["found"] > best:
                front.append(row)
                best = row["found"]
        fronts.append(front)
    choice, score = None, (-1, 0.0)
    for combo in itertools.product(*fronts):
        false = sum(r["new_false_per_4wk"] for r in combo)
        found = sum(r["found"] for r in combo)
        if false <= budget and (found, -false) > score:
            choice, score = combo, (found, -false)
    return pd.DataFrame(choice) if choice is not None else pd.DataFrame()


def tune(cache: Path, windows: dict[str, tuple[int, ...]], variants: dict[str, dict], alphas: tuple[float, ...],
         quiet_seeds: tuple[int, ...] = TUNING_QUIET_SEEDS, rise_seeds: tuple[int, ...] = TUNING_RISE_SEEDS,
         workers: int = 2, weeks: int = 156) -> pd.DataFrame:
    settings = configured_settings()
    params = {k: v for k, v in settings.farrington.items() if k != "alpha"}
    tasks = [(str(cache), seed, False, windows, variants, weeks, params, settings.min_count) for seed in quiet_seeds]
    tasks += [(str(cache), seed, True, windows, variants, weeks, params, settings.min_count) for seed in rise_seeds]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        rows = [row for part in pool.map(_tune_seed, tasks) for row in part]
    return tuning_table(rows, alphas)
