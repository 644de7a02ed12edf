"""A local Airflow for EWI: `ewi airflow {up,down,demo-run,env} [--landing DIR]`.

Airflow's home is $EWI_HOME/airflow; its metadata database is `airflow` on the warehouse server
(the embedded one unless EWI_WAREHOUSE_DSN is set); secrets (fernet key, API secret, JWT secret,
the UI admin password) are generated once and kept there with mode 0600. Everything else is
passed as AIRFLOW__* environment variables, so `ewi airflow env` shows the whole configuration.

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

import base64
import json
import os
import secrets
import shlex
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ewi import config, ports

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_GATE = 3

ADMIN_USER = "admin"
DAG_IDS = ("ewi_ingest", "ewi_transform", "ewi_dashboard_refresh")


@dataclass(frozen=True)
class Service:
    name: str
    args: tuple[str, ...]


def _configured_port() -> int:
    return int(os.environ.get("EWI_AIRFLOW_PORT", "8080"))


def _port_file() -> Path:
    return _run_dir() / "api-server.port"


def _port() -> int:
    """The API server's port: the one `up` took for it (the configured one unless another process
    held that), else the configured one."""
    taken = _port_file()
    if taken.exists():
        return int(taken.read_text(encoding="utf-8").strip())
    return _configured_port()


#: The long-running components `up` starts, in start order. A watcher for the landing folder
#: (AssetWatcher) runs inside the triggerer, so event-driven ingestion needs no extra service.
def services() -> tuple[Service, ...]:
    base = (
        Service("scheduler", ("scheduler",)),
        Service("dag-processor", ("dag-processor",)),
        Service("triggerer", ("triggerer",)),
        # Localhost only: the UI shows pseudonymous batch metadata and logs.
        Service("api-server", ("api-server", "--host", "127.0.0.1", "--port", str(_port()))),
    )
    if executor() == "CeleryExecutor":
        # Two cores: two task processes at a time.
        worker = Service("celery-worker", ("celery", "worker", "--concurrency", "2", "--queues", _celery_queue()))
        base = (*base, worker)
    return base


def executor() -> str:
    return os.environ.get("EWI_AIRFLOW_EXECUTOR") or "LocalExecutor"


def _celery_queue() -> str:
    return os.environ.get("EWI_AIRFLOW_CELERY_QUEUE") or "ewi"


def lineage_file() -> Path:
    """Where the OpenLineage events go unless OPENLINEAGE_URL is set: one JSON event per line."""
    return config.ewi_home() / "lineage" / "events.jsonl"


def lineage_transport() -> dict:
    url = os.environ.get("OPENLINEAGE_URL")
    if url:
        return {"type": "http", "url": url, "endpoint": os.environ.get("OPENLINEAGE_ENDPOINT", "api/v1/lineage")}
    lineage_file().parent.mkdir(parents=True, exist_ok=True)
    return {"type": "file", "log_file_path": str(lineage_file()), "append": True}


def metadata_dsn() -> str:
    """libpq DSN of Airflow's metadata database."""
    from ewi import warehouse

    return os.environ.get("EWI_AIRFLOW_DB_DSN") or warehouse.dsn("airflow")


def progress(msg: str) -> None:
    print(f"==> [airflow] {msg}", flush=True)


# --- configuration ----------------------------------------------------------------------------


def airflow_home() -> Path:
    home = config.ewi_home() / "airflow"
    home.mkdir(parents=True, exist_ok=True)
    return home


def _secrets() -> dict[str, str]:
    path = airflow_home() / "ewi-secrets.json"
    if path.exists():
        return json.loads(path.read_text(encoding="utf-8"))
    values = {
        "fernet_key": base64.urlsafe_b64encode(os.urandom(32)).decode(),
        "secret_key": secrets.token_urlsafe(32),
        "jwt_secret": secrets.token_urlsafe(32),
    }
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(values, fh)
    return values


