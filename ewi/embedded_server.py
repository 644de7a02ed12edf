"""Starting the embedded warehouse server, and bringing it back by itself after an unclean stop.

pgserver decides that a server runs when the pid in postmaster.pid exists, so a killed postmaster
that is still a zombie counts as running and the command fails with "Connection refused"; and it
starts a server with a fixed 10 s limit, which crash recovery of a large warehouse can overrun. So
EWI starts an existing data directory itself, before it asks pgserver for the server:

  1. the old postmaster must be gone: its pid reaped, and no process of it (a backend still
     finishing a query) attached to its shared memory, since PostgreSQL refuses to start until then;
  2. the server is started without pg_ctl's wait, and EWI waits for postmaster.pid to say `ready`,
     saying what it does, up to a limit that grows with the data directory's size; a recovery that
     outlasts the limit keeps running, and the next command waits for it again;
  3. after a crash recovery, relation files that no table owns (those of the transactions the crash
     interrupted: PostgreSQL never removes them) are removed.

A new data directory (no PG_VERSION) is left to pgserver, which runs initdb and the first start.
"""

from __future__ import annotations

import fcntl
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psutil
import psycopg

from ewi.errors import DiskFull, WarehouseUnavailable
from ewi.settings import get_settings

log = logging.getLogger(__name__)

#: How long to wait for the killed postmaster's pid to be reaped and its processes to exit. They
#: exit as soon as they notice the postmaster is gone; a backend in the middle of a long statement
#: notices only when the statement ends.
OLD_SERVER_GRACE_S = 120.0
#: How long a dead postmaster may stay a zombie before its lock file is judged stale.
ZOMBIE_GRACE_S = 10.0
#: A start without recovery takes about a second; the limit for crash recovery grows with the data
#: directory: it replays the write-ahead log since the last checkpoint (at most max_wal_size), syncs
#: every file of the data directory first, and writes a checkpoint at its end. Measured in
#: docs/benchmarks.md ("Warehouse recovery after kill -9"); the rate here is far below it.
START_BASE_S = 60.0
RECOVERY_BYTES_PER_S = 20e6
#: How often the wait says that recovery is still running.
PROGRESS_EVERY_S = 10.0


@dataclass
class Postmaster:
    """What postmaster.pid says, and whether its process is really a live postmaster."""

    pid: int
    status: str
    shmem_id: int | None
    socket_dir: str
    alive: bool


def read_postmaster(pgdata: Path) -> Postmaster | None:
    try:
        lines = (pgdata / "postmaster.pid").read_text().splitlines()
    except FileNotFoundError:
        return None
    if not lines or not lines[0].strip().isdigit():
        return None  # being written by a postmaster that is starting
    pid = int(lines[0])
    shmem = lines[6].split() if len(lines) > 6 else []
    status = lines[7].strip() if len(lines) > 7 else "starting"
    return Postmaster(pid=pid, status=status, shmem_id=int(shmem[-1]) if len(shmem) == 2 else None,
                      socket_dir=lines[4].strip() if len(lines) > 4 else "", alive=_is_live_postmaster(pid, pgdata))


def _is_live_postmaster(pid: int, pgdata: Path) -> bool:
    """A zombie is dead, and so is a pid that a reboot gave to another program."""
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return proc.name() == "postgres" and _data_directory_of(proc.cmdline()) == pgdata.resolve()
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return False
    except psutil.AccessDenied:
        return True  # someone else's process: assume it is what the file says


def _data_directory_of(cmdline: list[str]) -> Path | None:
    """The -D argument of a postgres command line (pg_ctl starts the postmaster with it)."""
    for flag, value in zip(cmdline, cmdline[1:], strict=False):
        if flag == "-D":
            return Path(value).resolve()
    return None


def _pid_exists(pid: int) -> bool:
    """True while the pid exists at all, zombie included: PostgreSQL refuses to start while the
    pid in postmaster.pid answers kill(pid, 0)."""
    return psutil.pid_exists(pid)


