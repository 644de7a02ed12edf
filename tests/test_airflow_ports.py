"""Starting twice is safe: a port held by another process is named and a free one taken; a service
of this EWI_HOME that already runs is reused. The held ports are real listening sockets held by the
test process; the dashboard and Airflow are really started."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from ewi import ports

EWI = [sys.executable, "-m", "ewi.cli"]


@pytest.fixture
def held_port():
    """A port on 127.0.0.1 this test process listens on (any free one the system gives)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


def test_a_held_port_is_named_and_a_free_one_found(held_port):
    assert not ports.is_free(held_port)
    holder = ports.holder(held_port)
    assert holder is not None and holder.pid == os.getpid()
    assert f"pid {os.getpid()}" in holder.describe()
    other = ports.free_port(held_port)
    assert other != held_port and ports.is_free(other)
    assert ports.holder(other) is None


def _wait_for_line(proc: subprocess.Popen, pattern: str, timeout: float = 120) -> list[str]:
    """Lines of proc's stdout up to the first that matches `pattern`."""
    lines = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            pytest.fail(f"ended before {pattern!r}: {lines} {proc.stderr.read()[-2000:]}")
        lines.append(line.rstrip("\n"))
        if re.search(pattern, line):
            return lines
    pytest.fail(f"no {pattern!r} in {lines}")


def test_the_dashboard_takes_a_free_port_and_a_second_start_reuses_it(warehouse_ready, held_port):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    first = subprocess.Popen([*EWI, "dashboard", "--port", str(held_port)], env=env, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        lines = _wait_for_line(first, r"Dashboard: http://")
        assert any(f"port {held_port} is in use by pid {os.getpid()}" in line for line in lines), lines
        port = int(re.search(r"Dashboard: http://127\.0\.0\.1:(\d+)/", lines[-1])[1])
        assert port != held_port
        for _ in range(60):  # until uvicorn listens
            if not ports.is_free(port):
                break
            time.sleep(0.5)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/login", timeout=10) as resp:  # noqa: S310
            assert resp.status == 200

        again = subprocess.run([*EWI, "dashboard", "--port", str(port)], env=env, capture_output=True,
                               text=True, timeout=120)
        assert again.returncode == 0, again.stderr[-2000:]
        assert f"already running: pid {first.pid}" in again.stdout and "reusing it" in again.stdout
    finally:
        first.terminate()
        first.wait(timeout=30)


@pytest.fixture(scope="module")
def airflow_env(tmp_path_factory):
    """An EWI_HOME of its own (its own embedded PostgreSQL with Airflow's metadata database)."""
    home = tmp_path_factory.mktemp("airflow-ports")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "EWI_"))}
    env["EWI_HOME"] = str(home)
    init = subprocess.run([*EWI, "warehouse", "init"], env=env, capture_output=True, text=True, timeout=300)
    assert init.returncode == 0, init.stderr[-2000:]
    yield env
    subprocess.run([*EWI, "airflow", "down"], env=env, capture_output=True, timeout=120)
    subprocess.run([*EWI, "warehouse", "stop"], env=env, capture_output=True, timeout=120)


def _pids(home: Path) -> dict[str, int]:
    return {p.stem: int(p.read_text()) for p in (home / "airflow" / "run").glob("*.pid")}


@pytest.mark.slow
def test_airflow_up_names_the_holder_of_its_port_and_a_second_up_reuses_the_running_airflow(
        airflow_env, held_port):
    env = {**airflow_env, "EWI_AIRFLOW_PORT": str(held_port)}
    home = Path(env["EWI_HOME"])
    first = subprocess.run([*EWI, "airflow", "up"], env=env, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert f"port {held_port} is in use by pid {os.getpid()}" in first.stdout
    port = int(re.search(r"UI: http://127\.0\.0\.1:(\d+)", first.stdout)[1])
    assert port != held_port
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v2/monitor/health", timeout=10) as resp:  # noqa: S310
        assert resp.status == 200
    running = _pids(home)
    assert set(running) == {"scheduler", "dag-processor", "triggerer", "api-server"}

    # A second start, with the pid files gone as after a removed run folder: the services running
    # are found and reused, nothing is started twice, and the port stays the one it took.
    shutil.rmtree(home / "airflow" / "run")
    second = subprocess.run([*EWI, "airflow", "up"], env=env, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert " started (pid" not in second.stdout
    assert f"UI: http://127.0.0.1:{port}" in second.stdout
    assert _pids(home) == running

    down = subprocess.run([*EWI, "airflow", "down"], env=env, capture_output=True, text=True, timeout=300)
    assert down.returncode == 0
    assert not any(ports.running(pid) for pid in running.values())
