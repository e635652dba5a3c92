"""A stand-in Slack incoming webhook on loopback: records each POST and answers a chosen status."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

#: The path part of a webhook URL, Slack's shape (`T…/B…/secret`); the secret is what tests look for.
WEBHOOK_SECRET = "xQ9vLr2TzK8mWp4sYb7nHc3d"
WEBHOOK_PATH = f"services/T0LLMTALLY/B0ALERTS1/{WEBHOOK_SECRET}"


@dataclass
class FakeSlack:
    base_url: str
    #: (path, JSON body) of every POST received.
    posts: list[tuple[str, Any]] = field(default_factory=list)
    status: int = 200
    #: Extra headers of the answer (e.g. a `Location` for a redirect).
    headers: dict[str, str] = field(default_factory=dict)
    delay_seconds: float = 0.0

    @property
    def allowed_prefix(self) -> str:
        return f"{self.base_url}/services/"

    @property
    def webhook_url(self) -> str:
        return f"{self.base_url}/{WEBHOOK_PATH}"


@contextmanager
def fake_slack() -> Iterator[FakeSlack]:
    state: FakeSlack

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            state.posts.append((self.path, json.loads(body) if body else None))
            if state.delay_seconds:
                time.sleep(state.delay_seconds)
            self.send_response(state.status)
            for name, value in state.headers.items():
                self.send_header(name, value)
            answer = b"ok" if state.status == 200 else b"no_service"
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state = FakeSlack(f"http://127.0.0.1:{server.server_address[1]}")
    thread = threading.Thread(target=server.serve_forever, name="fake-slack", daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
