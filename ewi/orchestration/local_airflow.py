"""A local Airflow for EWI: `ewi airflow {up,down,demo-run,env} [--landing DIR]`.

The configuration (home, secrets, metadata database, services, environment) is in
ewi.orchestration.airflow_env; `ewi airflow env` shows the whole of it.

- `demo-run` runs the pipeline without any long-running service: `airflow dags test` executes
  ewi_ingest, ewi_transform and ewi_dashboard_refresh in-process, one after the other, which is
  what the scheduler would do on the asset events, minus the waiting. Exit codes: 0 the pipeline
  ran (quarantined or rejected deliveries included: that is the gate working), 1 a DAG run
  failed, 3 the transform's tests failed and nothing was published.
- `up` starts the scheduler, DAG processor, triggerer and API server in the background (pid files
  and logs under $EWI_HOME/airflow), and a Celery worker with EWI_AIRFLOW_EXECUTOR=CeleryExecutor.
  Starting twice is safe: services of this EWI_HOME that already run are reused (found by their
  pid files, or by their AIRFLOW_HOME when the pid files are gone), and when another process holds
  the API server's port, `up` names it and takes the next free port, which it prints.
  The triggerer runs the landing folder's watcher: a delivery dropped into the landing folder is
  ingested, transformed and shown without anyone triggering anything (docs/orchestration.md).

Settings beyond EWI_HOME: EWI_AIRFLOW_PORT (8080; the port taken is kept in run/api-server.port
while the API server runs), EWI_AIRFLOW_DB_DSN (a libpq DSN for the
metadata database instead of `airflow` on the warehouse server), EWI_AIRFLOW_EXECUTOR
(LocalExecutor | CeleryExecutor), EWI_AIRFLOW_CELERY_BROKER (redis://127.0.0.1:6379/0),
EWI_AIRFLOW_CELERY_QUEUE (ewi), OPENLINEAGE_URL (send lineage over HTTP instead of to
$EWI_HOME/lineage/events.jsonl), and the EWI_LANDING_* / EWI_TRANSFORM_* / EWI_NOTIFY* settings,
which are passed through to every Airflow process.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from ewi import config, ports
from ewi.orchestration.airflow_env import (
    ADMIN_USER,
    Service,
    airflow_env,
    airflow_home,
    api_port,
    api_port_file,
    configured_port,
    ensure_db_migrated,
    metadata_dsn,
    passwords_file,
    process_env,
    progress,
    run_airflow,
    run_dir,
    services,
)

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_GATE = 3

DAG_IDS = ("ewi_ingest", "ewi_transform", "ewi_dashboard_refresh", "ewi_freshness", "ewi_audit_verify")


# --- demo-run ---------------------------------------------------------------------------------


def _batch_summary(file_names: list[str]) -> dict[str, int]:
    """Latest outcome per delivered file of this run, from audit.batches."""
    import psycopg

    from ewi import warehouse

    with psycopg.connect(warehouse.dsn()) as conn:
        rows = conn.execute(
            """select status, count(*) from (
                   select distinct on (file_name) file_name, status from audit.batches
                   where file_name = any(%s)
                   order by file_name, received_at desc) latest
               group by status order by status""",
            (file_names,),
        ).fetchall()
    return dict(rows)


def _asset_events_since(uri: str, since: float) -> int:
    import psycopg

    with psycopg.connect(metadata_dsn()) as conn:
        return conn.execute(
            """select count(*) from asset_event e join asset a on a.id = e.asset_id
               where a.uri = %s and e.timestamp >= to_timestamp(%s)""",
            (uri, since),
        ).fetchone()[0]


def _dags_test(dag_id: str, env: dict[str, str], conf: dict | None = None) -> bool:
    log_file = airflow_home() / "logs" / "demo-run" / f"{dag_id}.log"
    args = ["dags", "test", dag_id]
    if conf is not None:
        args += ["--conf", json.dumps(conf)]
    started = time.monotonic()
    result = run_airflow(args, env, log_file)
    ok = result.returncode == 0
    progress(f"{dag_id}: {'success' if ok else 'FAILED'} in {time.monotonic() - started:.0f} s"
             + ("" if ok else f" (log: {log_file})"))
    return ok


def demo_run(landing: str | None) -> int:
    from ewi import warehouse_init
    from ewi.orchestration import assets, ingest_tasks

    folder = Path(landing).resolve() if landing else config.landing_dir()
    if not folder.is_dir():
        print(f"ewi airflow demo-run: no such folder: {folder}", file=sys.stderr)
        return EXIT_USAGE
    files = ingest_tasks.delivered_files(None, str(folder))
    _adopt_running_services()
    if any(_running_pid(s) for s in services()):
        # The scheduler would also act on the asset events demo-run emits, and run the DAGs twice.
        progress("the local Airflow is up; stop it first (ewi airflow down)")
        return EXIT_USAGE
    started = time.monotonic()
    warehouse_init.init_warehouse()
    env = process_env()
    ensure_db_migrated(env)
    t = time.monotonic()
    result = run_airflow(["dags", "reserialize"], env, airflow_home() / "logs" / "demo-run" / "reserialize.log")
    if result.returncode != 0:
        progress("reserializing the DAGs failed; see logs/demo-run/reserialize.log")
        return EXIT_FAILED
    progress(f"DAGs serialized in {time.monotonic() - t:.0f} s")

    # Each DAG runs only when the one before emitted the asset it is scheduled on, as under the
    # scheduler (a delivery that only quarantines does not start a build).
    progress(f"ingest: {len(files)} files from {folder}")
    ingest_started = time.time()
    # A failed chunk fails the run, but what the other chunks published still goes on to transform.
    ingest_ok = _dags_test("ewi_ingest", env, {"landing": str(folder)})
    done = EXIT_OK if ingest_ok else EXIT_FAILED
    counts = _batch_summary([p.name for p in files])
    progress("ingest: " + (", ".join(f"{n} {s}" for s, n in counts.items()) or "nothing recorded"))
    if not any(_asset_events_since(uri, ingest_started) for uri in assets.SOURCE_ASSET_URIS.values()):
        progress("ingest published no batch; transform not run")
        return done

    progress("transform: dbt build")
    transform_started = time.time()
    if not _dags_test("ewi_transform", env):
        return EXIT_GATE
    if not _asset_events_since(assets.PUBLISHED_ASSET_URI, transform_started):
        progress("transform published nothing new; dashboard not refreshed")
        return done
    progress("dashboard: refresh")
    if not _dags_test("ewi_dashboard_refresh", env):
        return EXIT_FAILED
    progress(f"done in {time.monotonic() - started:.0f} s")
    return done


# --- up / down --------------------------------------------------------------------------------


def _is_service(pid: int, service: Service) -> bool:
    try:
        # Processes retitle themselves (setproctitle): Airflow's as "airflow api_server -- ...", the
        # Celery worker as "[celeryd: ...] (celery worker ...)" without "airflow"; so match loosely.
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").replace(b"_", b"-")
    except OSError:
        return False
    return (b"airflow" in cmdline or b"celeryd" in cmdline) and service.args[0].encode() in cmdline


def _running_pid(service: Service) -> int | None:
    """The pid of a service we started, if it still runs (a recycled pid is not ours)."""
    pid_file = run_dir() / f"{service.name}.pid"
    if not pid_file.exists():
        return None
    pid = int(pid_file.read_text().strip())
    return pid if _is_service(pid, service) else None


def _adopt_running_services() -> None:
    """Write the pid files of services of this EWI_HOME that run without one (lost with a removed
    $EWI_HOME/airflow/run, or written by a start that was killed), so they are reused and `down`
    stops them. A service `up` started leads its own session (start_new_session; its workers do not)
    and writes its output to its log here; its environment cannot tell (setproctitle overwrites
    /proc/<pid>/environ)."""
    import psutil

    logs = airflow_home() / "logs"
    missing = [s for s in services() if not _running_pid(s)]
    if not missing:
        return
    for proc in psutil.process_iter():
        try:
            if os.getsid(proc.pid) != proc.pid:
                continue
            output = os.readlink(f"/proc/{proc.pid}/fd/1")
        except OSError:
            continue
        for service in missing:
            if output == str(logs / f"{service.name}.log") and _is_service(proc.pid, service):
                (run_dir() / f"{service.name}.pid").write_text(str(proc.pid))
                if service.name == "api-server":
                    api_port_file().write_text(str(_listening_port(proc.pid) or configured_port()))
                progress(f"{service.name} of this EWI_HOME runs without a pid file: found it (pid {proc.pid})")
                missing.remove(service)
                break


def _listening_port(pid: int) -> int | None:
    import psutil

    try:
        return next((c.laddr.port for c in psutil.Process(pid).net_connections(kind="tcp")
                     if c.status == psutil.CONN_LISTEN), None)
    except psutil.Error:
        return None


def _choose_port() -> int:
    """The port for an API server about to start: the configured one, or, when another process
    holds it, the next free one (said, with the holder)."""
    wanted = configured_port()
    if ports.is_free(wanted):
        return wanted
    held_by = ports.holder(wanted)
    port = ports.free_port(wanted)
    progress(f"port {wanted} is in use by {held_by.describe() if held_by else 'another process'}; "
             f"the API server takes port {port}")
    return port


def _why_stopped(log_file: Path, since: int) -> str:
    """The last error line this start wrote to a service's log (from byte `since`; e.g. "address
    already in use"), to say why it stopped; its own words, cut short."""
    try:
        with open(log_file, "rb") as fh:
            fh.seek(since)
            lines = fh.read().decode("utf-8", errors="replace").splitlines()[-200:]
    except OSError:
        return ""
    errors = [line.strip() for line in lines if "error" in line.lower() or "in use" in line.lower()]
    return f" ({errors[-1][:160]})" if errors else ""


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 (our own localhost URL)
            health = json.load(resp)
    except (urllib.error.URLError, OSError, ValueError):
        return False
    return all(part.get("status") in ("healthy", None) for part in health.values()
               if isinstance(part, dict) and part.get("status") is not None)


