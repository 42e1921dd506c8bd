"""Fixtures for recovery tests: a local webhook receiver and the Company X world reset."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from omium.examples.company_x import workflow as company_x


class Receiver:
    """An HTTP server that keeps every JSON body POSTed to it (a stand-in for Slack)."""

    def __init__(self) -> None:
        received: list[dict[str, Any]] = []
        self.received = received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", 0))
                received.append(json.loads(self.rfile.read(length)))
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/omium"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook(monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    """A webhook receiver, configured through OMIUM_WEBHOOK_URL."""
    receiver = Receiver()
    monkeypatch.setenv("OMIUM_WEBHOOK_URL", receiver.url)
    yield receiver
    receiver.close()


@pytest.fixture(autouse=True)
def fresh_world(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test gets a new outside world and model (no state leaks between tests)."""
    monkeypatch.setattr(company_x, "WORLD", company_x.World())
    monkeypatch.setattr(company_x, "MODEL", company_x.OnboardingLLM())
