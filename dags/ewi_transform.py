"""ewi_transform: dbt build of the indicator marts, run whenever a source publishes a batch.

Scheduled on the raw.<source> asset of every source in ewi.sources: any one published source
triggers a run. An asset-triggered run consumes every event queued for the DAG since the previous run, so
a burst of deliveries (a whole week's extracts, or a backlog of 300 files) leads to one build, not
one per batch; events arriving while a build runs queue up and trigger one more build afterwards
(max_active_runs=1).

Debounce: `build` first waits until the landing folder is empty, no batch is being ingested and
none was decided in the last EWI_TRANSFORM_QUIET_SECONDS (default 5, at most
EWI_TRANSFORM_MAX_WAIT_SECONDS), so deliveries that land together end in one build; a run whose
batches an earlier build already covered skips its build.

build -> publish -> notify_new_signals and after_publish (dbt's docs site, manifest and catalog
for the auditors' lineage page, and the week's briefing PDF, both under $EWI_HOME). `publish` carries the `published` asset as outlet; it fails when the build's
tests failed (nothing was swapped into `published`, and the failure is recorded in
audit.pipeline_events) and is skipped when the build passed without swapping anything in. Either
way no asset event is emitted, so ewi_dashboard_refresh is not triggered.
"""

from __future__ import annotations

from airflow.sdk import dag, task

from ewi.orchestration import assets, dag_defaults, lineage, people_notices, transform_tasks


@dag(**dag_defaults.dag_arguments("ewi_transform", schedule=assets.ANY_SOURCE_PUBLISHED,
                                  tags=["transform"], doc=__doc__))
def ewi_transform():
    @task(inlets=lineage.tables(*lineage.RAW_TABLES, "ref.areas"),
          outlets=lineage.tables(*lineage.PUBLISHED_TABLES, "audit.dbt_runs"))
    def build() -> dict:
        from airflow.sdk.exceptions import AirflowSkipException

        transform_tasks.wait_for_quiet()
        if transform_tasks.nothing_new_since_last_build():
            raise AirflowSkipException("no batch published since the last build: nothing to rebuild")
        # The signals published before the build: afterwards, the new ones are the build's.
        signals_before = people_notices.signal_keys()
        return {**transform_tasks.build_marts(), "signals_before": signals_before}

    @task(outlets=[assets.PUBLISHED_ASSET])
    def publish(summary: dict, *, outlet_events=None):
        from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

        if not summary.get("success"):
            failures = summary.get("failures") or []
            raise AirflowFailException(
                f"dbt build failed ({summary.get('status')}, {len(failures)} failing nodes): "
                "the marts in `published` were left as they were"
            )
        if not summary.get("published"):
            raise AirflowSkipException("the build passed but swapped nothing into `published`")
        outlet_events[assets.PUBLISHED_ASSET].extra = {"counts": summary.get("counts")}
        return summary.get("counts")

    # One message to the coordinators per build that opened new signals; runs only after a publish.
    @task(inlets=lineage.tables("published.area_signals"))
    def notify_new_signals(summary: dict) -> list[str]:
        return people_notices.notify_new_signals(summary.get("signals_before") or [])

    # dbt's docs (the auditors' lineage page and docs site) and the week's briefing; only after a publish.
    @task(inlets=lineage.tables("published.area_signals"))
    def leave_docs_and_briefing(_counts) -> dict:
        return transform_tasks.after_publish()

    built = build()
    published = publish(built)
    published >> notify_new_signals(built)
    leave_docs_and_briefing(published)


ewi_transform()
