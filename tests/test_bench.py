"""`make bench` keeps working from one package: every benchmark is a module of ewi/bench/, none sits
among the runtime's modules, and `python -m ewi.bench` names them all. Nothing is measured here."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import ewi

EWI = Path(ewi.__file__).parent
#: The benchmarks `make bench` runs (docs/benchmarks.md), each a name of `python -m ewi.bench`.
DOCUMENTED = ("ingest", "dbt", "dashboard", "latency", "sessions", "disk", "recovery", "pseudonyms",
              "audit_chain", "backup")


def test_no_benchmark_module_among_the_runtime_modules():
    stray = sorted(p.name for p in EWI.glob("*.py") if p.name.startswith("bench"))
    assert stray == [], f"benchmarks belong in ewi/bench/: {stray}"
    assert (EWI / "bench" / "__main__.py").is_file()


def test_every_documented_benchmark_resolves_to_a_function_of_the_package():
    from ewi.bench import BENCHMARKS

    assert set(BENCHMARKS) == set(DOCUMENTED)
    for name in DOCUMENTED:
        module, function, _ = BENCHMARKS[name]
        assert callable(getattr(importlib.import_module(f"ewi.bench.{module}"), function)), name


def test_python_m_ewi_bench_answers():
    done = subprocess.run([sys.executable, "-m", "ewi.bench", "--help"], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0 and "python -m ewi.bench" in done.stdout
    locks = subprocess.run([sys.executable, "-m", "ewi.bench.locks", "--help"], capture_output=True, text=True,
                           timeout=60)
    assert locks.returncode == 0 and "--tree" in locks.stdout
