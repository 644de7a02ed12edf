"""TCP ports for the local services (`ewi airflow up`, `ewi dashboard`): whether a port is free,
which process holds it, and a free one to take instead.

A second start must not collide with a first one that is still running (an Airflow or a
dashboard from an earlier `make demo`): the caller either reuses its own running instance or takes
a free port, and says which process holds the wanted one. psutil (an Airflow dependency) names the
holder; a bind decides whether a port is free, as the server about to listen would find.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path

import psutil

#: How far above the wanted port to look for a free one before letting the system pick any.
SEARCH = 50


@dataclass(frozen=True)
class Holder:
    """The process listening on a port, as far as this user may see it."""

    pid: int | None
    name: str | None
    airflow_home: str | None = None
    #: the EWI_HOME the process runs with (EWI's default when it has none), for an EWI process
    ewi_home: str | None = None
    #: its command line, to recognise it; never shown (a command line may carry anything)
    command: tuple[str, ...] = ()

    def describe(self) -> str:
        if self.pid is None:
            return "a process of another user"
        what = f"pid {self.pid}" + (f" ({self.name})" if self.name else "")
        if self.airflow_home:
            what += f", the Airflow of {self.airflow_home}"
        return what


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def running(pid: int) -> bool:
    """Whether a process still runs: a zombie has ended, though /proc lists it until its parent
    collects it (for a daemon's service that parent is init, which here may collect it late)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def is_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a server could listen on host:port now (SO_REUSEADDR, as servers bind: a closed
    connection's TIME_WAIT does not hold a port)."""
    with socket.socket(_family(host), socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def holder(port: int) -> Holder | None:
    """The process listening on `port` (any address), or None when nothing listens there."""
    try:
        listeners = [c for c in psutil.net_connections(kind="tcp")
                     if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port]
    except psutil.AccessDenied:
        listeners = []
    if not listeners:
        return None
    pid = listeners[0].pid
    if pid is None:
        return Holder(None, None, None)
    try:
        proc = psutil.Process(pid)
        name = proc.name()
    except psutil.Error:
        return Holder(pid, None, None)
    try:
        environ, command = proc.environ(), tuple(proc.cmdline())
    except psutil.Error:
        return Holder(pid, name)
    ewi_home = None
    if any("ewi" in part for part in command):
        from ewi import config

        ewi_home = str(Path(environ.get("EWI_HOME") or config.PROJECT_ROOT / ".ewi").resolve())
    return Holder(pid, name, environ.get("AIRFLOW_HOME"), ewi_home, command)


def free_port(wanted: int, host: str = "127.0.0.1") -> int:
    """The first free port above `wanted` (close to it, so it is easy to remember), else any."""
    for port in range(wanted + 1, min(wanted + 1 + SEARCH, 65536)):
        if is_free(port, host):
            return port
    with socket.socket(_family(host), socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]
