"""Charts rendered on the server (matplotlib, Agg) as SVG for the page and PNG for export.

Rendered charts are kept in memory until refresh() (called after each passing dbt build), since
the published data changes only then. refresh() usually runs in another process (an Airflow task),
so it touches a stamp file and each server process drops its charts when the stamp changes.
"""

from __future__ import annotations

import io
import os
import threading
from datetime import date
from pathlib import Path

from ewi import config
from ewi.dashboard.i18n import indicator_label, text

_cache: dict[tuple, bytes] = {}
_lock = threading.Lock()  # matplotlib's font cache and text layout are not thread-safe
_seen_stamp: list[float | None] = [None]

SUPPRESSED_COLOUR = "#bbbbbb"


def _stamp_file() -> Path:
    return config.ewi_home() / "dashboard" / "refreshed"


def _stamp() -> float | None:
    try:
        return os.stat(_stamp_file()).st_mtime
    except FileNotFoundError:
        return None


def clear_cache() -> None:
    """Drop the charts of this process and tell every other dashboard process to do the same."""
    path = _stamp_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()
    os.utime(path)
    with _lock:
        _cache.clear()


def cached(key: tuple, render) -> bytes:
    with _lock:
        stamp = _stamp()
        if stamp != _seen_stamp[0]:
            _cache.clear()
            _seen_stamp[0] = stamp
        if key not in _cache:
            _cache[key] = render()
        return _cache[key]


def _figure(width: float, height: float):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    matplotlib.rcParams["svg.hashsalt"] = "ewi"  # stable element ids: same data, same bytes
    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _save(fig, fmt: str) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, metadata={"Date": None} if fmt == "svg" else None)
    return buf.getvalue()


def _series(rows: list[dict]):
    weeks = [r["week_start"] for r in rows]
    rates = [r["rate"] if r["rate"] is not None else float("nan") for r in rows]
    suppressed = [r["week_start"] for r in rows if r["is_suppressed"]]
    return weeks, rates, suppressed


def _shade_suppressed(ax, weeks: list[date]) -> None:
    from datetime import timedelta

    for i, w in enumerate(weeks):
        ax.axvspan(w - timedelta(days=3), w + timedelta(days=3), color=SUPPRESSED_COLOUR, alpha=0.5, lw=0,
                   label="<5" if i == 0 else None)


def small_multiples(rows_by_area: dict[tuple[str, str], list[dict]], muni: dict[date, float | None],
                    indicator: str, lang: str, fmt: str = "svg") -> bytes:
    """One small chart per area of one indicator over time, on a shared scale, with the
    municipality's rate as a dashed reference line; suppressed weeks shaded and labelled <5."""
    n = max(len(rows_by_area), 1)
    ncols = 4
    nrows = (n + ncols - 1) // ncols
    fig = _figure(12, 1.9 * nrows + 0.6)
    axes = fig.subplots(nrows, ncols, sharex=True, sharey=True, squeeze=False)
    muni_weeks = sorted(muni)
    for ax, ((_code, name), rows) in zip(axes.flat, rows_by_area.items(), strict=False):
        weeks, rates, suppressed = _series(rows)
        _shade_suppressed(ax, suppressed)
        if muni_weeks:
            ax.plot(muni_weeks, [muni[w] if muni[w] is not None else float("nan") for w in muni_weeks],
                    color="#777777", lw=1, ls="--")
        ax.plot(weeks, rates, color="#1f5f99", lw=1.4)
        ax.set_title(f"{name}", fontsize=9, loc="left")
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    t = text(lang)
    fig.suptitle(t["small_multiples"].format(indicator=indicator_label(indicator, lang))
                 + f"  (- - {t['municipality'].lower()}; ▒ <5)", fontsize=11)
    fig.autofmt_xdate()
    return _save(fig, fmt)


def area_trend(rows: list[dict], rolling: dict[date, float | None], last_year: dict[date, float | None],
               muni: dict[date, float | None], alert_weeks: list[date], indicator: str, area_name: str,
               lang: str, fmt: str = "svg") -> bytes:
    """Weekly rate of one indicator in one area with its 12-week rolling rate, the same weeks a
    year earlier and the municipality's rate; alerts marked."""
    t = text(lang)
    fig = _figure(9, 3.2)
    ax = fig.subplots()
    weeks, rates, suppressed = _series(rows)
    _shade_suppressed(ax, suppressed)

    def line(values: dict, **kw):
        if any(values.get(w) is not None for w in weeks):
            ax.plot(weeks, [values.get(w) if values.get(w) is not None else float("nan") for w in weeks], **kw)

    line(muni, color="#777777", lw=1, ls="--", label=t["municipality"])
    line(last_year, color="#c28b00", lw=1, ls=":", label=t["last_year"])
    line(rolling, color="#0b3d6b", lw=2.2, label=t["rolling_12"])
    ax.plot(weeks, rates, color="#5b9bd5", lw=1, marker="o", ms=2.5, label=t["week"])
    by_week = dict(zip(weeks, rates, strict=True))
    marked = [w for w in alert_weeks if w in by_week]
    if marked:
        ax.plot(marked, [by_week[w] for w in marked], ls="none", marker="o", ms=9, mfc="none",
                mec="#c00000", mew=2, label=t["alert"])
    ax.set_title(f"{area_name}: {indicator_label(indicator, lang)}", fontsize=11, loc="left")
    ax.grid(alpha=0.3)
    fig.legend(fontsize=8, loc="outside right upper", frameon=False)  # beside the lines, never over them
    ax.set_ylim(bottom=0)
    fig.autofmt_xdate()
    return _save(fig, fmt)
