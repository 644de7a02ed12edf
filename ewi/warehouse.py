"""The PostgreSQL warehouse: an external server when EWI_WAREHOUSE_DSN is set, otherwise an
embedded server (pgserver) whose data lives under $EWI_HOME/warehouse.

The embedded server listens on a unix socket only, so nothing outside this machine can reach the
pseudonymous tables it holds.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from psycopg import conninfo

from ewi import config
from ewi.errors import DiskFull
from ewi.settings import get_settings

log = logging.getLogger(__name__)


def _pgdata() -> Path:
    return config.ewi_home() / "warehouse"


def _quiet_platformdirs() -> None:
    # pgserver keeps its lock file under XDG_RUNTIME_DIR and warns loudly when it is unset.
    if not os.environ.get("XDG_RUNTIME_DIR"):
        runtime = Path("/tmp") / f"ewi-runtime-{os.getuid()}"
        runtime.mkdir(mode=0o700, exist_ok=True)
        os.environ["XDG_RUNTIME_DIR"] = str(runtime)


def _embedded_server():
    _quiet_platformdirs()
    import pgserver

    from ewi import embedded_server

    # pgserver would take a killed postmaster's zombie for a running server, and gives a start
    # (crash recovery included) 10 s: an existing data directory is started here instead.
    embedded_server.ensure_running(_pgdata())
    return pgserver.get_server(_pgdata(), cleanup_mode=None)


def _ensure_database(admin_dsn: str, name: str) -> None:
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        exists = conn.execute("select 1 from pg_database where datname = %s", (name,)).fetchone()
        if not exists:
            conn.execute(psycopg.sql.SQL("create database {}").format(psycopg.sql.Identifier(name)))


def audit_chain_key_file() -> Path:
    return config.ewi_home() / "audit" / "chain.key"


def audit_chain_key() -> str:
    """The secret that keys the audit trail's hash chain (migration 0019): the setting, else a random
    key made once per EWI_HOME. It never enters the database, so a change made there without it
    (plain SQL from another client) leaves a link that does not verify."""
    from ewi.settings import get_settings

    configured = get_settings().audit_chain_key
    if configured is not None and configured.get_secret_value():
        return configured.get_secret_value()
    path = audit_chain_key_file()
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fresh = path.with_name(f".chain.key.{os.getpid()}")
        fd = os.open(fresh, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32) + "\n")
        try:
            os.link(fresh, path)  # the first process to get here makes the key; the others read it
        except FileExistsError:
            pass
        finally:
            fresh.unlink()
    return path.read_text(encoding="utf-8").strip()


_CHAIN_OPTION = re.compile(r"\s*-c\s*ewi\.chain_key=\S*")


def arm_audit_chain_key() -> None:
    """Give every session this process opens (psycopg, dbt, pg_dump: libpq reads PGOPTIONS) the chain
    key as the setting ewi.chain_key, which the audit tables' trigger reads. A process-wide
    variable rather than a step in each connect: the pipeline, the DAGs and the dashboard connect in
    many places, and a writer that forgot the step would break the chain."""
    option = f"-c ewi.chain_key={audit_chain_key()}"
    kept = _CHAIN_OPTION.sub("", os.environ.get("PGOPTIONS", "")).strip()
    os.environ["PGOPTIONS"] = f"{kept} {option}".strip()


def dsn(database: str | None = None) -> str:
    """The libpq DSN of the warehouse database, starting the embedded server if needed.

    EWI_WAREHOUSE_DB (or `database`) picks another database on the same server; it is created
    when missing, which is how tests get a clean warehouse each. Sessions this process opens carry
    the audit chain's key (`arm_audit_chain_key`)."""
    arm_audit_chain_key()
    name = database or config.chosen_database()
    external = config.configured_dsn()
    if external:
        if not name:
            return external
        _ensure_database(conninfo.make_conninfo(external, dbname="postgres"), name)
        return conninfo.make_conninfo(external, dbname=name)
    server = _embedded_server()
    name = name or config.warehouse_database()
    _ensure_database(server.get_uri("postgres"), name)
    return server.get_uri(name)


def pg_bin_dir() -> Path:
    """pg_dump and pg_restore matching the server: the setting, else the embedded server's own
    (the machine's /usr/bin/pg_dump may be another major version, which pg_dump refuses)."""
    from ewi.settings import get_settings

    configured = get_settings().pg_bin_dir
    if configured:
        return Path(configured)
    import pgserver

    return Path(pgserver.__file__).resolve().parent / "pginstall" / "bin"


