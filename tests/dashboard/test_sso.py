"""Single sign-on (OpenID Connect, authorization code with PKCE) against providers started here on
loopback, with the dashboard served as `ewi dashboard` serves it:

- the real provider: the npm package `oidc-provider` (pinned in tests/oidc/package-lock.json) under
  node, driven through Chromium: its login form, its consent, real redirects and real tokens;
  a user whose group maps to no EWI role is refused;
- a test-only issuer (below, signing with joserfc) for the token faults the real provider will not
  make: an ID token for another audience, an expired one, and one signed with a key the provider
  never published. Its own well-formed token is accepted, so each refusal is the fault's.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import secrets
import shutil
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlparse

import httpx
import psycopg
import pytest

from tests.dashboard.helpers import ARTIFACTS, access_log, dashboard_environment, free_port, serve, stop

pytestmark = pytest.mark.slow

OIDC_DIR = Path(__file__).resolve().parent.parent / "oidc"
TEST_DB = "ewi_dashboard_sso_test"
CLIENT_ID, CLIENT_SECRET = "ewi-dashboard", "a-test-client-secret-0123456789"
ROLE_MAP = {"ewi-coordinators": "coordinator", "ewi-auditors": "auditor"}
ACCOUNTS = {"anna": {"groups": ["staff", "ewi-coordinators"]}, "olle": {"groups": ["ewi-auditors"]},
            "nils": {"groups": ["staff"]}}
LOCAL = {"username": "local-coord", "password": "local-pass-12345"}


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: the single sign-on tests run the npm package oidc-provider")
    if not (OIDC_DIR / "node_modules" / "oidc-provider").exists():
        npm = shutil.which("npm")
        if npm is None:
            pytest.skip("npm is not installed: run `npm ci` in tests/oidc")
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=OIDC_DIR, check=True, capture_output=True,
                       timeout=300)
    return node


@pytest.fixture(scope="module")
def env(warehouse_ready, tmp_path_factory):
    from ewi import warehouse, warehouse_init
    from ewi.dashboard import users

    users_path = tmp_path_factory.mktemp("sso-users") / "users.json"
    with dashboard_environment(TEST_DB, users_path):
        warehouse_init.init_warehouse()
        users.set_user(LOCAL["username"], "coordinator", LOCAL["password"])  # local users stay
        yield {"dsn": warehouse.dsn(TEST_DB)}


def _dashboard(tmp_path_factory, issuer: str, port: int):
    """`ewi dashboard` whose single sign-on goes to `issuer`."""
    extra = {"EWI_OIDC_ISSUER": issuer, "EWI_OIDC_CLIENT_ID": CLIENT_ID, "EWI_OIDC_CLIENT_SECRET": CLIENT_SECRET,
             "EWI_OIDC_SCOPES": "openid profile groups", "EWI_OIDC_ROLE_CLAIM": "groups",
             "EWI_OIDC_ROLE_MAP": json.dumps(ROLE_MAP)}
    err = open(tmp_path_factory.mktemp("sso-dashboard-log") / "stderr.txt", "w")
    return serve({**os.environ, **extra}, err, port=port)


@pytest.fixture(scope="module")
def real(env, tmp_path_factory):
    """The npm oidc-provider and a dashboard using it."""
    node = _node()
    provider_port, dashboard_port = free_port(), free_port()
    issuer = f"http://127.0.0.1:{provider_port}"
    log = open(tmp_path_factory.mktemp("oidc-provider-log") / "out.txt", "w+")
    provider = subprocess.Popen(
        [node, "provider.mjs"], cwd=OIDC_DIR, stdout=log, stderr=subprocess.STDOUT,
        env={"PATH": os.environ["PATH"], "PORT": str(provider_port), "CLIENT_ID": CLIENT_ID,
             "CLIENT_SECRET": CLIENT_SECRET, "ACCOUNTS": json.dumps(ACCOUNTS),
             "REDIRECT_URI": f"http://127.0.0.1:{dashboard_port}/login/sso/callback"})
    try:
        deadline = time.time() + 30
        while True:
            try:
                if httpx.get(f"{issuer}/.well-known/openid-configuration", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            log.seek(0)
            assert provider.poll() is None and time.time() < deadline, log.read()
            time.sleep(0.2)
        proc, url = _dashboard(tmp_path_factory, issuer, dashboard_port)
        yield {"url": url, "issuer": issuer}
        stop(proc)
    finally:
        provider.terminate()
        provider.wait(timeout=10)


def _sso_in_browser(browser, real: dict, login: str, screenshot: str | None = None):
    """Through the dashboard's login page, the provider's own login and consent forms, and back."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    asked = []
    page.on("request", lambda r: asked.append(r.url) if r.url.startswith(real["issuer"] + "/auth?") else None)
    page.goto(real["url"] + "/")
    assert "/login" in page.url
    page.click("#login-sso")
    page.wait_for_url(re.compile(re.escape(real["issuer"]) + "/interaction/"))
    page.fill("input[name=login]", login)
    page.fill("input[name=password]", "anything")  # the package's development form takes any
    page.click("button[type=submit]")
    page.wait_for_load_state()
    if page.url.startswith(real["issuer"]):  # the consent form
        page.click("button[type=submit]")
    page.wait_for_url(re.compile(re.escape(real["url"]) + r"/.*"))
    page.wait_for_load_state()
    if screenshot:
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"dashboard_sso_{screenshot}.png"), full_page=True)
    return context, page, asked


