"""A build that does not end normally is still recorded: real `ewi transform` processes killed with
SIGKILL at chosen stages, and a real warehouse server stopped under a running build.

A stage is chosen by holding a real lock from the test's own session on a table the build needs at
that stage (raw.referrals while dbt builds the staging models; a published mart while the build
publishes), waiting until the build's query waits for it, then killing the build."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

pytestmark = pytest.mark.slow

# The README's exit-code table.
EXIT_OK, EXIT_WAREHOUSE_UNAVAILABLE, EXIT_TERMINATED = 0, 4, 143


def ewi(*argv, env: dict, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ewi.cli", *argv], capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=timeout)


def start_transform(env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "ewi.cli", "transform", "--json"], env={**os.environ, **env},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_waiting_query(conn, like: str, proc: subprocess.Popen, timeout: float = 180) -> None:
    """Until some other session waits for a lock while running a query that matches `like`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        # within the test's transaction PostgreSQL would show the same snapshot of sessions again
        conn.execute("select pg_stat_clear_snapshot()")
        row = conn.execute(
            "select 1 from pg_stat_activity where wait_event_type = 'Lock' and pid <> pg_backend_pid() "
            "and query ilike %s", (like,)).fetchone()
        if row:
            return
        time.sleep(0.2)
    proc.kill()
    pytest.fail(f"the build never waited at {like!r}")


@contextlib.contextmanager
def build_waiting_at(conn, env: dict, table: str, like: str):
    """A build started while the test holds `table` locked, yielded once it waits at a query that
    matches `like`; the lock is let go on leaving the block."""
    with conn.transaction():
        conn.execute(f"lock table {table} in access exclusive mode")
        build = start_transform(env)
        wait_for_waiting_query(conn, like, build)
        yield build


def runs(conn) -> list[dict]:
    with conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        return cur.execute("select run_id, status, success, published, reason, finished_at "
                           "from audit.dbt_runs order by started_at").fetchall()


@pytest.fixture(scope="module")
def build_env(ewi_home) -> dict:
    """A warehouse database of its own, initialised, with one successful build published."""
    env = {"EWI_WAREHOUSE_DB": "ewi_build_faults"}
    assert ewi("warehouse", "init", env=env).returncode == EXIT_OK
    first = ewi("transform", "--json", env=env)
    assert first.returncode == EXIT_OK, first.stderr[-3000:]
    return env


@pytest.fixture
def conn(build_env):
    from ewi import warehouse

    with psycopg.connect(warehouse.dsn("ewi_build_faults"), autocommit=True) as c:
        yield c


def mart_oid(conn) -> int:
    return conn.execute("select 'published.area_weekly_indicators'::regclass::oid").fetchone()[0]


def test_a_build_killed_while_dbt_builds_is_recorded_killed_by_the_next_command(build_env, conn):
    published_before = mart_oid(conn)
    with build_waiting_at(conn, build_env, "raw.referrals", "%model.ewi.stg_referrals%") as build:
        [running] = [r for r in runs(conn) if r["status"] == "running"]
        build.send_signal(signal.SIGKILL)
        build.wait(timeout=60)
    assert build.returncode == -signal.SIGKILL
    assert runs(conn)[-1]["status"] == "running"  # nobody has looked yet

    nxt = ewi("warehouse", "init", env=build_env)
    assert nxt.returncode == EXIT_OK, nxt.stderr[-3000:]
    killed = next(r for r in runs(conn) if r["run_id"] == running["run_id"])
    assert killed["status"] == "killed" and killed["success"] is False and killed["published"] is False
    assert "killed" in killed["reason"]
    assert mart_oid(conn) == published_before  # the published marts are the previous build's


def test_a_build_killed_while_publishing_publishes_nothing_and_the_next_build_records_it(build_env, conn):
    published_before = mart_oid(conn)
    with build_waiting_at(conn, build_env, "published.area_weekly_indicators", "drop table if exists%published%") as build:
        build.send_signal(signal.SIGKILL)
        build.wait(timeout=60)
    # the killed build's publishing transaction was never committed: the old marts stay
    nxt = ewi("transform", "--json", env=build_env)
    assert nxt.returncode == EXIT_OK, nxt.stderr[-3000:]
    summary = json.loads(nxt.stdout)
    # the build after a killed one recomputes everything, as after a failed one
    assert summary["full_refresh"] is True and summary["full_refresh_reason"] == "the previous build failed"
    *_, killed, last = runs(conn)
    assert killed["status"] == "killed" and killed["published"] is False and killed["success"] is False
    assert last["status"] == "success" and last["published"] is True and last["run_id"] == summary["run_id"]
    assert mart_oid(conn) != published_before  # now the new build's


def test_a_terminated_build_answers_and_records_itself(build_env, conn):
    with build_waiting_at(conn, build_env, "raw.referrals", "%model.ewi.stg_referrals%") as build:
        build.send_signal(signal.SIGTERM)
        out, err = build.communicate(timeout=120)
    assert build.returncode == EXIT_TERMINATED, err[-3000:]
    [answer] = [json.loads(line) for line in out.splitlines()]
    assert answer["status"] == "error" and answer["code"] == "terminated"
    assert "Traceback" not in err
    last = runs(conn)[-1]
    assert last["status"] == "failed" and "SIGTERM" in last["reason"] and last["finished_at"] is not None


