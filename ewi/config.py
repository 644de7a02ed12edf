"""Where EWI keeps its state, and which warehouse it talks to.

Everything is read from the environment at call time (not import time), so tests and the CLI can
point a process at another EWI_HOME or DSN without reloading modules.
"""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DBT_PROJECT_DIR = PROJECT_ROOT / "dbt_project"
EXPECTATIONS_DIR = PROJECT_ROOT / "expectations"
DAGS_DIR = PROJECT_ROOT / "dags"
AREAS_SEED = DBT_PROJECT_DIR / "seeds" / "areas.csv"


def ewi_home() -> Path:
    home = Path(os.environ.get("EWI_HOME") or PROJECT_ROOT / ".ewi").resolve()
    home.mkdir(parents=True, exist_ok=True)
    return home


def landing_dir() -> Path:
    path = Path(os.environ.get("EWI_LANDING_DIR") or ewi_home() / "landing")
    path.mkdir(parents=True, exist_ok=True)
    return path


def configured_dsn() -> str | None:
    """The DSN of an external warehouse, or None when EWI should run its embedded server."""
    return os.environ.get("EWI_WAREHOUSE_DSN") or None


def warehouse_database() -> str:
    return os.environ.get("EWI_WAREHOUSE_DB") or "ewi"