def _shared_memory_attached(shmem_id: int | None) -> int:
    """How many processes are still attached to the old server's shared memory segment (Linux
    /proc/sysvipc/shm; 0 where it cannot be read: PostgreSQL then checks it itself)."""
    if shmem_id is None:
        return 0
    try:
        with open("/proc/sysvipc/shm") as fh:
            header = fh.readline().split()
            id_col, nattch_col = header.index("shmid"), header.index("nattch")
            for line in fh:
                fields = line.split()
                if int(fields[id_col]) == shmem_id:
                    return int(fields[nattch_col])
    except (OSError, ValueError, IndexError):
        return 0
    return 0


@contextmanager
def _start_lock(pgdata: Path) -> Iterator[None]:
    """One process at a time decides whether to start this data directory's server."""
    path = pgdata.parent / f".{pgdata.name}.start.lock"
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def data_directory_bytes(pgdata: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(pgdata):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass  # removed while we walked
    return total


def start_timeout(pgdata: Path) -> float:
    """How long a start may take before EWI stops waiting: EWI_WAREHOUSE_START_TIMEOUT seconds if
    set, otherwise a base plus the time to read the whole data directory at a slow disk's rate."""
    configured = get_settings().warehouse_start_timeout
    if configured is not None:
        return configured
    return START_BASE_S + data_directory_bytes(pgdata) / RECOVERY_BYTES_PER_S


def ensure_running(pgdata: Path) -> bool:
    """Make sure the server of an existing data directory runs and accepts connections. Returns True
    when this call brought it back after an unclean stop (crash recovery ran)."""
    if not (pgdata / "PG_VERSION").exists():
        return False
    current = read_postmaster(pgdata)
    if current and current.alive and current.status == "ready":
        return False
    recovered = False
    with _start_lock(pgdata):
        current = read_postmaster(pgdata)
        if current and current.alive and current.status == "ready":
            return False
        if current is None or not current.alive:
            if current is not None:
                log.warning("the warehouse server (pid %s) stopped without shutting down; waiting for "
                            "its processes to exit before recovery", current.pid)
                _wait_for_old_server(pgdata, current)
                recovered = True
            elif not _shut_down_cleanly(pgdata):
                # A server whose own recovery failed (its disk full) exits and removes its pid file.
                log.warning("the warehouse server did not shut down cleanly last time")
                recovered = True
            timeout = start_timeout(pgdata)
            log_offset = _log_size(pgdata)
            _launch(pgdata)
            if recovered:
                log.warning("the warehouse server is starting crash recovery (waiting up to %.0f s)", timeout)
        else:
            # Another command started it and it is still recovering: wait for it like that command.
            timeout, log_offset = start_timeout(pgdata), _log_size(pgdata)
            log.warning("the warehouse server (pid %s) is starting or recovering; waiting up to %.0f s",
                        current.pid, timeout)
    started = time.monotonic()
    ready_at = _wait_until_ready(pgdata, timeout, log_offset)
    if recovered:
        log.warning("the warehouse server recovered in %.1f s", time.monotonic() - started)
        from ewi import orphans

        try:
            orphans.remove_after_recovery(pgdata, ready_at)
        except (OSError, psycopg.Error) as exc:  # a clean-up: the server is up, the command goes on
            log.warning("could not look for relation files left by the crash (%s)", type(exc).__name__)
    return recovered


def _wait_for_old_server(pgdata: Path, old: Postmaster) -> None:
    deadline = time.monotonic() + OLD_SERVER_GRACE_S
    stale_since = None
    while time.monotonic() < deadline:
        attached = _shared_memory_attached(old.shmem_id)
        if not attached and not _pid_exists(old.pid):
            return
        if attached:
            stale_since = None
        else:
            # Only the old pid is left: a zombie that init collects within a second or two, or (after
            # a reboot) another program's pid. Either blocks PostgreSQL's start; a zombie nobody
            # collects (a container without a reaping init) would block it for ever.
            now = time.monotonic()
            stale_since = stale_since or now
            zombie = _is_zombie(old.pid)
            if not zombie or now - stale_since > ZOMBIE_GRACE_S:
                log.warning("the old warehouse server's pid %s is %s; its lock file postmaster.pid is "
                            "stale and is removed", old.pid,
                            "a zombie nobody collects" if zombie else "now another program's")
                (pgdata / "postmaster.pid").unlink(missing_ok=True)
                return
        time.sleep(0.05)
    raise WarehouseUnavailable(
        f"the warehouse server stopped without shutting down, and its processes are still running "
        f"after {OLD_SERVER_GRACE_S:.0f} s (a long statement that has not noticed); run the command "
        f"again when they have exited")


def _is_zombie(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.ZombieProcess:
        return True
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def _shut_down_cleanly(pgdata: Path) -> bool:
    """What the control file says: "shut down" after a clean stop; "in production" or "in crash
    recovery" after a crash, or after a recovery that failed."""
    from pgserver._commands import pg_controldata

    try:
        out = pg_controldata([], pgdata=pgdata, timeout=60)
    except Exception:  # noqa: BLE001 - unreadable: let the start and PostgreSQL decide
        return True
    state = next((line.split(":", 1)[1].strip() for line in out.splitlines()
                  if line.startswith("Database cluster state:")), "")
    return state.startswith("shut down")


def _system_user() -> str | None:
    return "pgserver" if os.geteuid() == 0 else None  # as pgserver runs the server when root


def _launch(pgdata: Path) -> None:
    """pg_ctl start with pgserver's own options (socket only, the log in the data directory), but
    without pg_ctl's wait: EWI waits itself, with a limit that fits the data."""
    import subprocess

    from pgserver._commands import pg_ctl
    from pgserver.postgres_server import PostgresServer
    from pgserver.utils import find_suitable_socket_dir

    socket_dir = find_suitable_socket_dir(pgdata, PostgresServer.runtime_path)
    try:
        pg_ctl(["-W", "-o", '-h ""', "-o", f"-k {socket_dir}", "-l", str(pgdata / "log"), "start"],
               pgdata=pgdata, user=_system_user(), timeout=60)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        raise WarehouseUnavailable(
            f"the warehouse server could not be started (pg_ctl: {type(exc).__name__}); see the "
            f"server log {pgdata / 'log'}") from None


def _log_size(pgdata: Path) -> int:
    try:
        return (pgdata / "log").stat().st_size
    except OSError:
        return 0


def _server_complaints(pgdata: Path, offset: int) -> list[str]:
    """The FATAL and PANIC lines the server logged since `offset`, without their DETAIL or
    STATEMENT lines (those may quote data)."""
    try:
        with open(pgdata / "log", "rb") as fh:
            fh.seek(offset)
            text = fh.read().decode("utf-8", "replace")
    except OSError:
        return []
    return [line.split("] ", 1)[-1] for line in text.splitlines() if " FATAL: " in line or " PANIC: " in line]


def _wait_until_ready(pgdata: Path, timeout: float, log_offset: int) -> float:
    """Wait for postmaster.pid to say `ready`; returns when it became ready (the file's mtime: the
    server rewrites it then)."""
    started = time.monotonic()
    next_progress = started + PROGRESS_EVERY_S
    seen_alive = False
    while True:
        pm = read_postmaster(pgdata)
        if pm and pm.alive:
            seen_alive = True
            if pm.status == "ready":
                return (pgdata / "postmaster.pid").stat().st_mtime
        elif seen_alive or time.monotonic() - started > 15:  # pg_ctl -W returns before the pid file
            complaints = _server_complaints(pgdata, log_offset)
            if any("No space left on device" in c for c in complaints):
                raise DiskFull(f"the warehouse's disk is full: its server cannot start (it needs room for "
                               f"its write-ahead log); free space under {pgdata} and run the command again")
            raise WarehouseUnavailable(
                "the warehouse server stopped while starting: " + ("; ".join(complaints[-3:]) or "no reason logged")
                + f" (server log {pgdata / 'log'})")
        now = time.monotonic()
        if now - started > timeout:
            raise WarehouseUnavailable(
                f"the warehouse server is still starting (crash recovery) after {timeout:.0f} s; it goes "
                f"on in the background: run the command again later (EWI_WAREHOUSE_START_TIMEOUT "
                f"sets the limit)")
        if now >= next_progress:
            log.warning("the warehouse server is still recovering: %.0f s of at most %.0f s",
                        now - started, timeout)
            next_progress = now + PROGRESS_EVERY_S
        time.sleep(0.05)
