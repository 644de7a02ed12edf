"""Signals on the dashboard: the open ones for the overview, an area's history, every state change
for the auditors, and a coordinator's acknowledge or close.

A signal is built by dbt (published.area_signals); its state is written only by the warehouse
function signals.change_state() (migration 0016), which checks the step, refuses a stale page and
records the change in audit.signal_state_changes. This module only calls it and says what it
answered in the reader's language.
"""

from __future__ import annotations

from datetime import date, timedelta

import psycopg

from ewi.dashboard import data
from ewi.ingest.identifiers import contains_identity_number

STATES = ("new", "acknowledged", "closed")
CLOSE_REASONS = ("action_started", "monitored", "data_issue", "no_action")
NOTE_MAX = 1000
#: What a change can end in, as the area page names it (?signal=...): an i18n text signal_<outcome>.
OUTCOMES = ("saved", "changed_meanwhile", "not_found", "coordinators_only", "not_a_step", "reason_needed",
            "note_too_long", "note_identity")


class SignalRefused(Exception):
    """A change the warehouse (or the note check) refused; `code` names an i18n text signal_<code>."""

    def __init__(self, code: str):
        super().__init__(code)
        self.code = code


def _exists(conn: psycopg.Connection) -> bool:
    return conn.execute("select to_regclass('published.area_signals') is not null as e").fetchone()["e"]


def _with_age(rows: list[dict], today: date | None) -> list[dict]:
    # age in whole weeks from the first alert week to this week: how long it has been waiting
    this_week = (today or date.today()) - timedelta(days=(today or date.today()).weekday())
    for row in rows:
        row["age_weeks"] = max(0, (this_week - row["first_week_start"]).days // 7)
        row["quiet_weeks"] = max(0, (this_week - row["last_alert_week_start"]).days // 7)
    return rows


def open_signals(conn: psycopg.Connection, today: date | None = None) -> list[dict]:
    """Signals not closed, the newest alert first."""
    if not _exists(conn):
        return []
    rows = conn.execute("""select * from published.area_signals where state <> 'closed'
                           order by last_alert_week_start desc, area_name, indicator""").fetchall()
    return _with_age(rows, today)


def area_history(conn: psycopg.Connection, area_code: str, today: date | None = None) -> list[dict]:
    """Every signal of an area, open or closed, the newest first."""
    if not _exists(conn):
        return []
    rows = conn.execute("""select * from published.area_signals where area_code = %s
                           order by first_week_start desc, indicator""", (area_code,)).fetchall()
    return _with_age(rows, today)


def state_changes(conn: psycopg.Connection, limit: int = 1000) -> list[dict]:
    """Every change of a signal's state, the latest first (auditor role: audit.signal_state_changes)."""
    if not conn.execute("select to_regclass('audit.signal_state_changes') is not null as e").fetchone()["e"]:
        return []
    return conn.execute("""select c.*, s.area_name, s.first_week, s.last_alert_week
                           from audit.signal_state_changes as c
                           left join published.area_signals as s using (signal_key)
                           order by c.at desc, c.id desc limit %s""", (limit,)).fetchall()


def change_state(user: dict, signal_key: str, from_state: str, to_state: str, note: str = "",
                 reason: str | None = None) -> str:
    """Acknowledge or close a signal as `user` (a coordinator). Returns the signal's area code;
    raises SignalRefused with what to tell the coordinator."""
    note = (note or "").strip()
    if len(note) > NOTE_MAX:
        raise SignalRefused("note_too_long")
    if note and contains_identity_number(note):
        # notes are read by every coordinator and auditor: no personal identity number in them
        raise SignalRefused("note_identity")
    if from_state not in STATES or to_state not in ("acknowledged", "closed"):
        raise SignalRefused("not_a_step")
    if to_state == "closed" and reason not in CLOSE_REASONS:
        raise SignalRefused("reason_needed")
    with data.connect(read_only=False) as conn:
        try:
            conn.execute("select signals.change_state(%s, %s, %s, %s, %s, %s, %s)",
                         (signal_key, from_state, to_state, user["username"], user["role"], note or None,
                          reason if to_state == "closed" else None))
        except psycopg.errors.SerializationFailure:
            raise SignalRefused("changed_meanwhile") from None
        except psycopg.errors.NoDataFound:
            raise SignalRefused("not_found") from None
        except psycopg.errors.InsufficientPrivilege:
            raise SignalRefused("coordinators_only") from None
        except psycopg.errors.InvalidParameterValue:
            raise SignalRefused("not_a_step") from None
        row = conn.execute("select area_code from published.area_signals where signal_key = %s",
                           (signal_key,)).fetchone()
    return row["area_code"]
