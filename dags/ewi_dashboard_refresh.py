"""ewi_dashboard_refresh: refresh the dashboard's caches whenever new marts are published.

Scheduled on the `published` asset, which only ewi_transform's `publish` task emits, and only
after a build whose tests passed.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, task

from ewi import orchestration as orch


@dag(
    dag_id="ewi_dashboard_refresh",
    schedule=[orch.PUBLISHED_ASSET],
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args=orch.default_task_args(),
    on_failure_callback=orch.record_dag_failure,
    tags=["ewi", "dashboard"],
    doc_md=__doc__,
)
def ewi_dashboard_refresh():
    @task(inlets=orch.lineage_tables(*orch.PUBLISHED_TABLES))
    def refresh() -> str:
        return orch.refresh_dashboard()

    refresh()


ewi_dashboard_refresh()
