"""Failure notifications: to the log (default), by e-mail (SMTP) or to a webhook.

    EWI_NOTIFIER=log | smtp | webhook
    smtp:    EWI_NOTIFY_SMTP_HOST (host or host:port, default port 25), EWI_NOTIFY_EMAIL_TO
             (comma-separated), EWI_NOTIFY_EMAIL_FROM (default ewi@localhost),
             EWI_NOTIFY_SMTP_STARTTLS=1, EWI_NOTIFY_SMTP_USER / EWI_NOTIFY_SMTP_PASSWORD
    webhook: EWI_NOTIFY_WEBHOOK_URL (receives a JSON POST)

A notice carries only orchestration facts: DAG, task, run, event, and a detail that the callers
build from an exception's type and a try number. Never a message from a database or a file, so
never a row value or a pseudonym. Sending is best effort: a notifier that fails is logged (by its
exception type) and never fails the task or callback that called it.
"""

from __future__ import annotations

import json
import logging
import smtplib
import urllib.request
from dataclasses import asdict, dataclass
from email.message import EmailMessage

from ewi.settings import get_settings

log = logging.getLogger(__name__)
TIMEOUT_S = 10


@dataclass(frozen=True)
class Notice:
    event: str  # task_failed, task_retry, dag_run_failed
    dag_id: str
    task_id: str | None
    run_id: str | None
    detail: str

    @property
    def subject(self) -> str:
        where = f"{self.dag_id}.{self.task_id}" if self.task_id else self.dag_id
        return f"[EWI] {self.event}: {where}"

    def text(self) -> str:
        return (f"{self.subject}\nrun: {self.run_id}\ndetail: {self.detail}\n"
                "Details are in audit.pipeline_events and the Airflow task logs.\n")


def notifier_name() -> str:
    return get_settings().notifier


def send(notice: Notice) -> bool:
    """Deliver a notice through the configured notifier. Returns True when it was delivered."""
    name = notifier_name()
    try:
        if name == "smtp":
            _send_smtp(notice)
        elif name == "webhook":
            _send_webhook(notice)
        else:
            log.error("%s (run %s: %s)", notice.subject, notice.run_id, notice.detail)
        return True
    except Exception as exc:  # noqa: BLE001 - a notifier must never turn one failure into two
        log.error("EWI notifier %s could not deliver %s: %s", name, notice.subject, type(exc).__name__)
        return False


def _send_smtp(notice: Notice) -> None:
    settings = get_settings()
    host = settings.notify_smtp_host
    recipients = list(settings.notify_email_to)
    if not host or not recipients:
        raise ValueError("the smtp notifier needs EWI_NOTIFY_SMTP_HOST and EWI_NOTIFY_EMAIL_TO")
    server, _, port = host.partition(":")
    msg = EmailMessage()
    msg["Subject"] = notice.subject
    msg["From"] = settings.notify_email_from
    msg["To"] = ", ".join(recipients)
    msg.set_content(notice.text())
    with smtplib.SMTP(server, int(port or 25), timeout=TIMEOUT_S) as smtp:
        if settings.notify_smtp_starttls:
            smtp.starttls()
        if settings.notify_smtp_user:
            password = settings.notify_smtp_password
            smtp.login(settings.notify_smtp_user, password.get_secret_value() if password else "")
        smtp.send_message(msg)


def _send_webhook(notice: Notice) -> None:
    configured = get_settings().notify_webhook_url
    if configured is None:
        raise ValueError("the webhook notifier needs EWI_NOTIFY_WEBHOOK_URL")
    url = configured.get_secret_value()
    if not url.startswith(("http://", "https://")):
        raise ValueError("EWI_NOTIFY_WEBHOOK_URL must be an http(s) URL")
    body = json.dumps({**asdict(notice), "subject": notice.subject}).encode()
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=TIMEOUT_S) as resp:  # noqa: S310 (scheme checked above)
        resp.read()
