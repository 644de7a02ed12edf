"""DAG integrity: the DAG folder parses with no import errors, the DAGs are wired to the right
assets, and every DAG file stays cheap to parse (the DAG processor re-parses them all the time)."""

from __future__ import annotations

import ast
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ewi import config
from ewi.orchestration import assets, callbacks, dag_defaults, ingest_tasks, transform_tasks

EXPECTED_DAGS = {"ewi_ingest", "ewi_transform", "ewi_dashboard_refresh", "ewi_freshness", "ewi_retention",
                 "ewi_audit_verify"}
DAG_FILES = sorted(config.DAGS_DIR.glob("*.py"))
FORBIDDEN_AT_PARSE = ("great_expectations", "dbt", "pandas")


@pytest.fixture(scope="module")
def airflow_home(tmp_path_factory) -> Path:
    # Airflow writes airflow.cfg into AIRFLOW_HOME on first import; keep that out of ~/airflow.
    home = tmp_path_factory.mktemp("airflow-home")
    os.environ.setdefault("AIRFLOW_HOME", str(home))
    os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    handlers = list(logging.root.handlers)
    yield Path(os.environ["AIRFLOW_HOME"])
    # Importing Airflow attaches a handler to pytest's captured stdout; once pytest closes that,
    # the embedded server's exit-time log lines would fail with "I/O operation on closed file".
    for handler in logging.root.handlers[:]:
        if handler not in handlers:
            logging.root.removeHandler(handler)


@pytest.fixture(scope="module")
def dagbag(airflow_home):
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=config.DAGS_DIR, safe_mode=False)


def _uris(condition) -> set[str]:
    """The asset URIs in a schedule condition (AssetAny/AssetAll nest plain Assets)."""
    if hasattr(condition, "objects"):
        return set().union(*(_uris(o) for o in condition.objects))
    return {condition.uri}


def test_dag_folder_has_no_import_errors(dagbag):
    assert dagbag.import_errors == {}
    assert set(dagbag.dag_ids) == EXPECTED_DAGS


def test_ingest_runs_on_the_landing_watcher_or_by_hand(dagbag):
    from ewi.orchestration.triggers import LandingFolderTrigger

    dag = dagbag.dags["ewi_ingest"]
    condition = dag.timetable.asset_condition
    assert _uris(condition) == {assets.LANDING_ASSET_URI}
    (watcher,) = assets.LANDING_ASSET.watchers
    assert isinstance(watcher.trigger, LandingFolderTrigger)
    classpath, kwargs = watcher.trigger.serialize()
    assert classpath == "ewi.orchestration.triggers.LandingFolderTrigger"
    assert kwargs["directory"] == str(config.landing_dir())
    assert {"paths", "landing", "chunk_size"} <= set(dag.params.keys())


def test_transform_runs_on_any_published_source(dagbag):
    from airflow.sdk.definitions.asset import AssetAny

    condition = dagbag.dags["ewi_transform"].timetable.asset_condition
    assert isinstance(condition, AssetAny)
    assert _uris(condition) == set(assets.SOURCE_ASSET_URIS.values())


def test_dashboard_refresh_runs_on_published_marts(dagbag):
    condition = dagbag.dags["ewi_dashboard_refresh"].timetable.asset_condition
    assert _uris(condition) == {assets.PUBLISHED_ASSET_URI}


def test_retention_runs_daily_on_a_schedule_and_announces_nothing(dagbag):
    dag = dagbag.dags["ewi_retention"]
    assert dag.schedule == "30 2 * * *"
    assert [t.task_id for t in dag.tasks] == ["apply_retention"]
    task = dag.get_task("apply_retention")
    # it changes the raw tables (lineage), but no asset: a build has nothing new to publish
    assert {f"{o.database}.{o.name}" for o in task.outlets} == {f"ewi.raw.{s}" for s in assets.SOURCE_NAMES}
    assert callbacks.record_dag_failure in _callbacks(dag.on_failure_callback)


def test_only_the_announcing_tasks_update_assets(dagbag):
    from airflow.sdk import Asset

    outlets = {
        (dag_id, task.task_id): {a.uri for a in task.outlets if isinstance(a, Asset)}
        for dag_id, dag in dagbag.dags.items()
        for task in dag.tasks
        if any(isinstance(a, Asset) for a in task.outlets)
    }
    expected = {("ewi_ingest", f"announce_{s}"): {uri} for s, uri in assets.SOURCE_ASSET_URIS.items()}
    expected[("ewi_transform", "publish")] = {assets.PUBLISHED_ASSET_URI}
    assert outlets == expected


