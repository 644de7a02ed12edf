"""Event-driven orchestration on a real Airflow: `ewi airflow up` (scheduler, DAG processor,
triggerer, API server; a Celery worker on Redis in the second test) against a PostgreSQL metadata
database, then files are dropped into the landing folder and nothing else is done: the landing
watcher starts ewi_ingest, the published batches start one ewi_transform build, the published marts
start ewi_dashboard_refresh. A quarantined delivery starts no build.

The metadata database is a fresh database on the machine's PostgreSQL (127.0.0.1:5432, user
postgres) when one answers, else `airflow` on the test's own embedded warehouse server.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from tests import extracts

pytestmark = pytest.mark.slow

EWI = [sys.executable, "-m", "ewi.cli"]
MACHINE_PG = "postgresql://postgres@127.0.0.1:5432/postgres"
REDIS = ("127.0.0.1", 6379)
DEADLINE_S = 240


def _answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _machine_pg() -> bool:
    try:
        with psycopg.connect(MACHINE_PG, connect_timeout=2):
            return True
    except psycopg.Error:
        return False


def _ewi(args, env, timeout=600) -> subprocess.CompletedProcess:
    return subprocess.run([*EWI, *args], env=env, capture_output=True, text=True, timeout=timeout)


class Stack:
    """One EWI_HOME with its warehouse and a running local Airflow."""

    def __init__(self, home: Path, env: dict[str, str], metadata_db: str | None):
        self.home, self.env, self.metadata_db = home, env, metadata_db
        self.landing = home / "landing"

    def dsn(self, database: str) -> str:
        if database == "airflow":
            return self.env.get("EWI_AIRFLOW_DB_DSN") or self._warehouse_dsn("airflow")
        return self._warehouse_dsn(database)

    def _warehouse_dsn(self, database: str) -> str:
        url = _ewi(["warehouse", "url"], self.env).stdout.strip().splitlines()[-1]
        return psycopg.conninfo.make_conninfo(url, dbname=database)

    def query(self, database: str, sql: str, params=()) -> list[tuple]:
        with psycopg.connect(self.dsn(database)) as conn:
            return conn.execute(sql, params).fetchall()

    def runs(self, dag_id: str, state: str | None = None) -> list[tuple]:
        sql = "select run_id, state, run_type from dag_run where dag_id = %s"
        params: tuple = (dag_id,)
        if state:
            sql += " and state = %s"
            params += (state,)
        return self.query("airflow", sql + " order by id", params)

    def deliver(self, path: Path) -> None:
        """As a sender would: write under a temporary name, then rename into the landing folder."""
        temporary = self.landing / f".{path.name}.part"
        temporary.write_bytes(path.read_bytes())
        manifest = path.with_name(path.name + ".manifest.json")
        os.replace(temporary, self.landing / path.name)
        if manifest.exists():
            os.replace(manifest, self.landing / manifest.name)

    def wait_for(self, what: str, check, timeout: float = DEADLINE_S, every: float = 2.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = check()
            if value:
                return value
            time.sleep(every)
        pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}\n{self.diagnostics()}")

    def idle(self) -> bool:
        """No DAG run queued or running, and no asset event waiting to start one."""
        busy = self.query("airflow", "select count(*) from dag_run where state in ('queued', 'running')")[0][0]
        queued = self.query("airflow", "select count(*) from asset_dag_run_queue")[0][0]
        return busy == 0 and queued == 0

    def diagnostics(self) -> str:
        """DAG runs, task states and the tails of the Airflow logs (ours: no row values in them)."""
        lines = []
        try:
            for row in self.query("airflow", "select dag_id, run_id, state from dag_run order by id"):
                lines.append(f"run {row}")
            for row in self.query("airflow", "select dag_id, run_id, task_id, map_index, state, try_number "
                                             "from task_instance order by start_date nulls last"):
                lines.append(f"task {row}")
            for row in self.query("ewi", "select file_name, status, reason from audit.batches order by received_at"):
                lines.append(f"batch {row}")
        except psycopg.Error as exc:
            lines.append(f"(could not query: {type(exc).__name__})")
        logs = self.home / "airflow" / "logs"
        for name in ("scheduler", "triggerer", "dag-processor", "celery-worker", "api-server"):
            f = logs / f"{name}.log"
            if f.exists():
                lines.append(f"--- {name}.log (tail)")
                lines += f.read_text(errors="replace").splitlines()[-40:]
        for f in sorted(logs.glob("dag_id=*/**/*.log"))[-12:]:
            lines.append(f"--- {f.relative_to(logs)} (tail)")
            lines += f.read_text(errors="replace").splitlines()[-25:]
        return "\n".join(lines)


@pytest.fixture
def airflow_stack(tmp_path_factory, request):
    """Start a local Airflow for one test; stopped (and its database dropped) even on failure."""
    stacks = []

    def start(executor: str = "LocalExecutor", extra_env: dict[str, str] | None = None) -> Stack:
        home = tmp_path_factory.mktemp(f"event-driven-{executor.lower()}")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "EWI_", "OPENLINEAGE"))}
        env.update({
            "EWI_HOME": str(home),
            "EWI_AIRFLOW_PORT": str(_free_port()),
            "EWI_AIRFLOW_EXECUTOR": executor,
            "EWI_LANDING_POLL_SECONDS": "1",
            "EWI_LANDING_SETTLE_SECONDS": "2",
            "EWI_TRANSFORM_QUIET_SECONDS": "3",
            **(extra_env or {}),
        })
        metadata_db = None
        if _machine_pg():
            metadata_db = f"ewi_airflow_test_{secrets.token_hex(4)}"
            with psycopg.connect(MACHINE_PG, autocommit=True) as conn:
                conn.execute(f'create database "{metadata_db}"')
            env["EWI_AIRFLOW_DB_DSN"] = f"postgresql://postgres@127.0.0.1:5432/{metadata_db}"
        if executor == "CeleryExecutor":
            env["EWI_AIRFLOW_CELERY_BROKER"] = "redis://127.0.0.1:6379/0"
            env["EWI_AIRFLOW_CELERY_QUEUE"] = f"ewi-test-{secrets.token_hex(4)}"
        stack = Stack(home, env, metadata_db)
        stacks.append(stack)
        init = _ewi(["warehouse", "init"], env, timeout=300)
        assert init.returncode == 0, init.stderr[-2000:]
        up = _ewi(["airflow", "up"], env, timeout=300)
        assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-2000:] + stack.diagnostics()
        assert "==> [airflow] UI: http://127.0.0.1:" in up.stdout
        stack.wait_for("the landing watcher to run in the triggerer", lambda: stack.query(
            "airflow", "select count(*) from trigger where classpath = 'ewi.orchestration.triggers.LandingFolderTrigger' "
                       "and triggerer_id is not null")[0][0], timeout=180)
        return stack

    yield start
    survivors = []
    for stack in stacks:
        _ewi(["airflow", "down"], stack.env, timeout=120)
        queue = stack.env.get("EWI_AIRFLOW_CELERY_QUEUE")
        if queue:
            # `airflow down` must stop the Celery worker too, although it retitles itself.
            left = subprocess.run(["pgrep", "-f", queue], capture_output=True, text=True).stdout.split()
            for pid in left:
                os.kill(int(pid), signal.SIGKILL)
            survivors += left
        _ewi(["warehouse", "stop"], stack.env, timeout=120)
        if stack.metadata_db:
            with psycopg.connect(MACHINE_PG, autocommit=True) as conn:
                conn.execute(f'drop database if exists "{stack.metadata_db}" with (force)')
    assert not survivors, f"celery worker still running after `ewi airflow down`: {survivors}"


def _week_files(tmp: Path, period: str = "2026-W01") -> list[Path]:
    return [extracts.write(tmp, source, period, manifest=(source == "referrals"))
            for source in ("school_absence", "referrals", "contacts")]


def test_deliveries_flow_through_by_themselves(airflow_stack, tmp_path):
    stack = airflow_stack("LocalExecutor")
    started = time.monotonic()
    for path in _week_files(tmp_path / "outbox"):
        stack.deliver(path)

    stack.wait_for("three published batches", lambda: stack.query(
        "ewi", "select count(*) from audit.batches where status = 'published'")[0][0] == 3)
    stack.wait_for("the dashboard refresh", lambda: stack.runs("ewi_dashboard_refresh", "success"))
    stack.wait_for("the pipeline to go idle", stack.idle, timeout=120)
    elapsed = time.monotonic() - started
    print(f"landing to dashboard refresh and idle: {elapsed:.0f} s")

    assert stack.query("ewi", "select count(*) from audit.dbt_runs")[0][0] == 1, "more than one dbt build"
    assert all(run_type == "asset_triggered" for _, _, run_type in stack.runs("ewi_ingest"))
    assert [state for _, state, _ in stack.runs("ewi_dashboard_refresh")] == ["success"]
    assert not [p for p in stack.landing.iterdir() if p.is_file()]
    assert len(list((stack.landing / "processed" / "published").glob("*.csv"))) == 3
    assert (stack.home / "dashboard" / "refreshed_at").exists()
    _assert_lineage(stack)

    # A delivery with an area code outside the register: quarantined, and nothing downstream moves.
    transform_runs = len(stack.runs("ewi_transform"))
    rows = extracts.rows_for("contacts", "2026-W02")
    rows[0]["home_area_code"] = "9999X9999"
    stack.deliver(extracts.write(tmp_path / "outbox", "contacts", "2026-W02", rows=rows))
    stack.wait_for("the bad delivery to be quarantined", lambda: stack.query(
        "ewi", "select count(*) from audit.batches where status = 'quarantined'")[0][0] == 1)
    stack.wait_for("the pipeline to go idle", stack.idle, timeout=120)
    time.sleep(5)  # a build that was wrongly started would show up by now
    assert len(stack.runs("ewi_transform")) == transform_runs
    assert stack.query("ewi", "select count(*) from audit.dbt_runs")[0][0] == 1
    assert len(list((stack.landing / "processed" / "quarantined").glob("*.csv"))) == 1


def _assert_lineage(stack: Stack) -> None:
    import json

    events_file = stack.home / "lineage" / "events.jsonl"
    assert events_file.exists(), "no OpenLineage events written"
    events = [json.loads(line) for line in events_file.read_text().splitlines() if line.strip()]
    complete = [e for e in events if e.get("eventType") == "COMPLETE"]
    jobs = {e["job"]["name"] for e in complete}
    assert {"ewi_ingest.ingest_chunk", "ewi_transform.build", "ewi_dashboard_refresh.refresh"} <= jobs, jobs
    build = next(e for e in complete if e["job"]["name"] == "ewi_transform.build")
    assert "ewi.raw.referrals" in {d["name"] for d in build["inputs"]}
    assert "ewi.published.area_weekly_indicators" in {d["name"] for d in build["outputs"]}


def test_celery_worker_takes_the_same_flow(airflow_stack, tmp_path):
    if not _answers(*REDIS):
        pytest.skip("no Redis answers on 127.0.0.1:6379 (the Celery broker)")
    probe = subprocess.run(
        [sys.executable, "-c", "import airflow.providers.celery.executors.celery_executor_utils"],
        env={**os.environ, "AIRFLOW_HOME": str(tmp_path / "probe")}, capture_output=True, text=True, timeout=120)
    if probe.returncode != 0:
        # celery 5.7 dropped celery.backends.database.retry, which the Celery provider imports.
        reason = (probe.stderr.strip().splitlines() or ["?"])[-1]
        pytest.skip(f"the installed Celery provider cannot load its executor ({reason[:160]}); "
                    "the lock needs a celery that the provider supports")
    stack = airflow_stack("CeleryExecutor")
    stack.deliver(extracts.write(tmp_path / "outbox", "contacts", "2026-W01"))
    stack.wait_for("the published batch", lambda: stack.query(
        "ewi", "select count(*) from audit.batches where status = 'published'")[0][0] == 1)
    stack.wait_for("the dashboard refresh", lambda: stack.runs("ewi_dashboard_refresh", "success"))
    assert stack.query("ewi", "select count(*) from audit.dbt_runs")[0][0] == 1
    worker_log = stack.home / "airflow" / "logs" / "celery-worker.log"
    assert worker_log.exists() and "ewi_ingest" in worker_log.read_text(errors="replace")
