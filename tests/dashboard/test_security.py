"""Attacks on the dashboard's sessions and logins, as real HTTP requests to the dashboard served the
way `ewi dashboard` serves it (a process of its own), against a real warehouse holding the session
records: a freshly initialised one, before its first dbt build (the pages only need to let a user
in or keep them out; `make mutation` runs these tests for every mutant, so they build nothing).
Expected values are worked by hand from the rules in docs/decisions.md (Dashboard)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.dashboard.helpers import access_log, dashboard_environment, serve, stop

TEST_DB = "ewi_dashboard_security_test"
PASSWORDS = {"coord": "coord-pass-123", "audit": "audit-pass-123", "broken": "broken-pass-123"}
# A users-file entry damaged by hand: the right shape, but a digest of nothing and a 3-byte salt.
MALFORMED_HASH = "scrypt$16384$8$1$c2FsdA==$"


@pytest.fixture(scope="module")
def env(warehouse_ready, tmp_path_factory):
    """A database of its own, initialised as `ewi` initialises one (so it has the session store), a
    users file, a Data Docs page, and the environment the dashboard process reads."""
    from ewi import warehouse, warehouse_init

    users_path = tmp_path_factory.mktemp("security-users") / "users.json"
    with dashboard_environment(TEST_DB, users_path):
        warehouse_init.init_warehouse()
        docs = Path(os.environ["EWI_HOME"]) / "gx" / "data_docs" / "security-test" / "page.html"
        docs.parent.mkdir(parents=True, exist_ok=True)
        docs.write_text("<html><body><h1>GX validation page</h1></body></html>", encoding="utf-8")
        yield {"dsn": warehouse.dsn(TEST_DB), "users_path": users_path,
               "docs": "/audit/docs/data_docs/security-test/page.html"}


@pytest.fixture(autouse=True)
def fresh_users_and_throttle(env):
    """Each test starts with the three users as created and no failed logins on record."""
    from ewi.dashboard import users

    users.save_users({
        "coord": users.User("coord", "coordinator", users.hash_password(PASSWORDS["coord"])),
        "audit": users.User("audit", "auditor", users.hash_password(PASSWORDS["audit"])),
        "broken": users.User("broken", "auditor", MALFORMED_HASH),
    })
    with psycopg.connect(env["dsn"], autocommit=True) as conn:
        if conn.execute("select to_regclass('dashboard_auth.login_throttle')").fetchone()[0]:
            conn.execute("delete from dashboard_auth.login_throttle")


class Served:
    def __init__(self, url: str, log: Path):
        self.url, self.log = url, log

    def stderr(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")


def _serve(tmp_path_factory, extra_env: dict[str, str]) -> tuple[subprocess.Popen, Served]:
    log = tmp_path_factory.mktemp("dashboard-log") / "stderr.txt"
    with open(log, "w") as err:
        proc, url = serve({**os.environ, **extra_env}, err)
    return proc, Served(url, log)


@pytest.fixture(scope="module")
def server(env, tmp_path_factory):
    """`ewi dashboard` in a process of its own."""
    proc, served = _serve(tmp_path_factory, {})
    yield served
    stop(proc)


def _client(server: Served) -> httpx.Client:
    return httpx.Client(base_url=server.url, follow_redirects=False, timeout=30)


def _csrf(client: httpx.Client) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', client.get("/login").text)[1]


def _try_login(client: httpx.Client, username: str, password: str) -> httpx.Response:
    return client.post("/login", data={"username": username, "password": password, "csrf": _csrf(client),
                                       "next": "/"})


def _login(server: Served, username: str) -> httpx.Client:
    client = _client(server)
    r = _try_login(client, username, PASSWORDS[username])
    assert r.status_code == 303, r.status_code
    return client


def _replay(server: Served, cookie: str, path: str = "/") -> int:
    """A request from somewhere else carrying a copy of a saved cookie."""
    with _client(server) as other:
        return other.get(path, headers={"Cookie": f"ewi_session={cookie}"}).status_code


def _session_hash(cookie: str) -> bytes:
    """The store's key of the session a cookie names: the SHA-256 of the id inside its signed payload."""
    payload = cookie.split(".")[0]
    session = json.loads(base64.b64decode(payload + "=" * (-len(payload) % 4)))
    assert "sid" in session, "the cookie names no session kept on the server"
    return hashlib.sha256(session["sid"].encode()).digest()


# ---------------------------------------------------------------- sessions on the server


