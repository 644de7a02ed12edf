"""The pipeline through real Airflow: `ewi airflow demo-run` runs ewi_ingest, ewi_transform and
ewi_dashboard_refresh with `airflow dags test` on a small synthetic delivery, in its own EWI_HOME
(its own embedded PostgreSQL, holding both the warehouse and Airflow's metadata database)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

pytestmark = pytest.mark.slow

EWI = [sys.executable, "-m", "ewi.cli"]
IDENTITY_NUMBER = "19121212-1212"  # the Swedish tax agency's published test number


@pytest.fixture(scope="module")
def demo_env(tmp_path_factory):
    home = tmp_path_factory.mktemp("airflow-demo")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "EWI_"))}
    env["EWI_HOME"] = str(home)
    init = _ewi(["warehouse", "init"], env, timeout=300)  # as `make demo` does before demo-run
    assert init.returncode == 0, init.stderr[-2000:]
    yield env
    subprocess.run([*EWI, "airflow", "down"], env=env, capture_output=True, timeout=120)
    subprocess.run([*EWI, "warehouse", "stop"], env=env, capture_output=True, timeout=120)


def _ewi(args, env, timeout=900) -> subprocess.CompletedProcess:
    return subprocess.run([*EWI, *args], env=env, capture_output=True, text=True, timeout=timeout)


def _dsn(env, database: str) -> str:
    url = _ewi(["warehouse", "url"], env).stdout.strip().splitlines()[-1]
    return psycopg.conninfo.make_conninfo(url, dbname=database)


def _source_asset_events(env) -> int:
    with psycopg.connect(_dsn(env, "airflow")) as conn:
        return conn.execute(
            "select count(*) from asset_event e join asset a on a.id = e.asset_id "
            "where a.uri like 'ewi://warehouse/raw/%'"
        ).fetchone()[0]


def test_demo_run_ingests_transforms_and_refreshes(demo_env):
    landing = Path(demo_env["EWI_HOME"]) / "landing-ok"
    synth = _ewi(["synth", "--out", str(landing), "--weeks", "2", "--seed", "3"], demo_env)
    assert synth.returncode == 0, synth.stderr[-2000:]
    files = sorted(landing.glob("*.csv"))

    run = _ewi(["airflow", "demo-run", "--landing", str(landing)], demo_env)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert f"==> [airflow] ingest: {len(files)} files" in run.stdout
    assert "ewi_transform: success" in run.stdout
    assert "ewi_dashboard_refresh: success" in run.stdout

    with psycopg.connect(_dsn(demo_env, "ewi")) as conn:
        recorded = conn.execute(
            "select count(distinct file_name) from audit.batches where file_name = any(%s)",
            ([f.name for f in files],),
        ).fetchone()[0]
        published = conn.execute("select count(*) from audit.batches where status = 'published'").fetchone()[0]
    assert recorded == len(files)
    assert published > 0
    assert _source_asset_events(demo_env) > 0
    assert (Path(demo_env["EWI_HOME"]) / "dashboard" / "refreshed_at").exists()
    # what the auditors' lineage page and dbt docs site read, and the week's briefing (after the publish)
    docs = Path(demo_env["EWI_HOME"]) / "dbt-docs"
    assert {"index.html", "manifest.json", "catalog.json"} <= {p.name for p in docs.glob("*")}
    assert sorted(p.name[-6:] for p in (Path(demo_env["EWI_HOME"]) / "briefings").glob("*.pdf")) == ["en.pdf", "sv.pdf"]


def test_a_rejected_delivery_triggers_nothing(demo_env):
    landing = Path(demo_env["EWI_HOME"]) / "landing-bad"
    landing.mkdir()
    (landing / "contacts_2026-W01_20260105T0600.csv").write_text(
        "personnummer,contact_date\n" f"{IDENTITY_NUMBER},2026-01-02\n", encoding="utf-8"
    )
    before = _source_asset_events(demo_env)

    run = _ewi(["airflow", "demo-run", "--landing", str(landing)], demo_env)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "ingest published no batch; transform not run" in run.stdout
    assert _source_asset_events(demo_env) == before
    assert IDENTITY_NUMBER not in run.stdout + run.stderr
    logs = Path(demo_env["EWI_HOME"]) / "airflow" / "logs"
    for log_file in logs.rglob("*.log"):
        assert IDENTITY_NUMBER not in log_file.read_text(encoding="utf-8", errors="replace"), log_file.name
