"""The coordinators' pages: the overview of every area, and one area's weeks."""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from ewi.dashboard import data
from ewi.dashboard import signals as signal_data
from ewi.dashboard.security.access import CoordinatorUser, record_view
from ewi.dashboard.views import AREA_CODE, RANGE_WEEKS, indicator_param, lang_of, message, page, range_param

router = APIRouter()


@router.get("/", response_class=HTMLResponse)
def overview(user: CoordinatorUser, request: Request, indicator: str | None = None, weeks: int | None = None,
             start: str | None = Query(None, alias="from"), end: str | None = Query(None, alias="to")):
    lang = lang_of(request)
    indicator = indicator_param(indicator)
    span = range_param(weeks, start, end)
    with data.connect() as conn:
        freshness = data.load_status(conn)
        week = data.latest_complete_week(conn)
        rows, muni = data.overview(conn, week) if week else ([], {})
        open_signals = signal_data.open_signals(conn)
        until = min(week, span.until) if week and span.until else week
        since = until - timedelta(weeks=span.weeks - 1) if until else None
        # the small multiples' values, readable as a table: one row per week, one column per area
        values: dict = defaultdict(dict)
        for r in data.weekly(conn, indicator=indicator, since=since) if until else []:
            if r["week_start"] <= until:
                values[r["week_start"]][r["area_code"]] = r
    # every area, every indicator of the latest week, and the chosen indicator over the range
    record_view(user, request, "overview", week_from=since or week, week_to=until)
    return page(request, "overview.html", lang, user, freshness=freshness, week=week, rows=rows,
                muni=muni, indicator=indicator, open_signals=open_signals, span=span, since=since,
                until=until, range_weeks=RANGE_WEEKS, values=dict(sorted(values.items(), reverse=True)))


@router.get("/area/{area_code}", response_class=HTMLResponse)
def area(user: CoordinatorUser, request: Request, area_code: str, indicator: str | None = None,
         weeks: int | None = None, signal: str | None = None,
         start: str | None = Query(None, alias="from"), end: str | None = Query(None, alias="to")):
    lang = lang_of(request)
    indicator = indicator_param(indicator)
    if not AREA_CODE.match(area_code):
        return message(request, user, "not_found", 404)
    with data.connect() as conn:
        freshness = data.load_status(conn)
        span = range_param(weeks, start, end)
        view = data.area_view(conn, area_code, span.weeks, span.until)
        history = signal_data.area_history(conn, area_code)
    if view is None:
        return message(request, user, "not_found", 404, freshness=freshness)
    record_view(user, request, "area", area=area_code, week_from=view["since"], week_to=view["latest"])
    return page(request, "area.html", lang, user, freshness=freshness, indicator=indicator,
                signal_history=history, signal_message=signal if signal in signal_data.OUTCOMES else None,
                close_reasons=signal_data.CLOSE_REASONS, span=span, range_weeks=RANGE_WEEKS, **view)