@pytest.fixture
def own_server(tmp_path):
    """A PostgreSQL server of this test's own (pgserver's binaries), which the test stops and
    starts again; returns (DSN, pg_ctl)."""
    from ewi import warehouse

    warehouse._quiet_platformdirs()
    import pgserver
    from pgserver._commands import pg_ctl

    pgdata = tmp_path / "pgdata"
    server = pgserver.get_server(pgdata, cleanup_mode=None)
    user = "pgserver" if os.geteuid() == 0 else None

    def ctl(action: str, *args: str) -> None:
        if action == "start":  # as pgserver starts it: on its unix socket only, its own log
            socket_dir = psycopg.conninfo.conninfo_to_dict(server.get_uri())["host"]
            args = ("-o", '-h ""', "-o", f"-k {socket_dir}", "-l", str(server.log), *args)
        pg_ctl(["-w", "-t", "120", *args, action], pgdata=pgdata, user=user)

    yield server.get_uri("ewi"), ctl
    if (pgdata / "postmaster.pid").exists():
        ctl("stop", "-m", "immediate")


def test_a_warehouse_outage_during_a_build_is_an_answer_and_recorded_when_it_is_back(own_server, tmp_path):
    dsn, ctl = own_server
    env = {"EWI_WAREHOUSE_DSN": dsn, "EWI_WAREHOUSE_DB": "", "EWI_HOME": str(tmp_path / "home")}
    with psycopg.connect(dsn.replace("/ewi", "/postgres"), autocommit=True) as admin:
        admin.execute("create database ewi")
    init = ewi("warehouse", "init", env=env)
    assert init.returncode == EXIT_OK, init.stderr[-3000:]

    holder = psycopg.connect(dsn, autocommit=True)  # not a `with`: its server goes away under it
    holder.execute("begin")
    holder.execute("lock table raw.referrals in access exclusive mode")
    build = start_transform(env)
    wait_for_waiting_query(holder, "%model.ewi.stg_referrals%", build)
    ctl("stop", "-m", "immediate")  # the server goes, as in a crash: every session is cut off
    holder.close()
    out, err = build.communicate(timeout=300)
    assert build.returncode == EXIT_WAREHOUSE_UNAVAILABLE, err[-3000:]
    [answer] = [json.loads(line) for line in out.splitlines()]
    assert answer["status"] == "error" and answer["code"] == "warehouse_unavailable"
    assert "cannot be reached" in answer["reason"] and answer["run_id"]
    assert "Traceback" not in err
    assert list(Path(env["EWI_HOME"], "dbt", "unrecorded").rglob("*.json"))  # kept until it is back

    ctl("start")
    nxt = ewi("warehouse", "init", env=env)
    assert nxt.returncode == EXIT_OK, nxt.stderr[-3000:]
    with psycopg.connect(dsn, autocommit=True) as conn:
        [failed] = runs(conn)
    assert failed["run_id"] == answer["run_id"]
    assert failed["status"] == "failed" and failed["published"] is False
    assert "cannot be reached" in failed["reason"] and failed["finished_at"] is not None
    assert not list(Path(env["EWI_HOME"], "dbt", "unrecorded").rglob("*.json"))


def test_an_outage_between_two_deliveries_answers_the_first_and_names_the_second(own_server, tmp_path):
    from ewi import locks
    from tests import extracts

    dsn, ctl = own_server
    env = {"EWI_WAREHOUSE_DSN": dsn, "EWI_WAREHOUSE_DB": "", "EWI_HOME": str(tmp_path / "home")}
    with psycopg.connect(dsn.replace("/ewi", "/postgres"), autocommit=True) as admin:
        admin.execute("create database ewi")
    assert ewi("warehouse", "init", env=env).returncode == EXIT_OK
    first = extracts.write(tmp_path, "contacts", "2023-W05")  # decided first (delivery order)
    second = extracts.write(tmp_path, "referrals", "2023-W05")

    # the second delivery waits for its week's lock, which the test holds, until the server goes
    holder = psycopg.connect(dsn, autocommit=True)  # not a `with`: its server goes away under it
    holder.execute("select pg_advisory_lock(%s, hashtext(%s))", (locks.DELIVERIES, "referrals/2023-W05"))
    ingest = subprocess.Popen([sys.executable, "-m", "ewi.cli", "ingest", str(first), str(second), "--json"],
                              env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for_waiting_query(holder, "%pg_advisory_lock%", ingest)
    ctl("stop", "-m", "immediate")
    holder.close()
    out, err = ingest.communicate(timeout=300)
    assert ingest.returncode == EXIT_WAREHOUSE_UNAVAILABLE, err[-3000:]
    decided, answer = [json.loads(line) for line in out.splitlines()]
    assert decided["file"] == first.name and decided["status"] == "published"
    assert answer["status"] == "error" and answer["code"] == "warehouse_unavailable"
    assert answer["not_decided"] == [second.name]
    assert "Traceback" not in err
