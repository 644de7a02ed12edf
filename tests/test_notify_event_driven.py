"""A quarantined delivery reaches the data engineers by itself, on a real local Airflow: a file is
dropped into the landing folder and nothing else is done; the landing watcher starts ewi_ingest,
the gate holds the file, and the run's summary task sends one mail (Airflow's SMTP notifier, to an
aiosmtpd server this test starts) and one webhook post (a local HTTP receiver).

Five deliveries, one after another; the time from each file landing to its webhook post is
written to the test's basetemp (notify_latency.json) and summarised in docs/benchmarks.md.
"""

from __future__ import annotations

import json
import socket
import statistics
import time

import pytest
from aiosmtpd.controller import Controller

from tests import extracts
from tests.receivers import webhook_receiver
from tests.test_event_driven import airflow_stack  # noqa: F401 (the fixture)
from tests.test_people_notices import SMALL_FIGURE, _Inbox

pytestmark = pytest.mark.slow
DELIVERIES = 5


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _held(posts):
    return [(at, body) for at, body in posts if "Karantän / Quarantine" in body["text"]]


def _held_mails(inbox):
    return [mail for _, mail in inbox.mails if "Karantän" in mail["Subject"]]


@pytest.fixture
def receivers():
    inbox = _Inbox()
    smtp_port = _free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=smtp_port)
    controller.start()
    with webhook_receiver() as hook:
        env = {
            "EWI_ENGINEER_EMAIL_TO": "data-team@example.org",
            "EWI_ENGINEER_WEBHOOK_URL": hook.url,
            "EWI_NOTIFY_SMTP_CONN_ID": "ewi_test_smtp",
            "AIRFLOW_CONN_EWI_TEST_SMTP": json.dumps({
                "conn_type": "smtp", "host": "127.0.0.1", "port": smtp_port,
                "extra": {"disable_ssl": True, "disable_tls": True, "timeout": 10, "retry_limit": 1}}),
        }
        yield env, inbox, hook.posts
    controller.stop()


def test_a_quarantined_delivery_reaches_the_data_engineers_by_itself(
        airflow_stack, receivers, tmp_path, tmp_path_factory):  # noqa: F811 (the fixture)
    env, inbox, posts = receivers
    stack = airflow_stack("LocalExecutor", extra_env=env)
    latencies = []
    for i in range(DELIVERIES):
        period = f"2026-W{10 + i:02d}"
        rows = extracts.rows_for("referrals", period)
        rows[2]["birth_year"] = "1890"  # outside the contract's ages: the gate holds the file
        path = extracts.write(tmp_path, "referrals", period, rows=rows)
        landed = time.time()
        stack.deliver(path)
        stack.wait_for(f"the webhook post for {period}", lambda n=i + 1: len(_held(posts)) >= n, timeout=240,
                       every=0.2)
        at, body = _held(posts)[i]
        latencies.append(round(at - landed, 2))
        assert f"referrals {period}" in body["text"] and "birth_year" in body["text"]
        assert "1890" not in body["text"] and not SMALL_FIGURE.search(body["text"])
        assert not any(r["person_pseudonym"] in body["text"] for r in rows)
        stack.wait_for(f"the mail for {period}", lambda n=i + 1: len(_held_mails(inbox)) >= n, timeout=60,
                       every=0.2)
        assert _held_mails(inbox)[i]["Subject"] == f"[EWI] Karantän / Quarantine: {period}"
    # One message per run. (ewi_freshness, started once by `airflow up`, may add its own.)
    assert len(_held(posts)) == DELIVERIES and len(_held_mails(inbox)) == DELIVERIES
    report = {"latencies_s": latencies, "median_s": statistics.median(latencies)}
    (tmp_path_factory.getbasetemp() / "notify_latency.json").write_text(json.dumps(report))
    print(f"landed file -> notification: {report}")
