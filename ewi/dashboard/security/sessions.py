"""Server-side dashboard sessions and the login throttle, kept in the warehouse (schema
dashboard_auth, migration 0013) and reached through its security-definer functions only.

The signed cookie holds a random session id; the warehouse holds the id's SHA-256 with the user,
when the session started and was last used, and whether it was revoked. So a logout ends a session
for every copy of its cookie, and the idle and absolute limits hold whatever the cookie says.
Failed logins are counted per known user and per client address; from the FREE-th failure in a
row a key waits, BASE seconds doubling at each further failure, at most MAX.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from ewi.dashboard import data

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Throttle:
    free: int  # failures in a row before the first wait
    base_seconds: int
    max_seconds: int


# A user is throttled early; an address later, since a municipal office's staff may all reach the
# dashboard from one NAT address and one person's typos must not lock out the rest.
USER_THROTTLE = Throttle(free=5, base_seconds=30, max_seconds=15 * 60)
ADDRESS_THROTTLE = Throttle(free=20, base_seconds=30, max_seconds=15 * 60)


def new_session_id() -> str:
    return secrets.token_urlsafe(32)


def _digest(session_id: str) -> bytes:
    return hashlib.sha256(session_id.encode()).digest()


def credential(password_hash: str) -> str:
    """What a session remembers of its user's password: enough to notice it was changed."""
    return hashlib.sha256(password_hash.encode()).hexdigest()[:32]


#: what a single sign-on session keeps in place of a password digest: the role the provider gave
SSO_CREDENTIAL = "sso:"


def sso_credential(role: str) -> str:
    return SSO_CREDENTIAL + role


def start(session_id: str, username: str, password_hash: str | None = None, sso_role: str | None = None) -> None:
    """A session of a local user (their password hash) or of a single sign-on user (their role)."""
    remembered = sso_credential(sso_role) if sso_role else credential(password_hash or "")
    with data.connect(read_only=False) as conn:
        conn.execute("select dashboard_auth.start_session(%s, %s, %s)",
                     (_digest(session_id), username, remembered))


def use(session_id: str, idle_seconds: int, absolute_seconds: int) -> tuple[str, str] | None:
    """(username, credential digest) of a live session, marking it used now; None when the
    session is unknown, revoked, idle too long or too old."""
    with data.connect(read_only=False) as conn:
        # a last-use time lost in a crash costs nothing; waiting for its disk flush costs every page
        conn.execute("set synchronous_commit = off")
        row = conn.execute("select username, credential from dashboard_auth.use_session(%s, %s, %s)",
                           (_digest(session_id), idle_seconds, absolute_seconds)).fetchone()
    return (row["username"], row["credential"]) if row else None


def end(session_id: str, reason: str) -> None:
    with data.connect(read_only=False) as conn:
        conn.execute("select dashboard_auth.end_session(%s, %s)", (_digest(session_id), reason))


def end_for_user(username: str, reason: str = "user_changed") -> int:
    """End every open session of a user at once (disabled or deleted by an administrator); the
    number ended. Run by `ewi dashboard` as the warehouse's owner, not by the dashboard's roles:
    the dashboard itself also refuses such a user's sessions at their next request."""
    from ewi import warehouse

    with warehouse.connect(autocommit=True) as conn:
        return conn.execute("update dashboard_auth.sessions set revoked_at = now(), revoked_reason = %s "
                            "where username = %s and revoked_at is null", (reason, username)).rowcount


def address_key(host: str | None) -> str:
    """The throttle key of a client address: an IPv6 client's /64, which one subscriber gets
    whole and could otherwise rotate through; anything else as given."""
    try:
        ip = ipaddress.ip_address(host or "")
    except ValueError:
        return host or "(none)"
    if ip.version == 6:
        if ip.ipv4_mapped:  # an IPv4 client of a dual-stack socket
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


class LoginGuard:
    """Failed-login bookkeeping for one attempt, on a connection whose transaction holds the
    attempt's user and address keys: a second attempt on a key waits until this one is counted,
    so 30 guesses sent at once are throttled like 30 sent one after another."""

    def __init__(self, conn, username: str | None, address: str):
        self.conn, self.username, self.address = conn, username, address

    def wait(self) -> int:
        """Seconds before a login may be tried for this user (None: not a known user) from this
        address; 0 when it may be tried now."""
        row = self.conn.execute("select dashboard_auth.login_wait(%s, %s) as wait",
                                (self.username, self.address)).fetchone()
        return int(row["wait"])

    def failed(self) -> dict[str, int]:
        """Counts a failed login; returns the lockouts it started, {scope: seconds}."""
        started = {}
        for scope, key, rule in (("user", self.username, USER_THROTTLE),
                                 ("address", self.address, ADDRESS_THROTTLE)):
            if key is None:
                continue
            row = self.conn.execute("select dashboard_auth.login_failed(%s, %s, %s, %s, %s) as seconds",
                                    (scope, key, rule.free, rule.base_seconds, rule.max_seconds)).fetchone()
            if row["seconds"]:
                started[scope] = int(row["seconds"])
        return started

    def succeeded(self) -> None:
        # the address keeps its count: one valid account must not clear an address guessing at others
        if self.username is not None:
            self.conn.execute("select dashboard_auth.login_succeeded(%s)", (self.username,))


@contextmanager
def login_guard(username: str | None, address: str) -> Iterator[LoginGuard]:
    with data.connect(read_only=False) as conn, conn.transaction():
        # always the user before the address, so two attempts never wait for each other in a circle
        for scope, key in (("user", username), ("address", address)):
            if key is not None:
                conn.execute("select pg_advisory_xact_lock(hashtextextended(%s, 0))",
                             (f"ewi.dashboard.login:{scope}:{key}",))
        yield LoginGuard(conn, username, address)
