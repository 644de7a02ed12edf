"""`python -m ewi.bench sessions`: what the server-side dashboard sessions cost a request.

Every page a logged-in user opens now asks the warehouse whether its session still holds
(`sessions.use`, one connection as `ewi_dashboard` and one function call), and every login attempt
takes the throttle's locks and counts. Timed against a bare connection with `select 1`, the floor
any page already pays for each connection it opens. Median and 95th percentile of RUNS calls, in a
database of its own. Measured, never asserted.
"""

from __future__ import annotations

import statistics
import time

RUNS = 300


def _timed(fn) -> dict:
    fn()  # the first call pays for imports and the server's plan cache
    times = []
    for _ in range(RUNS):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    return {"median_ms": round(statistics.median(times), 2), "p95_ms": round(times[int(RUNS * 0.95)], 2)}


def bench_sessions() -> dict:
    import ewi.dashboard
    from ewi.bench import fresh_database
    from ewi.dashboard import data
    from ewi.dashboard.security import sessions

    fresh_database("ewi_bench_sessions")
    ewi.dashboard.refresh()
    session_id = sessions.new_session_id()
    sessions.start(session_id, "bench", "scrypt$bench")

    def bare_connection():
        with data.connect() as conn:
            conn.execute("select 1").fetchone()

    def session_check():
        assert sessions.use(session_id, 8 * 3600, 12 * 3600) is not None

    def failed_login_bookkeeping():
        with sessions.login_guard("bench", "192.0.2.1") as guard:
            guard.wait()
            guard.failed()
            guard.succeeded()  # so the count never reaches a lockout

    return {"benchmark": "dashboard_sessions", "runs": RUNS,
            "bare_connection": _timed(bare_connection), "session_check": _timed(session_check),
            "failed_login_bookkeeping": _timed(failed_login_bookkeeping)}
