"""ewi_audit_verify: every night, `ewi audit verify` over the audit trail's hash chain. Each run is
recorded (the auditors' page shows when the chain was last verified and what it found); a broken
chain is told to the data engineers, naming the first broken records.

Tampering sends no event, so this DAG runs on a schedule.
"""

from __future__ import annotations

from airflow.sdk import dag, task

from ewi.orchestration import dag_defaults, people_notices


@dag(**dag_defaults.dag_arguments("ewi_audit_verify", schedule="30 5 * * *", tags=["audit"], doc=__doc__))
def ewi_audit_verify():
    @task
    def verify_chain() -> dict:
        return people_notices.verify_audit_chain()

    verify_chain()


ewi_audit_verify()
