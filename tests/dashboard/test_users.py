"""Dashboard user administration (`ewi dashboard list-users|add-user|set-role|disable-user|
enable-user|delete-user`), run as an administrator runs it, against the dashboard served as `ewi
dashboard` serves it (a process of its own) and a real warehouse holding the sessions; and which
users count when EWI_DASHBOARD_USERS is empty, `{}` or holds users itself."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import httpx
import psycopg
import pytest

from tests.dashboard.helpers import dashboard_environment, serve, stop

TEST_DB = "ewi_dashboard_users_test"
PASSWORDS = {"anna": "anna-pass-1234", "olle": "olle-pass-1234"}


def ewi(*args: str, stdin: str | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ewi.cli", *args], input=stdin, capture_output=True,
                          text=True, env=env or dict(os.environ), timeout=120)


@pytest.fixture(scope="module")
def env(warehouse_ready, tmp_path_factory):
    from ewi import warehouse, warehouse_init

    users_path = tmp_path_factory.mktemp("admin-users") / "users.json"
    with dashboard_environment(TEST_DB, users_path):
        warehouse_init.init_warehouse()
        yield {"dsn": warehouse.dsn(TEST_DB), "users_path": users_path}


@pytest.fixture(scope="module")
def server(env, tmp_path_factory):
    with open(tmp_path_factory.mktemp("users-dashboard-log") / "stderr.txt", "w") as err:
        proc, url = serve(dict(os.environ), err)
    yield url
    stop(proc)


@pytest.fixture(autouse=True)
def two_users(env):
    """anna (coordinator) and olle (auditor), added as the README says: password on stdin."""
    env["users_path"].unlink(missing_ok=True)
    for name, role in (("anna", "coordinator"), ("olle", "auditor")):
        done = ewi("dashboard", "add-user", name, "--role", role, stdin=PASSWORDS[name] + "\n")
        assert done.returncode == 0, done.stderr
    with psycopg.connect(env["dsn"], autocommit=True) as conn:
        conn.execute("delete from dashboard_auth.login_throttle")
        conn.execute("update dashboard_auth.sessions set revoked_at = now(), revoked_reason = 'logout' "
                     "where revoked_at is null")  # earlier tests' sessions


def _try_login(url: str, username: str, password: str) -> tuple[httpx.Client, int]:
    client = httpx.Client(base_url=url, follow_redirects=False, timeout=30)
    token = re.search(r'name="csrf" value="([^"]+)"', client.get("/login").text)[1]
    r = client.post("/login", data={"username": username, "password": password, "csrf": token, "next": "/"})
    return client, r.status_code


def _login(url: str, username: str) -> httpx.Client:
    client, status = _try_login(url, username, PASSWORDS[username])
    assert status == 303, status
    return client


def _open_sessions(dsn: str, username: str) -> int:
    with psycopg.connect(dsn) as conn:
        return conn.execute("select count(*) from dashboard_auth.sessions where username = %s "
                            "and revoked_at is null", (username,)).fetchone()[0]


def test_list_users_shows_each_users_role_and_status(server):
    assert ewi("dashboard", "disable-user", "olle").returncode == 0
    listed = ewi("dashboard", "list-users", "--json")
    assert listed.returncode == 0, listed.stderr
    found = {u["username"]: u for u in map(json.loads, listed.stdout.splitlines())}
    assert found == {
        "anna": {"username": "anna", "role": "coordinator", "disabled": False, "source": "file"},
        "olle": {"username": "olle", "role": "auditor", "disabled": True, "source": "file"},
    }
    table = ewi("dashboard", "list-users").stdout
    assert re.search(r"^anna\s+coordinator\s+enabled\b", table, re.M)
    assert re.search(r"^olle\s+auditor\s+disabled\b", table, re.M)
    assert "scrypt" not in listed.stdout + table  # no password hash is shown


def test_disabling_a_user_ends_their_sessions_at_once_and_refuses_their_login(server, env):
    client = _login(server, "anna")
    other = _login(server, "anna")  # a second browser
    assert client.get("/").status_code == 200
    assert _open_sessions(env["dsn"], "anna") == 2
    done = ewi("dashboard", "disable-user", "anna")
    assert done.returncode == 0, done.stderr
    # ended in the warehouse by the command itself, before any page is asked for
    assert _open_sessions(env["dsn"], "anna") == 0
    assert client.get("/").status_code == 303 and other.get("/export/overview.csv").status_code == 401
    assert _try_login(server, "anna", PASSWORDS["anna"])[1] == 401
    kept = _login(server, "olle")
    assert ewi("dashboard", "disable-user", "anna").returncode == 0  # again: no harm
    assert kept.get("/audit").status_code == 200
    assert ewi("dashboard", "enable-user", "anna").returncode == 0
    assert _try_login(server, "anna", PASSWORDS["anna"])[1] == 303


def test_a_disabled_users_session_ends_even_when_the_warehouse_was_not_told(server, env):
    """The users file alone says so (as when the command could not reach the warehouse)."""
    from ewi.dashboard import users

    client = _login(server, "anna")
    users.set_disabled("anna", True)  # the file only, not the sessions
    assert _open_sessions(env["dsn"], "anna") == 1
    assert client.get("/").status_code == 303
    assert _open_sessions(env["dsn"], "anna") == 0


def test_set_role_applies_at_the_next_page(server):
    client = _login(server, "olle")
    assert client.get("/audit").status_code == 200
    done = ewi("dashboard", "set-role", "olle", "--role", "coordinator")
    assert done.returncode == 0, done.stderr
    assert client.get("/audit").status_code == 403
    assert client.get("/").status_code == 200
    assert ewi("dashboard", "set-role", "olle", "--role", "admin").returncode == 2  # no such role
    assert ewi("dashboard", "set-role", "nobody", "--role", "auditor").returncode == 2


def test_delete_user_ends_their_sessions_and_their_login(server, env):
    client = _login(server, "olle")
    done = ewi("dashboard", "delete-user", "olle")
    assert done.returncode == 0, done.stderr
    assert _open_sessions(env["dsn"], "olle") == 0
    assert client.get("/audit").status_code == 303
    assert _try_login(server, "olle", PASSWORDS["olle"])[1] == 401
    again = ewi("dashboard", "delete-user", "olle")
    assert again.returncode == 2 and "no user olle" in again.stderr
    assert ewi("dashboard", "list-users", "--json").stdout.count("olle") == 0


def test_a_short_password_or_a_missing_role_is_refused(server):
    assert ewi("dashboard", "add-user", "kim", "--role", "coordinator", stdin="short\n").returncode == 2
    assert ewi("dashboard", "add-user", "kim", stdin="long-enough-pass\n").returncode == 2
    assert "kim" not in ewi("dashboard", "list-users").stdout


@pytest.mark.parametrize("empty", ["", "{}", "[]", '{"users": []}'])
def test_an_empty_users_setting_leaves_the_users_file_in_force(empty, tmp_path, monkeypatch):
    """The compose bug: `.env.example` said EWI_DASHBOARD_USERS={} and that hid the users file."""
    from ewi.dashboard import users

    monkeypatch.setenv("EWI_HOME", str(tmp_path))
    monkeypatch.setenv("EWI_DASHBOARD_USERS", empty)
    users.set_user("anna", "coordinator", PASSWORDS["anna"])
    assert users.users_file() == tmp_path / "dashboard" / "users.json"
    assert users.authenticate("anna", PASSWORDS["anna"]).role == "coordinator"


def test_users_given_in_the_environment_count_beside_the_file_and_cannot_be_changed_by_the_cli(
        tmp_path, monkeypatch):
    from ewi.dashboard import users

    given = [{"username": "env-auditor", "role": "auditor", "password_hash": users.hash_password("env-pass-12345")}]
    monkeypatch.setenv("EWI_HOME", str(tmp_path))
    monkeypatch.setenv("EWI_DASHBOARD_USERS", json.dumps(given))
    users.set_user("anna", "coordinator", PASSWORDS["anna"])
    assert set(users.load_users()) == {"anna", "env-auditor"}
    assert users.authenticate("env-auditor", "env-pass-12345").role == "auditor"
    for change in (lambda: users.set_role("env-auditor", "coordinator"),
                   lambda: users.set_disabled("env-auditor", True),
                   lambda: users.remove_user("env-auditor"),
                   lambda: users.set_user("env-auditor", "auditor", "another-pass-1")):
        with pytest.raises(users.UserChangeRefused, match="EWI_DASHBOARD_USERS"):
            change()
    # the file holds only its own users: the environment's are never copied into it
    assert [u["username"] for u in json.loads(users.users_file().read_text())["users"]] == ["anna"]


def test_end_sessions_ends_a_users_sessions_and_keeps_the_user(server, env):
    client = _login(server, "anna")
    done = ewi("dashboard", "end-sessions", "anna")
    assert done.returncode == 0 and "1 open session(s) of anna ended" in done.stdout
    assert client.get("/").status_code == 303
    assert _try_login(server, "anna", PASSWORDS["anna"])[1] == 303  # may log in again
