"""Signals: a coordinator acknowledges or closes one (from its area's page); auditors read every
change. The state is written by the warehouse function signals.change_state() only."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from ewi.dashboard import data
from ewi.dashboard import signals as signal_data
from ewi.dashboard.security.access import AuditorUser, Forbidden, check_csrf, current_user
from ewi.dashboard.views import lang_of, page

router = APIRouter()


def signal_actor(user: Annotated[dict, Depends(current_user)]) -> dict:
    # auditors may read the coordinators' pages, but they only read: acting is the coordinators'
    if user["role"] != "coordinator":
        raise Forbidden()
    return user


CoordinatorOnly = Annotated[dict, Depends(signal_actor)]


def _back(area_code: str | None, outcome: str, signal_key: str) -> RedirectResponse:
    anchor = "signal-" + signal_key.replace(":", "-")
    target = f"/area/{quote(area_code, safe='')}?signal={outcome}#{quote(anchor, safe='-')}" if area_code else "/"
    return RedirectResponse(target, status_code=303)


def _change(user: dict, request: Request, csrf: str, signal_key: str, from_state: str, to_state: str,
            note: str, reason: str | None) -> RedirectResponse:
    check_csrf(request, csrf)
    area_code = signal_key.split(":")[1] if signal_key.count(":") == 3 else None
    try:
        area_code = signal_data.change_state(user, signal_key, from_state, to_state, note, reason)
        outcome = "saved"
    except signal_data.SignalRefused as refused:
        outcome = refused.code
    return _back(area_code, outcome, signal_key)


@router.post("/signals/acknowledge")
def acknowledge(user: CoordinatorOnly, request: Request, csrf: str = Form(""), signal_key: str = Form(""),
                from_state: str = Form(""), note: str = Form("")):
    return _change(user, request, csrf, signal_key, from_state, "acknowledged", note, None)


@router.post("/signals/close")
def close(user: CoordinatorOnly, request: Request, csrf: str = Form(""), signal_key: str = Form(""),
          from_state: str = Form(""), note: str = Form(""), reason: str = Form("")):
    return _change(user, request, csrf, signal_key, from_state, "closed", note, reason or None)


@router.get("/audit/signals", response_class=HTMLResponse)
def audit_signals(user: AuditorUser, request: Request):
    lang = lang_of(request)
    with data.connect(data.AUDITOR_ROLE) as conn:
        changes = signal_data.state_changes(conn)
    return page(request, "audit_signals.html", lang, user, changes=changes)
