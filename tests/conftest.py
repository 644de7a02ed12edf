"""Shared fixtures. Every test session gets its own EWI_HOME and so its own embedded PostgreSQL
(or the server in EWI_TEST_WAREHOUSE_DSN, if set), so tests never touch a developer's .ewi/."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def ewi_home(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("ewi-home")
    os.environ["EWI_HOME"] = str(home)
    if os.environ.get("EWI_TEST_WAREHOUSE_DSN"):
        os.environ["EWI_WAREHOUSE_DSN"] = os.environ["EWI_TEST_WAREHOUSE_DSN"]
    else:
        os.environ.pop("EWI_WAREHOUSE_DSN", None)
    yield home
    import subprocess
    import warnings

    from ewi import warehouse

    try:
        warehouse.stop()
    except subprocess.SubprocessError as exc:  # a slow shutdown must not fail the tests that passed
        warnings.warn(f"embedded warehouse did not stop cleanly: {exc}", stacklevel=1)


@pytest.fixture(scope="session")
def warehouse_ready(ewi_home) -> str:
    """An initialised warehouse (migrations applied, area register loaded); returns its DSN."""
    from ewi import warehouse, warehouse_init

    warehouse_init.init_warehouse()
    return warehouse.dsn()


@pytest.fixture(scope="module")
def module_warehouse(ewi_home, request) -> str:
    """An initialised warehouse database of the test module's own, named by the module's
    WAREHOUSE_DB, so its batches and weeks never meet another module's; yields its DSN."""
    from ewi import warehouse, warehouse_init

    os.environ["EWI_WAREHOUSE_DB"] = request.module.WAREHOUSE_DB
    try:
        warehouse_init.init_warehouse()
        yield warehouse.dsn()
    finally:
        os.environ.pop("EWI_WAREHOUSE_DB", None)


@pytest.fixture(scope="module")
def module_db(module_warehouse):
    """An autocommit connection to the module's own warehouse database (module_warehouse)."""
    import psycopg

    with psycopg.connect(module_warehouse, autocommit=True) as conn:
        yield conn


@pytest.fixture(scope="module")
def synthetic_extracts(module_warehouse, tmp_path_factory, request) -> Path:
    """The folder of synthetic weekly extracts (ewi.synth) the test module's warehouse is built from:
    the module's WEEKS weeks up to its END_WEEK, drawn with its SYNTH_SEED. The module's warehouse
    database (module_warehouse) stays selected while the module's tests run."""
    from ewi import synth

    out = tmp_path_factory.mktemp("synth")
    module = request.module
    synth.generate(out, weeks=module.WEEKS, end_week=module.END_WEEK, seed=module.SYNTH_SEED)
    return out


@pytest.fixture
def db(warehouse_ready):
    import psycopg

    with psycopg.connect(warehouse_ready, autocommit=True) as conn:
        yield conn
