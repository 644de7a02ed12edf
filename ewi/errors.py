"""Failures as answers: the exceptions a command can end with, each with a machine code, an exit code
and a reason in words, and the one place (`answer`) that turns any exception into that answer.

A reason is written for the operator and says what happened and what to do; it never carries a
database's message, a file's content or an identifier (PostgreSQL quotes failing rows in its errors),
so unknown exceptions are answered with their type only. A traceback is printed only on request
(`ewi --debug`, or EWI_DEBUG=1).

Exit codes (README, "Exit codes"): 0 success, 1 an unexpected error, 2 usage, 3 a gate refused data,
4 the warehouse is unreachable, 5 the disk is full, 6 a time limit ran out, 7 a lock wait ran out,
130/143 interrupted or terminated.

Code that raises these passes a reason in words; `details` may add machine fields (a run id, the
files not decided), never data.
"""

from __future__ import annotations

import errno
import json
import os
import re
import signal
import subprocess
import sys
import traceback
from collections.abc import Callable

from ewi.settings import SettingsError

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_GATE = 3
EXIT_WAREHOUSE = 4
EXIT_DISK_FULL = 5
EXIT_TIMEOUT = 6
EXIT_LOCK = 7
EXIT_INTERRUPTED = 128 + signal.SIGINT
EXIT_TERMINATED = 128 + signal.SIGTERM
EXIT_BROKEN_PIPE = 128 + signal.SIGPIPE  # what a shell reports for a writer whose reader left


class EwiError(Exception):
    """A failure the command answers with: `code` (machine), `exit_code`, `reason` (words)."""

    code = "error"
    exit_code = EXIT_ERROR
    default_reason = "the command failed"

    def __init__(self, reason: str | None = None, **details):
        self.reason = reason or self.default_reason
        self.details = details
        super().__init__(self.reason)

    def as_dict(self) -> dict:
        return {"status": "error", "code": self.code, "reason": safe_reason(self.reason),
                "exit_code": self.exit_code, **self.details}


class UsageError(EwiError):
    code = "usage"
    exit_code = EXIT_USAGE
    default_reason = "the command was called wrongly"


class WarehouseUnavailable(EwiError):
    code = "warehouse_unavailable"
    exit_code = EXIT_WAREHOUSE
    default_reason = ("the warehouse database cannot be reached (server stopped, restarting or not "
                      "listening); run the command again when it is back")


class DiskFull(EwiError):
    code = "disk_full"
    exit_code = EXIT_DISK_FULL
    default_reason = "the disk is full; free space and run the command again"


class Timeout(EwiError):
    code = "timeout"
    exit_code = EXIT_TIMEOUT
    default_reason = "a time limit ran out before the work finished"


class LockTimeout(EwiError):
    code = "lock_timeout"
    exit_code = EXIT_LOCK
    default_reason = ("another run holds the lock this command waits for, and the wait ran out; "
                      "run the command again when that run has finished")


class Interrupted(EwiError):
    code = "interrupted"
    exit_code = EXIT_INTERRUPTED
    default_reason = "the command was interrupted (Ctrl-C)"


class Stopped(Interrupted):
    code = "terminated"
    exit_code = EXIT_TERMINATED
    default_reason = "the command was told to stop (SIGTERM)"


class Terminated(KeyboardInterrupt):
    """Raised in the main thread on SIGTERM. A KeyboardInterrupt, so that code which stops cleanly on
    Ctrl-C (dbt cancels its queries) does the same on SIGTERM."""


class InternalError(EwiError):
    code = "internal_error"
    exit_code = EXIT_ERROR


#: Redacted from every reason, in case one was built from data: pseudonyms (64 hex digits) and
#: anything shaped like a personal identity number; then, by the ingest's detector, a number in
#: any other form (an en dash, full-width digits, glued to letters).
_IDENTIFIER_RE = re.compile(r"[0-9a-fA-F]{64}|\b(?:\d{2})?\d{6}[-+]?\d{4}\b")


