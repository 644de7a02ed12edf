"""ewi_ingest: write-audit-publish delivered extract files.

Scheduled on the `landing` asset: its watcher (ewi.orchestration.triggers.LandingFolderTrigger,
in the triggerer) emits one event per delivery in the landing folder ($EWI_LANDING_DIR or
$EWI_HOME/landing) that is ready (ewi.orchestration.landing), so a delivery starts ingestion by
itself. A run takes the files named in its triggering events plus every other ready delivery in
the folder, and moves each ingested file to processed/<status>/. Started by hand, a run takes
`paths` (a list of files) or `landing` (a folder: every *.csv in it, left in place) from its conf.
Files already ingested come back as duplicates and change nothing, so re-running is safe.

plan (prepares the warehouse) -> ingest_chunk (mapped) -> announce_<source> (one per source), summary,
data_docs_index;
watcher fails the run when any task failed.

Deliveries of one source and period stay together in one chunk, in delivery order, because a
later delivery replaces an earlier one. Each announce task carries its source's asset as outlet
and emits an event only when audit.batches shows that this run published a batch of that source;
otherwise it is skipped, and a skipped task emits no asset event (the task runner sends the
outlets only with SucceedTask). A quarantined or rejected file therefore never triggers
ewi_transform.
"""

from __future__ import annotations

from airflow.sdk import Param, dag, get_current_context, task

from ewi.orchestration import assets, dag_defaults, lineage, people_notices
from ewi.orchestration import ingest_tasks as tasks


@dag(**dag_defaults.dag_arguments(
    "ewi_ingest",
    schedule=[assets.LANDING_ASSET],
    tags=["ingest"],
    doc=__doc__,
    params={
        "paths": Param([], type="array", items={"type": "string"},
                       description="Files to ingest (absolute paths). Takes precedence over landing."),
        "landing": Param(None, type=["null", "string"],
                         description="A folder whose *.csv files are ingested, in name order."),
        "chunk_size": Param(tasks.DEFAULT_CHUNK_SIZE, type="integer", minimum=1,
                            description="Files per mapped ingest task."),
    },
))
def ewi_ingest():
    @task(inlets=lineage.landing_folder())
    def plan(params=None, triggering_asset_events=None) -> list[list[str]]:
        # Migrations and the area register first (idempotent, ~2 s): one task start fewer than a
        # task of its own, which is latency from landing to dashboard.
        tasks.prepare_warehouse()
        payloads = [
            (event.extra or {}).get("payload") or {}
            for events in (triggering_asset_events or {}).values()
            for event in events
        ]
        files, how = tasks.files_to_ingest(params.get("paths"), params.get("landing"), payloads)
        by_hand = bool(params.get("paths") or params.get("landing"))
        chunks = tasks.plan_chunks(files, int(params.get("chunk_size") or tasks.DEFAULT_CHUNK_SIZE),
                                  mix_sources=not by_hand)
        print(f"{len(files)} files in {len(chunks)} chunks ({how})")
        return chunks

    # Chunks of one source may run side by side under LocalExecutor; keeping one at a time keeps
    # the order of deliveries across periods too, and two cores gain little from more.
    @task(max_active_tis_per_dagrun=1, map_index_template="{{ chunk_label }}",
          inlets=lineage.landing_folder(), outlets=lineage.tables(*lineage.RAW_TABLES, "audit.batches"))
    def ingest_chunk(paths: list[str]) -> list[dict]:
        get_current_context()["chunk_label"] = tasks.chunk_label(paths)
        return tasks.ingest_chunk(paths)

    def announce(source: str):
        # all_done: a chunk that failed must not hide the batches other chunks published.
        @task(task_id=f"announce_{source}", outlets=[assets.SOURCE_ASSETS[source]], trigger_rule="all_done",
              inlets=lineage.tables("audit.batches"))
        def _announce(chunks: list[list[str]], *, outlet_events=None, dag_run=None):
            from airflow.sdk.exceptions import AirflowSkipException

            file_names = tasks.file_names_by_source(chunks)[source]
            batches = tasks.published_batches(source, file_names, dag_run.start_date)
            if not batches:
                raise AirflowSkipException(f"no {source} batch published in this run")
            outlet_events[assets.SOURCE_ASSETS[source]].extra = {
                "batches": [b["batch_id"] for b in batches],
                "periods": sorted({b["period"] for b in batches}),
            }
            return len(batches)

        return _announce

    @task(trigger_rule="all_done")
    def summary(results) -> dict:
        flat = [r for chunk in results if chunk for r in chunk]
        counts = tasks.summarise(flat)
        print(f"ingest summary: {counts}")
        people_notices.notify_quarantined(flat)  # one message to the data engineers per run
        return counts

    # The announce and summary tasks run whatever happened upstream, so as leaves they would mark a
    # run with a failed chunk as successful; this task fails the run instead (Airflow's "watcher").
    @task(trigger_rule="one_failed", retries=0)
    def watcher():
        from airflow.sdk.exceptions import AirflowFailException

        raise AirflowFailException("an upstream task failed; see audit.pipeline_events")

    # The Data Docs index lists the latest validations (each has its page from its own audit); it is
    # rebuilt once per run, beside the announcements, so that publishing never waits for it.
    @task(trigger_rule="all_done")
    def data_docs_index() -> None:
        tasks.refresh_data_docs_index()

    planned = plan()
    results = ingest_chunk.expand(paths=planned)
    announced = [announce(source)(planned) for source in assets.SOURCE_NAMES]
    results >> announced
    summarised = summary(results)
    indexed = data_docs_index()
    results >> indexed
    [planned, results, *announced, summarised, indexed] >> watcher()


ewi_ingest()
