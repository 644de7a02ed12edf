"""`make eval`: python -m ewi.alerts.evaluation (options: --help)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from ewi import config
from ewi.alerts import evaluation
from ewi.alerts.evaluation.synth_suite import RISE_SEEDS
from ewi.alerts.evaluation.tuning import TUNING_ALPHAS, TUNING_WINDOWS, best_combination, tune


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ewi.alerts.evaluation", description=evaluation.__doc__.split("\n", 1)[0])
    parser.add_argument("--series", type=int, default=100, help="simulated series per scenario")
    parser.add_argument("--rise-seeds", type=int, default=RISE_SEEDS, help="ewi synth data sets with injected rises")
    parser.add_argument("--out", type=Path, default=config.PROJECT_ROOT / "docs" / "alert_evaluation.md")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--tune", type=Path, metavar="CACHE",
                        help="instead: the tuning table on the tuning seeds (synth counts cached in CACHE)")
    parser.add_argument("--variants", default='{"configured": {}}',
                        help="--tune: JSON name -> Farrington settings to override, e.g. '{\"w8\": {\"w\": 8}}'")
    parser.add_argument("--budget", type=float, default=0.8, help="--tune: new false alerts per 4 weeks allowed")
    parser.add_argument("--co-rises", action="store_true", default=None,
                        help="the area score against single indicators on co-occurring rises (issue 18) even "
                             "when its 36 synth data sets are not cached yet (about 15 minutes cold); without "
                             "it the section is included only when they are")
    args = parser.parse_args(argv)
    if args.tune:
        variants = json.loads(args.variants)
        table = tune(args.tune, TUNING_WINDOWS, variants, TUNING_ALPHAS, workers=args.workers)
        with pd.option_context("display.width", 250, "display.max_rows", 5000, "display.max_columns", 30):
            print(table.round(4).to_string(index=False))
            for name in variants:
                best = best_combination(table, args.budget, name)
                print(f"\n{name}: most rises found with <= {args.budget} new false alerts per 4 weeks:")
                print(best.round(4).to_string(index=False))
        return 0
    result = evaluation.run(args.series, args.rise_seeds, args.out, args.workers, co_rises=args.co_rises)
    print(result["report"])
    print(f"\nwritten to {args.out} in {result['elapsed_s']:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