def safe_reason(reason: str) -> str:
    from ewi.ingest.identifiers import redact_identity_numbers

    return redact_identity_numbers(_IDENTIFIER_RE.sub("<redacted>", reason), "<redacted>")


def _sqlstate(exc: BaseException) -> str:
    return str(getattr(exc, "sqlstate", None) or "")


def classify(exc: BaseException) -> EwiError:
    """The answer for an exception: itself when it is one, else mapped by kind, never by message.
    Follows the chain of causes (dbt and others wrap the database's exception)."""
    seen = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        mapped = _classify_one(current)
        if mapped is not None:
            return mapped
        current = current.__cause__ or current.__context__
    return InternalError(f"an unexpected error ({type(exc).__name__}); run with --debug or EWI_DEBUG=1 "
                         "for the traceback")


def _classify_one(exc: BaseException) -> EwiError | None:
    if isinstance(exc, EwiError):
        return exc
    if isinstance(exc, SettingsError):
        return UsageError(f"{exc} (see the configuration table in the README, or `ewi settings table`)")
    if isinstance(exc, Terminated):
        return Stopped()
    if isinstance(exc, KeyboardInterrupt):
        return Interrupted()
    state = _sqlstate(exc)
    if state == "53100":  # disk_full
        return DiskFull("the warehouse's disk is full; nothing was published, free space on the "
                        "database server and run the command again")
    if state in ("55P03", "40P01"):  # lock_not_available (lock_timeout), deadlock_detected
        return LockTimeout()
    if state == "57014":  # query_canceled: statement_timeout, or a cancel request
        return Timeout("a database statement ran past its time limit (statement_timeout) and was "
                       "cancelled")
    if state.startswith("08") or state in ("57P01", "57P02", "57P03"):
        # connection exceptions; admin/crash shutdown; cannot connect now (starting up, recovering)
        return WarehouseUnavailable()
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return DiskFull()
    if isinstance(exc, (TimeoutError, subprocess.TimeoutExpired)):
        return Timeout()
    try:
        import psycopg
    except ImportError:  # pragma: no cover - psycopg is a dependency
        return None
    if isinstance(exc, psycopg.OperationalError) and not state:
        # raised by libpq itself, before or after the server said anything: refused, no such
        # socket, the server closed the connection, the connection was lost
        return WarehouseUnavailable()
    return None


def debug_enabled(flag: bool = False) -> bool:
    from ewi.settings import get_settings

    if flag:
        return True
    try:
        return get_settings().debug
    except SettingsError:  # answering a bad setting (EWI_DEBUG's own, perhaps): no traceback needed
        return False


def _raise_terminated(signum, frame):  # noqa: ARG001 - a signal handler's signature
    raise Terminated()


def _stdout_gone() -> None:
    # the reader went away (`ewi ... | head`): nothing more can be said; Python's documented way to
    # keep the interpreter from failing again as it flushes stdout at exit
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def answer(run: Callable[[], int], *, command: str, json_output: bool, debug: bool = False) -> int:
    """Run a command; turn whatever it raises into one answer: with `json_output` one JSON line on
    stdout ({"status": "error", "code", "reason", "exit_code", "command"}), otherwise one line on
    stderr; returns the exit code. SIGTERM (Airflow stopping a task, a service manager) is answered
    like an interrupt, so `finally` blocks run and the command says how it ended."""
    previous = None
    try:
        previous = signal.signal(signal.SIGTERM, _raise_terminated)
    except ValueError:  # not the main thread (a command called from a worker thread)
        previous = None
    try:
        return run()
    except BrokenPipeError:
        _stdout_gone()
        return EXIT_BROKEN_PIPE
    except (Exception, KeyboardInterrupt) as exc:
        error = classify(exc)
        if debug_enabled(debug):
            traceback.print_exc(file=sys.stderr)
        try:
            if json_output:
                print(json.dumps({**error.as_dict(), "command": command}, ensure_ascii=False, default=str),
                      flush=True)
            else:
                print(f"ewi {command}: {safe_reason(error.reason)}", file=sys.stderr, flush=True)
        except BrokenPipeError:
            _stdout_gone()
        return error.exit_code
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
