"""`make eval`: how often the alert methods cry wolf, and how soon they see a real rise.

Three parts, all deterministic (fixed seeds), written as tables to docs/alert_evaluation.md:

1. Simulation (simulation.py, simulate.py, Noufaily et al. 2013 style): negative-binomial weekly series
   with seasonality, at mean levels from a few to hundreds a week, three years each (the history
   the pipeline will have), one outbreak per series in the last (monitored) year. Per method:
   false-positive rate per series-week on weeks without outbreak, probability of detecting the
   outbreak at all / in its first week / within 3 weeks, median weeks to detection.
2. `ewi synth` (synth_suite.py, counts.py): three years of synthetic extracts without injected rises (false alerts per week
   across the municipality: 24 areas x 5 indicators) and with rises (several seeds; detection of
   each rise in ground_truth.json within 3 weeks). The area-week indicators are computed from the
   files in pandas following SOURCES.md, then watched as in ewi.alerts.series. Each rise seed is also
   generated without its rises (synth draws the same numbers otherwise), so the size of every rise
   as it shows in the data can be compared with its nominal size.
3. A power analysis (power.py) for referrals and contacts: the most any rule on trailing sums could find within
   three weeks at the false-alert budget if it knew each area's level exactly.

The seeds here are not the ones the per-indicator parameters were tuned on (tuning.py,
docs/alerts.md), so the figures are an honest out-of-sample measurement.

"At equal false-positive rate": EARS C2's threshold is re-calibrated so that its false-positive
rate equals the default method's, and its detection is reported at that threshold too.

Usage: python -m ewi.alerts.evaluation [--series 100] [--rise-seeds 12] [--out docs/alert_evaluation.md]
       python -m ewi.alerts.evaluation --tune CACHE [--variants JSON] [--budget 0.8]   (tuning seeds)
"""

from __future__ import annotations

import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from ewi.alerts.evaluation.ceiling import cache_dir, ceiling_suite, render_ceiling
from ewi.alerts.evaluation.power import power_analysis
from ewi.alerts.evaluation.report import render
from ewi.alerts.evaluation.scoring import configured_settings
from ewi.alerts.evaluation.simulation import simulation_suite
from ewi.alerts.evaluation.synth_suite import QUIET_SEEDS, RISE_SEED_BASE, RISE_SEEDS, synth_suite


def run(n_series: int = 100, rise_seeds: int = RISE_SEEDS, out: Path | None = None, workers: int = 2,
        weeks: int = 156, quiet_seeds: tuple[int, ...] = QUIET_SEEDS, cache: Path | None = None,
        ceiling_options: dict | None = None, co_rises: bool | None = None) -> dict:
    """Every suite; `weeks` of history per series (smaller only for smoke tests). Synth counts and
    the ceiling's statistics are cached under `cache` (default $EWI_HOME/eval-cache)."""
    started = time.monotonic()
    settings = configured_settings()
    cache = Path(cache or cache_dir())
    cache.mkdir(parents=True, exist_ok=True)
    with ProcessPoolExecutor(max_workers=workers) as pool:
        sim = simulation_suite(n_series, settings, pool, weeks)
        syn = synth_suite(rise_seeds, settings, pool, cache, weeks, quiet_seeds)
        ceiling = ceiling_suite(settings, pool, tuple(quiet_seeds),
                                tuple(RISE_SEED_BASE + i for i in range(rise_seeds)), weeks, cache=cache,
                                **(ceiling_options or {}))
    power = power_analysis(syn["rises"], min_count=settings.min_count)
    elapsed = time.monotonic() - started
    report = render(sim, syn, settings, n_series, rise_seeds, elapsed, power, render_ceiling(ceiling))
    # The area score's section (issue 18): 36 synth data sets cached under cache/co-rises. With the
    # cache warm it adds about 2 minutes and is included (co_rises None); cold it would add about 15,
    # so only co_rises=True (--co-rises) fills the cache, else the report says how.
    from ewi.alerts.evaluation import co_rises as co

    if co_rises or (co_rises is None and co.cached(cache / "co-rises")):
        report = report.rstrip("\n") + "\n\n" + "\n".join(co.render_section(co.evaluate(cache / "co-rises", workers)))
    else:
        report = report.rstrip("\n") + "\n\n" + "\n".join(co.render_missing())
    if out is not None:
        Path(out).write_text(report, encoding="utf-8")
    return {"simulation": sim, "synth": syn, "power": power, "ceiling": ceiling, "report": report,
            "elapsed_s": elapsed}
