"""The configuration of a local Airflow for EWI: its home, secrets, metadata database, services
and the environment every Airflow process of an EWI_HOME runs with (`ewi airflow env` prints it).

Airflow's home is $EWI_HOME/airflow; its metadata database is `airflow` on the warehouse server
(the embedded one unless EWI_WAREHOUSE_DSN is set); secrets (fernet key, API secret, JWT secret,
the UI admin password) are generated once and kept there with mode 0600. Everything else is
passed as AIRFLOW__* environment variables. The commands that use it are in
ewi.orchestration.local_airflow.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from ewi import config
from ewi.settings import environment as configured_environment
from ewi.settings import get_settings

ADMIN_USER = "admin"


@dataclass(frozen=True)
class Service:
    name: str
    args: tuple[str, ...]


def configured_port() -> int:
    return get_settings().airflow_port


def api_port_file() -> Path:
    return run_dir() / "api-server.port"


def api_port() -> int:
    """The API server's port: the one `up` took for it (the configured one unless another process
    held that), else the configured one."""
    taken = api_port_file()
    if taken.exists():
        return int(taken.read_text(encoding="utf-8").strip())
    return configured_port()


#: The long-running components `up` starts, in start order. A watcher for the landing folder
#: (AssetWatcher) runs inside the triggerer, so event-driven ingestion needs no extra service.
def services() -> tuple[Service, ...]:
    base = (
        Service("scheduler", ("scheduler",)),
        Service("dag-processor", ("dag-processor",)),
        Service("triggerer", ("triggerer",)),
        # Localhost only: the UI shows pseudonymous batch metadata and logs.
        Service("api-server", ("api-server", "--host", "127.0.0.1", "--port", str(api_port()))),
    )
    if executor() == "CeleryExecutor":
        # Two cores: two task processes at a time.
        worker = Service("celery-worker", ("celery", "worker", "--concurrency", "2", "--queues", _celery_queue()))
        base = (*base, worker)
    return base


def executor() -> str:
    return get_settings().airflow_executor


def _celery_queue() -> str:
    return get_settings().airflow_celery_queue


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

    configured = get_settings().airflow_db_dsn
    return configured.get_secret_value() if configured is not None else warehouse.dsn("airflow")


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


def passwords_file() -> Path:
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
    port = api_port()
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
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords_file()),
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
            "AIRFLOW__CELERY__BROKER_URL": get_settings().airflow_celery_broker.get_secret_value(),
            "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + sync_url.replace("+psycopg2://", "://", 1),
            "AIRFLOW__OPERATORS__DEFAULT_QUEUE": _celery_queue(),
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": "2",
        })
    if os.environ.get("XDG_RUNTIME_DIR"):
        env["XDG_RUNTIME_DIR"] = os.environ["XDG_RUNTIME_DIR"]
    # The warehouse, and the settings the DAGs, the watcher and the callbacks read in Airflow's
    # processes, as this process was given them (ewi.settings is the one reader of EWI_*).
    for name, value in configured_environment().items():
        if name in ("EWI_LANDING_DIR", "EWI_WAREHOUSE_DSN", "EWI_WAREHOUSE_DB", "EWI_LINEAGE_NAMESPACE") or \
                name.startswith(("EWI_LANDING_", "EWI_TRANSFORM_", "EWI_NOTIFY", "EWI_NOTIFIER", "EWI_SIGNAL_",
                                 "EWI_ENGINEER_", "EWI_DASHBOARD_URL")):
            env[name] = value
    # The connections given in the environment (the SMTP notifier's mail server among them).
    for name, value in os.environ.items():
        if name.startswith("AIRFLOW_CONN_"):
            env[name] = value
    return env


def process_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update(airflow_env())
    return env


def run_airflow(args: list[str], env: dict[str, str], log_file: Path | None = None,
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
    result = run_airflow(["db", "migrate"], env, log_file)
    if result.returncode != 0:
        raise RuntimeError(f"airflow db migrate failed; see {log_file}")
    stamp.write_text(want, encoding="utf-8")
    progress(f"metadata database migrated in {time.monotonic() - started:.0f} s")
    return True


def run_dir() -> Path:
    path = airflow_home() / "run"
    path.mkdir(exist_ok=True)
    return path
