"""Logging in to the docker-compose deployment the way its README says, without a Docker engine:
the dashboard service's environment is read from docker-compose.yml with `.env.example`'s values
(every CHANGE-ME replaced, as the README asks), its paths under the ewi-home volume are mapped to a
temporary folder and its warehouse DSN to the test warehouse; `ewi dashboard` is started with that
environment and nothing else of EWI's, a user is added with the README's `docker compose exec`
line, and they log in through Chromium."""

from __future__ import annotations

import os
import re
import secrets
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.dashboard.helpers import ARTIFACTS, free_port, stop

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent.parent
TEST_DB = "ewi_compose_login_test"
VOLUME = "/var/lib/ewi"  # the ewi-home volume's mount point in every EWI container
PASSWORD = "olle-compose-pass-1"


def env_file(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def interpolate(value: str, values: dict[str, str]) -> str:
    """Compose's variable substitution: ${VAR}, ${VAR:-default}, ${VAR-default}, and $$ for $."""
    def one(m: re.Match) -> str:
        if m.group(0) == "$$":
            return "$"
        name, op, default = m.group(1), m.group(2), m.group(3) or ""
        if op == ":-":
            return values.get(name) or default
        if op == "-":
            return values.get(name, default)
        return values.get(name, "")
    return re.sub(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:-|-)([^}]*))?\}", one, value)


def dashboard_service() -> tuple[dict[str, str], list[str]]:
    """The dashboard service's environment and command as compose would give them from .env."""
    values = env_file(ROOT / ".env.example")
    values = {k: secrets.token_urlsafe(24) if v == "CHANGE-ME" else v for k, v in values.items()}
    service = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))["services"]["dashboard"]
    environment = {k: interpolate(str(v), values) for k, v in service["environment"].items()}
    return environment, list(service["command"])


def readme_add_user() -> tuple[list[str], str]:
    """The README's `docker compose exec -T dashboard ...` line: the command run in the container,
    and the file its stdin is read from."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    line = re.search(r"^docker compose exec -T dashboard (ewi dashboard add-user .*)$", readme, re.M)
    assert line, "README.md no longer says how to add a dashboard user in compose"
    command, _, stdin = line[1].partition("<")
    return shlex.split(command), stdin.strip()


@pytest.fixture(scope="module")
def compose_env(warehouse_ready, tmp_path_factory):
    """The dashboard container's environment here: the volume's paths under a temporary folder,
    the warehouse DSN at a warehouse initialised as the compose init service does."""
    from unittest import mock

    from ewi import warehouse, warehouse_init

    with mock.patch.dict(os.environ, {"EWI_WAREHOUSE_DB": TEST_DB}):
        warehouse_init.init_warehouse()
        dsn = warehouse.dsn(TEST_DB)
    volume = tmp_path_factory.mktemp("ewi-home-volume")
    environment, command = dashboard_service()
    assert environment["EWI_DASHBOARD_USERS"] == "", "the dashboard service must not be given {} or users"
    mapped = {k: v.replace(VOLUME, str(volume)) if v.startswith(VOLUME) else v for k, v in environment.items()}
    mapped["EWI_WAREHOUSE_DSN"] = dsn
    # nothing of this process's EWI_* settings: only what compose hands the container, and what
    # runs Python here (the image has its own PATH and installation)
    base = {k: os.environ[k] for k in ("PATH", "PYTHONPATH", "LANG", "HOME") if k in os.environ}
    return {"env": {**base, **mapped}, "command": command, "volume": volume}


def test_a_user_added_as_the_readme_says_logs_in_to_the_compose_dashboard(compose_env, browser, tmp_path):
    env, command = compose_env["env"], compose_env["command"]
    assert command[:2] == ["ewi", "dashboard"]
    args = command[2:]
    port = free_port()
    args[args.index("--host") + 1] = "127.0.0.1"  # 0.0.0.0 in the container; loopback here
    args[args.index("--port") + 1] = str(port)
    proc = subprocess.Popen([sys.executable, "-m", "ewi.cli", "dashboard", *args], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=open(tmp_path / "stderr.txt", "w"))
    try:
        url = f"http://127.0.0.1:{port}"
        assert proc.stdout.readline().strip() == f"Dashboard: {url}/"
        add_user, stdin_file = readme_add_user()
        name = add_user[add_user.index("add-user") + 1]
        (tmp_path / stdin_file).write_text(PASSWORD + "\n", encoding="utf-8")
        with open(tmp_path / stdin_file) as stdin:
            done = subprocess.run([sys.executable, "-m", "ewi.cli", *add_user[1:]], env=env, stdin=stdin,
                                  capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        # on the volume, so it outlives the container
        assert (compose_env["volume"] / "dashboard" / "users.json").exists()

        context = browser.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        try:
            page.goto(url + "/", wait_until="load", timeout=60_000)
            assert "/login" in page.url
            page.fill("#username", name)
            page.fill("#password", PASSWORD)
            page.click("#login-submit")
            page.wait_for_url(url + "/", timeout=30_000)
            assert page.is_visible("form[action='/logout']") or "logout" in page.content().lower()
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "dashboard_compose_login.png"), full_page=True)
        finally:
            context.close()
    finally:
        stop(proc)
