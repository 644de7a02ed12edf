"""ewi_freshness: every morning, dbt's source freshness on the raw tables; the data engineers are
told of a source whose weekly delivery is late (the freshness sources.yml declares: warn after 8
days, error after 15, counted from the newest published row).

A late delivery sends no event, so this DAG runs on a schedule, not on an asset.
"""

from __future__ import annotations

from airflow.sdk import dag, task

from ewi.orchestration import dag_defaults, lineage, people_notices


@dag(**dag_defaults.dag_arguments("ewi_freshness", schedule="0 7 * * *", tags=["freshness"], doc=__doc__))
def ewi_freshness():
    @task(inlets=lineage.tables(*lineage.RAW_TABLES))
    def tell_late_sources() -> list[str]:
        return people_notices.notify_late_sources()

    tell_late_sources()


ewi_freshness()
