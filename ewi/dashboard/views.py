"""What every router of the dashboard shares: the page template's context, the language, the
query parameters' bounds, and the responses for a CSV file or a chart image."""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import Response
from fastapi.templating import Jinja2Templates

from ewi.dashboard.i18n import INDICATORS, LANGS, fmt_number, fmt_week, indicator_label, source_label, text
from ewi.dashboard.security.access import NO_STORE, csrf_token

HERE = Path(__file__).parent
DEFAULT_WEEKS = 52
AREA_CODE = re.compile(r"^[0-9A-Za-z_-]{1,32}$")

templates = Jinja2Templates(directory=str(HERE / "templates"))


def lang_of(request: Request) -> str:
    requested = request.query_params.get("lang")
    if requested in LANGS:
        request.session["lang"] = requested
        return requested
    return request.session.get("lang", "sv")


#: the sign shown with each colour of "compared with the municipality" (the legend explains both)
LEVEL_SIGNS = {"high": "++", "elevated": "+", "low": "−"}


def page(request: Request, name: str, lang: str, user: dict | None, status_code: int = 200,
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
        # compared with the municipality: a sign beside the colour, so colour never carries it alone
        "level_signs": LEVEL_SIGNS,
    }
    base.update(context)
    return templates.TemplateResponse(request, name, base, status_code=status_code,
                                      headers={**NO_STORE, **(headers or {})})


def message(request: Request, user: dict | None, key: str, status_code: int, **context):
    """A page with one message of i18n's (not_found, forbidden), in the reader's language."""
    lang = lang_of(request)
    return page(request, "message.html", lang, user, status_code=status_code, message=text(lang)[key], **context)


def forbidden_page(request: Request):
    return message(request, getattr(request.state, "user", None), "forbidden", 403)


def indicator_param(value: str | None) -> str:
    return value if value in INDICATORS else INDICATORS[0]


def weeks_param(value: int | None) -> int:
    return max(4, min(int(value or DEFAULT_WEEKS), 260))


#: the ranges a coordinator picks from on the overview and the area pages (or a from–to of weeks)
RANGE_WEEKS = (12, 26, 52, 104)


@dataclass(frozen=True)
class WeekRange:
    """The weeks a page, its charts and its export show: `weeks` of them up to `until` (None: up to
    the latest complete week)."""

    weeks: int
    until: date | None = None

    @property
    def query(self) -> str:
        return urlencode({"weeks": self.weeks, **({"to": fmt_week(self.until)} if self.until else {})})


def range_param(weeks: int | None, start: str | None = None, end: str | None = None) -> WeekRange:
    """?weeks=26, or ?from=2026-W10&to=2026-W30 (either as the week's Monday too); a from after its
    to, or a week that is none, falls back to the weeks asked for (52 by default)."""
    first, last = week_param(start or ""), week_param(end or "")
    if first and last and first <= last:
        return WeekRange(weeks_param((last - first).days // 7 + 1), last)
    return WeekRange(weeks_param(weeks), last)


def week_param(value: str) -> date | None:
    """An ISO week (2026-W47) or its Monday (2026-11-16) as the week's Monday."""
    m = re.fullmatch(r"(\d{4})-W(\d{2})", value or "")
    try:
        if m:
            return date.fromisocalendar(int(m[1]), int(m[2]), 1)
        day = date.fromisoformat(value)
    except ValueError:
        return None
    return day - timedelta(days=day.weekday())


def csv_response(rows: list[list], filename: str, lang: str) -> Response:
    buf = io.StringIO()
    # Swedish spreadsheets expect ';' when the decimal separator is a comma
    csv.writer(buf, delimiter=";" if lang == "sv" else ",").writerows(rows)
    return Response("\ufeff" + buf.getvalue(), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{filename}"', **NO_STORE})


def image_response(body: bytes, fmt: str, filename: str | None = None) -> Response:
    headers = dict(NO_STORE)
    if filename:
        headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    return Response(body, media_type="image/svg+xml" if fmt == "svg" else "image/png", headers=headers)
