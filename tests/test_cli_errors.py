"""Every failure is an answer: with --json one JSON line with status "error" and a reason in words,
the exit code the README documents, and no traceback. Faults are real: a warehouse DSN pointing at
a port nobody listens on, a server killed with SIGKILL, a build killed with SIGKILL."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from tests import extracts

# The README's exit-code table (not ewi.errors: the documented contract is what is tested).
EXIT_WAREHOUSE_UNAVAILABLE, EXIT_TIMEOUT, EXIT_LOCK_TIMEOUT = 4, 6, 7


def closed_port() -> int:
    """A TCP port on localhost that nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ewi(*argv, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ewi.cli", *argv], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=timeout)


def json_lines(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


@pytest.fixture
def unreachable_warehouse() -> dict:
    return {"EWI_WAREHOUSE_DSN": f"postgresql://ewi@127.0.0.1:{closed_port()}/ewi?connect_timeout=5",
            "EWI_WAREHOUSE_DB": ""}


@pytest.mark.parametrize("command", [["transform", "--json"], ["quarantine", "list", "--json"]])
def test_an_unreachable_warehouse_is_one_json_answer_with_exit_4(command, unreachable_warehouse, ewi_home):
    result = ewi(*command, env=unreachable_warehouse)
    assert result.returncode == EXIT_WAREHOUSE_UNAVAILABLE, result.stderr[-2000:]
    lines = json_lines(result.stdout)
    assert len(lines) == 1
    assert lines[0]["status"] == "error" and lines[0]["code"] == "warehouse_unavailable"
    assert "cannot be reached" in lines[0]["reason"]
    assert "Traceback" not in result.stderr


def test_ingest_with_an_unreachable_warehouse_answers_in_words(unreachable_warehouse, ewi_home, tmp_path):
    delivery = extracts.write(tmp_path, "contacts", "2023-W05")
    result = ewi("ingest", str(delivery), "--json", env=unreachable_warehouse)
    assert result.returncode == EXIT_WAREHOUSE_UNAVAILABLE
    [line] = json_lines(result.stdout)
    assert line["status"] == "error" and line["code"] == "warehouse_unavailable"
    assert "Traceback" not in result.stderr
    # without --json: one line in words on stderr, nothing on stdout
    result = ewi("ingest", str(delivery), env=unreachable_warehouse)
    assert result.returncode == EXIT_WAREHOUSE_UNAVAILABLE and result.stdout == ""
    assert "cannot be reached" in result.stderr and "Traceback" not in result.stderr


def test_debug_shows_the_traceback(unreachable_warehouse, ewi_home):
    result = ewi("--debug", "transform", "--json", env=unreachable_warehouse)
    assert result.returncode == EXIT_WAREHOUSE_UNAVAILABLE
    assert "Traceback" in result.stderr


def test_usage_errors_are_answers_too(ewi_home, tmp_path):
    result = ewi("ingest", str(tmp_path / "missing.csv"), "--json")
    assert result.returncode == 2
    [line] = json_lines(result.stdout)
    assert line["status"] == "error" and line["code"] == "usage"
    result = ewi("transform", "--json", "--no-such-option")
    assert result.returncode == 2
    [line] = json_lines(result.stdout)
    assert line["status"] == "error" and line["code"] == "usage"


@pytest.fixture(scope="module")
def own_database(ewi_home) -> dict:
    """A warehouse database of this module's own, initialised (advisory locks are per database)."""
    env = {"EWI_WAREHOUSE_DB": "ewi_cli_errors"}
    assert ewi("warehouse", "init", env=env).returncode == 0
    return env


@pytest.fixture
def build_lock_held(own_database):
    """The build lock, held by the test's own session as a running build holds it."""
    import psycopg

    from ewi import locks, warehouse

    with psycopg.connect(warehouse.dsn(own_database["EWI_WAREHOUSE_DB"]), autocommit=True) as conn:
        conn.execute("select pg_advisory_lock(%s)", (locks.BUILD,))
        yield conn


# PostgreSQL's own limits on lock waits and statements, set the documented libpq way
@pytest.mark.parametrize(("pgoptions", "exit_code", "code", "words"), [
    pytest.param("-c lock_timeout=500", EXIT_LOCK_TIMEOUT, "lock_timeout", "another run holds the lock",
                 id="a-lock-wait-that-runs-out-exits-7"),
    pytest.param("-c statement_timeout=500", EXIT_TIMEOUT, "timeout", "time limit",
                 id="a-statement-time-limit-exits-6"),
])
def test_a_time_limit_that_runs_out_is_an_answer_with_its_exit_code(own_database, build_lock_held, pgoptions,
                                                                     exit_code, code, words):
    result = ewi("transform", "--json", env={**own_database, "PGOPTIONS": pgoptions})
    assert result.returncode == exit_code, result.stderr[-2000:]
    [line] = json_lines(result.stdout)
    assert line["status"] == "error" and line["code"] == code
    assert words in line["reason"]
    assert "Traceback" not in result.stderr
