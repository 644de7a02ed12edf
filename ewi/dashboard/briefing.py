"""The weekly briefing for the cross-agency meeting (school, police, social services): a PDF of one
or two A4 pages with the open signals of a week, each with its area's trend chart and explanation,
the sources' freshness and stopped deliveries, and the suppression note.

Drawn with matplotlib (pinned) and written with its PdfPages backend: no second PDF library, and
the text is embedded as TrueType (pdf.fonttype 42), so `pdftotext` and screen readers read it.
Only published figures appear: rates (one decimal), the explanations dbt published (their counts
are "<5" below five) and week labels; no count of people is drawn from anywhere else, and the
charts' axes carry decimals and ISO weeks, never a bare small integer.
"""

from __future__ import annotations

import io
from datetime import date, datetime, timedelta
from pathlib import Path

import psycopg

from ewi.dashboard import data, signals
from ewi.dashboard.i18n import fmt_number, fmt_week, indicator_label, source_label, text

#: A4 in inches; charts of the signals on the first page, the rest on the second.
PAGE = (8.27, 11.69)
CHART_WEEKS = 26
CHARTS_FIRST_PAGE = 2
CHARTS_SECOND_PAGE = 3
#: What a trend chart shows apart from colour: the area as a line with dots, the municipality dashed,
#: alert weeks as triangles (meaning not carried by colour alone).
AREA_STYLE = {"color": "#1f4e79", "marker": "o", "markersize": 2.5, "linewidth": 1.4}
MUNI_STYLE = {"color": "#555555", "linestyle": "--", "linewidth": 1.0}
ALERT_STYLE = {"color": "#b00020", "marker": "^", "linestyle": "none", "markersize": 6}


def parse_week(value: str) -> date:
    """'2026-W47' -> the Monday of that ISO week; ValueError for anything else."""
    year, _, week = value.strip().upper().partition("-W")
    return date.fromisocalendar(int(year), int(week), 1)


def _open_signals(conn: psycopg.Connection, week: date) -> list[dict]:
    # a signal is on the week's briefing when it had started by that week and is not closed now
    return [s for s in signals.open_signals(conn, today=week + timedelta(days=7))
            if s["first_week_start"] <= week]


def _series(conn: psycopg.Connection, area_code: str, indicator: str, week: date) -> dict:
    since = week - timedelta(weeks=CHART_WEEKS - 1)
    rows = [r for r in data.weekly(conn, indicator=indicator, area_code=area_code, since=since)
            if r["week_start"] <= week]
    muni = data.municipality(conn, since)
    alert_weeks = {a["week_start"] for a in data.alerts(conn, area_code=area_code)
                   if a["indicator"] == indicator and since <= a["week_start"] <= week}
    points = [(r["week_start"], None if r["is_suppressed"] else r["rate"]) for r in rows]
    return {"points": points, "muni": [(w, muni.get((indicator, w))) for w, _ in points],
            "alerts": [(w, v) for w, v in points if w in alert_weeks and v is not None]}


def _draw_chart(ax, series: dict, lang: str) -> None:
    t = text(lang)
    weeks = [w for w, _ in series["points"]]
    ax.plot(weeks, [v for _, v in series["points"]], label=t["briefing_chart_area"], **AREA_STYLE)
    ax.plot(weeks, [v for _, v in series["muni"]], label=t["municipality"], **MUNI_STYLE)
    if series["alerts"]:
        ax.plot([w for w, _ in series["alerts"]], [v for _, v in series["alerts"]],
                label=t["briefing_chart_alert"], **ALERT_STYLE)
    # ticks: ISO weeks and one-decimal rates, so no axis label is a bare small integer
    ticks = weeks[::6] or weeks
    ax.set_xticks(ticks, [fmt_week(w) for w in ticks], fontsize=6)
    ax.yaxis.set_major_formatter(lambda v, _pos: fmt_number(v, lang))
    ax.tick_params(axis="y", labelsize=6)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=5.5, loc="upper left", frameon=False)


def _wrap(value: str, width: int) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(value, width)) or value