def up(timeout: float = 180) -> int:
    from ewi import warehouse_init

    warehouse_init.init_warehouse()
    _adopt_running_services()
    api_server = next(s for s in services() if s.name == "api-server")
    if not _running_pid(api_server):
        previous, port = api_port(), _choose_port()
        running = [s.name for s in services() if _running_pid(s)]
        if running and port != previous:
            # they send their task runs to the API server's port: they must start again with the new one
            progress(f"{', '.join(running)} run with the API server on port {previous}; restarting them")
            down()
        api_port_file().write_text(str(port))
    env = process_env()
    ensure_db_migrated(env)
    logs = airflow_home() / "logs"
    logs.mkdir(exist_ok=True)
    started: dict[str, subprocess.Popen] = {}
    log_start: dict[str, int] = {}
    for service in services():
        if _running_pid(service):
            progress(f"{service.name} already running")
            continue
        with open(logs / f"{service.name}.log", "ab") as out:
            log_start[service.name] = out.tell()
            proc = subprocess.Popen(
                [sys.executable, "-m", "airflow", *service.args], env=env, stdout=out,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            )
        (run_dir() / f"{service.name}.pid").write_text(str(proc.pid))
        started[service.name] = proc
        progress(f"{service.name} started (pid {proc.pid}, log {logs / (service.name + '.log')})")
    base = env["AIRFLOW__API__BASE_URL"]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _healthy(f"{base}/api/v2/monitor/health"):
            password = json.loads(passwords_file().read_text(encoding="utf-8"))[ADMIN_USER]
            progress(f"UI: {base}  (user {ADMIN_USER}, password {password})")
            return EXIT_OK
        # Our own children by their exit status: reading /proc/<pid>/cmdline races with the
        # api-server retitling itself (setproctitle) while it starts.
        dead = [s.name for s in services()
                if (started[s.name].poll() is not None if s.name in started else not _running_pid(s))]
        if dead:
            progress("stopped during start-up: "
                     + ", ".join(name + _why_stopped(logs / f"{name}.log", log_start.get(name, 0)) for name in dead)
                     + f"; see {logs}")
            return EXIT_FAILED
        time.sleep(2)
    progress(f"not healthy after {timeout:.0f} s; see {logs}")
    return EXIT_FAILED