def _passwords_file() -> Path:
    """The simple auth manager's password file, written by us so the admin password is known."""
    path = airflow_home() / "simple_auth_manager_passwords.json"
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump({ADMIN_USER: secrets.token_urlsafe(12)}, fh)
    return path


def airflow_env() -> dict[str, str]:
    """The AIRFLOW__* (and EWI_*) variables every Airflow process of this EWI_HOME runs with."""
    from ewi import warehouse

    home = airflow_home()
    keys = _secrets()
    port = _port()
    sync_url = warehouse.sqlalchemy_url(metadata_dsn())
    env = {
        "EWI_HOME": str(config.ewi_home()),
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(config.DAGS_DIR),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": executor(),
        # Two cores: more worker processes than this only queue up on the CPU.
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__CORE__FERNET_KEY": keys["fernet_key"],
        "AIRFLOW__CORE__AUTH_MANAGER": (
            "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
        ),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN_USER}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(_passwords_file()),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": sync_url,
        # Airflow would derive asyncpg, which is not installed; psycopg 3 does async as well.
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC": sync_url.replace("+psycopg2://", "+psycopg://", 1),
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
        "AIRFLOW__API__SECRET_KEY": keys["secret_key"],
        "AIRFLOW__API_AUTH__JWT_SECRET": keys["jwt_secret"],
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
        # Lineage of every task (inlets/outlets declared in the DAGs) as OpenLineage events.
        "AIRFLOW__OPENLINEAGE__DISABLED": "False",
        "AIRFLOW__OPENLINEAGE__NAMESPACE": os.environ.get("OPENLINEAGE_NAMESPACE") or "ewi",
        "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(lineage_transport()),
        # The source code of our tasks is in the repository; events need not carry it.
        "AIRFLOW__OPENLINEAGE__DISABLE_SOURCE_CODE": "True",
    }
    if executor() == "CeleryExecutor":
        env.update({
            "AIRFLOW__CELERY__BROKER_URL": os.environ.get("EWI_AIRFLOW_CELERY_BROKER") or "redis://127.0.0.1:6379/0",
            "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + sync_url.replace("+psycopg2://", "://", 1),
            "AIRFLOW__OPERATORS__DEFAULT_QUEUE": _celery_queue(),
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": "2",
        })
    for name in ("EWI_LANDING_DIR", "EWI_WAREHOUSE_DSN", "EWI_WAREHOUSE_DB", "XDG_RUNTIME_DIR",
                 "EWI_LINEAGE_NAMESPACE"):
        if os.environ.get(name):
            env[name] = os.environ[name]
    # Settings the DAGs, the watcher and the callbacks read in Airflow's processes.
    for name, value in os.environ.items():
        if name.startswith(("EWI_LANDING_", "EWI_TRANSFORM_", "EWI_NOTIFY", "EWI_NOTIFIER")):
            env[name] = value
    return env


def _process_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update(airflow_env())
    return env


def _airflow(args: list[str], env: dict[str, str], log_file: Path | None = None,
             timeout: float | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "airflow", *args]
    if log_file is None:
        return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "w", encoding="utf-8") as fh:
        return subprocess.run(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT, text=True,
                              timeout=timeout)


# --- metadata database ------------------------------------------------------------------------


def _airflow_version() -> str:
    from importlib.metadata import version

    return version("apache-airflow-core")


def _db_has_schema() -> bool:
    import psycopg

    with psycopg.connect(metadata_dsn()) as conn:
        return conn.execute("select to_regclass('public.alembic_version') is not null").fetchone()[0]


