"""The request-side security of the dashboard.

A session is a record on the server (ewi.dashboard.security.sessions) named by a random id in a
signed cookie (itsdangerous through Starlette's SessionMiddleware); a logout revokes it, and every
request reads the user's role from the users file again. Forms carry a CSRF token kept in the
session; every login, lockout and export is appended to audit.access_log, and every view of area
figures and every export to audit.dashboard_access (who saw which area, indicator and weeks). `install` puts the
cookie, the security headers and the answers to a missing login or role on an application.
"""

from __future__ import annotations

import os
import secrets
from datetime import date
from typing import Annotated
from urllib.parse import urlencode

from fastapi import Depends, FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from psycopg.types.json import Jsonb
from starlette.middleware.sessions import SessionMiddleware

from ewi import config
from ewi.dashboard import data, users
from ewi.dashboard.security import sessions
from ewi.settings import get_settings

SESSION_ABSOLUTE_SECONDS = 12 * 3600
HSTS = "max-age=31536000"  # a year; no includeSubDomains: the municipality's other hosts are not ours to pin
NO_STORE = {"Cache-Control": "no-store"}
#: paths answered 401 rather than sent to the login page: what a page loads, not what a person opens
_NOT_PAGES = ("/export/", "/chart/", "/api/", "/audit/docs/", "/audit/dbt-docs/")
#: the generated documentation sites (GX Data Docs, dbt docs): their own inline scripts and styles
_DOC_SITES = ("/audit/docs/", "/audit/dbt-docs/")


class LoginRequired(Exception):
    pass


class Forbidden(Exception):
    pass


def session_idle_seconds() -> int:
    """EWI_DASHBOARD_SESSION_SECONDS: a session unused this long ends."""
    return get_settings().dashboard_session_seconds


def session_secret() -> str:
    configured = get_settings().dashboard_secret
    if configured is not None:
        return configured.get_secret_value()
    path = config.ewi_home() / "dashboard" / "session.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32))
    return path.read_text().strip()


def current_user(request: Request) -> dict:
    """The user of a live server-side session, with the role the users file gives them now: a
    removed or disabled user, or one whose password was set again, is logged out; a changed role
    applies."""
    session_id = request.session.get("sid")
    if not session_id:
        raise LoginRequired()
    found = sessions.use(session_id, session_idle_seconds(), SESSION_ABSOLUTE_SECONDS)
    if found and found[1].startswith(sessions.SSO_CREDENTIAL):
        # single sign-on: the role the provider gave at login holds for the session (at most 12
        # hours); a local user of the same name who is disabled blocks it
        role = found[1][len(sessions.SSO_CREDENTIAL):]
        local = users.load_users().get(found[0])
        if role in users.ROLES and not (local and local.disabled):
            request.state.user = {"username": found[0], "role": role, "sso": True}
            return request.state.user
        sessions.end(session_id, "user_changed")
        request.session.pop("sid", None)
        raise LoginRequired()
    user = users.load_users().get(found[0]) if found else None
    if user is None or user.disabled or sessions.credential(user.password_hash) != found[1]:
        if found:
            sessions.end(session_id, "user_changed")
        request.session.pop("sid", None)
        raise LoginRequired()
    request.state.user = {"username": user.username, "role": user.role}
    return request.state.user


def coordinator(user: Annotated[dict, Depends(current_user)]) -> dict:
    # auditors check what coordinators see, so they may open these pages too
    if user["role"] not in ("coordinator", "auditor"):
        raise Forbidden()
    return user


def auditor(user: Annotated[dict, Depends(current_user)]) -> dict:
    if user["role"] != "auditor":
        raise Forbidden()
    return user


CoordinatorUser = Annotated[dict, Depends(coordinator)]
AuditorUser = Annotated[dict, Depends(auditor)]


def csrf_token(request: Request) -> str:
    if "csrf" not in request.session:
        request.session["csrf"] = secrets.token_urlsafe(32)
    return request.session["csrf"]


def check_csrf(request: Request, token: str) -> None:
    expected = request.session.get("csrf")
    if not expected or not token or not secrets.compare_digest(expected, token):
        raise Forbidden()


def record_access(action: str, user: dict | None, request: Request, success: bool = True,
                  detail: dict | None = None, username: str | None = None) -> None:
    """Append to audit.access_log. Raises if it cannot: an export that cannot be logged does not
    happen."""
    with data.connect(read_only=False) as conn:
        conn.execute(
            "select audit.record_access(%s, %s, %s, %s, %s, %s)",
            (username or (user or {}).get("username") or "(unknown)", (user or {}).get("role"), action,
             success, request.url.path, Jsonb(detail or {})),
        )


def https_only() -> bool:
    """Whether the dashboard is served over HTTPS (behind a proxy): cookies then say Secure."""
    return get_settings().dashboard_https


def record_view(user: dict, request: Request, view: str, *, action: str = "view", fmt: str = "html",
                area: str | None = None, indicator: str | None = None, week_from: date | None = None,
                week_to: date | None = None) -> None:
    """Append to audit.dashboard_access who saw which figures: the area (None: every area), the
    indicator (None: every indicator) and the weeks. Raises if it cannot: figures whose viewing
    cannot be logged are not shown."""
    with data.connect(read_only=False) as conn:
        conn.execute(
            "select audit.record_dashboard_access(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (user["username"], user.get("role"), action, view, fmt, area, indicator, week_from, week_to,
             request.url.path),
        )


def install(app: FastAPI, forbidden_page) -> None:
    """The session cookie, the security headers and the answers to a missing login (the login
    page, or 401 for what a page loads) and a missing role (`forbidden_page(request)`, a 403)."""
    https = https_only()
    app.add_middleware(
        SessionMiddleware, secret_key=session_secret(), session_cookie="ewi_session",
        max_age=session_idle_seconds(), same_site="strict", https_only=https,
    )

    @app.middleware("http")
    async def security_headers(request: Request, call_next):
        response = await call_next(request)
        if request.url.path.startswith(_DOC_SITES):
            # GX Data Docs and dbt docs pages carry their own inline scripts and styles
            csp = "default-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; frame-ancestors 'none'"
        else:
            csp = "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'"
        response.headers.setdefault("Content-Security-Policy", csp)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        if not request.url.path.startswith("/static/"):
            # everything but the stylesheet and script is data a shared computer's cache must not keep
            response.headers.setdefault("Cache-Control", "no-store")
        if https:
            response.headers.setdefault("Strict-Transport-Security", HSTS)
        return response

    @app.exception_handler(LoginRequired)
    async def login_required(request: Request, exc: LoginRequired):
        if request.url.path.startswith(_NOT_PAGES):
            return Response("login required", status_code=401, headers=NO_STORE)
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?{urlencode({'next': target})}", status_code=303)

    @app.exception_handler(Forbidden)
    async def forbidden(request: Request, exc: Forbidden):
        return forbidden_page(request)