def test_a_cookie_saved_before_logout_no_longer_works(server):
    client = _login(server, "coord")
    saved = client.cookies["ewi_session"]
    assert _replay(server, saved) == 200
    page = client.get("/").text
    token = re.search(r'name="csrf" value="([^"]+)"', page)[1]
    assert client.post("/logout", data={"csrf": token}).status_code == 303
    assert _replay(server, saved) == 303  # to the login page
    assert _replay(server, saved, "/export/overview.csv") == 401


def test_logging_in_again_ends_the_session_it_replaces(server):
    client = _login(server, "coord")
    first = client.cookies["ewi_session"]
    assert _try_login(client, "audit", PASSWORDS["audit"]).status_code == 303
    assert client.get("/audit").status_code == 200
    assert _replay(server, first) == 303


def test_a_demoted_user_loses_the_old_role_at_the_next_request(server, env):
    from ewi.dashboard import users

    client = _login(server, "audit")
    assert client.get(env["docs"]).status_code == 200
    kept = users.load_users()
    kept["audit"] = users.User("audit", "coordinator", kept["audit"].password_hash)  # same password
    users.save_users(kept)
    assert client.get("/audit").status_code == 403
    assert client.get(env["docs"]).status_code == 403
    assert client.get("/").status_code == 200  # still a coordinator


def test_a_deleted_user_is_logged_out_at_the_next_request(server):
    from ewi.dashboard import users

    client = _login(server, "coord")
    saved = client.cookies["ewi_session"]
    kept = users.load_users()
    del kept["coord"]
    users.save_users(kept)
    assert client.get("/").status_code == 303
    assert _replay(server, saved) == 303


def test_ewi_dashboard_remove_user_ends_the_users_sessions(server):
    client = _login(server, "audit")
    done = subprocess.run([sys.executable, "-m", "ewi.cli", "dashboard", "remove-user", "audit"],
                          capture_output=True, text=True, env=dict(os.environ), timeout=60)
    assert done.returncode == 0, done.stderr
    assert client.get("/audit").status_code == 303
    assert _try_login(_client(server), "audit", PASSWORDS["audit"]).status_code == 401
    again = subprocess.run([sys.executable, "-m", "ewi.cli", "dashboard", "remove-user", "audit"],
                           capture_output=True, text=True, env=dict(os.environ), timeout=60)
    assert again.returncode == 2 and "no user audit" in again.stderr


def test_a_new_password_ends_the_sessions_opened_with_the_old_one(server):
    client = _login(server, "coord")
    # as an administrator resets it: `ewi dashboard add-user` with the password on stdin
    done = subprocess.run([sys.executable, "-m", "ewi.cli", "dashboard", "add-user", "coord", "--role",
                           "coordinator"], input="a-new-password-1\n", capture_output=True, text=True,
                          env=dict(os.environ), timeout=60)
    assert done.returncode == 0, done.stderr
    assert client.get("/").status_code == 303
    again = _client(server)
    assert _try_login(again, "coord", "a-new-password-1").status_code == 303
    assert again.get("/").status_code == 200


def test_sessions_end_12_hours_after_login_however_active(server, env):
    client = _login(server, "coord")
    key = _session_hash(client.cookies["ewi_session"])
    with psycopg.connect(env["dsn"], autocommit=True) as conn:
        assert conn.execute("update dashboard_auth.sessions set created_at = now() - interval '11 hours 59 minutes' "
                            "where session_hash = %s", (key,)).rowcount == 1
        assert client.get("/").status_code == 200  # used a second ago, 11:59 old: still on
        conn.execute("update dashboard_auth.sessions set created_at = now() - interval '12 hours 1 minute' "
                     "where session_hash = %s", (key,))
    assert client.get("/").status_code == 303


def test_sessions_end_after_8_idle_hours_on_the_server(server, env):
    client = _login(server, "coord")
    key = _session_hash(client.cookies["ewi_session"])
    with psycopg.connect(env["dsn"], autocommit=True) as conn:
        conn.execute("update dashboard_auth.sessions set last_seen_at = now() - interval '7 hours 59 minutes' "
                     "where session_hash = %s", (key,))
        assert client.get("/").status_code == 200
        conn.execute("update dashboard_auth.sessions set last_seen_at = now() - interval '8 hours 1 minute' "
                     "where session_hash = %s", (key,))
    assert client.get("/").status_code == 303


def test_before_the_first_build_the_overview_says_nothing_is_published_yet(server):
    # this warehouse was initialised and never built: no mart exists, and that is no error
    page = _login(server, "coord").get("/?lang=en")
    assert page.status_code == 200 and "No published data yet." in page.text


