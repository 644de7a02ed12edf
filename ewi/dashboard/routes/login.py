"""Logging in and out (a local user's password, or single sign-on through the municipality's
OpenID Connect provider), and the health check (no login, no data)."""

from __future__ import annotations

import logging
import re
import secrets

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from itsdangerous import BadSignature, URLSafeTimedSerializer

from ewi.dashboard import users
from ewi.dashboard.security import oidc, sessions
from ewi.dashboard.security.access import check_csrf, https_only, record_access, session_secret
from ewi.dashboard.views import lang_of, message, page

log = logging.getLogger(__name__)

router = APIRouter()


@router.get("/healthz")
def healthz():
    # For container health checks: the process serves; no data, no login.
    return {"status": "ok"}


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: str = "/"):
    return page(request, "login.html", lang_of(request), None, next=next, failed=False,
                sso=oidc.configured() is not None)


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
    return _begin_session(request, lang, {"username": user.username, "role": user.role}, next,
                          password_hash=user.password_hash)


def _safe_next(next: str) -> str:
    return next if re.match(r"^/(?![/\\])", next) else "/"  # no open redirect


def _begin_session(request: Request, lang: str, user: dict, next: str, password_hash: str | None = None,
                   detail: dict | None = None) -> RedirectResponse:
    if request.session.get("sid"):
        sessions.end(request.session["sid"], "logout")  # the session this login replaces
    session_id = sessions.new_session_id()
    sessions.start(session_id, user["username"], password_hash,
                   sso_role=user["role"] if password_hash is None else None)
    request.session.clear()  # a fresh session on login: no fixation
    request.session.update({"sid": session_id, "lang": lang, "csrf": secrets.token_urlsafe(32)})
    record_access("login", user, request, detail=detail)
    return RedirectResponse(_safe_next(next), status_code=303)


# ---------------------------------------------------------------- single sign-on (OpenID Connect)
# What the callback needs back (state, nonce, PKCE verifier, where to go) waits in a cookie of its
# own, signed and good for 10 minutes: the session cookie is SameSite=Strict, so a browser coming
# back from the provider's site would not send it; this one is Lax, and only for /login/sso.
_PENDING_COOKIE, _PENDING_SECONDS = "ewi_sso", 600


def _pending_signer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(session_secret(), salt="ewi.dashboard.sso")


def _redirect_uri(request: Request, provider: oidc.Provider) -> str:
    return provider.redirect_uri or str(request.url_for("sso_callback"))


@router.get("/login/sso")
def sso_begin(request: Request, next: str = "/"):
    provider = oidc.configured()
    if provider is None:
        return message(request, None, "not_found", 404)
    try:
        url, pending = oidc.begin(provider, _redirect_uri(request, provider))
    except oidc.SsoRefused as refused:
        return _sso_refused(request, refused)
    response = RedirectResponse(url, status_code=303)
    response.set_cookie(_PENDING_COOKIE, _pending_signer().dumps({**pending, "next": _safe_next(next)}),
                        max_age=_PENDING_SECONDS, path="/login/sso", httponly=True, samesite="lax",
                        secure=https_only())
    return response


@router.get("/login/sso/callback", name="sso_callback")
def sso_callback(request: Request):
    provider = oidc.configured()
    if provider is None:
        return message(request, None, "not_found", 404)
    try:
        pending = _pending_signer().loads(request.cookies.get(_PENDING_COOKIE, ""), max_age=_PENDING_SECONDS)
    except BadSignature:
        pending = {}
    try:
        username, role = oidc.finish(provider, _redirect_uri(request, provider), pending,
                                     dict(request.query_params))
    except oidc.SsoRefused as refused:
        response = _sso_refused(request, refused)
    else:
        response = _begin_session(request, lang_of(request), {"username": username, "role": role},
                                  pending.get("next", "/"), detail={"method": "oidc"})
    response.delete_cookie(_PENDING_COOKIE, path="/login/sso")  # one use
    return response


def _sso_refused(request: Request, refused: oidc.SsoRefused):
    # the username only when the provider vouched for it (a user without a mapped role)
    record_access("login", None, request, success=False, username=refused.username or "(unknown)",
                  detail={"method": "oidc", "reason": refused.reason})
    status = 403 if refused.reason == "no_role" else 502 if refused.reason == "unreachable" else 401
    return page(request, "login.html", lang_of(request), None, status_code=status, next="/", failed=False,
                sso=True, sso_refused=refused.reason)


@router.post("/logout")
def logout(request: Request, csrf: str = Form("")):
    check_csrf(request, csrf)
    lang = request.session.get("lang", "sv")
    if request.session.get("sid"):
        sessions.end(request.session["sid"], "logout")  # every copy of the cookie is done with
    request.session.clear()
    request.session["lang"] = lang
    return RedirectResponse("/login", status_code=303)
