"""The dashboard web application (FastAPI, server-rendered Jinja2 pages, SVG charts).

Coordinators see published, disclosure-controlled indicators only; auditors also see every
delivery and its checks. A session is a record on the server (ewi.dashboard.sessions) named by a
random id in a signed cookie (itsdangerous through Starlette's SessionMiddleware); a logout
revokes it, and every request reads the user's role from the users file again. Failed logins are
throttled per user and per address. Forms carry a CSRF token kept in the session; every login,
lockout and export is appended to audit.access_log.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import re
import secrets
from collections import defaultdict
from datetime import date, timedelta
from pathlib import Path
from typing import Annotated
from urllib.parse import quote, unquote, urlencode

from fastapi import Depends, FastAPI, Form, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from markupsafe import Markup
from psycopg.types.json import Jsonb
from starlette.middleware.sessions import SessionMiddleware

from ewi import config
from ewi.dashboard import charts, data, lineage, sessions, users
from ewi.dashboard.i18n import (
    INDICATORS,
    LANGS,
    fmt_number,
    fmt_week,
    indicator_label,
    source_label,
    text,
)

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
SESSION_IDLE_SECONDS = int(os.environ.get("EWI_DASHBOARD_SESSION_SECONDS", 8 * 3600))
SESSION_ABSOLUTE_SECONDS = 12 * 3600
DEFAULT_WEEKS = 52
_AREA_CODE = re.compile(r"^[0-9A-Za-z_-]{1,32}$")
_NO_STORE = {"Cache-Control": "no-store"}
HSTS = "max-age=31536000"  # a year; no includeSubDomains: the municipality's other hosts are not ours to pin

templates = Jinja2Templates(directory=str(HERE / "templates"))


# ---------------------------------------------------------------- access


class LoginRequired(Exception):
    pass


class Forbidden(Exception):
    pass


def _session_secret() -> str:
    configured = os.environ.get("EWI_DASHBOARD_SECRET")
    if configured:
        return configured
    path = config.ewi_home() / "dashboard" / "session.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32))
    return path.read_text().strip()


def current_user(request: Request) -> dict:
    """The user of a live server-side session, with the role the users file gives them now: a
    removed user, or one whose password was set again, is logged out; a changed role applies."""
    session_id = request.session.get("sid")
    if not session_id:
        raise LoginRequired()
    found = sessions.use(session_id, SESSION_IDLE_SECONDS, SESSION_ABSOLUTE_SECONDS)
    user = users.load_users().get(found[0]) if found else None
    if user is None or sessions.credential(user.password_hash) != found[1]:
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


def _check_csrf(request: Request, token: str) -> None:
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


def lang_of(request: Request) -> str:
    requested = request.query_params.get("lang")
    if requested in LANGS:
        request.session["lang"] = requested
        return requested
    return request.session.get("lang", "sv")


# ---------------------------------------------------------------- rendering helpers


def _page(request: Request, name: str, lang: str, user: dict | None, status_code: int = 200,
          headers: dict | None = None, **context):
    def num(value, suppressed: bool = False, decimals: int = 1) -> str:
        return fmt_number(value, lang, decimals=decimals, suppressed=suppressed)

    other = "en" if lang == "sv" else "sv"
    query = dict(request.query_params)
    query["lang"] = other
    base = {
        "t": text(lang),
        "lang": lang,
        "user": user,
        "csrf": csrf_token(request),
        "num": num,
        "week_label": fmt_week,
        "indicator_label": lambda ind: indicator_label(ind, lang),
        "source_label": lambda src: source_label(src, lang),
        "indicators": INDICATORS,
        "lang_toggle_url": f"{request.url.path}?{urlencode(query)}",
        "freshness": None,
    }
    base.update(context)
    return templates.TemplateResponse(request, name, base, status_code=status_code,
                                      headers={**_NO_STORE, **(headers or {})})


def _freshness(conn) -> list[data.SourceStatus]:
    return data.load_status(conn)


def _indicator_param(value: str | None) -> str:
    return value if value in INDICATORS else INDICATORS[0]


def _weeks_param(value: int | None) -> int:
    return max(4, min(int(value or DEFAULT_WEEKS), 260))


def _csv_response(rows: list[list], filename: str, lang: str) -> Response:
    buf = io.StringIO()
    # Swedish spreadsheets expect ';' when the decimal separator is a comma
    csv.writer(buf, delimiter=";" if lang == "sv" else ",").writerows(rows)
    return Response("\ufeff" + buf.getvalue(), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{filename}"', **_NO_STORE})


def _image_response(body: bytes, fmt: str, filename: str | None = None) -> Response:
    headers = dict(_NO_STORE)
    if filename:
        headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    return Response(body, media_type="image/svg+xml" if fmt == "svg" else "image/png", headers=headers)


def _area_context(conn, area_code: str, weeks: int, lang: str) -> dict | None:
    latest = data.latest_complete_week(conn)
    if latest is None:
        return None
    since = latest - timedelta(weeks=weeks - 1)
    rows = [r for r in data.weekly(conn, area_code=area_code, since=since - timedelta(weeks=53))
            if r["week_start"] <= latest]
    if not rows:
        return None
    by_key = {(r["indicator"], r["week_start"]): r for r in rows}
    shown = [r for r in rows if r["week_start"] >= since]
    week_list = sorted({r["week_start"] for r in shown}, reverse=True)
    muni = data.municipality(conn, since=since)
    rolling = data.rolling_12(conn, area_code)
    area_alerts = [a for a in data.alerts(conn, area_code=area_code) if since <= a["week_start"] <= latest]
    last_year = {k: (by_key.get((k[0], k[1] - timedelta(weeks=52))) or {}).get("rate")
                 for k in by_key}
    return {
        "area_code": area_code,
        "area_name": rows[0]["area_name"],
        "latest": latest,
        "since": since,
        "weeks": weeks,
        "week_list": week_list,
        "cells": {(r["indicator"], r["week_start"]): r for r in shown},
        "rows": shown,
        "muni": muni,
        "rolling": rolling,
        "last_year": last_year,
        "alerts": area_alerts,
        "alert_keys": {(a["indicator"], a["week_start"]) for a in area_alerts},
    }


def _week_param(value: str) -> date | None:
    """An ISO week (2026-W47) or its Monday (2026-11-16) as the week's Monday."""
    m = re.fullmatch(r"(\d{4})-W(\d{2})", value or "")
    try:
        if m:
            return date.fromisocalendar(int(m[1]), int(m[2]), 1)
        day = date.fromisoformat(value)
    except ValueError:
        return None
    return day - timedelta(days=day.weekday())


