"""Failure notifications: the failure callback records the event and tells the configured notifier
(log, a webhook, SMTP), with no row value or pseudonym in what it sends. The webhook and the mail
server are real servers on 127.0.0.1."""

from __future__ import annotations

import json
import logging
import socketserver
import threading

import pytest

from ewi.orchestration import callbacks, notify
from tests.receivers import webhook_receiver

PSEUDONYM = "a" * 64
IDENTITY_NUMBER = "19121212-1212"


class _FakeTI:  # the callback reads only these attributes of a task instance
    dag_id, task_id, run_id, try_number, map_index = "ewi_ingest", "ingest_chunk", "run-notify", 3, -1


def _fail(run_id: str = "run-notify") -> None:
    ti = _FakeTI()
    ti.run_id = run_id
    callbacks.record_task_failure(
        {"ti": ti, "exception": ValueError(f"row 3: {PSEUDONYM} {IDENTITY_NUMBER}")})


@pytest.fixture
def webhook():
    with webhook_receiver("/hook", status=204) as hook:
        yield hook.url, hook.bodies


class _SMTPHandler(socketserver.StreamRequestHandler):
    """Just enough of RFC 5321 for smtplib.send_message."""

    def handle(self):
        self.wfile.write(b"220 test ESMTP\r\n")
        message: dict = {"rcpt": []}
        while line := self.rfile.readline():
            verb = line.decode().strip().split(" ")[0].upper()
            if verb in ("EHLO", "HELO"):
                self.wfile.write(b"250 test\r\n")
            elif verb == "MAIL":
                message["from"] = line.decode().strip()
                self.wfile.write(b"250 OK\r\n")
            elif verb == "RCPT":
                message["rcpt"].append(line.decode().strip())
                self.wfile.write(b"250 OK\r\n")
            elif verb == "DATA":
                self.wfile.write(b"354 go ahead\r\n")
                body = []
                while (data := self.rfile.readline()) not in (b".\r\n", b""):
                    body.append(data)
                message["data"] = b"".join(body).decode()
                self.server.messages.append(message)
                self.wfile.write(b"250 queued\r\n")
            elif verb == "QUIT":
                self.wfile.write(b"221 bye\r\n")
                return
            else:
                self.wfile.write(b"250 OK\r\n")


@pytest.fixture
def smtp_server():
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _SMTPHandler)
    server.messages = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}", server.messages
    server.shutdown()
    server.server_close()


def test_log_notifier_is_the_default(db, monkeypatch, caplog):
    monkeypatch.delenv("EWI_NOTIFIER", raising=False)
    with caplog.at_level(logging.ERROR, logger="ewi.orchestration.notify"):
        _fail()
    text = caplog.text
    assert "[EWI] task_failed: ewi_ingest.ingest_chunk" in text
    assert PSEUDONYM not in text and IDENTITY_NUMBER not in text


def test_webhook_gets_a_json_notice_and_the_event_is_audited(db, monkeypatch, webhook):
    url, received = webhook
    monkeypatch.setenv("EWI_NOTIFIER", "webhook")
    monkeypatch.setenv("EWI_NOTIFY_WEBHOOK_URL", url)
    _fail("run-webhook")
    assert len(received) == 1
    notice = received[0]
    assert notice["event"] == "task_failed" and notice["run_id"] == "run-webhook"
    assert notice["detail"] == "builtins.ValueError, try 3"
    assert PSEUDONYM not in json.dumps(notice) and IDENTITY_NUMBER not in json.dumps(notice)
    audited = db.execute("select event from audit.pipeline_events where run_id = 'run-webhook'").fetchall()
    assert audited == [("task_failed",)]


def test_smtp_sends_a_mail_without_row_values(db, monkeypatch, smtp_server):
    host, messages = smtp_server
    monkeypatch.setenv("EWI_NOTIFIER", "smtp")
    monkeypatch.setenv("EWI_NOTIFY_SMTP_HOST", host)
    monkeypatch.setenv("EWI_NOTIFY_EMAIL_TO", "oncall@example.org, backup@example.org")
    _fail("run-smtp")
    assert len(messages) == 1
    mail = messages[0]
    assert len(mail["rcpt"]) == 2
    assert "Subject: [EWI] task_failed: ewi_ingest.ingest_chunk" in mail["data"]
    assert "run-smtp" in mail["data"]
    assert PSEUDONYM not in mail["data"] and IDENTITY_NUMBER not in mail["data"]


def test_an_unreachable_notifier_does_not_fail_the_callback(monkeypatch, caplog):
    monkeypatch.setenv("EWI_NOTIFIER", "webhook")
    monkeypatch.setenv("EWI_NOTIFY_WEBHOOK_URL", "http://127.0.0.1:9/nothing-listens-here")
    with caplog.at_level(logging.ERROR, logger="ewi.orchestration.notify"):
        assert notify.send(notify.Notice("task_failed", "ewi_ingest", "plan", "r", "x")) is False
    assert "could not deliver" in caplog.text
