"""What the dashboard tests share: reading a page's HTML, logging in, reading the warehouse the
pages are checked against, and serving the dashboard as `ewi dashboard` does."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from contextlib import AbstractContextManager
from datetime import date
from html.parser import HTMLParser
from pathlib import Path
from unittest import mock

import httpx
import psycopg
import psycopg.rows

PASSWORDS = {"coord": "coord-pass-1", "audit": "audit-pass-1"}
SECRET = "test-session-secret-0123456789abcdef"
INDICATORS = ("chronic_absence", "invalid_absence", "referrals", "contacts", "multi_signal")
ARTIFACTS = Path(__file__).resolve().parent.parent.parent / "test-artifacts"


# ---------------------------------------------------------------- a page's HTML as a tree
# html.parser (the standard library's) is enough for pages the dashboard itself renders; the tests
# look elements up by tag and attribute, the way the browser tests do with CSS selectors.


class Node:
    def __init__(self, tag: str, attrs: dict):
        self.tag, self.attrs, self.children = tag, attrs, []

    def text(self) -> str:
        return " ".join("".join(c if isinstance(c, str) else c.text() for c in self.children).split())

    def find_all(self, tag: str | None = None, **attrs) -> list[Node]:
        found = []
        for c in self.children:
            if isinstance(c, Node):
                if (tag is None or c.tag == tag) and all(
                        (v is True and k in c.attrs) or c.attrs.get(k) == v
                        or (k == "class_" and v in (c.attrs.get("class") or "").split())
                        for k, v in attrs.items()):
                    found.append(c)
                found.extend(c.find_all(tag, **attrs))
        return found

    def find(self, tag: str | None = None, **attrs) -> Node:
        found = self.find_all(tag, **attrs)
        assert found, f"no <{tag} {attrs}>"
        return found[0]


class _TreeBuilder(HTMLParser):
    VOID = {"meta", "link", "input", "br", "img", "hr"}

    def __init__(self):
        super().__init__()
        self.root = Node("root", {})
        self.stack = [self.root]

    def handle_starttag(self, tag, attrs):
        node = Node(tag, {k.replace("-", "_"): (v or "") for k, v in attrs})
        self.stack[-1].children.append(node)
        if tag not in self.VOID:
            self.stack.append(node)

    def handle_endtag(self, tag):
        for i in range(len(self.stack) - 1, 0, -1):
            if self.stack[i].tag == tag:
                del self.stack[i:]
                break

    def handle_data(self, data):
        self.stack[-1].children.append(data)


def parse(html: str) -> Node:
    builder = _TreeBuilder()
    builder.feed(html)
    return builder.root


# ---------------------------------------------------------------- the environment the dashboard reads


def dashboard_environment(database: str, users_file: Path) -> AbstractContextManager:
    """The warehouse database, users file and session secret the dashboard (this process's and the
    ones it starts) reads, set until the block ends and then as they were."""
    return mock.patch.dict(os.environ, {"EWI_WAREHOUSE_DB": database, "EWI_DASHBOARD_USERS": str(users_file),
                                        "EWI_DASHBOARD_SECRET": SECRET})


# ---------------------------------------------------------------- clients


def client(app):
    from fastapi.testclient import TestClient

    return TestClient(app, follow_redirects=False)


def login(app, username: str):
    c = client(app)
    token = parse(c.get("/login").text).find("input", name="csrf").attrs["value"]
    r = c.post("/login", data={"username": username, "password": PASSWORDS[username], "csrf": token, "next": "/"})
    assert r.status_code == 303, r.status_code
    return c


# ---------------------------------------------------------------- the warehouse, read as its owner


def rows(dsn: str, query: str, params=()) -> list[dict]:
    with psycopg.connect(dsn, row_factory=psycopg.rows.dict_row) as conn:
        return conn.execute(query, params).fetchall()


def published(dsn: str, where: str = "true", params=()) -> list[dict]:
    return rows(dsn, f"select * from published.area_weekly_indicators where {where}", params)  # noqa: S608


def access_log(dsn: str, action: str | None = None) -> list[dict]:
    if action is None:
        return rows(dsn, "select * from audit.access_log order by id")
    return rows(dsn, "select * from audit.access_log where action = %s order by id", (action,))


def iso(week_start: date) -> str:
    y, w, _ = week_start.isocalendar()
    return f"{y}-W{w:02d}"


def shown(rate, suppressed: bool) -> str:
    """What a page must show in English: "<5" for suppressed figures, "–" where there is no rate
    (no one to count that week), one decimal otherwise."""
    if suppressed:
        return "<5"
    return "–" if rate is None else f"{float(rate):,.1f}"


# ---------------------------------------------------------------- a served dashboard


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(env: dict, stderr, port: int | None = None) -> tuple[subprocess.Popen, str]:
    """`ewi dashboard` in a process of its own; returns it and its URL once its health check answers."""
    port = port or free_port()
    proc = subprocess.Popen([sys.executable, "-m", "ewi.cli", "dashboard", "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=stderr, env=env, text=True)
    line = proc.stdout.readline()  # it says where it serves before it starts (nothing else is printed)
    url = f"http://127.0.0.1:{port}"
    assert line.strip() == f"Dashboard: {url}/", line
    deadline = time.time() + 60
    while not _healthy(url):
        assert proc.poll() is None and time.time() < deadline, "the dashboard did not start"
        time.sleep(0.2)
    return proc, url


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    proc.wait(timeout=10)
