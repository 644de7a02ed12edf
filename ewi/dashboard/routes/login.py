"""Logging in and out, and the health check (no login, no data)."""

from __future__ import annotations

import logging
import re
import secrets

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from ewi.dashboard import users
from ewi.dashboard.security import sessions
from ewi.dashboard.security.access import check_csrf, record_access
from ewi.dashboard.views import lang_of, page

log = logging.getLogger(__name__)

router = APIRouter()


@router.get("/healthz")
def healthz():
    # For container health checks: the process serves; no data, no login.
    return {"status": "ok"}


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: str = "/"):
    return page(request, "login.html", lang_of(request), None, next=next, failed=False)


@router.post("/login")
def login(request: Request, username: str = Form(""), password: str = Form(""),
          csrf: str = Form(""), next: str = Form("/")):
    check_csrf(request, csrf)
    lang = lang_of(request)
    # an unknown "username" may be anything typed by mistake, an identity number too: it is
    # never logged nor kept, so only the address throttles it
    known = username if username in users.load_users() else None
    address = sessions.address_key(request.client.host if request.client else None)
    with sessions.login_guard(known, address) as guard:
        wait = guard.wait()
        # refused before the password is checked: a locked-out guess learns nothing
        user = users.authenticate(username, password) if not wait else None
        if user is not None:
            guard.succeeded()
        lockouts = guard.failed() if user is None and not wait else {}
    if wait:
        return page(request, "login.html", lang, None, status_code=429, next=next, failed=False,
                    throttled=True, headers={"Retry-After": str(wait)})
    if user is None:
        record_access("login", None, request, success=False, username=known or "(unknown)")
        for scope, seconds in lockouts.items():
            log.warning("dashboard login locked for %s s after repeated failures: %s %s", seconds, scope,
                        known if scope == "user" else address)
            record_access("login_lockout", None, request, success=False, username=known or "(unknown)",
                          detail={"scope": scope, "seconds": seconds,
                                  **({"address": address} if scope == "address" else {})})
        return page(request, "login.html", lang, None, status_code=401, next=next, failed=True)
    if request.session.get("sid"):
        sessions.end(request.session["sid"], "logout")  # the session this login replaces
    session_id = sessions.new_session_id()
    sessions.start(session_id, user.username, user.password_hash)
    request.session.clear()  # a fresh session on login: no fixation
    request.session.update({"sid": session_id, "lang": lang, "csrf": secrets.token_urlsafe(32)})
    record_access("login", {"username": user.username, "role": user.role}, request)
    safe_next = next if re.match(r"^/(?![/\\])", next) else "/"  # no open redirect
    return RedirectResponse(safe_next, status_code=303)


@router.post("/logout")
def logout(request: Request, csrf: str = Form("")):
    check_csrf(request, csrf)
    lang = request.session.get("lang", "sv")
    if request.session.get("sid"):
        sessions.end(request.session["sid"], "logout")  # every copy of the cookie is done with
    request.session.clear()
    request.session["lang"] = lang
    return RedirectResponse("/login", status_code=303)
