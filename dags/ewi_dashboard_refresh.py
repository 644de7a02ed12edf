"""ewi_dashboard_refresh: refresh the dashboard's caches whenever new marts are published.

Scheduled on the `published` asset, which only ewi_transform's `publish` task emits, and only
after a build whose tests passed.
"""

from __future__ import annotations

from airflow.sdk import dag, task

from ewi.orchestration import assets, dag_defaults, lineage, transform_tasks


@dag(**dag_defaults.dag_arguments("ewi_dashboard_refresh", schedule=[assets.PUBLISHED_ASSET],
                                  tags=["dashboard"], doc=__doc__))
def ewi_dashboard_refresh():
    @task(inlets=lineage.tables(*lineage.PUBLISHED_TABLES))
    def refresh() -> str:
        return transform_tasks.refresh_dashboard()

    refresh()


ewi_dashboard_refresh()