def ensure_db_migrated(env: dict[str, str]) -> bool:
    """`airflow db migrate` when the metadata database is new or was migrated by another Airflow
    version. Returns True when a migration ran."""
    stamp = airflow_home() / "db-migrated"
    want = f"{_airflow_version()} {env['AIRFLOW__DATABASE__SQL_ALCHEMY_CONN']}"
    if stamp.exists() and stamp.read_text(encoding="utf-8") == want and _db_has_schema():
        return False
    started = time.monotonic()
    log_file = airflow_home() / "logs" / "db-migrate.log"
    result = _airflow(["db", "migrate"], env, log_file)
    if result.returncode != 0:
        raise RuntimeError(f"airflow db migrate failed; see {log_file}")
    stamp.write_text(want, encoding="utf-8")
    progress(f"metadata database migrated in {time.monotonic() - started:.0f} s")
    return True


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
    result = _airflow(args, env, log_file)
    ok = result.returncode == 0
    progress(f"{dag_id}: {'success' if ok else 'FAILED'} in {time.monotonic() - started:.0f} s"
             + ("" if ok else f" (log: {log_file})"))
    return ok


def demo_run(landing: str | None) -> int:
    from ewi import orchestration, warehouse_init

    folder = Path(landing).resolve() if landing else config.landing_dir()
    if not folder.is_dir():
        print(f"ewi airflow demo-run: no such folder: {folder}", file=sys.stderr)
        return EXIT_USAGE
    files = orchestration.delivered_files(None, str(folder))
    _adopt_running_services()
    if any(_running_pid(s) for s in services()):
        # The scheduler would also act on the asset events demo-run emits, and run the DAGs twice.
        progress("the local Airflow is up; stop it first (ewi airflow down)")
        return EXIT_USAGE
    started = time.monotonic()
    warehouse_init.init_warehouse()
    env = _process_env()
    ensure_db_migrated(env)
    t = time.monotonic()
    result = _airflow(["dags", "reserialize"], env, airflow_home() / "logs" / "demo-run" / "reserialize.log")
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
    if not any(_asset_events_since(uri, ingest_started) for uri in orchestration.SOURCE_ASSET_URIS.values()):
        progress("ingest published no batch; transform not run")
        return done

    progress("transform: dbt build")
    transform_started = time.time()
    if not _dags_test("ewi_transform", env):
        return EXIT_GATE
    if not _asset_events_since(orchestration.PUBLISHED_ASSET_URI, transform_started):
        progress("transform published nothing new; dashboard not refreshed")
        return done
    progress("dashboard: refresh")
    if not _dags_test("ewi_dashboard_refresh", env):
        return EXIT_FAILED
    progress(f"done in {time.monotonic() - started:.0f} s")
    return done


# --- up / down --------------------------------------------------------------------------------


def _run_dir() -> Path:
    path = airflow_home() / "run"
    path.mkdir(exist_ok=True)
    return path


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
    pid_file = _run_dir() / f"{service.name}.pid"
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
                (_run_dir() / f"{service.name}.pid").write_text(str(proc.pid))
                if service.name == "api-server":
                    _port_file().write_text(str(_listening_port(proc.pid) or _configured_port()))
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
    wanted = _configured_port()
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
        previous, port = _port(), _choose_port()
        running = [s.name for s in services() if _running_pid(s)]
        if running and port != previous:
            # they send their task runs to the API server's port: they must start again with the new one
            progress(f"{', '.join(running)} run with the API server on port {previous}; restarting them")
            down()
        _port_file().write_text(str(port))
    env = _process_env()
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
        (_run_dir() / f"{service.name}.pid").write_text(str(proc.pid))
        started[service.name] = proc
        progress(f"{service.name} started (pid {proc.pid}, log {logs / (service.name + '.log')})")
    base = env["AIRFLOW__API__BASE_URL"]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _healthy(f"{base}/api/v2/monitor/health"):
            password = json.loads(_passwords_file().read_text(encoding="utf-8"))[ADMIN_USER]
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
        (_run_dir() / f"{service.name}.pid").unlink(missing_ok=True)
    _port_file().unlink(missing_ok=True)
    deadline = time.monotonic() + timeout
    for service, pid in stopping:
        while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
            time.sleep(0.5)
        if Path(f"/proc/{pid}").exists():
            os.killpg(pid, signal.SIGKILL)
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
