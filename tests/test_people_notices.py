"""Messages to people: a quarantined delivery reaches the data engineers, a build's new signals the
coordinators, each by e-mail (Airflow's SMTP notifier, to a real aiosmtpd server) and by a webhook
(a real HTTP receiver on 127.0.0.1). No message holds a figure 1-4 or a pseudonym."""

from __future__ import annotations

import json
import re
import socket
from email import message_from_bytes, policy

import pytest
from aiosmtpd.controller import Controller

from ewi.orchestration import people_notices
from tests import extracts
from tests.receivers import webhook_receiver

SMALL_FIGURE = re.compile(r"(?<![\w.:/-])[1-4](?![\w.:/-])")


class _Inbox:
    def __init__(self):
        self.mails = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's naming)
        self.mails.append((envelope.rcpt_tos, message_from_bytes(envelope.content, policy=policy.default)))
        return "250 OK"


@pytest.fixture
def smtp_server(monkeypatch):
    inbox = _Inbox()
    with socket.socket() as probe:  # aiosmtpd's controller wants a port number, not 0
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    # The SMTP provider's connection, as an Airflow connection in the environment: plain SMTP on
    # the test's server (no TLS to negotiate).
    monkeypatch.setenv("AIRFLOW_CONN_EWI_TEST_SMTP", json.dumps({
        "conn_type": "smtp", "host": "127.0.0.1", "port": port,
        "extra": {"disable_ssl": True, "disable_tls": True, "timeout": 10, "retry_limit": 1}}))
    monkeypatch.setenv("EWI_NOTIFY_SMTP_CONN_ID", "ewi_test_smtp")
    yield inbox
    controller.stop()


@pytest.fixture
def webhook():
    with webhook_receiver() as hook:
        yield hook.url, hook.bodies


def _body(mail) -> str:
    return mail.get_body(("html", "plain")).get_content()


def test_a_quarantined_delivery_reaches_the_data_engineers_without_its_rows(
        db, tmp_path, monkeypatch, smtp_server, webhook):
    from ewi.orchestration import ingest_tasks

    url, received = webhook
    monkeypatch.setenv("EWI_ENGINEER_EMAIL_TO", "data-team@example.org")
    monkeypatch.setenv("EWI_ENGINEER_WEBHOOK_URL", url)
    monkeypatch.setenv("EWI_DASHBOARD_URL", "https://ewi.example.org")
    period = "2033-W11"
    rows = extracts.rows_for("referrals", period)
    rows[2]["birth_year"] = "1890"  # outside the contract's ages: the gate holds the file
    results = ingest_tasks.ingest_chunk([str(extracts.write(tmp_path, "referrals", period, rows=rows))])
    assert [r["status"] for r in results] == ["quarantined"]
    batch_id = results[0]["batch_id"]

    assert people_notices.notify_quarantined(results) == ["SmtpNotifier", "WebhookNotifier"]

    [(rcpt, mail)] = smtp_server.mails
    assert rcpt == ["data-team@example.org"]
    assert mail["Subject"] == "[EWI] Karantän / Quarantine: 2033-W11"
    [hook] = received
    for text in (_body(mail), hook["text"]):
        assert f"referrals 2033-W11, batch {batch_id}" in text
        assert "birth_year" in text
        assert f"https://ewi.example.org/audit/batch/{batch_id}" in text
        assert "1890" not in text
        assert not any(r["person_pseudonym"] in text for r in rows)
        assert not SMALL_FIGURE.search(text), text


def test_a_run_without_quarantine_tells_nobody(monkeypatch, smtp_server, webhook):
    url, received = webhook
    monkeypatch.setenv("EWI_ENGINEER_EMAIL_TO", "data-team@example.org")
    monkeypatch.setenv("EWI_ENGINEER_WEBHOOK_URL", url)
    assert people_notices.notify_quarantined([{"status": "published", "source": "contacts",
                                               "period": "2033-W12", "batch_id": "b"}]) == []
    assert not smtp_server.mails and not received


