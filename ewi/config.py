"""Where EWI keeps its state, and which warehouse it talks to: thin helpers over
ewi.settings (the one reader of EWI_* variables).

Everything is read from the environment at call time (not import time), so tests and the CLI can
point a process at another EWI_HOME or DSN without reloading modules.
"""

from __future__ import annotations

from pathlib import Path

from ewi.settings import airflow_warehouse_dsn, get_settings, was_set

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DBT_PROJECT_DIR = PROJECT_ROOT / "dbt_project"
EXPECTATIONS_DIR = PROJECT_ROOT / "expectations"
DAGS_DIR = PROJECT_ROOT / "dags"
AREAS_SEED = DBT_PROJECT_DIR / "seeds" / "areas.csv"


def default_home() -> Path:
    """EWI_HOME when it is not set: .ewi in the checkout."""
    return PROJECT_ROOT / ".ewi"


def ewi_home() -> Path:
    home = (get_settings().home or default_home()).resolve()
    home.mkdir(parents=True, exist_ok=True)
    return home


def landing_dir() -> Path:
    path = get_settings().landing_dir or ewi_home() / "landing"
    path.mkdir(parents=True, exist_ok=True)
    return path


def configured_dsn() -> str | None:
    """The DSN of an external warehouse, or None when EWI should run its embedded server.

    Precedence: EWI_WAREHOUSE_DSN; else, inside Airflow, the Connection `ewi_warehouse`
    (AIRFLOW_CONN_EWI_WAREHOUSE or a secrets backend); else None (the embedded server)."""
    configured = get_settings().warehouse_dsn
    if configured is not None:
        return configured.get_secret_value()
    return airflow_warehouse_dsn()


def warehouse_database() -> str:
    return get_settings().warehouse_db


def chosen_database() -> str | None:
    """EWI_WAREHOUSE_DB when it was set, else None (an external DSN then keeps its own database)."""
    settings = get_settings()
    return settings.warehouse_db if was_set(settings, "warehouse_db") else None