def down(timeout: float = 30) -> int:
    _adopt_running_services()
    stopping = []
    for service in reversed(services()):
        pid = _running_pid(service)
        if pid:
            # Each service leads its own session (start_new_session), so its workers stop with it.
            os.killpg(pid, signal.SIGTERM)
            stopping.append((service, pid))
        (run_dir() / f"{service.name}.pid").unlink(missing_ok=True)
    api_port_file().unlink(missing_ok=True)
    deadline = time.monotonic() + timeout
    for service, pid in stopping:
        while time.monotonic() < deadline and ports.running(pid):
            time.sleep(0.5)
        if ports.running(pid):
            os.killpg(pid, signal.SIGKILL)
            # a killed process is gone only once the kernel has torn it down: say "stopped" then
            killed_by = time.monotonic() + 10
            while time.monotonic() < killed_by and ports.running(pid):
                time.sleep(0.1)
        progress(f"{service.name} stopped")
    if not stopping:
        progress("nothing running")
    return EXIT_OK


def print_env() -> int:
    for key, value in airflow_env().items():
        print(f"export {key}={shlex.quote(value)}")
    return EXIT_OK


def main(args) -> int:
    action = args.action
    if action == "env":
        return print_env()
    if action == "demo-run":
        return demo_run(args.landing)
    if action == "up":
        return up()
    if action == "down":
        return down()
    print(f"ewi airflow: unknown action {action}", file=sys.stderr)
    return EXIT_USAGE