def stop() -> bool:
    """Stop the embedded server if it runs. Returns True when a server was stopped."""
    if config.configured_dsn():
        return False
    pgdata = _pgdata()
    _quiet_platformdirs()
    from ewi import embedded_server

    running = embedded_server.read_postmaster(pgdata)
    if running is None or not running.alive:
        return False  # a killed server leaves its postmaster.pid: the next start recovers it
    from pgserver._commands import pg_ctl

    user = "pgserver" if os.geteuid() == 0 else None
    pg_ctl(["-w", "-t", "120", "-m", "fast", "stop"], pgdata=pgdata, user=user)
    return True


#: Disk a load may take at its peak, per byte of the delivered file: the pending table and its
#: write-ahead log, then the copy into raw (a school-absence week becomes its partition instead).
#: Measured 2.4 for a 1M-row week that publishes (`python -m ewi.bench disk`, docs/benchmarks.md,
#: "Disk a load needs").
LOAD_DISK_FACTOR = 3.0
#: The same when a value does not parse and the file is loaded again as text: the typed attempt's
#: log, the text table, one rewrite per integer column that parses, and the copy into quarantine,
#: all in one transaction. Measured 14.9 for the same week with one bad value.
TEXT_RELOAD_DISK_FACTOR = 16.0
# Kept free beyond any load (EWI_DISK_RESERVE_MB): for the audit records, the checkpoint and the
# files beside them.


def ensure_room_for_load(file_bytes: int, factor: float = LOAD_DISK_FACTOR) -> None:
    """Refuse a load, before anything is written, when the embedded warehouse's disk cannot hold it:
    PostgreSQL stops (PANIC) when its write-ahead log cannot be written, and a load that fails for
    lack of space leaves its table's files behind. An external server's disk is not visible from
    here: its full disk is reported as the server refuses the write (SQLSTATE 53100)."""
    if config.configured_dsn():
        return
    pgdata = _pgdata()
    reserve = int(get_settings().disk_reserve_mb * 1e6)
    needed = int(file_bytes * factor) + reserve
    free = shutil.disk_usage(pgdata if pgdata.exists() else config.ewi_home()).free
    if needed > free:
        raise DiskFull(
            f"not enough disk space for this load: it needs about {needed / 1e6:.0f} MB "
            f"({factor:g} x the file's {file_bytes / 1e6:.1f} MB, plus {reserve / 1e6:.0f} MB "
            f"kept free) and {free / 1e6:.0f} MB are free under {pgdata}; nothing was published: free "
            f"space and run the command again")


def connection_parts(dsn_: str | None = None) -> dict[str, str]:
    """host/port/user/password/dbname of a DSN, for tools that do not take a DSN (dbt)."""
    parts = conninfo.conninfo_to_dict(dsn_ or dsn())
    return {
        "host": str(parts.get("host") or "localhost"),
        "port": str(parts.get("port") or 5432),
        "user": str(parts.get("user") or os.environ.get("USER", "postgres")),
        "password": str(parts.get("password") or ""),
        "dbname": str(parts.get("dbname") or config.warehouse_database()),
    }


def dbt_env(dsn_: str | None = None) -> dict[str, str]:
    """The variables dbt_project/profiles.yml reads (EWI_PG_HOST, ...), for dbt and sqlfluff's dbt templater."""
    return {f"EWI_PG_{key.upper()}": value for key, value in connection_parts(dsn_).items()}


def sqlalchemy_url(dsn_: str | None = None) -> str:
    """A SQLAlchemy URL for the same database (GX cannot take a socket-only libpq DSN)."""
    from sqlalchemy.engine import URL

    p = connection_parts(dsn_)
    query = {}
    host = p["host"]
    if host.startswith("/"):
        query["host"] = host
        host = None
    return URL.create(
        "postgresql+psycopg2",
        username=p["user"],
        password=p["password"] or None,
        host=host,
        port=int(p["port"]) if host else None,
        database=p["dbname"],
        query=query,
    ).render_as_string(hide_password=False)


@contextmanager
def connect(autocommit: bool = False) -> Iterator[psycopg.Connection]:
    with psycopg.connect(dsn(), autocommit=autocommit) as conn:
        yield conn
