"""`make bench` (python -m ewi.bench dashboard): time to first render of the coordinators' overview
with two years of data for every area, in headless Chromium.

Reads the two-year database ewi.bench.dbt leaves behind (building it when it is missing), serves the
dashboard with `ewi.dashboard.server.serve` in a process of its own, logs in, and loads / five
times, reading each load's timings from the browser's Performance API (navigation start = 0).
The first load renders the small-multiples chart, later ones get it from the dashboard's cache.
Measured, never asserted.
"""

from __future__ import annotations

import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ewi.bench import any_free_port, database_restored

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
LOADS = 5
TARGET_S = 1.0
_TIMINGS_JS = """() => {
  const nav = performance.getEntriesByType('navigation')[0];
  const fcp = performance.getEntriesByName('first-contentful-paint')[0];
  return {response_end: nav.responseEnd, dom_content_loaded: nav.domContentLoadedEventEnd,
          load: nav.loadEventEnd, fcp: fcp ? fcp.startTime : null,
          html_bytes: nav.transferSize};
}"""


def _two_year_database() -> str:
    """bench_dbt's two-year database with its published marts; built here when it is missing."""
    import psycopg

    from ewi import migrate, warehouse
    from ewi.bench import dbt as bench_dbt

    name = bench_dbt.work_database(2)
    try:
        with psycopg.connect(warehouse.dsn(name), autocommit=True) as conn:
            if conn.execute("select to_regclass('published.area_weekly_indicators')").fetchone()[0]:
                migrate.migrate(conn)  # one left by an older round may predate the session store
                return name
    except psycopg.OperationalError:
        pass
    history, _ = bench_dbt.synth_data(2)
    bench_dbt.ensure_base(2, history)
    bench_dbt.copy_of(bench_dbt.base_database(2), name)
    with database_restored():
        os.environ["EWI_WAREHOUSE_DB"] = name
        bench_dbt.timed_build(full_refresh=True)
    with psycopg.connect(warehouse.dsn(name), autocommit=True) as conn:
        migrate.migrate(conn)
    return name


def _serve(env: dict) -> tuple[subprocess.Popen, str]:
    port = any_free_port()
    proc = subprocess.Popen([sys.executable, "-c", f"from ewi.dashboard.server import serve; serve(port={port})"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.time() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc, f"http://127.0.0.1:{port}"
        except OSError:
            if proc.poll() is not None or time.time() > deadline:
                proc.kill()
                raise RuntimeError(f"dashboard did not start: {proc.stderr.read()[-2000:]}") from None
            time.sleep(0.2)


def bench_dashboard() -> dict:
    from playwright.sync_api import sync_playwright

    from ewi.dashboard import users

    if not Path(CHROMIUM).exists():
        return {"benchmark": "dashboard_overview_first_render", "skipped": f"{CHROMIUM} is not installed"}
    database = _two_year_database()
    work = Path(tempfile.mkdtemp(prefix="ewi-bench-dash-"))
    password = secrets.token_urlsafe(16)
    users.save_users({"bench": users.User("bench", "coordinator", users.hash_password(password))},
                     work / "users.json")
    env = {**os.environ, "EWI_WAREHOUSE_DB": database, "EWI_DASHBOARD_USERS": str(work / "users.json"),
           "EWI_DASHBOARD_SECRET": secrets.token_hex(32)}
    proc, base = _serve(env)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
            page.goto(base + "/login")
            page.fill("#username", "bench")
            page.fill("#password", password)
            page.click("#login-submit")
            page.wait_for_url(base + "/")
            loads = []
            for _ in range(LOADS):
                page.goto(base + "/", wait_until="load")
                loads.append(page.evaluate(_TIMINGS_JS))
            rows = page.locator("#overview-table tbody tr").count()
            week = page.inner_text("#week")
            browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    load_s = [round(m["load"] / 1000, 3) for m in loads]
    fcp_s = [round(m["fcp"] / 1000, 3) if m["fcp"] is not None else None for m in loads]
    return {
        "benchmark": "dashboard_overview_first_render",
        "database": database,
        "areas": rows,
        "week": week,
        "loads": LOADS,
        "load_s": load_s,
        "fcp_s": fcp_s,
        "html_response_s": [round(m["response_end"] / 1000, 3) for m in loads],
        "median_load_s": statistics.median(load_s),
        "median_fcp_s": statistics.median([f for f in fcp_s if f is not None]) if any(fcp_s) else None,
        "first_load_s": load_s[0],
        "target_s": TARGET_S,
    }