def test_a_mapped_group_logs_in_through_the_real_provider_with_pkce(real, browser, env):
    context, page, asked = _sso_in_browser(browser, real, "anna", "coordinator")
    try:
        assert page.url == real["url"] + "/"
        assert page.is_visible("#overview-table") or page.locator("main").count() == 1
        query = parse_qs(urlparse(asked[0]).query)
        assert query["code_challenge_method"] == ["S256"] and len(query["code_challenge"][0]) == 43
        assert query["client_id"] == [CLIENT_ID] and query["nonce"] and query["state"]
        assert page.goto(real["url"] + "/audit").status == 403  # a coordinator, not an auditor
        entry = access_log(env["dsn"], "login")[-1]
        assert (entry["username"], entry["user_role"], entry["success"]) == ("anna", "coordinator", True)
        assert entry["detail"] == {"method": "oidc"}
    finally:
        context.close()


def test_the_auditors_group_gives_the_auditor_role(real, browser):
    context, page, _ = _sso_in_browser(browser, real, "olle")
    try:
        assert page.goto(real["url"] + "/audit").status == 200
    finally:
        context.close()


def test_a_user_with_no_mapped_group_is_refused(real, browser, env):
    context, page, _ = _sso_in_browser(browser, real, "nils", "no_role")
    try:
        assert page.locator("#sso-refused").get_attribute("data-reason") == "no_role"
        assert page.goto(real["url"] + "/").url.startswith(real["url"] + "/login")  # no session
        entry = access_log(env["dsn"], "login")[-1]
        assert (entry["username"], entry["success"]) == ("nils", False)
        assert entry["detail"] == {"method": "oidc", "reason": "no_role"}
    finally:
        context.close()


def test_local_users_still_log_in_beside_single_sign_on(real):
    with httpx.Client(base_url=real["url"], follow_redirects=False, timeout=30) as client:
        login_page = client.get("/login").text
        assert 'id="login-sso"' in login_page
        token = re.search(r'name="csrf" value="([^"]+)"', login_page)[1]
        r = client.post("/login", data={"username": LOCAL["username"], "password": LOCAL["password"],
                                        "csrf": token, "next": "/"})
        assert r.status_code == 303 and client.get("/").status_code == 200


def test_a_forged_state_is_refused(real):
    with httpx.Client(base_url=real["url"], follow_redirects=False, timeout=30) as client:
        r = client.get("/login/sso/callback", params={"code": "x", "state": "forged"})
        assert r.status_code == 401 and 'data-reason="state"' in r.text


# ---------------------------------------------------------------- token faults (a test-only issuer)


class FakeIssuer:
    """The provider side of the code flow, by the book (discovery, keys, authorize, token with PKCE
    and client authentication checked), whose ID token carries the fault asked for."""

    def __init__(self):
        from joserfc.jwk import RSAKey

        self.key = RSAKey.generate_key(2048, parameters={"kid": "k1", "use": "sig"})
        # the same key id, another key: what a forger without the provider's private key can do
        self.rogue = RSAKey.generate_key(2048, parameters={"kid": "k1", "use": "sig"})
        self.fault, self.codes = None, {}
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.issuer = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def id_token(self, nonce: str) -> str:
        from joserfc import jwt

        now = int(time.time())
        claims = {"iss": self.issuer, "sub": "fake-1", "aud": CLIENT_ID, "iat": now, "exp": now + 300,
                  "nonce": nonce, "preferred_username": "fake-user", "groups": ["ewi-coordinators"]}
        if self.fault == "wrong_audience":
            claims["aud"] = "another-application"
        if self.fault == "expired":
            claims.update(iat=now - 3600, exp=now - 600)  # beyond any leeway
        key = self.rogue if self.fault == "bad_signature" else self.key
        return jwt.encode({"alg": "RS256", "kid": "k1"}, claims, key)

    def _handler(self):
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _json(self, body: dict, status: int = 200):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                url = urlparse(self.path)
                if url.path == "/.well-known/openid-configuration":
                    return self._json({"issuer": issuer.issuer, "authorization_endpoint": issuer.issuer + "/authorize",
                                       "token_endpoint": issuer.issuer + "/token", "jwks_uri": issuer.issuer + "/jwks",
                                       "id_token_signing_alg_values_supported": ["RS256"],
                                       "code_challenge_methods_supported": ["S256"]})
                if url.path == "/jwks":
                    return self._json({"keys": [issuer.key.as_dict(private=False)]})
                if url.path == "/authorize":
                    q = {k: v[0] for k, v in parse_qs(url.query).items()}
                    assert q["response_type"] == "code" and q["code_challenge_method"] == "S256"
                    code = secrets.token_urlsafe(16)
                    issuer.codes[code] = q
                    self.send_response(302)
                    self.send_header("Location", f"{q['redirect_uri']}?{urlencode({'code': code, 'state': q['state']})}")
                    self.end_headers()
                    return None
                return self._json({"error": "not_found"}, 404)

            def do_POST(self):
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(int(self.headers["Content-Length"])).decode()).items()}
                asked = issuer.codes.pop(form.get("code"), None)
                basic = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
                challenge = base64.urlsafe_b64encode(
                    hashlib.sha256(form.get("code_verifier", "").encode()).digest()).rstrip(b"=").decode()
                if (asked is None or self.headers.get("Authorization") != f"Basic {basic}"
                        or challenge != asked["code_challenge"] or form.get("redirect_uri") != asked["redirect_uri"]):
                    return self._json({"error": "invalid_grant"}, 400)
                return self._json({"access_token": secrets.token_urlsafe(16), "token_type": "Bearer",
                                   "expires_in": 300, "id_token": issuer.id_token(asked["nonce"])})

        return Handler


