"""Latency from a file landing to the dashboard refresh, on a real local Airflow.

    python -m ewi.bench.latency [--runs 5]

Starts `ewi airflow up` in its own EWI_HOME under /tmp (its own embedded PostgreSQL for warehouse
and metadata), delivers one synthetic week of Borlänge's three extracts at a time into the landing
folder (written under a temporary name, then renamed, as a sender would) and waits until the
dashboard refresh has run. The settings are the defaults (watcher poll 2 s, settle 5 s, transform
debounce 5 s). Returns the median of the runs, with where the time goes:

    detect     landing -> the watcher's asset event (poll interval, settle time, manifest check)
    schedule   asset event -> ewi_ingest run started (scheduler loop)
    ingest     ewi_ingest run (task starts, write-audit-publish of the three files, announce)
    handover   ewi_ingest end -> ewi_transform run started (scheduler on the source assets)
    debounce   ewi_transform start -> dbt started (task start, quiet wait, warehouse init)
    dbt        the dbt build and its tests (audit.dbt_runs.elapsed_s)
    refresh    dbt end -> ewi_dashboard_refresh finished (publish task, scheduler, refresh task)
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ewi.bench import any_free_port

STAGES = ("detect", "schedule", "ingest", "handover", "debounce", "dbt", "refresh")


def _ewi(args: list[str], env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ewi.cli", *args], env=env, capture_output=True,
                          text=True, timeout=timeout)


def _one_run(conn_af, conn_wh, landing: Path, files: list[Path], refreshes_before: int,
             timeout: float) -> dict:
    delivered = time.time()
    for f in files:
        tmp = landing / f".{f.name}.part"
        shutil.copyfile(f, tmp)
        os.replace(tmp, landing / f.name)
        manifest = f.with_name(f.name + ".manifest.json")
        if manifest.exists():
            shutil.copyfile(manifest, landing / manifest.name)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = conn_af.execute(
            "select count(*) from dag_run where dag_id = 'ewi_dashboard_refresh' and state = 'success'"
        ).fetchone()[0]
        if done > refreshes_before:
            break
        failed = conn_af.execute(
            "select count(*) from dag_run where dag_id in ('ewi_ingest', 'ewi_transform') and state = 'failed' "
            "and start_date >= to_timestamp(%s)", (delivered - 1,)).fetchone()[0]
        if failed:
            raise RuntimeError("a pipeline run failed (see audit.dbt_runs and the Airflow logs); "
                               "the latency is measured on passing builds only")
        time.sleep(1)
    else:
        raise TimeoutError(f"no dashboard refresh within {timeout:.0f} s of the delivery")

    def epoch(sql: str, params=()) -> float:
        # `sql` is one of the constant queries below, never outside input.
        return conn_af.execute(f"select extract(epoch from ({sql}))", params).fetchone()[0]  # noqa: S608

    since = delivered - 1
    event = float(epoch("select min(e.timestamp) from asset_event e join asset a on a.id = e.asset_id "
                        "where a.uri = 'ewi://landing/' and e.timestamp >= to_timestamp(%s)", (since,)))
    ingest = conn_af.execute(
        "select extract(epoch from min(start_date)), extract(epoch from max(end_date)) from dag_run "
        "where dag_id = 'ewi_ingest' and start_date >= to_timestamp(%s)", (since,)).fetchone()
    transform_start = float(epoch("select min(start_date) from dag_run where dag_id = 'ewi_transform' "
                                  "and start_date >= to_timestamp(%s)", (since,)))
    refresh_end = float(epoch("select max(end_date) from dag_run where dag_id = 'ewi_dashboard_refresh' "
                              "and state = 'success'"))
    dbt_started, dbt_elapsed, builds = conn_wh.execute(
        "select extract(epoch from max(started_at)), max(elapsed_s), count(*) from audit.dbt_runs "
        "where started_at >= to_timestamp(%s)", (since,)).fetchone()
    dbt_started, dbt_elapsed = float(dbt_started), float(dbt_elapsed)
    stages = {
        "detect": event - delivered,
        "schedule": float(ingest[0]) - event,
        "ingest": float(ingest[1]) - float(ingest[0]),
        "handover": transform_start - float(ingest[1]),
        "debounce": dbt_started - transform_start,
        "dbt": dbt_elapsed,
        "refresh": refresh_end - (dbt_started + dbt_elapsed),
    }
    return {"total_s": round(refresh_end - delivered, 1), "dbt_builds": builds,
            **{k: round(v, 1) for k, v in stages.items()}}


def bench_latency(runs: int = 5, timeout: float = 300) -> dict:
    """End-to-end latency from landing to dashboard refresh: median of `runs` weekly deliveries."""
    import psycopg

    from ewi import synth
    from ewi.sources import FILE_NAME_RE

    home = Path(tempfile.mkdtemp(prefix="ewi-bench-latency-", dir="/tmp"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "EWI_", "OPENLINEAGE"))}
    env.update({"EWI_HOME": str(home), "EWI_AIRFLOW_PORT": str(any_free_port())})
    outbox = home / "outbox"
    synth.generate(outbox, weeks=runs, seed=7)
    weeks = sorted({FILE_NAME_RE.match(p.name)["period"] for p in outbox.glob("*.csv")})
    try:
        for step in (["warehouse", "init"], ["airflow", "up"]):
            result = _ewi(step, env)
            if result.returncode != 0:
                raise RuntimeError(f"ewi {' '.join(step)} failed: {result.stdout[-1500:]}{result.stderr[-1500:]}")
        url = _ewi(["warehouse", "url"], env).stdout.strip().splitlines()[-1]
        folder = home / "landing"
        samples = []
        with psycopg.connect(psycopg.conninfo.make_conninfo(url, dbname="airflow"), autocommit=True) as af, \
                psycopg.connect(url, autocommit=True) as wh:
            deadline = time.monotonic() + 180
            while not af.execute("select count(*) from trigger where classpath = 'ewi.orchestration.triggers.LandingFolderTrigger' "
                                 "and triggerer_id is not null").fetchone()[0]:
                if time.monotonic() > deadline:
                    raise TimeoutError("the landing watcher did not start in the triggerer")
                time.sleep(1)
            for i, week in enumerate(weeks):
                files = sorted(outbox.glob(f"*_{week}_*.csv"))
                samples.append({"week": week, **_one_run(af, wh, folder, files, i, timeout)})
                # Let the queued runs (a transform run that skips its build) finish first.
                while af.execute("select count(*) from dag_run where state in ('queued', 'running')").fetchone()[0]:
                    time.sleep(1)
    finally:
        _ewi(["airflow", "down"], env, timeout=120)
        _ewi(["warehouse", "stop"], env, timeout=120)
    median = {k: round(statistics.median(s[k] for s in samples), 1) for k in ("total_s", *STAGES)}
    return {
        "benchmark": "latency_landing_to_dashboard",
        "runs": len(samples),
        "files_per_run": 3,
        "median_s": median["total_s"],
        "target_s": 60,
        "median_breakdown_s": {k: median[k] for k in STAGES},
        "samples": samples,
        "settings": {"poll_s": 2, "settle_s": 5, "quiet_s": 5, "executor": "LocalExecutor", "cores": os.cpu_count()},
        "ewi_home": str(home),
    }


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    print(json.dumps(bench_latency(parser.parse_args().runs)))