def test_announcing_tasks_run_even_when_a_chunk_failed(dagbag):
    dag = dagbag.dags["ewi_ingest"]
    for source in assets.SOURCE_NAMES:
        assert dag.get_task(f"announce_{source}").trigger_rule == "all_done"
    assert dag.get_task("ingest_chunk").max_active_tis_per_dagrun == 1


def test_the_data_docs_index_is_rebuilt_once_per_run_and_nothing_waits_for_it(dagbag):
    dag = dagbag.dags["ewi_ingest"]
    index = dag.get_task("data_docs_index")
    assert index.trigger_rule == "all_done"
    assert index.upstream_task_ids == {"ingest_chunk"}
    assert index.downstream_task_ids == {"watcher"}  # no announcement (no dbt build) waits for it


def test_a_failed_chunk_fails_the_ingest_run(dagbag):
    dag = dagbag.dags["ewi_ingest"]
    watcher = dag.get_task("watcher")
    assert watcher.trigger_rule == "one_failed"
    assert watcher.upstream_task_ids == {t.task_id for t in dag.tasks} - {"watcher"}


def test_tags_retries_and_failure_callbacks(dagbag):
    for dag in dagbag.dags.values():
        assert "ewi" in dag.tags
        assert callbacks.record_dag_failure in _callbacks(dag.on_failure_callback), dag.dag_id
        for task in dag.tasks:
            if task.task_id == "watcher":
                continue
            assert task.retries == 2, task.task_id
            assert task.retry_exponential_backoff > 0, task.task_id
            assert task.retry_policy is not None, task.task_id
            assert callbacks.record_task_failure in _callbacks(task.on_failure_callback), task.task_id


def _callbacks(cb) -> list:
    return list(cb) if isinstance(cb, list | tuple) else [cb]


def test_retry_policy_retries_only_transient_warehouse_errors(airflow_home):
    import psycopg
    from airflow.sdk import RetryAction

    from ewi.errors import DiskFull, WarehouseUnavailable

    policy = dag_defaults.TRANSIENT_WAREHOUSE_ERRORS
    assert policy.evaluate(psycopg.OperationalError("gone"), 1, 3).action == RetryAction.RETRY
    assert policy.evaluate(ConnectionRefusedError(), 1, 3).action == RetryAction.RETRY
    assert policy.evaluate(KeyError("bug"), 1, 3).action == RetryAction.FAIL
    # a crash recovery longer than a command waits goes on, so a later try finds the warehouse back
    assert policy.evaluate(WarehouseUnavailable("still recovering"), 1, 3).action == RetryAction.RETRY
    assert policy.evaluate(DiskFull("no room"), 1, 3).action == RetryAction.FAIL


def test_dags_serialize_for_the_scheduler(dagbag):
    from airflow.serialization.serialized_objects import DagSerialization

    for dag in dagbag.dags.values():
        restored = DagSerialization.deserialize_dag(DagSerialization.serialize_dag(dag))
        assert restored.dag_id == dag.dag_id
        assert {t.task_id for t in restored.tasks} == {t.task_id for t in dag.tasks}


_IMPORT_PROBE = """
import json, sys, time, importlib.util
t0 = time.perf_counter()
import airflow.sdk
t1 = time.perf_counter()
spec = importlib.util.spec_from_file_location("dag_under_test", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
t2 = time.perf_counter()
print(json.dumps({"airflow": t1 - t0, "dag_file": t2 - t1, "total": t2 - t0,
                  "modules": sorted({m.split(".")[0] for m in sys.modules})}))
"""


@pytest.mark.parametrize("dag_file", DAG_FILES, ids=lambda p: p.name)
def test_dag_file_imports_fast_and_light(dag_file, airflow_home, tmp_path):
    env = {**os.environ, "AIRFLOW_HOME": str(airflow_home), "EWI_HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", _IMPORT_PROBE, str(dag_file)], env=env,
                         capture_output=True, text=True, timeout=60, check=True)
    probe = json.loads(out.stdout.strip().splitlines()[-1])
    heavy = [m for m in FORBIDDEN_AT_PARSE if m in probe["modules"]]
    assert heavy == [], f"{dag_file.name} imports {heavy} at parse time"
    # Unloaded, the whole import takes about 1.7 s, of which airflow.sdk is 1.6 s and the DAG file
    # (with ewi.orchestration's modules) about 0.1 s. Wall clock on a busy 2-core test machine says little,
    # so the check is on what the DAG file adds, scaled by how slow airflow.sdk was this time.
    assert probe["dag_file"] < max(0.5, 0.35 * probe["airflow"]), probe