@pytest.fixture(scope="module")
def fake(env, tmp_path_factory):
    issuer = FakeIssuer()
    proc, url = _dashboard(tmp_path_factory, issuer.issuer, free_port())
    yield {"issuer": issuer, "url": url}
    stop(proc)
    issuer.server.shutdown()


def _sign_on(fake: dict, fault: str | None) -> tuple[httpx.Response, httpx.Client]:
    fake["issuer"].fault = fault
    client = httpx.Client(base_url=fake["url"], follow_redirects=False, timeout=30)
    r = client.get("/login/sso")
    assert r.status_code == 303 and r.headers["location"].startswith(fake["issuer"].issuer + "/authorize?")
    back = httpx.get(r.headers["location"], follow_redirects=False, timeout=30)  # the provider's answer
    return client.get(back.headers["location"]), client


def test_the_test_issuers_own_token_is_accepted(fake):
    answer, client = _sign_on(fake, None)
    assert answer.status_code == 303 and answer.headers["location"] == "/"
    assert client.get("/").status_code == 200


@pytest.mark.parametrize("fault", ["wrong_audience", "expired", "bad_signature"])
def test_a_faulty_id_token_is_refused(fake, env, fault):
    def fake_users_sessions() -> int:
        with psycopg.connect(env["dsn"]) as conn:
            return conn.execute("select count(*) from dashboard_auth.sessions "
                                "where username = 'fake-user'").fetchone()[0]

    before = fake_users_sessions()
    answer, client = _sign_on(fake, fault)
    assert answer.status_code == 401 and 'data-reason="token"' in answer.text
    assert client.get("/").status_code == 303  # no session
    entry = access_log(env["dsn"], "login")[-1]
    assert (entry["username"], entry["success"], entry["detail"]) == (
        "(unknown)", False, {"method": "oidc", "reason": "token"})
    assert fake_users_sessions() == before


@pytest.mark.parametrize(("fault", "cause"), [("wrong_audience", "InvalidClaimError"),
                                              ("expired", "ExpiredTokenError"),
                                              ("bad_signature", "BadSignatureError")])
def test_each_token_fault_is_refused_for_its_own_reason(fault, cause, monkeypatch):
    """The check that refuses each faulty token is the one meant for it (the refusal the user sees
    says only "token")."""
    from ewi.dashboard.security import oidc

    issuer = FakeIssuer()
    try:
        monkeypatch.setenv("EWI_OIDC_ISSUER", issuer.issuer)
        monkeypatch.setenv("EWI_OIDC_CLIENT_ID", CLIENT_ID)
        provider = oidc.configured()
        meta = oidc.metadata(provider)
        assert oidc.verify_id_token(provider, meta, issuer.id_token("n-1"), "n-1")["sub"] == "fake-1"
        with pytest.raises(oidc.SsoRefused) as refused:
            oidc.verify_id_token(provider, meta, issuer.id_token("n-1"), "n-2")
        assert type(refused.value.__cause__).__name__ == "InvalidClaimError"  # another login's nonce
        issuer.fault = fault
        with pytest.raises(oidc.SsoRefused) as refused:
            oidc.verify_id_token(provider, meta, issuer.id_token("n-1"), "n-1")
        assert refused.value.reason == "token" and type(refused.value.__cause__).__name__ == cause
    finally:
        issuer.server.shutdown()


def test_roles_come_from_the_mapped_claim_values():
    from ewi.dashboard.security.oidc import role_of

    assert role_of(["staff", "ewi-coordinators"], ROLE_MAP) == "coordinator"
    assert role_of(["ewi-coordinators", "ewi-auditors"], ROLE_MAP) == "auditor"
    assert role_of("ewi-auditors", ROLE_MAP) == "auditor"
    assert role_of(["staff"], ROLE_MAP) is None and role_of(None, ROLE_MAP) is None
    assert role_of(["coordinator"], {}) == "coordinator" and role_of(["admin"], {}) is None
