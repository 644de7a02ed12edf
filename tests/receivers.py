"""A local incoming-webhook endpoint on loopback, for the tests of the messages EWI sends: each POST's
JSON body is kept with the time it arrived, as an incoming webhook of Teams or Mattermost receives it."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, HTTPServer


@dataclass
class WebhookReceiver:
    url: str
    posts: list[tuple[float, dict]] = field(default_factory=list)  # (arrival time, JSON body)
    bodies: list[dict] = field(default_factory=list)  # the same bodies, in order of arrival


@contextmanager
def webhook_receiver(path: str = "/hooks/ewi", status: int = 200) -> Iterator[WebhookReceiver]:
    """Serves on a free loopback port until the block ends, answering each POST with `status`."""
    received: list[tuple[float, dict]] = []
    bodies: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server's naming)
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            received.append((time.time(), body))
            bodies.append(body)
            self.send_response(status)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield WebhookReceiver(f"http://127.0.0.1:{server.server_address[1]}{path}", received, bodies)
    finally:
        server.shutdown()
        server.server_close()
