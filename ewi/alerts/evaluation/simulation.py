"""Suite 1: simulated series (ewi.alerts.evaluation.simulate, Noufaily et al. 2013 style), per
scenario the metrics of every method and of EARS C2 re-calibrated to Farrington's false-positive rate."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ewi.alerts.evaluation.metrics import calibrated_threshold, detection_metrics
from ewi.alerts.evaluation.scoring import METHODS, MONITORED_WEEKS, Settings, score_series
from ewi.alerts.evaluation.simulate import Scenario, simulate_series
from ewi.alerts.series import trailing_sum

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
        observed = trailing_sum(s.observed, window)
        n = len(observed)
        monitored = range(n - min(MONITORED_WEEKS, weeks - 8), n)
        scored = score_series(observed, s.week_starts, None, monitored, fc, ec)
        affected = trailing_sum((s.outbreak > 0).astype(float), window) > 0
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
        threshold = calibrated_threshold(c2, mask, metrics["farrington"]["fpr"])
        metrics["ears_c2 @ farrington FPR"] = {**detection_metrics(c2 > threshold, mask, starts),
                                               "z": threshold}
        window = settings.rolling.get(scenario.indicator, 1)
        out.append({"scenario": scenario.name, "metrics": metrics, "window": window,
                    "alpha": settings.farrington_for(scenario.indicator).alpha})
    return out
