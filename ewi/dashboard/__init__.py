"""The EWI web dashboard (coordinator and auditor views); run it with `ewi dashboard`."""

from __future__ import annotations


def refresh() -> None:
    """Forget rendered charts and cached connection details; called after a passing dbt build so
    the next page view shows the new published data."""
    from ewi.dashboard import charts, data

    charts.clear_cache()
    data.clear_caches()
