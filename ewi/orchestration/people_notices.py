"""What the pipeline tells people, through Airflow notifiers: coordinators get one message per
build that opened new signals; data engineers get one per ingest run that quarantined deliveries.

Each message goes by e-mail (the SMTP provider's SmtpNotifier, on the Airflow connection
EWI_NOTIFY_SMTP_CONN_ID, default `smtp_default`) and to an incoming webhook (WebhookNotifier:
a JSON POST with a `text` field, what Teams-, Mattermost- and Slack-style incoming webhooks read),
each one only when its recipients are configured:

    coordinators:   EWI_SIGNAL_EMAIL_TO (comma-separated), EWI_SIGNAL_WEBHOOK_URL
    data engineers: EWI_ENGINEER_EMAIL_TO, EWI_ENGINEER_WEBHOOK_URL
    both:           EWI_NOTIFY_EMAIL_FROM (default ewi@localhost), EWI_DASHBOARD_URL (the links)

A message names areas, indicators, weeks, sources, batch ids and links. It never holds a count
(a small number beside an area reads as people: not even how many signals) nor a pseudonym or a
row value: a quarantine names the rules that held the file, not the gate's reason text.
Sending is best effort: a channel that fails is logged by its exception type and never fails the
task, since the build or the ingest it reports on has already succeeded.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from airflow.sdk import BaseNotifier

from ewi.settings import get_settings

log = logging.getLogger(__name__)
TIMEOUT_S = 10



class WebhookNotifier(BaseNotifier):
    """Posts {"text": ...} to an incoming webhook (Teams, Mattermost, Slack and alike)."""

    template_fields = ("text",)

    def __init__(self, url: str, text: str, **kwargs):
        super().__init__(**kwargs)
        self.url = url
        self.text = text

    def notify(self, context: Any) -> None:
        import requests

        if not self.url.startswith(("http://", "https://")):
            raise ValueError("a webhook URL must be an http(s) URL")
        response = requests.post(self.url, json={"text": self.text}, timeout=TIMEOUT_S)
        response.raise_for_status()


@dataclass(frozen=True)
class Message:
    audience: str  # "signal" (coordinators) or "engineer"
    subject: str
    text: str


def dashboard_url() -> str:
    return get_settings().dashboard_url.rstrip("/")


def notifiers(message: Message) -> list[BaseNotifier]:
    """The configured channels of a message's audience (none configured: none)."""
    settings = get_settings()
    if message.audience == "signal":
        to, url = list(settings.signal_email_to), settings.signal_webhook_url
    else:
        to, url = list(settings.engineer_email_to), settings.engineer_webhook_url
    found: list[BaseNotifier] = []
    if to:
        from airflow.providers.smtp.notifications.smtp import SmtpNotifier

        html = "<pre>" + _escape(message.text) + "</pre>"
        found.append(SmtpNotifier(to=to, from_email=settings.notify_email_from,
                                  subject=message.subject, html_content=html,
                                  smtp_conn_id=settings.notify_smtp_conn_id))
    if url is not None:
        found.append(WebhookNotifier(url=url.get_secret_value(), text=f"{message.subject}\n\n{message.text}"))
    return found


def _escape(text: str) -> str:
    import html

    return html.escape(text)


def send(message: Message, context: Any = None) -> list[str]:
    """Send a message on every configured channel; returns the channels that delivered it.

    notify() is called, not the notifier itself: calling it would render the text as a Jinja
    template, and an area's name is data, not a template."""
    delivered = []
    for notifier in notifiers(message):
        channel = type(notifier).__name__
        try:
            notifier.notify(context or {})
            delivered.append(channel)
        except Exception as exc:  # noqa: BLE001 - a message that fails must not fail what it reports on
            log.error("EWI %s could not deliver %r: %s", channel, message.subject, type(exc).__name__)
    return delivered


# --- new signals ---------------------------------------------------------------------------------

def signal_keys() -> list[str]:
    """Every signal key in published.area_signals (none before the first build); read before a
    build so that afterwards the build's new signals are the ones not in this list."""
    import psycopg

    from ewi import warehouse

    with psycopg.connect(warehouse.dsn()) as conn:
        if conn.execute("select to_regclass('published.area_signals')").fetchone()[0] is None:
            return []
        return [r[0] for r in conn.execute("select signal_key from published.area_signals").fetchall()]


def new_signals(keys_before: list[str]) -> list[dict[str, Any]]:
    """The signals a build opened: state new, key not published before the build."""
    import psycopg
    from psycopg.rows import dict_row

    from ewi import warehouse

    with psycopg.connect(warehouse.dsn(), row_factory=dict_row) as conn:
        rows = conn.execute(
            "select signal_key, area_code, area_name, indicator, first_week, last_alert_week "
            "from published.area_signals where state = 'new' and not (signal_key = any(%s)) "
            "order by area_name, area_code, indicator, first_week",
            (list(keys_before),),
        ).fetchall()
    return rows


