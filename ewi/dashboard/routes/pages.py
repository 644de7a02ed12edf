"""The coordinators' pages: the overview of every area, and one area's weeks."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from ewi.dashboard import data
from ewi.dashboard import signals as signal_data
from ewi.dashboard.security.access import CoordinatorUser
from ewi.dashboard.views import AREA_CODE, indicator_param, lang_of, message, page, weeks_param

router = APIRouter()


@router.get("/", response_class=HTMLResponse)
def overview(user: CoordinatorUser, request: Request, indicator: str | None = None):
    lang = lang_of(request)
    indicator = indicator_param(indicator)
    with data.connect() as conn:
        freshness = data.load_status(conn)
        week = data.latest_complete_week(conn)
        rows, muni = data.overview(conn, week) if week else ([], {})
        open_signals = signal_data.open_signals(conn)
    return page(request, "overview.html", lang, user, freshness=freshness, week=week, rows=rows,
                muni=muni, indicator=indicator, open_signals=open_signals)


@router.get("/area/{area_code}", response_class=HTMLResponse)
def area(user: CoordinatorUser, request: Request, area_code: str, indicator: str | None = None,
         weeks: int | None = None, signal: str | None = None):
    lang = lang_of(request)
    indicator = indicator_param(indicator)
    if not AREA_CODE.match(area_code):
        return message(request, user, "not_found", 404)
    with data.connect() as conn:
        freshness = data.load_status(conn)
        view = data.area_view(conn, area_code, weeks_param(weeks))
        history = signal_data.area_history(conn, area_code)
    if view is None:
        return message(request, user, "not_found", 404, freshness=freshness)
    return page(request, "area.html", lang, user, freshness=freshness, indicator=indicator,
                signal_history=history, signal_message=signal if signal in signal_data.OUTCOMES else None,
                close_reasons=signal_data.CLOSE_REASONS, **view)
