"""A local Lambda Runtime API (version 2018-06-01) on 127.0.0.1: the server side of what AWS's
runtime client (`awslambdaric`) talks to inside a function.

It hands out one invocation at a time (GET next, with request-id, deadline and ARN headers) and
takes its response, error or the runtime's init error. What happens around it (processes,
timeouts, restarts) is function.py's job. Standard library only; must not import export, image,
registry or anything that talks to AWS.

Enters: invocation payloads (`submit`) and, over HTTP, the runtime's requests. Leaves: an `Invocation`
per payload, finished with an `InvocationResult` (or by the caller: timeout, crash).
"""

from __future__ import annotations

import json
import queue
import select
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

PREFIX = "/2018-06-01/runtime"
NEXT = f"{PREFIX}/invocation/next"
INVOCATION = f"{PREFIX}/invocation/"  # + request id + /response or /error
INIT_ERROR = f"{PREFIX}/init/error"
MAX_RESPONSE = 6 * 1024 * 1024  # Lambda's synchronous response limit


class QuietServer(ThreadingHTTPServer):
    """A killed runtime drops its long-poll connection: expected here, not worth a traceback."""

    daemon_threads = True
    # the standard library listens with a backlog of 5: 50 clients connecting at once get resets
    request_queue_size = 1024

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if not isinstance(exc, ConnectionError | TimeoutError):
            super().handle_error(request, client_address)


@dataclass
class InvocationResult:
    """How an invocation ended, in Lambda's terms.

    status: "ok" | "error" (the handler raised; Lambda's "Unhandled" function error) | "timeout" |
    "crash" (the runtime process exited) | "init_error" (the function could not start).
    """

    status: str
    payload: bytes
    request_id: str
    duration_ms: float
    error_type: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def json(self) -> Any:
        return json.loads(self.payload) if self.payload else None


@dataclass
class Invocation:
    payload: bytes
    timeout_s: float
    request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    started: float = 0.0  # monotonic time the runtime took it, 0 while queued
    deadline_ms: int = 0
    done: threading.Event = field(default_factory=threading.Event)
    result: InvocationResult | None = None

    def finish(self, result: InvocationResult) -> bool:
        """First finisher wins: a late response after a timeout is dropped, as Lambda drops it."""
        if self.done.is_set():
            return False
        self.result = result
        self.done.set()
        return True

    def elapsed_ms(self) -> float:
        return (time.monotonic() - self.started) * 1000.0 if self.started else 0.0


def error_payload(error_type: str, message: str) -> bytes:
    return json.dumps({"errorType": error_type, "errorMessage": message}).encode()


class _RuntimeHandler(BaseHTTPRequestHandler):
    """The Runtime API's endpoints, for the `RuntimeApi` each server's subclass names in `api`."""

    protocol_version = "HTTP/1.1"
    api: RuntimeApi

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the runtime polls constantly; its access log is noise

    def _read(self) -> bytes:
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _client_gone(self) -> bool:
        # a runtime killed while it waits for work leaves this long poll behind
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        api = self.api
        if self.path != NEXT:
            self._send(404, error_payload("NotFound", self.path))
            return
        inv = api._next(self._client_gone)
        if inv is None:  # shutting down: the runtime sees a failure and exits
            self._send(HTTPStatus.GONE, error_payload("Shutdown", "local runtime API stopped"))
            return
        self._send(200, inv.payload, {
            "Lambda-Runtime-Aws-Request-Id": inv.request_id,
            "Lambda-Runtime-Deadline-Ms": str(inv.deadline_ms),
            "Lambda-Runtime-Invoked-Function-Arn": api.function_arn,
            "Lambda-Runtime-Trace-Id": f"Root=1-{int(time.time()):08x}-{inv.request_id.replace('-', '')[:24]}",
        })

    def do_POST(self) -> None:
        body = self._read()
        path = self.path
        if path == INIT_ERROR:
            self._init_error(body)
            return
        if path.startswith(INVOCATION):
            self._invocation_end(path, body)
            return
        self._send(404, error_payload("NotFound", path))

    def _init_error(self, body: bytes) -> None:
        """The runtime could not start the function."""
        api = self.api
        api.init_error = body or error_payload("Runtime.Unknown", "init failed")
        api.init_error_event.set()
        self._send(202, b'{"status":"OK"}')

    def _invocation_end(self, path: str, body: bytes) -> None:
        """The runtime's response or error for the current invocation."""
        request_id, _, what = path[len(INVOCATION):].partition("/")
        inv = self.api.current
        if inv is None or inv.request_id != request_id or what not in ("response", "error"):
            self._send(400, error_payload("InvalidRequestID", f"no invocation {request_id}"))
            return
        if what == "response" and len(body) > MAX_RESPONSE:
            inv.finish(InvocationResult(
                "error", error_payload("Function.ResponseSizeTooLarge",
                                       f"Response payload size ({len(body)} bytes) exceeded maximum "
                                       f"allowed payload size ({MAX_RESPONSE} bytes)."),
                request_id, inv.elapsed_ms(), "Function.ResponseSizeTooLarge"))
            self._send(413, error_payload("RequestEntityTooLarge", "response too large"))
            return
        if what == "response":
            inv.finish(InvocationResult("ok", body, request_id, inv.elapsed_ms()))
        else:
            etype = self.headers.get("Lambda-Runtime-Function-Error-Type") or "Unhandled"
            inv.finish(InvocationResult("error", body, request_id, inv.elapsed_ms(), etype))
        self._send(202, b'{"status":"OK"}')


class RuntimeApi:
    """The server. `submit` queues an invocation; the runtime's response, error or a caller's
    `Invocation.finish` (timeout, crash) ends it."""

    def __init__(self, *, function_name: str = "mlpack-local", host: str = "127.0.0.1", port: int = 0) -> None:
        self.function_arn = f"arn:aws:lambda:us-east-1:000000000000:function:{function_name}"
        self._queue: queue.Queue[Invocation] = queue.Queue()
        self.current: Invocation | None = None
        self.init_error: bytes | None = None
        self.init_error_event = threading.Event()
        self.ready = threading.Event()  # set when a runtime first asks for work (init finished)
        self._stopping = threading.Event()
        handler = type("Handler", (_RuntimeHandler,), {"api": self})
        self._server = QuietServer((host, port), handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="runtime-api", daemon=True)

    @property
    def address(self) -> str:
        host, port = self._server.server_address[:2]
        return f"{host!s}:{port}"

    def start(self) -> RuntimeApi:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()

    def _next(self, gone: Callable[[], bool] = lambda: False) -> Invocation | None:
        self.ready.set()
        while not self._stopping.is_set():
            if gone():
                return None
            try:
                inv = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            if inv.done.is_set():
                continue  # given up on while queued
            if gone():
                self._queue.put(inv)  # its runtime died while waiting: leave the work to the next one
                return None
            inv.started = time.monotonic()
            inv.deadline_ms = int(time.time() * 1000 + inv.timeout_s * 1000)
            self.current = inv
            return inv
        return None

    def submit(self, payload: bytes, timeout_s: float) -> Invocation:
        inv = Invocation(payload, timeout_s)
        self._queue.put(inv)
        return inv

    def reset_init(self) -> None:
        self.init_error = None
        self.init_error_event.clear()
        self.ready.clear()