def build(week: date | None = None, lang: str = "sv", conn: psycopg.Connection | None = None) -> tuple[bytes, date | None]:
    """The briefing of `week` (its Monday; default the latest complete week) as PDF bytes, and the week."""
    if conn is None:
        with data.connect() as own:
            return build(week, lang, own)
    week = week or data.latest_complete_week(conn)
    open_now = _open_signals(conn, week) if week else []
    status = data.load_status(conn, today=(week + timedelta(days=7)) if week else None)
    charts = [(s, _series(conn, s["area_code"], s["indicator"], week)) for s in
              open_now[:CHARTS_FIRST_PAGE + CHARTS_SECOND_PAGE]]
    return _render(week, lang, open_now, status, charts), week


def _render(week: date | None, lang: str, open_now: list[dict], status: list, charts: list) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.backends.backend_pdf import PdfPages
    from matplotlib.figure import Figure

    t = text(lang)
    explanation = "explanation_sv" if lang == "sv" else "explanation_en"
    pages = 1 if len(charts) <= CHARTS_FIRST_PAGE else 2
    out = io.BytesIO()
    with matplotlib.rc_context({"pdf.fonttype": 42, "font.family": "DejaVu Sans"}), PdfPages(out, metadata={
            "Title": t["briefing_title"].format(week=fmt_week(week)), "Creator": "EWI"}) as pdf:
        figures = [Figure(figsize=PAGE) for _ in range(pages)]
        first = figures[0]
        first.text(0.06, 0.955, t["briefing_title"].format(week=fmt_week(week)), fontsize=14, weight="bold")
        first.text(0.06, 0.935, t["briefing_made"].format(when=datetime.now().strftime("%Y-%m-%d %H:%M")),
                   fontsize=7.5, color="#333333")
        # freshness and stopped deliveries, one line per source
        y = 0.905
        first.text(0.06, y, t["freshness"], fontsize=10, weight="bold")
        for s in status:
            y -= 0.017
            state = (t["briefing_quarantined"] if s.quarantined else t["stale"] if s.stale else t["briefing_fresh"])
            first.text(0.08, y, f"{source_label(s.source, lang)}: {t['last_period']} {s.last_period or '–'} "
                                f"({state})", fontsize=8, weight="bold" if s.quarantined or s.stale else "normal")
        y -= 0.03
        first.text(0.06, y, f"{t['signals_open']}", fontsize=10, weight="bold")
        if not open_now:
            y -= 0.018
            first.text(0.08, y, t["signals_none_open"], fontsize=8.5)
        for s in open_now:
            y -= 0.018
            if y < 0.575:
                first.text(0.08, y, t["briefing_more"], fontsize=8, style="italic")
                break
            line = (f"{s['area_name']} – {indicator_label(s['indicator'], lang)}: "
                    f"{t['signal_state_' + s['state']]}, "
                    f"{t['briefing_open_since'].format(week=s['first_week'])}, "
                    f"{t['signal_latest'].lower()} {s['last_alert_week']}")
            first.text(0.08, y, line, fontsize=8)
        # the charts with their explanations: two on the first page, up to three on the second
        slots = [(first, 0.345 - i * 0.25) for i in range(CHARTS_FIRST_PAGE)]
        if pages == 2:
            slots += [(figures[1], 0.70 - i * 0.30) for i in range(CHARTS_SECOND_PAGE)]
        for (fig, bottom), (s, series) in zip(slots, charts, strict=False):
            fig.text(0.06, bottom + 0.205, f"{s['area_name']} – {indicator_label(s['indicator'], lang)}",
                     fontsize=9, weight="bold")
            fig.text(0.06, bottom + 0.165, _wrap(s[explanation], 120), fontsize=7, va="bottom")
            _draw_chart(fig.add_axes((0.08, bottom, 0.86, 0.15)), series, lang)
        for number, fig in enumerate(figures, start=1):
            fig.text(0.06, 0.025, f"{t['legend_suppressed']} {t['briefing_gaps']}", fontsize=7, color="#333333")
            fig.text(0.94, 0.025, t["briefing_page"].format(page=number, pages=pages), fontsize=7, ha="right")
            pdf.savefig(fig)
    return out.getvalue()


def write(out: Path, week: date | None = None, lang: str = "sv") -> date | None:
    """Write the briefing to `out` (atomically: a reader never sees half a file); returns its week."""
    pdf, week = build(week, lang)
    out.parent.mkdir(parents=True, exist_ok=True)
    part = out.with_name(out.name + ".part")
    part.write_bytes(pdf)
    part.replace(out)
    return week