def _string_constants(path: Path) -> list[str]:
    """The string literals of a module's code: docstrings left out, f-string parts included."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {
        id(node.body[0].value) for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)
    }
    return [node.value for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings]


ORCHESTRATION_FILES = sorted((config.PROJECT_ROOT / "ewi" / "orchestration").glob("*.py")) + DAG_FILES


@pytest.mark.parametrize("path", ORCHESTRATION_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_source_names_and_the_file_name_pattern_are_taken_from_the_registry(path):
    """ewi.sources is the one place that names the sources and the delivery file-name pattern: the
    DAGs, the watcher and the planner take them from it, so a source added there is watched,
    planned, announced and built on without another edit."""
    from ewi import sources

    written = [text for text in _string_constants(path)
               if any(name in text for name in sources.SOURCES) or "-W[0-9]" in text]
    assert written == [], f"{path.name} writes source names or the file-name pattern itself"


def test_every_registry_source_has_its_asset_and_announcement(dagbag):
    from ewi import sources

    assert assets.SOURCE_NAMES == tuple(sources.SOURCES)
    transform = dagbag.dags["ewi_transform"].timetable.asset_condition
    assert _uris(transform) == {f"ewi://warehouse/raw/{name}" for name in sources.SOURCES}
    announcers = {t.task_id for t in dagbag.dags["ewi_ingest"].tasks if t.task_id.startswith("announce_")}
    assert announcers == {f"announce_{name}" for name in sources.SOURCES}


def test_tasks_declare_warehouse_tables_for_lineage(dagbag):
    def names(objs):
        return {f"{o.database}.{o.name}" for o in objs if hasattr(o, "cluster")}

    ingest = dagbag.dags["ewi_ingest"].get_task("ingest_chunk")
    assert {f"ewi.raw.{s}" for s in assets.SOURCE_NAMES} <= names(ingest.outlets)
    build = dagbag.dags["ewi_transform"].get_task("build")
    assert "ewi.raw.referrals" in names(build.inlets)
    assert "ewi.published.area_weekly_indicators" in names(build.outlets)
    refresh = dagbag.dags["ewi_dashboard_refresh"].get_task("refresh")
    assert "ewi.published.area_alerts" in names(refresh.inlets)


def _published_models() -> set[str]:
    """The models the dbt project builds into the marts schema (which a build moves into
    `published`): every model under models/marts/, and any elsewhere that sets that schema itself."""
    models = config.DBT_PROJECT_DIR / "models"
    marts = {p.stem for p in (models / "marts").rglob("*.sql")}
    inline = {p.stem for p in models.rglob("*.sql") if "var('marts_schema'" in p.read_text(encoding="utf-8")}
    return marts | inline


def test_lineage_names_every_published_mart():
    from ewi.orchestration import lineage

    assert {t.removeprefix("published.") for t in lineage.PUBLISHED_TABLES} == _published_models()


def _names(chunks):
    return [[Path(p).name for p in chunk] for chunk in chunks]


def test_plan_keeps_corrections_with_their_period_in_delivery_order(tmp_path):
    names = [
        "referrals_2026-W02_20260112T0600.csv",
        "referrals_2026-W01_20260110T0900.csv",  # a correction of W01, delivered later
        "referrals_2026-W01_20260105T0600.csv",
        "school_absence_2026-W01_20260105T0612.csv",
        "contacts_2026-W01_20260105T0601.csv",
        "not-an-extract.csv",
    ]
    files = [tmp_path / n for n in names]
    chunks = _names(ingest_tasks.plan_chunks(files, chunk_size=2))
    assert chunks == [
        ["contacts_2026-W01_20260105T0601.csv"],
        ["referrals_2026-W01_20260105T0600.csv", "referrals_2026-W01_20260110T0900.csv"],
        ["referrals_2026-W02_20260112T0600.csv"],
        ["school_absence_2026-W01_20260105T0612.csv"],
        ["not-an-extract.csv"],
    ]


def test_plan_never_splits_a_period_even_when_over_chunk_size(tmp_path):
    files = [tmp_path / f"contacts_2026-W01_2026010{d}T0600.csv" for d in range(5, 9)]
    assert len(ingest_tasks.plan_chunks(files, chunk_size=2)) == 1


def test_delivered_files_prefers_paths_then_landing(tmp_path, monkeypatch):
    monkeypatch.setenv("EWI_LANDING_DIR", str(tmp_path / "watched"))
    (tmp_path / "b.csv").write_text("x")
    (tmp_path / "a.csv").write_text("x")
    (tmp_path / "notes.txt").write_text("x")
    assert [p.name for p in ingest_tasks.delivered_files(None, str(tmp_path))] == ["a.csv", "b.csv"]
    only = ingest_tasks.delivered_files([str(tmp_path / "b.csv")], str(tmp_path))
    assert [p.name for p in only] == ["b.csv"]
    with pytest.raises(FileNotFoundError):
        ingest_tasks.delivered_files(None, str(tmp_path / "missing"))


def test_chunk_label_names_source_and_periods(tmp_path):
    label = ingest_tasks.chunk_label([str(tmp_path / "contacts_2026-W01_20260105T0600.csv"),
                                       str(tmp_path / "contacts_2026-W03_20260119T0600.csv")])
    assert label == "contacts 2026-W01..2026-W03 (2 files)"


def test_failure_callback_records_the_exception_type_only(db):
    class FakeTI:  # the callback only reads these attributes of the task instance
        dag_id, task_id, run_id, try_number, map_index = "ewi_ingest", "ingest_chunk", "run-1", 2, 3

    secret = "19121212-1212"
    callbacks.record_task_failure({"ti": FakeTI(), "exception": ValueError(f"bad row {secret}")})
    row = db.execute(
        "select dag_id, task_id, run_id, event, detail from audit.pipeline_events "
        "where run_id = 'run-1' order by occurred_at desc limit 1"
    ).fetchone()
    assert row[:4] == ("ewi_ingest", "ingest_chunk", "run-1", "task_failed")
    assert row[4] == "builtins.ValueError, try 2, map_index 3"
    assert secret not in row[4]


def test_dashboard_refresh_leaves_a_marker(ewi_home, warehouse_ready):
    stamp = transform_tasks.refresh_dashboard()
    assert (ewi_home / "dashboard" / "refreshed_at").read_text().strip() == stamp


def test_dag_failure_callback_records_the_run(db):
    class FakeRun:
        dag_id, run_id = "ewi_transform", "run-2"

    callbacks.record_dag_failure({"dag_run": FakeRun(), "reason": "task_failure"})
    row = db.execute(
        "select dag_id, task_id, event, detail from audit.pipeline_events where run_id = 'run-2'"
    ).fetchone()
    assert row == ("ewi_transform", None, "dag_run_failed", "task_failure")


def test_watcher_runs_pack_sources_into_one_chunk_keeping_delivery_order(tmp_path):
    names = ["referrals_2026-W01_20260110T0900.csv", "referrals_2026-W01_20260105T0600.csv",
             "contacts_2026-W01_20260105T0601.csv", "school_absence_2026-W01_20260105T0612.csv"]
    chunks = ingest_tasks.plan_chunks([tmp_path / n for n in names], chunk_size=26, mix_sources=True)
    assert _names(chunks) == [["contacts_2026-W01_20260105T0601.csv", "referrals_2026-W01_20260105T0600.csv",
                               "referrals_2026-W01_20260110T0900.csv", "school_absence_2026-W01_20260105T0612.csv"]]
    assert ingest_tasks.chunk_label(chunks[0]) == "3 sources 2026-W01 (4 files)"
    small = ingest_tasks.plan_chunks([tmp_path / n for n in names], chunk_size=2, mix_sources=True)
    assert _names(small)[1] == ["referrals_2026-W01_20260105T0600.csv", "referrals_2026-W01_20260110T0900.csv"]


def test_the_coordinators_are_told_of_new_signals_only_after_a_publish(dagbag):
    notify = dagbag.dags["ewi_transform"].get_task("notify_new_signals")
    assert notify.upstream_task_ids == {"build", "publish"}
    assert notify.trigger_rule == "all_success"


def test_the_audit_chain_is_verified_every_night(dagbag):
    dag = dagbag.dags["ewi_audit_verify"]
    assert [t.task_id for t in dag.tasks] == ["verify_chain"]
    assert type(dag.timetable).__name__ == "CronTriggerTimetable"  # on a schedule, not an asset