# ---------------------------------------------------------------- logins


def test_wrong_passwords_for_one_user_are_throttled_with_growing_waits(server, env):
    client = _client(server)
    answers = [_try_login(client, "coord", f"guess-{i}") for i in range(30)]
    # 5 answered, then 30 s of 429 (the correct password too: a locked-out guess learns nothing)
    assert [r.status_code for r in answers] == [401] * 5 + [429] * 25
    assert 0 < int(answers[5].headers["Retry-After"]) <= 30
    assert _try_login(client, "coord", PASSWORDS["coord"]).status_code == 429
    # another user from the same address is not held up by coord's lockout
    assert _try_login(_client(server), "audit", PASSWORDS["audit"]).status_code == 303

    # the wait is over: the 6th failure in a row locks for 60 s
    with psycopg.connect(env["dsn"], autocommit=True) as conn:
        conn.execute("update dashboard_auth.login_throttle set locked_until = now() where scope = 'user'")
    assert _try_login(client, "coord", "guess-6").status_code == 401
    locked = _try_login(client, "coord", PASSWORDS["coord"])
    assert locked.status_code == 429 and 30 < int(locked.headers["Retry-After"]) <= 60

    # each lockout is in the server's log and the audit trail, the password in neither
    lockouts = [e for e in access_log(env["dsn"], "login_lockout") if e["username"] == "coord"]
    assert [(e["detail"]["scope"], e["detail"]["seconds"]) for e in lockouts[-2:]] == [("user", 30), ("user", 60)]
    log = server.stderr()
    assert re.search(r"dashboard login locked for 30 s .*user coord", log)
    assert re.search(r"dashboard login locked for 60 s .*user coord", log)
    assert "guess-" not in log and PASSWORDS["coord"] not in log

    with psycopg.connect(env["dsn"], autocommit=True) as conn:
        conn.execute("update dashboard_auth.login_throttle set locked_until = now() where scope = 'user'")
    assert _try_login(client, "coord", PASSWORDS["coord"]).status_code == 303


def test_waits_stop_growing_at_15_minutes_and_a_success_or_a_quiet_day_forgets_them(server, env):
    client = _client(server)

    def user_row(conn):
        return conn.execute("select failures, locked_until > now() as locked from dashboard_auth.login_throttle "
                            "where scope = 'user' and key = 'coord'").fetchone()

    assert _try_login(client, "coord", "guess-1").status_code == 401
    with psycopg.connect(env["dsn"], autocommit=True) as conn:
        # ten failures in a row behind it: the 11th would wait 30 s * 2^6 = 32 min, capped at 15
        conn.execute("update dashboard_auth.login_throttle set failures = 10 where scope = 'user'")
        assert _try_login(client, "coord", "guess-11").status_code == 401
        locked = _try_login(client, "coord", PASSWORDS["coord"])
        assert locked.status_code == 429 and 870 < int(locked.headers["Retry-After"]) <= 900

        # the wait over, the right password clears the count: the next typo starts from one
        conn.execute("update dashboard_auth.login_throttle set locked_until = now() where scope = 'user'")
        assert _try_login(client, "coord", PASSWORDS["coord"]).status_code == 303
        assert user_row(conn) is None
        assert _try_login(_client(server), "coord", "typo").status_code == 401
        assert user_row(conn) == (1, None)

        # ten failures, the last more than a day ago: forgotten, this one is the first
        conn.execute("update dashboard_auth.login_throttle set failures = 10, "
                     "last_failure_at = now() - interval '25 hours' where scope = 'user'")
        assert _try_login(_client(server), "coord", "typo").status_code == 401
        assert user_row(conn) == (1, None)


def test_guesses_sent_all_at_once_are_throttled_like_one_after_another(server):
    clients = [_client(server) for _ in range(30)]
    tokens = [_csrf(c) for c in clients]
    start = threading.Barrier(len(clients))

    def guess(i: int) -> int:
        start.wait()
        return clients[i].post("/login", data={"username": "audit", "password": f"guess-{i}",
                                               "csrf": tokens[i]}).status_code

    with ThreadPoolExecutor(len(clients)) as pool:
        answers = sorted(pool.map(guess, range(len(clients))))
    assert answers == [401] * 5 + [429] * 25


