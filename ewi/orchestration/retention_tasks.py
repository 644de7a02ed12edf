"""ewi_retention's work: apply the retention policy (ewi.retention) once a day. Counts only in the
answer, which Airflow keeps as the task's return value: never content, never a pseudonym."""

from __future__ import annotations

from typing import Any


def apply_retention() -> dict[str, Any]:
    from ewi import retention, warehouse_init

    warehouse_init.init_warehouse()
    summary = retention.apply()
    # the per-item list stays in audit.deletions; the task's return value is the totals
    return {k: summary[k] for k in ("retention_run", "kept_from_week", "rows", "files", "bytes")}