def _docs_root() -> Path:
    return (config.ewi_home() / "gx").resolve()


def _docs_url(data_docs_path: str | None) -> str | None:
    if not data_docs_path:
        return None
    root = _docs_root()
    path = Path(data_docs_path)
    if not path.exists() and Path(unquote(data_docs_path)).exists():  # GX hands out file:// URLs
        path = Path(unquote(data_docs_path))
    if path.is_absolute():
        try:
            path = path.resolve().relative_to(root)
        except ValueError:
            return None
    return "/audit/docs/" + quote(path.as_posix())


# ---------------------------------------------------------------- the application


def create_app() -> FastAPI:
    app = FastAPI(title="EWI dashboard", docs_url=None, redoc_url=None, openapi_url=None)
    https = os.environ.get("EWI_DASHBOARD_HTTPS") == "1"
    app.add_middleware(
        SessionMiddleware, secret_key=_session_secret(), session_cookie="ewi_session",
        max_age=SESSION_IDLE_SECONDS, same_site="strict", https_only=https,
    )
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")

    @app.middleware("http")
    async def security_headers(request: Request, call_next):
        response = await call_next(request)
        if request.url.path.startswith("/audit/docs/"):
            # GX Data Docs pages carry their own inline scripts and styles
            csp = "default-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'"
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
        if request.url.path.startswith(("/export/", "/chart/", "/api/", "/audit/docs/")):
            return Response("login required", status_code=401, headers=_NO_STORE)
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?{urlencode({'next': target})}", status_code=303)

    @app.exception_handler(Forbidden)
    async def forbidden(request: Request, exc: Forbidden):
        lang = lang_of(request)
        return _page(request, "message.html", lang, getattr(request.state, "user", None), status_code=403,
                     message=text(lang)["forbidden"])

    @app.get("/healthz")
    def healthz():
        # For container health checks: the process serves; no data, no login.
        return {"status": "ok"}

    # -------------------------------------------------------- login

    @app.get("/login", response_class=HTMLResponse)
    def login_form(request: Request, next: str = "/"):
        return _page(request, "login.html", lang_of(request), None, next=next, failed=False)

    @app.post("/login")
    def login(request: Request, username: str = Form(""), password: str = Form(""),
              csrf: str = Form(""), next: str = Form("/")):
        _check_csrf(request, csrf)
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
            return _page(request, "login.html", lang, None, status_code=429, next=next, failed=False,
                         throttled=True, headers={"Retry-After": str(wait)})
        if user is None:
            record_access("login", None, request, success=False, username=known or "(unknown)")
            for scope, seconds in lockouts.items():
                log.warning("dashboard login locked for %s s after repeated failures: %s %s", seconds, scope,
                            known if scope == "user" else address)
                record_access("login_lockout", None, request, success=False, username=known or "(unknown)",
                              detail={"scope": scope, "seconds": seconds,
                                      **({"address": address} if scope == "address" else {})})
            return _page(request, "login.html", lang, None, status_code=401, next=next, failed=True)
        if request.session.get("sid"):
            sessions.end(request.session["sid"], "logout")  # the session this login replaces
        session_id = sessions.new_session_id()
        sessions.start(session_id, user.username, user.password_hash)
        request.session.clear()  # a fresh session on login: no fixation
        request.session.update({"sid": session_id, "lang": lang, "csrf": secrets.token_urlsafe(32)})
        record_access("login", {"username": user.username, "role": user.role}, request)
        safe_next = next if re.match(r"^/(?![/\\])", next) else "/"  # no open redirect
        return RedirectResponse(safe_next, status_code=303)

    @app.post("/logout")
    def logout(request: Request, csrf: str = Form("")):
        _check_csrf(request, csrf)
        lang = request.session.get("lang", "sv")
        if request.session.get("sid"):
            sessions.end(request.session["sid"], "logout")  # every copy of the cookie is done with
        request.session.clear()
        request.session["lang"] = lang
        return RedirectResponse("/login", status_code=303)

    # -------------------------------------------------------- coordinator

    @app.get("/", response_class=HTMLResponse)
    def overview(user: CoordinatorUser, request: Request, indicator: str | None = None):
        lang = lang_of(request)
        indicator = _indicator_param(indicator)
        with data.connect() as conn:
            freshness = _freshness(conn)
            week = data.latest_complete_week(conn)
            rows, muni = data.overview(conn, week) if week else ([], {})
        return _page(request, "overview.html", lang, user, freshness=freshness, week=week, rows=rows,
                     muni=muni, indicator=indicator)

    @app.get("/area/{area_code}", response_class=HTMLResponse)
    def area(user: CoordinatorUser, request: Request, area_code: str, indicator: str | None = None, weeks: int | None = None):
        lang = lang_of(request)
        indicator = _indicator_param(indicator)
        if not _AREA_CODE.match(area_code):
            return _page(request, "message.html", lang, user, status_code=404, message=text(lang)["not_found"])
        with data.connect() as conn:
            freshness = _freshness(conn)
            ctx = _area_context(conn, area_code, _weeks_param(weeks), lang)
        if ctx is None:
            return _page(request, "message.html", lang, user, status_code=404, freshness=freshness,
                         message=text(lang)["not_found"])
        return _page(request, "area.html", lang, user, freshness=freshness, indicator=indicator, **ctx)

    @app.get("/chart/overview/{indicator}.{fmt}")
    def overview_chart(user: CoordinatorUser, request: Request, indicator: str, fmt: str):
        lang = lang_of(request)
        if indicator not in INDICATORS or fmt not in ("svg", "png"):
            return Response(status_code=404)
        with data.connect() as conn:
            week = data.latest_complete_week(conn)
            if week is None:
                return Response(status_code=404)
            since = week - timedelta(weeks=DEFAULT_WEEKS - 1)

            def render() -> bytes:
                by_area: dict[tuple[str, str], list[dict]] = defaultdict(list)
                for r in data.weekly(conn, indicator=indicator, since=since):
                    if r["week_start"] <= week:
                        by_area[(r["area_code"], r["area_name"])].append(r)
                muni = {w: v for (ind, w), v in data.municipality(conn, since=since).items()
                        if ind == indicator and w <= week}
                return charts.small_multiples(dict(by_area), muni, indicator, lang, fmt)

            body = charts.cached(("overview", indicator, week, lang, fmt), render)
        if fmt == "png":
            record_access("export_png", user, request, detail={"indicator": indicator, "week": str(week)})
            return _image_response(body, fmt, f"ewi_{indicator}_{fmt_week(week)}.png")
        return _image_response(body, fmt)

    @app.get("/chart/area/{area_code}/{indicator}.{fmt}")
    def area_chart(user: CoordinatorUser, request: Request, area_code: str, indicator: str, fmt: str, weeks: int | None = None):
        lang = lang_of(request)
        weeks = _weeks_param(weeks)
        if indicator not in INDICATORS or fmt not in ("svg", "png") or not _AREA_CODE.match(area_code):
            return Response(status_code=404)
        with data.connect() as conn:
            ctx = _area_context(conn, area_code, weeks, lang)
            if ctx is None:
                return Response(status_code=404)

            def render() -> bytes:
                rows = [r for r in ctx["rows"] if r["indicator"] == indicator]
                pick = {w: v for (ind, w), v in ctx["muni"].items() if ind == indicator}
                return charts.area_trend(
                    rows,
                    {w: v for (ind, w), v in ctx["rolling"].items() if ind == indicator},
                    {w: v for (ind, w), v in ctx["last_year"].items() if ind == indicator},
                    pick,
                    [a["week_start"] for a in ctx["alerts"] if a["indicator"] == indicator],
                    indicator, ctx["area_name"], lang, fmt,
                )

            body = charts.cached(("area", area_code, indicator, ctx["latest"], weeks, lang, fmt), render)
        if fmt == "png":
            record_access("export_png", user, request,
                          detail={"area_code": area_code, "indicator": indicator, "weeks": weeks})
            return _image_response(body, fmt, f"ewi_{area_code}_{indicator}_{fmt_week(ctx['latest'])}.png")
        return _image_response(body, fmt)

    @app.get("/export/overview.csv")
    def overview_csv(user: CoordinatorUser, request: Request):
        lang = lang_of(request)
        t = text(lang)
        with data.connect() as conn:
            week = data.latest_complete_week(conn)
            rows, muni = data.overview(conn, week) if week else ([], {})
        out: list[list] = [[t["week"], "area_code", t["area"], "indicator", t["indicator"], t["rate"],
                            t["municipality"], "vs_municipality", "vs_history", t["alert"]]]
        for r in rows:
            for ind, c in r.cells.items():
                out.append([fmt_week(week), r.area_code, r.area_name, ind, indicator_label(ind, lang),
                            fmt_number(c.cell.rate if c.cell else None, lang,
                                       suppressed=bool(c.cell and c.cell.is_suppressed)),
                            fmt_number(c.municipality_rate, lang), c.vs_municipality, c.vs_history,
                            "1" if c.alert else "0"])
        record_access("export_csv", user, request, detail={"view": "overview", "week": str(week)})
        return _csv_response(out, f"ewi_overview_{fmt_week(week)}.csv", lang)

    @app.get("/export/area/{area_code}.csv")
    def area_csv(user: CoordinatorUser, request: Request, area_code: str, weeks: int | None = None):
        lang = lang_of(request)
        t = text(lang)
        weeks = _weeks_param(weeks)
        if not _AREA_CODE.match(area_code):
            return Response(status_code=404)
        with data.connect() as conn:
            ctx = _area_context(conn, area_code, weeks, lang)
        if ctx is None:
            return Response(status_code=404)
        out: list[list] = [[t["week"], "area_code", t["area"], "indicator", t["numerator"], t["denominator"],
                            t["rate"], t["rolling_12"], t["last_year"], t["municipality"], t["alert"]]]
        for r in sorted(ctx["rows"], key=lambda r: (r["indicator"], r["week_start"])):
            key = (r["indicator"], r["week_start"])
            sup = bool(r["is_suppressed"])
            out.append([fmt_week(r["week_start"]), area_code, ctx["area_name"], r["indicator"],
                        fmt_number(r["numerator"], lang, 0, sup), fmt_number(r["denominator"], lang, 0, sup),
                        fmt_number(r["rate"], lang, suppressed=sup), fmt_number(ctx["rolling"].get(key), lang),
                        fmt_number(ctx["last_year"].get(key), lang), fmt_number(ctx["muni"].get(key), lang),
                        "1" if key in ctx["alert_keys"] else "0"])
        record_access("export_csv", user, request, detail={"view": "area", "area_code": area_code,
                                                           "weeks": weeks})
        return _csv_response(out, f"ewi_{area_code}_{fmt_week(ctx['latest'])}.csv", lang)

    # -------------------------------------------------------- auditor

    @app.get("/audit", response_class=HTMLResponse)
    def audit_batches(user: AuditorUser, request: Request):
        lang = lang_of(request)
        with data.connect(data.AUDITOR_ROLE) as conn:
            freshness = _freshness(conn)
            rows = data.batches(conn)
        for r in rows:
            r["docs_url"] = _docs_url(r.get("data_docs_path"))
        return _page(request, "audit.html", lang, user, freshness=freshness, batches=rows)

    @app.get("/audit/batch/{batch_id}", response_class=HTMLResponse)
    def audit_batch(user: AuditorUser, request: Request, batch_id: str):
        lang = lang_of(request)
        with data.connect(data.AUDITOR_ROLE) as conn:
            row, checks = data.batch(conn, batch_id)
        if row is None:
            return _page(request, "message.html", lang, user, status_code=404, message=text(lang)["not_found"])
        for c in checks:
            c["observed_text"] = json.dumps(c["observed"], ensure_ascii=False) if c["observed"] is not None else ""
        return _page(request, "batch.html", lang, user, batch=row, checks=checks,
                     docs_url=_docs_url(row.get("data_docs_path")),
                     failed_checks=json.dumps(row.get("failed_checks") or [], ensure_ascii=False))

    @app.get("/audit/dbt", response_class=HTMLResponse)
    def audit_dbt(user: AuditorUser, request: Request):
        lang = lang_of(request)
        with data.connect(data.AUDITOR_ROLE) as conn:
            builds = data.dbt_builds(conn)
        return _page(request, "dbt.html", lang, user, builds=builds)

    @app.get("/audit/lineage", response_class=HTMLResponse)
    def audit_lineage(user: AuditorUser, request: Request):
        lang = lang_of(request)
        manifest, manifest_path = lineage.load_manifest()
        svg, graph, generated_at = None, None, None
        if manifest is not None:
            with data.connect(data.AUDITOR_ROLE) as conn:
                deliveries = data.deliveries_by_source(conn)
            graph = lineage.build_graph(manifest, deliveries)
            svg = Markup(lineage.render_svg(graph))  # noqa: S704 - every label is escaped by render_svg
            generated_at = (manifest.get("metadata") or {}).get("generated_at")
        runs = lineage.task_runs()
        return _page(request, "lineage.html", lang, user, svg=svg, graph=graph, manifest_path=str(manifest_path),
                     generated_at=lineage.short_time(generated_at), runs=runs, short_time=lineage.short_time)

    @app.get("/audit/provenance", response_class=HTMLResponse)
    def audit_provenance(user: AuditorUser, request: Request, indicator: str = "", week: str = "",
                         area: str | None = None):
        lang = lang_of(request)
        week_start = _week_param(week)
        if indicator not in INDICATORS or week_start is None or (area and not _AREA_CODE.match(area)):
            return _page(request, "message.html", lang, user, status_code=404, message=text(lang)["not_found"])
        with data.connect(data.AUDITOR_ROLE) as conn:
            cell = data.published_cell(conn, indicator, week_start, area or None)
            found = data.provenance(conn, indicator, week_start)
        return _page(request, "provenance.html", lang, user, indicator=indicator, week=week_start,
                     area=area or None, cell=cell, **found)

    @app.get("/audit/docs/{path:path}")
    def audit_docs(user: AuditorUser, path: str):
        root = _docs_root()
        target = (root / path).resolve()
        if not target.is_relative_to(root) or not target.is_file():
            return Response("not found", status_code=404)
        return FileResponse(target)

    return app