def test_one_address_trying_many_usernames_is_throttled(server, env):
    client = _client(server)
    # password spraying: a new name each time, so no single user's count ever grows
    answers = [_try_login(client, f"user{i}", "Summer2026!").status_code for i in range(24)]
    assert answers == [401] * 20 + [429] * 4
    assert _try_login(_client(server), "audit", PASSWORDS["audit"]).status_code == 429  # same address
    entry = access_log(env["dsn"], "login_lockout")[-1]
    assert (entry["username"], entry["detail"]["scope"], entry["detail"]["seconds"]) == ("(unknown)", "address", 30)
    assert "dashboard login locked for 30 s after repeated failures: address 127.0.0.1" in server.stderr()
    assert "user2" not in json.dumps(entry, default=str)


def test_a_malformed_password_hash_refuses_every_login_and_says_so(server, env):
    client = _client(server)
    for password in (PASSWORDS["broken"], "", "anything"):
        r = _try_login(client, "broken", password)
        assert r.status_code == 401 and "ewi_session" not in r.headers.get("set-cookie", "")
    assert client.get(env["docs"]).status_code == 401
    assert "dashboard user broken cannot log in: the stored password hash is malformed" in server.stderr()


def test_malformed_password_hashes_fail_closed():
    from ewi.dashboard import users

    good = users.hash_password("pw-1234567890")
    scheme, n, r, p, salt, digest = good.split("$")
    for broken in ("", "plain-text", "scrypt$$$$$", MALFORMED_HASH, f"bcrypt${n}${r}${p}${salt}${digest}",
                   f"scrypt$3${r}${p}${salt}${digest}", f"scrypt${n}$0${p}${salt}${digest}",
                   f"scrypt${2**80}${r}${p}${salt}${digest}", f"scrypt$1048576${r}${p}${salt}${digest}",
                   f"scrypt${n}${r}${p}$!!!!${digest}", f"scrypt${n}${r}${p}${salt}$"):
        with pytest.raises(users.MalformedPasswordHash):
            users.verify_password("pw-1234567890", broken)
    assert users.verify_password("pw-1234567890", good)
    assert not users.verify_password("pw-0987654321", good)


def test_a_short_salt_or_a_cut_digest_is_refused_though_scrypt_would_check_it():
    """scrypt itself takes any salt and any digest length, so only the 16-byte floors (decisions.md)
    stop an entry whose 2-byte digest one guess in 65,536 matches. Each entry breaks one floor."""
    import hashlib

    from ewi.dashboard import users

    def entry(salt: bytes, dklen: int, n: int = 16384, r: int = 8, p: int = 1) -> str:
        digest = hashlib.scrypt(b"pw-1234567890", salt=salt, n=n, r=r, p=p, dklen=dklen)
        return f"scrypt${n}${r}${p}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"

    # every floor met exactly is a (weak but) well-formed entry: the checks refuse less, never more
    assert users.verify_password("pw-1234567890", entry(b"s" * 16, 16, n=2, r=1, p=1))
    for broken in (entry(b"s" * 15, 32), entry(b"s" * 16, 15), entry(b"s" * 16, 2), entry(b"s" * 4, 32)):
        with pytest.raises(users.MalformedPasswordHash):
            users.verify_password("pw-1234567890", broken)
    # n a power of two of at least 2, r and p at least 1 (scrypt would refuse these too)
    for n, r, p in ((1, 8, 1), (0, 8, 1), (16384, 0, 1), (16384, 8, 0)):
        with pytest.raises(users.MalformedPasswordHash):
            users.verify_password("pw", f"scrypt${n}${r}${p}${base64.b64encode(b's' * 16).decode()}$"
                                        f"{base64.b64encode(b'd' * 32).decode()}")


# ---------------------------------------------------------------- headers


def test_data_docs_pages_cannot_be_framed_or_cached(server, env):
    r = _login(server, "audit").get(env["docs"])
    assert r.status_code == 200 and "GX validation page" in r.text
    assert "frame-ancestors 'none'" in r.headers["Content-Security-Policy"]
    assert r.headers["Cache-Control"] == "no-store"
    assert "Strict-Transport-Security" not in r.headers  # plain HTTP: the header would mean nothing


def test_https_dashboard_sends_hsts(env, tmp_path_factory):
    proc, served = _serve(tmp_path_factory, {"EWI_DASHBOARD_HTTPS": "1"})
    try:
        with _client(served) as client:
            for path in ("/login", "/healthz", "/static/style.css", "/nowhere"):
                assert client.get(path).headers.get("Strict-Transport-Security") == "max-age=31536000", path
    finally:
        stop(proc)
