"""An HTTP endpoint on 127.0.0.1 that collects the JSON bodies POSTed to it: a subscriber of an SNS
topic (moto delivers http notifications to it), or a chat webhook."""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any


class Inbox:
    def __init__(self, url: str, messages: queue.Queue[Any]) -> None:
        self.url = url
        self.messages = messages

    def get(self, timeout: float = 30) -> Any:
        return self.messages.get(timeout=timeout)


@contextmanager
def inbox() -> Iterator[Inbox]:
    messages: queue.Queue[Any] = queue.Queue()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            messages.put(json.loads(body))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield Inbox(f"http://127.0.0.1:{server.server_port}/", messages)
    finally:
        server.shutdown()
        server.server_close()
