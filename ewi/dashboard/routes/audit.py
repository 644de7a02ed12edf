"""The auditors' pages: every delivery and its checks (with GX Data Docs), the dbt builds, the
lineage graph, the provenance of a published figure and the alert methods compared."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from urllib.parse import quote, unquote, urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, Response
from markupsafe import Markup

from ewi import config
from ewi.dashboard import audit_data, data, lineage
from ewi.dashboard.i18n import INDICATORS
from ewi.dashboard.security.access import AuditorUser, record_access, record_view
from ewi.dashboard.views import AREA_CODE, csv_response, lang_of, message, page, week_param

router = APIRouter(prefix="/audit")
LOG_PAGE_ROWS = 500  # the newest, on the page; the CSV holds every entry the filter selects


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


@router.get("", response_class=HTMLResponse)
def audit_batches(user: AuditorUser, request: Request):
    lang = lang_of(request)
    with data.connect(data.AUDITOR_ROLE) as conn:
        freshness = data.load_status(conn)
        rows = audit_data.batches(conn)
        chain = audit_data.last_chain_verification(conn)
    for r in rows:
        r["docs_url"] = _docs_url(r.get("data_docs_path"))
    return page(request, "audit.html", lang, user, freshness=freshness, batches=rows, chain=chain)


@router.get("/batch/{batch_id}", response_class=HTMLResponse)
def audit_batch(user: AuditorUser, request: Request, batch_id: str):
    lang = lang_of(request)
    with data.connect(data.AUDITOR_ROLE) as conn:
        row, checks = audit_data.batch(conn, batch_id)
    if row is None:
        return message(request, user, "not_found", 404)
    for c in checks:
        c["observed_text"] = json.dumps(c["observed"], ensure_ascii=False) if c["observed"] is not None else ""
    return page(request, "batch.html", lang, user, batch=row, checks=checks,
                docs_url=_docs_url(row.get("data_docs_path")),
                failed_checks=json.dumps(row.get("failed_checks") or [], ensure_ascii=False))


@router.get("/dbt", response_class=HTMLResponse)
def audit_dbt(user: AuditorUser, request: Request):
    lang = lang_of(request)
    with data.connect(data.AUDITOR_ROLE) as conn:
        builds = audit_data.dbt_builds(conn)
    return page(request, "dbt.html", lang, user, builds=builds)


@router.get("/lineage", response_class=HTMLResponse)
def audit_lineage(user: AuditorUser, request: Request):
    lang = lang_of(request)
    manifest, manifest_path = lineage.load_manifest()
    svg, graph, generated_at = None, None, None
    if manifest is not None:
        with data.connect(data.AUDITOR_ROLE) as conn:
            deliveries = audit_data.deliveries_by_source(conn)
        graph = lineage.build_graph(manifest, deliveries)
        svg = Markup(lineage.render_svg(graph))  # noqa: S704 - every label is escaped by render_svg
        generated_at = (manifest.get("metadata") or {}).get("generated_at")
    runs = lineage.task_runs()
    return page(request, "lineage.html", lang, user, svg=svg, graph=graph, manifest_path=str(manifest_path),
                generated_at=lineage.short_time(generated_at), runs=runs, short_time=lineage.short_time)


@router.get("/provenance", response_class=HTMLResponse)
def audit_provenance(user: AuditorUser, request: Request, indicator: str = "", week: str = "",
                     area: str | None = None):
    lang = lang_of(request)
    week_start = week_param(week)
    if indicator not in INDICATORS or week_start is None or (area and not AREA_CODE.match(area)):
        return message(request, user, "not_found", 404)
    with data.connect(data.AUDITOR_ROLE) as conn:
        cell = audit_data.published_cell(conn, indicator, week_start, area or None)
        found = audit_data.provenance(conn, indicator, week_start)
    record_view(user, request, "provenance", area=area or None, indicator=indicator, week_from=week_start,
                week_to=week_start)
    return page(request, "provenance.html", lang, user, indicator=indicator, week=week_start,
                area=area or None, cell=cell, **found)


@router.get("/methods", response_class=HTMLResponse)
def audit_methods(user: AuditorUser, request: Request, week: str = ""):
    """Every alert method's verdicts of a week side by side; the coordinators see the default one's."""
    lang = lang_of(request)
    if week and week_param(week) is None:
        return message(request, user, "not_found", 404)
    with data.connect(data.AUDITOR_ROLE) as conn:
        week_start = week_param(week) if week else data.latest_complete_week(conn)
        found = data.method_alerts(conn, week_start) if week_start else []
    pairs = list(dict.fromkeys((a["area_code"], a["area_name"], a["indicator"]) for a in found))
    record_view(user, request, "methods", week_from=week_start, week_to=week_start)
    return page(request, "methods.html", lang, user, week=week_start, pairs=pairs,
                methods=sorted({a["method"] for a in found}),
                default_method=next((a["method"] for a in found if a["is_default_method"]), None),
                cells={(a["area_code"], a["indicator"], a["method"]): a for a in found})


def _day(value: str | None) -> date | None:
    try:
        return date.fromisoformat(value) if value else None
    except ValueError:
        return None


@router.get("/access", response_class=HTMLResponse)
def audit_access(user: AuditorUser, request: Request, username: str = "", area: str = "",
                 start: str | None = Query(None, alias="from"), end: str | None = Query(None, alias="to")):
    """The access log: who saw which area figures (area, indicator, weeks) and what they exported."""
    lang = lang_of(request)
    area = area if AREA_CODE.match(area or "") else ""
    since, until = _day(start), _day(end)
    with data.connect(data.AUDITOR_ROLE) as conn:
        entries = audit_data.dashboard_access(conn, username or None, area or None, since, until, LOG_PAGE_ROWS)
    csv_query = urlencode({k: v for k, v in (("username", username), ("area", area), ("from", since or ""),
                                             ("to", until or "")) if v})
    return page(request, "access_log.html", lang, user, entries=entries, username=username, area=area,
                since=since, until=until, limit=LOG_PAGE_ROWS, csv_query=csv_query)


@router.get("/access.csv")
def audit_access_csv(user: AuditorUser, request: Request, username: str = "", area: str = "",
                     start: str | None = Query(None, alias="from"), end: str | None = Query(None, alias="to")):
    """The whole access log as filtered, for the data-protection officer; this export is logged too."""
    area = area if AREA_CODE.match(area or "") else ""
    since, until = _day(start), _day(end)
    with data.connect(data.AUDITOR_ROLE) as conn:
        entries = audit_data.dashboard_access(conn, username or None, area or None, since, until, None)
    record_access("export_csv", user, request, detail={"view": "access_log", "rows": len(entries)})
    out = [list(audit_data.ACCESS_COLUMNS)]
    out += [[("" if e[c] is None else e[c].isoformat() if hasattr(e[c], "isoformat") else e[c])
             for c in audit_data.ACCESS_COLUMNS] for e in entries]
    return csv_response(out, f"ewi_access_log_{date.today().isoformat()}.csv", "en")


@router.get("/dbt-docs/{path:path}")
def audit_dbt_docs(user: AuditorUser, path: str):
    """dbt's docs site (index.html, manifest.json, catalog.json) as the last build left it, served to
    auditors like the Data Docs: behind the login, never cached, never framed (security.access)."""
    root = lineage.docs_dir().resolve()
    target = (root / (path or "index.html")).resolve()
    if not target.is_relative_to(root) or not target.is_file():
        return Response("not found", status_code=404)
    return FileResponse(target)


@router.get("/docs/{path:path}")
def audit_docs(user: AuditorUser, path: str):
    root = _docs_root()
    target = (root / path).resolve()
    if not target.is_relative_to(root) or not target.is_file():
        return Response("not found", status_code=404)
    return FileResponse(target)
