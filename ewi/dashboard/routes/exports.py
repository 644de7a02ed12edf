"""CSV exports of what the coordinators' pages show, and the weekly briefing PDF; each export is logged
before it is handed out."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from ewi.dashboard import briefing, data
from ewi.dashboard.i18n import fmt_number, fmt_week, indicator_label, text
from ewi.dashboard.security.access import CoordinatorUser, record_access, record_view
from ewi.dashboard.views import AREA_CODE, csv_response, lang_of, range_param

router = APIRouter()


@router.get("/export/overview.csv")
def overview_csv(user: CoordinatorUser, request: Request):
    lang = lang_of(request)
    t = text(lang)
    with data.connect() as conn:
        week = data.latest_complete_week(conn)
        rows, _ = data.overview(conn, week) if week else ([], {})
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
    record_view(user, request, "overview", action="export", fmt="csv", week_from=week, week_to=week)
    return csv_response(out, f"ewi_overview_{fmt_week(week)}.csv", lang)


@router.get("/export/area/{area_code}.csv")
def area_csv(user: CoordinatorUser, request: Request, area_code: str, weeks: int | None = None,
             end: str | None = Query(None, alias="to")):
    lang = lang_of(request)
    t = text(lang)
    span = range_param(weeks, None, end)
    weeks = span.weeks
    if not AREA_CODE.match(area_code):
        return Response(status_code=404)
    with data.connect() as conn:
        view = data.area_view(conn, area_code, weeks, span.until)
    if view is None:
        return Response(status_code=404)
    out: list[list] = [[t["week"], "area_code", t["area"], "indicator", t["numerator"], t["denominator"],
                        t["rate"], t["rolling_12"], t["last_year"], t["municipality"], t["alert"]]]
    for r in sorted(view["rows"], key=lambda r: (r["indicator"], r["week_start"])):
        key = (r["indicator"], r["week_start"])
        sup = bool(r["is_suppressed"])
        out.append([fmt_week(r["week_start"]), area_code, view["area_name"], r["indicator"],
                    fmt_number(r["numerator"], lang, 0, sup), fmt_number(r["denominator"], lang, 0, sup),
                    fmt_number(r["rate"], lang, suppressed=sup), fmt_number(view["rolling"].get(key), lang),
                    fmt_number(view["last_year"].get(key), lang), fmt_number(view["muni"].get(key), lang),
                    "1" if key in view["alert_keys"] else "0"])
    record_access("export_csv", user, request, detail={"view": "area", "area_code": area_code, "weeks": weeks})
    record_view(user, request, "area", action="export", fmt="csv", area=area_code, week_from=view["since"],
                week_to=view["latest"])
    return csv_response(out, f"ewi_{area_code}_{fmt_week(view['latest'])}.csv", lang)


@router.get("/export/briefing.pdf")
def briefing_pdf(user: CoordinatorUser, request: Request, week: str | None = None):
    """The weekly briefing, built now from what is published (the signals' states as they are now)."""
    lang = lang_of(request)
    try:
        wanted = briefing.parse_week(week) if week else None
    except ValueError:
        return Response(status_code=404)
    pdf, shown = briefing.build(wanted, lang)
    record_access("export_briefing", user, request, detail={"view": "briefing", "week": fmt_week(shown),
                                                            "lang": lang})
    record_view(user, request, "briefing", action="export", fmt="pdf", week_from=shown, week_to=shown)
    return Response(pdf, media_type="application/pdf", headers={
        "Content-Disposition": f'attachment; filename="ewi_briefing_{fmt_week(shown)}_{lang}.pdf"',
        "Cache-Control": "no-store"})
