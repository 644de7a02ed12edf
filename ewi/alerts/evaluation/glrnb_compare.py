"""glrnb against Farrington and EARS C2 on the same simulated series (the evaluation's scenarios).

For each scenario: each method's false-positive rate per series-week and rises found within three
weeks, glrnb at its configured c_ARL and at the c_ARL whose false-positive rate is (at most)
Farrington's, EARS C2 likewise re-calibrated. glrnb runs as the pipeline runs it: on Farrington's
expectation and dispersion of each monitored week (ewi.alerts.glrnb_runner.glrnb_alarms), the chart
starting at the first monitored week, and no alert below alert_min_count (the mart's rule).

Usage: python -m ewi.alerts.evaluation.glrnb_compare [--series 40] [--scenarios target]
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace

import numpy as np
import pandas as pd

from ewi.alerts.ears import ears
from ewi.alerts.evaluation.metrics import calibrated_threshold, detection_metrics
from ewi.alerts.evaluation.scoring import MONITORED_WEEKS, configured_settings
from ewi.alerts.evaluation.simulate import simulate_series
from ewi.alerts.evaluation.simulation import SCENARIOS
from ewi.alerts.farrington import farrington_flexible
from ewi.alerts.glrnb_runner import glrnb_alarms, glrnb_parameters
from ewi.alerts.series import trailing_sum

C_ARL_GRID = (1.5, 2, 2.5, 3, 3.5, 4, 5, 6, 7, 8, 10, 12, 15)


def _scenario_chunk(args) -> dict:
    scenario, seeds, weeks = args
    settings = configured_settings()
    params = glrnb_parameters()
    fc = replace(settings.farrington_for(scenario.indicator), population_offset=False)
    window = settings.rolling.get(scenario.indicator, 1)
    out = {"farrington": [], "c2": [], "mask": [], "starts": [], "glrnb": {c: [] for c in C_ARL_GRID}}
    for seed in seeds:
        s = simulate_series(scenario, seed, weeks=weeks, monitored=MONITORED_WEEKS)
        observed = trailing_sum(s.observed, window)
        monitored = range(len(observed) - MONITORED_WEEKS, len(observed))
        results = farrington_flexible(observed, s.week_starts, fc, weeks=monitored)
        big_enough = np.array([r.observed is not None and r.observed >= settings.min_count for r in results])
        out["farrington"].append(np.array([r.is_alert for r in results]) & big_enough)
        frame = pd.DataFrame({
            "observed": [np.nan if r.observed is None else r.observed for r in results],
            "expected": [np.nan if r.expected is None else r.expected for r in results],
            "phi": [np.nan if r.phi is None else r.phi for r in results]})
        for c in C_ARL_GRID:
            out["glrnb"][c].append(glrnb_alarms(frame, {**params, "c_arl": c}, scenario.indicator) & big_enough)
        weeks_c2 = ears([None if not np.isfinite(v) else float(v) for v in observed], "ears_c2", settings.ears)
        out["c2"].append(np.array([weeks_c2[k].statistic if weeks_c2[k].statistic is not None
                                   and weeks_c2[k].observed >= settings.min_count else -np.inf for k in monitored]))
        affected = np.nan_to_num(trailing_sum((s.outbreak > 0).astype(float), window), nan=0) > 0
        out["mask"].append(affected[monitored.start:])
        out["starts"].append(s.outbreak_start - monitored.start)
    return out


def compare(n_series: int = 40, scenarios=SCENARIOS, weeks: int = 156, workers: int = 2) -> list[dict]:
    tasks = []
    for i, scenario in enumerate(SCENARIOS):
        if scenario not in scenarios:
            continue
        seeds = [1000 * (i + 1) + j for j in range(n_series)]  # the evaluation's seeds for the scenario
        half = max(1, len(seeds) // 2)
        tasks += [(scenario, (scenario, seeds[:half], weeks)), (scenario, (scenario, seeds[half:], weeks))]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        chunks = list(pool.map(_scenario_chunk, [t[1] for t in tasks]))
    rows = []
    for scenario in scenarios:
        parts = [c for (s, _), c in zip(tasks, chunks, strict=True) if s == scenario and c["starts"]]
        mask = np.concatenate([np.array(p["mask"]) for p in parts])
        starts = sum((p["starts"] for p in parts), [])
        farrington = detection_metrics(np.concatenate([np.array(p["farrington"]) for p in parts]), mask, starts)
        glrnb = {c: detection_metrics(np.concatenate([np.array(p["glrnb"][c]) for p in parts]), mask, starts)
                 for c in C_ARL_GRID}
        c2 = np.concatenate([np.array(p["c2"]) for p in parts])
        z = calibrated_threshold(c2, mask, farrington["fpr"])
        # the smallest c_ARL whose false-positive rate is at most Farrington's
        fitting = [c for c in C_ARL_GRID if glrnb[c]["fpr"] <= farrington["fpr"]]
        c_equal = fitting[0] if fitting else C_ARL_GRID[-1]
        rows.append({"scenario": scenario.name, "farrington": farrington,
                     "glrnb": glrnb[glrnb_parameters()["c_arl"] if not isinstance(glrnb_parameters()["c_arl"], dict)
                                    else 5], "glrnb_equal": glrnb[c_equal], "c_equal": c_equal,
                     "ears_c2_equal": detection_metrics(c2 > z, mask, starts)})
    return rows


def render(rows: list[dict]) -> str:
    lines = ["| scenario | Farrington FPR | found <= 3 wk | glrnb (c_ARL 5) FPR | found | glrnb at Farrington's FPR "
             "(c_ARL) | found | EARS C2 at Farrington's FPR: found |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        f, g, e, q = r["farrington"], r["glrnb"], r["glrnb_equal"], r["ears_c2_equal"]
        lines.append(f"| {r['scenario']} | {f['fpr']:.4f} | {f['pod_3weeks']:.0%} | {g['fpr']:.4f} | "
                     f"{g['pod_3weeks']:.0%} | {e['fpr']:.4f} ({r['c_equal']}) | {e['pod_3weeks']:.0%} | "
                     f"{q['pod_3weeks']:.0%} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=40)
    parser.add_argument("--scenarios", choices=("all", "target"), default="all")
    args = parser.parse_args()
    started = time.monotonic()
    chosen = SCENARIOS if args.scenarios == "all" else tuple(s for s in SCENARIOS if s.name.startswith("target"))
    print(render(compare(args.series, chosen)))
    print(f"\n{args.series} series per scenario, {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