def _indicator_name(indicator: str) -> str:
    """The dashboard's Swedish and English label, without its unit: "(per 1 000)" is no count, but
    a reader cannot tell."""
    from ewi.dashboard.i18n import indicator_label

    return " / ".join(indicator_label(indicator, lang).split(" (")[0] for lang in ("sv", "en"))


def signal_message(signals: list[dict[str, Any]], base_url: str | None = None) -> Message:
    base = base_url or dashboard_url()
    latest = max(s["last_alert_week"] for s in signals)
    lines = ["Nya signaler i veckans bygge / New signals in this week's build:", ""]
    for s in signals:
        indicator = _indicator_name(s["indicator"])
        lines.append(f"- {s['area_name'] or s['area_code']} ({s['area_code']}): {indicator}, "
                     f"sedan / since {s['first_week']}  {base}/area/{s['area_code']}")
    lines += ["", f"Översikt / Overview: {base}/",
              "Kvittera eller stäng signalen på områdessidan. / Acknowledge or close it on the area page."]
    return Message("signal", f"[EWI] Nya signaler / New signals, {latest}", "\n".join(lines) + "\n")


def notify_new_signals(keys_before: list[str], context: Any = None) -> list[str]:
    """One message for the build's new signals (nothing when it opened none)."""
    signals = new_signals(keys_before)
    if not signals:
        log.info("the build opened no new signal: nobody is notified")
        return []
    return send(signal_message(signals), context)


# --- quarantined deliveries ---------------------------------------------------------------------

def quarantine_message(results: list[dict[str, Any]], base_url: str | None = None) -> Message | None:
    """One message for an ingest run's quarantined deliveries (None when there are none)."""
    held = [r for r in results if r.get("status") == "quarantined"]
    if not held:
        return None
    base = base_url or dashboard_url()
    lines = ["Leveranser i karantän / Deliveries held in quarantine:", ""]
    for r in held:
        rules = sorted({f"{c.get('expectation')}" + (f" ({c['column']})" if c.get("column") else "")
                        for c in r.get("failed_checks") or []})
        lines.append(f"- {r['source']} {r['period']}, batch {r['batch_id']}: {'; '.join(rules) or 'see the audit'}"
                     f"  {base}/audit/batch/{r['batch_id']}")
    lines += ["", "Release with `ewi quarantine release BATCH_ID --reason ...` once the cause is fixed."]
    periods = sorted({r["period"] for r in held})
    return Message("engineer", f"[EWI] Karantän / Quarantine: {', '.join(periods)}", "\n".join(lines) + "\n")


def notify_quarantined(results: list[dict[str, Any]], context: Any = None) -> list[str]:
    message = quarantine_message(results)
    return send(message, context) if message else []


# --- late deliveries ----------------------------------------------------------------------------

def late_message(verdicts: list[dict[str, Any]], base_url: str | None = None) -> Message | None:
    """One message naming the sources dbt's source freshness finds late (warn or error)."""
    # A source with no published row yet (a new installation) has no delivery to be late with.
    late = [v for v in verdicts if v.get("status") in ("warn", "error") and v.get("age_hours") is not None]
    if not late:
        return None
    base = base_url or dashboard_url()
    lines = ["Sena leveranser / Late deliveries (dbt source freshness):", ""]
    for v in late:
        lines.append(f"- {v['source']}: {v['status']}, newest published row {v['age_hours'] / 24:.1f} days old")
    lines += ["", f"Leveransstatus / Load status: {base}/"]
    return Message("engineer", f"[EWI] Sena leveranser / Late deliveries: {', '.join(v['source'] for v in late)}",
                   "\n".join(lines) + "\n")


def notify_late_sources(context: Any = None) -> list[str]:
    """Run dbt's source freshness and tell the data engineers of the late sources, if any."""
    from ewi import transform

    message = late_message(transform.source_freshness())
    return send(message, context) if message else []


def chain_message(result, base_url: str | None = None) -> Message | None:
    """The data engineers' (and through them the auditors') alarm when the audit chain is broken: the
    first broken records by chain number, table and key (never content), and where to read more."""
    if result.holds:
        return None
    base = base_url or dashboard_url()
    lines = ["Granskningsspårets hashkedja är bruten / The audit trail's hash chain is broken:", ""]
    lines += [f"- {p.words}" for p in result.problems[:5]]
    lines += ["", "ewi audit verify names them all; " f"Granskning / Audit: {base}/audit"]
    return Message("engineer", "[EWI] Granskningsspåret är brutet / The audit trail is broken", "\n".join(lines) + "\n")


def verify_audit_chain(context: Any = None) -> dict[str, Any]:
    """Verify the audit chain (recorded for the auditors' page) and tell the data engineers when it
    is broken. A broken chain does not fail the task: the verification has done its work, and the
    retries would only verify and tell again."""
    from ewi import audit_chain

    result = audit_chain.verify_warehouse()
    message = chain_message(result)
    if message:
        send(message, context)
    return {"holds": result.holds, "records_checked": result.records_checked, "problems": result.problem_count}
