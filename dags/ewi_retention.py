"""ewi_retention: every night, the retention policy (README, "Retention and erasure"): pseudonymous
rows and delivered files older than the look-back the alerts need plus a margin, quarantined batches,
GX results, logs and lineage events past their days. Whole partitions or batches go, and each deletion
is a row of audit.deletions (counts, never content). Published aggregates are kept.

Time passing sends no event, so this DAG runs on a schedule, not on an asset.
"""

from __future__ import annotations

from airflow.sdk import dag, task

from ewi.orchestration import dag_defaults, lineage, retention_tasks


@dag(**dag_defaults.dag_arguments("ewi_retention", schedule="30 2 * * *", tags=["retention"], doc=__doc__))
def ewi_retention():
    @task(outlets=lineage.tables(*lineage.RAW_TABLES))
    def apply_retention() -> dict:
        return retention_tasks.apply_retention()

    apply_retention()


ewi_retention()
