"""The charts, rendered on the server (SVG in the pages, PNG as a download, which is logged)."""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from ewi.dashboard import charts, data
from ewi.dashboard.i18n import INDICATORS, fmt_week
from ewi.dashboard.security.access import CoordinatorUser, record_access, record_view
from ewi.dashboard.views import AREA_CODE, image_response, lang_of, range_param

router = APIRouter()
FORMATS = ("svg", "png")


def _answer(body: bytes, fmt: str, user: dict, request: Request, filename: str, detail: dict,
            shown: dict) -> Response:
    """An SVG for a page (whose view is logged); a PNG is a download, logged before it is handed out."""
    if fmt == "png":
        record_access("export_png", user, request, detail=detail)
        record_view(user, request, "chart", action="export", fmt="png", **shown)
        return image_response(body, fmt, filename)
    return image_response(body, fmt)


@router.get("/chart/overview/{indicator}.{fmt}")
def overview_chart(user: CoordinatorUser, request: Request, indicator: str, fmt: str, weeks: int | None = None,
                   end: str | None = Query(None, alias="to")):
    lang = lang_of(request)
    span = range_param(weeks, None, end)
    if indicator not in INDICATORS or fmt not in FORMATS:
        return Response(status_code=404)
    with data.connect() as conn:
        week = data.latest_complete_week(conn)
        if week is None:
            return Response(status_code=404)
        week = min(week, span.until) if span.until else week
        since = week - timedelta(weeks=span.weeks - 1)

        def render() -> bytes:
            by_area: dict[tuple[str, str], list[dict]] = defaultdict(list)
            for r in data.weekly(conn, indicator=indicator, since=since):
                if r["week_start"] <= week:
                    by_area[(r["area_code"], r["area_name"])].append(r)
            muni = {w: v for (ind, w), v in data.municipality(conn, since=since).items()
                    if ind == indicator and w <= week}
            return charts.small_multiples(dict(by_area), muni, indicator, lang, fmt)

        body = charts.cached(("overview", indicator, week, span.weeks, lang, fmt), render)
    return _answer(body, fmt, user, request, f"ewi_{indicator}_{fmt_week(week)}.png",
                   {"indicator": indicator, "week": str(week)},
                   {"indicator": indicator, "week_from": since, "week_to": week})


@router.get("/chart/area/{area_code}/{indicator}.{fmt}")
def area_chart(user: CoordinatorUser, request: Request, area_code: str, indicator: str, fmt: str,
               weeks: int | None = None, end: str | None = Query(None, alias="to")):
    lang = lang_of(request)
    span = range_param(weeks, None, end)
    weeks = span.weeks
    if indicator not in INDICATORS or fmt not in FORMATS or not AREA_CODE.match(area_code):
        return Response(status_code=404)
    with data.connect() as conn:
        view = data.area_view(conn, area_code, weeks, span.until)
        if view is None:
            return Response(status_code=404)

        def of_indicator(values: dict) -> dict:
            return {w: v for (ind, w), v in values.items() if ind == indicator}

        def render() -> bytes:
            return charts.area_trend(
                [r for r in view["rows"] if r["indicator"] == indicator],
                of_indicator(view["rolling"]), of_indicator(view["last_year"]), of_indicator(view["muni"]),
                [a["week_start"] for a in view["alerts"] if a["indicator"] == indicator],
                indicator, view["area_name"], lang, fmt,
            )

        body = charts.cached(("area", area_code, indicator, view["latest"], weeks, lang, fmt), render)
    return _answer(body, fmt, user, request, f"ewi_{area_code}_{indicator}_{fmt_week(view['latest'])}.png",
                   {"area_code": area_code, "indicator": indicator, "weeks": weeks},
                   {"area": area_code, "indicator": indicator, "week_from": view["since"], "week_to": view["latest"]})