# Rows as published.area_signals gives them (its contract's columns); area names with braces
# and an ampersand: data, never rendered as a template or as HTML.
SIGNALS = [
    {"signal_key": "farrington:2081C1010:referrals:2026-W44", "area_code": "2081C1010",
     "area_name": "Tjärna Ängar {{ ds }}", "indicator": "referrals", "first_week": "2026-W44",
     "last_alert_week": "2026-W47"},
    {"signal_key": "farrington:2081C1030:chronic_absence:2026-W47", "area_code": "2081C1030",
     "area_name": "Hushagen & Jakobsgårdarna", "indicator": "chronic_absence", "first_week": "2026-W47",
     "last_alert_week": "2026-W47"},
]


def test_new_signals_reach_the_coordinators_as_one_message_of_areas_indicators_and_links(
        monkeypatch, smtp_server, webhook):
    url, received = webhook
    monkeypatch.setenv("EWI_SIGNAL_EMAIL_TO", "samordnare@example.org, beredskap@example.org")
    monkeypatch.setenv("EWI_SIGNAL_WEBHOOK_URL", url)
    message = people_notices.signal_message(SIGNALS, "https://ewi.example.org")

    assert people_notices.send(message) == ["SmtpNotifier", "WebhookNotifier"]

    [(rcpt, mail)] = smtp_server.mails
    assert rcpt == ["samordnare@example.org", "beredskap@example.org"]
    assert mail["Subject"] == "[EWI] Nya signaler / New signals, 2026-W47"
    [hook] = received
    assert set(hook) == {"text"}  # what incoming webhooks of Teams, Mattermost and Slack read
    for text in (_body(mail).replace("&amp;", "&"), hook["text"]):
        assert "Tjärna Ängar {{ ds }} (2081C1010): Orosanmälningar / Referrals, sedan / since 2026-W44" in text
        assert "Hushagen & Jakobsgårdarna (2081C1030): Hög frånvaro / Chronic absence, sedan / since 2026-W47" in text
        assert "https://ewi.example.org/area/2081C1010" in text
        assert "https://ewi.example.org/area/2081C1030" in text
        assert not SMALL_FIGURE.search(text), text


def test_a_webhook_that_fails_does_not_stop_the_mail(monkeypatch, smtp_server):
    monkeypatch.setenv("EWI_SIGNAL_EMAIL_TO", "samordnare@example.org")
    monkeypatch.setenv("EWI_SIGNAL_WEBHOOK_URL", "http://127.0.0.1:9/nothing-listens-here")
    message = people_notices.signal_message(SIGNALS, "https://ewi.example.org")
    assert people_notices.send(message) == ["SmtpNotifier"]
    assert len(smtp_server.mails) == 1



def test_a_late_source_reaches_the_data_engineers_from_dbt_source_freshness(
        db, tmp_path, monkeypatch, smtp_server, webhook):
    """Every source delivered, referrals' newest row published ten days ago (past the 8 days
    sources.yml declares): dbt's source freshness warns, and the message names referrals only."""
    from ewi.ingest import ingest_files

    url, received = webhook
    monkeypatch.setenv("EWI_ENGINEER_EMAIL_TO", "data-team@example.org")
    monkeypatch.setenv("EWI_ENGINEER_WEBHOOK_URL", url)
    period = "2033-W20"
    for source in ("school_absence", "referrals", "contacts"):
        [result] = ingest_files([extracts.write(tmp_path, source, period)])
        assert result.status == "published", result.reason
    # Ten days pass for referrals: its rows were published then, as far as freshness can tell.
    db.execute("update raw.referrals set published_at = published_at - interval '10 days'")

    assert people_notices.notify_late_sources() == ["SmtpNotifier", "WebhookNotifier"]

    [(_, mail)] = smtp_server.mails
    assert mail["Subject"] == "[EWI] Sena leveranser / Late deliveries: referrals"
    [hook] = received
    assert "- referrals: warn, newest published row 10.0 days old" in hook["text"]
    assert "contacts" not in hook["text"] and "school_absence" not in hook["text"]


def test_a_warehouse_before_its_first_delivery_tells_nobody_of_late_sources():
    """dbt finds an empty raw table not fresh (no newest row, no age); a new installation has
    nothing late yet. (The local Airflow's first ewi_freshness run told of all three before.)"""
    verdicts = [{"source": "contacts", "status": "error", "age_hours": None}]
    assert people_notices.late_message(verdicts) is None
