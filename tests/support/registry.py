"""A real OCI registry for tests: Debian's `docker-registry` (the CNCF distribution server) on a free
127.0.0.1 port, started and stopped by process id; plus a fault-injecting HTTP proxy in front of it.

    from tests.support.registry import local_registry  # noqa: F401   (session-scoped fixture)
    server = start_registry(tmp_path); ...; server.stop()

Talks only to 127.0.0.1. Imports nothing from packager/.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import random
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

REGISTRY_BIN = "docker-registry"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class RegistryServer:
    host: str  # "127.0.0.1:PORT"
    root: Path  # storage root
    process: subprocess.Popen[bytes] | None = field(repr=False, default=None)

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def stop(self) -> None:
        proc = self.process
        if proc is None or proc.poll() is not None:
            return
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)

    def kill_and_restart(self) -> None:
        """Kill the registry (SIGKILL: it gets no chance to tidy up), then start it again on the same port,
        storage and configuration, as a crashed registry comes back."""
        proc = self.process
        assert proc is not None
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        self.process = _serve(self.root / "config.yml", self.root)
        if not _answers(self):
            self.stop()
            pytest.fail("docker-registry did not come back: "
                        + (self.root / "registry.log").read_text(errors="replace")[-2000:])

    def blob_exists(self, repository: str, digest: str) -> bool:
        req = urllib.request.Request(f"{self.url}/v2/{repository}/blobs/{digest}", method="HEAD")
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return bool(r.status == 200)
        except urllib.error.HTTPError as e:
            if e.code == 404:
                return False
            raise


def start_registry(tmp_path: Path, *, attempts: int = 5) -> RegistryServer:
    """Start `docker-registry serve` with filesystem storage under tmp_path; wait until /v2/ answers."""
    binary = shutil.which(REGISTRY_BIN)
    if binary is None:
        pytest.fail(f"{REGISTRY_BIN} is not installed; run scripts/setup (it installs the Debian package)")
    root = tmp_path / "registry"
    root.mkdir(parents=True, exist_ok=True)
    last_err = ""
    for _ in range(attempts):
        port = free_port()
        config = root / "config.yml"
        config.write_text(
            "version: 0.1\n"
            "log:\n  level: error\n  accesslog:\n    disabled: true\n"
            f"storage:\n  filesystem:\n    rootdirectory: {root / 'data'}\n  delete:\n    enabled: true\n"
            # a fixed secret signs upload sessions' state: a restarted registry still knows them
            f"http:\n  addr: 127.0.0.1:{port}\n  secret: mlpack-tests\n",
            encoding="utf-8",
        )
        server = RegistryServer(host=f"127.0.0.1:{port}", root=root, process=_serve(config, root))
        if _answers(server):
            return server
        server.stop()
        last_err = (root / "registry.log").read_text(errors="replace")[-2000:]
    pytest.fail(f"docker-registry did not start: {last_err}")


def _serve(config: Path, root: Path) -> subprocess.Popen[bytes]:
    binary = shutil.which(REGISTRY_BIN)
    assert binary is not None
    with (root / "registry.log").open("ab") as log:
        return subprocess.Popen([binary, "serve", str(config)], stdout=log, stderr=log,
                                stdin=subprocess.DEVNULL, start_new_session=True)


def _answers(server: RegistryServer) -> bool:
    """Wait until the registry answers /v2/ (False when its process ended or it stayed silent for 20 s)."""
    proc = server.process
    assert proc is not None
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(f"{server.url}/v2/", timeout=2) as r:
                if r.status == 200:
                    return True
        except OSError:
            time.sleep(0.05)
    return False


@pytest.fixture(scope="session")
def local_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    """One registry for the whole session; tests use distinct repository names."""
    server = start_registry(tmp_path_factory.mktemp("registry"))
    try:
        yield server
    finally:
        server.stop()


# ---------------------------------------------------------------------------------------------------
# fault proxy


@dataclass
class FaultStats:
    requests: int = 0
    dropped: int = 0
    errors: int = 0
    cut: int = 0  # connections cut part-way through the request body
    bytes_in: int = 0  # request body bytes received from clients, whatever became of them
    bytes_forwarded: int = 0  # request body bytes passed on to the registry


class FaultProxy:
    """HTTP proxy to a registry that, for a share of requests, drops the connection (before or after
    the upstream handled it: `drop_after_share` of the drops), cuts it part-way through the request body
    (`cut_share`; nothing is forwarded) or answers 500 without forwarding; `scripted` names faults for
    given requests. Deterministic for a given seed (per request order).
    Holds one request body at a time per connection (a chunk of an upload): the memory measured in the
    tests is the pushing process's, not this one's. `stats` counts requests, faults and body bytes."""

    def __init__(self, upstream: str, *, drop_share: float = 0.15, error_share: float = 0.15, cut_share: float = 0.0,
                 drop_after_share: float = 0.5, seed: int = 1,
                 methods: tuple[str, ...] = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"),
                 scripted: dict[tuple[str, int], str] | None = None) -> None:
        self.upstream = upstream  # "127.0.0.1:PORT"
        self.drop_share = drop_share
        self.error_share = error_share
        self.cut_share = cut_share  # of requests with a body
        self.drop_after_share = drop_after_share  # of drops: after the registry handled the request
        # (method, n-th request of that method) -> the fault it meets, whatever the dice say
        self.scripted = dict(scripted or {})
        self.seen: dict[str, int] = {}
        self.methods = methods
        self.random = random.Random(seed)
        self.lock = threading.Lock()
        self.stats = FaultStats()
        self.enabled = True
        handler = type("Handler", (_FaultHandler,), {"proxy": self})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class _FaultHandler(BaseHTTPRequestHandler):
    """FaultProxy's request handler; each proxy's server uses a subclass naming that proxy."""

    proxy: FaultProxy
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def handle(self) -> None:
        with contextlib.suppress(ConnectionError):  # a client that went away mid-request: nothing to report
            super().handle()

    def _fault(self, has_body: bool) -> tuple[str | None, float]:
        """Which fault this request meets (None, "cut", "drop", "drop_after", "error") and a random share
        (how much of a cut body is read)."""
        proxy = self.proxy
        with proxy.lock:
            proxy.stats.requests += 1
            nth = proxy.seen[self.command] = proxy.seen.get(self.command, 0) + 1
            roll = proxy.random.random() if proxy.enabled and self.command in proxy.methods else 1.0
            when = proxy.random.random()
            scripted = proxy.scripted.get((self.command, nth))
        if scripted is not None:
            return scripted, 0.5
        cut = proxy.cut_share if has_body else 0.0
        if roll < cut:
            return "cut", when
        roll = (roll - cut) / (1 - cut)  # the other faults keep their shares of the rest
        if roll < proxy.drop_share:
            # dropped before the registry sees the request, or after it handled it (the answer is lost)
            return ("drop_after" if when >= 1 - proxy.drop_after_share else "drop"), when
        if roll < proxy.drop_share + proxy.error_share:
            return "error", when
        return None, when

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        chunked = self.headers.get("Transfer-Encoding", "").lower() == "chunked"
        fault, when = self._fault(length > 0 and not chunked)
        if fault == "cut":
            part = self.rfile.read(int(length * when))  # some of the body, then the connection goes
            with self.proxy.lock:
                self.proxy.stats.cut += 1
                self.proxy.stats.bytes_in += len(part)
            self._drop()
            return
        body = self._read_chunked() if chunked else self.rfile.read(length) if length else b""
        with self.proxy.lock:
            self.proxy.stats.bytes_in += len(body)
            if fault in ("drop", "drop_after"):
                self.proxy.stats.dropped += 1
            elif fault == "error":
                self.proxy.stats.errors += 1
        if fault == "drop":
            self._drop()
            return
        if fault == "drop_after":
            self._forward(body, drop_after=True)
            return
        if fault == "error":
            msg = b'{"errors":[{"code":"UNKNOWN","message":"injected fault"}]}'
            self.send_response(500)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(msg)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(msg)
            return
        self._forward(body, drop_after=False)

    def _read_chunked(self) -> bytes:
        out = bytearray()
        while True:
            size = int(self.rfile.readline().strip().split(b";")[0], 16)
            if size == 0:
                self.rfile.readline()
                return bytes(out)
            out += self.rfile.read(size)
            self.rfile.readline()

    def _drop(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def _forward(self, body: bytes, *, drop_after: bool) -> None:
        conn = http.client.HTTPConnection(self.proxy.upstream, timeout=60)
        headers = {k: v for k, v in self.headers.items()
                   if k.lower() not in ("transfer-encoding", "content-length", "connection")}
        headers["Content-Length"] = str(len(body))
        with self.proxy.lock:
            self.proxy.stats.bytes_forwarded += len(body)
        conn.request(self.command, self.path, body=body if body or self.command in ("PUT", "PATCH",
                                                                                   "POST") else None,
                     headers=headers)
        r = conn.getresponse()
        data = r.read()
        conn.close()
        if drop_after:
            self._drop()
            return
        self.send_response(r.status)
        for k, v in r.getheaders():
            if k.lower() in ("transfer-encoding", "connection", "content-length"):
                continue
            if k.lower() == "location":
                v = v.replace(f"//{self.proxy.upstream}", f"//{self.proxy.host}")
            self.send_header(k, v)
        length = r.getheader("Content-Length") if self.command == "HEAD" else str(len(data))
        self.send_header("Content-Length", length or "0")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _handle


@contextlib.contextmanager
def fault_proxy(upstream: str, **kwargs: object) -> Iterator[FaultProxy]:
    proxy = FaultProxy(upstream, **kwargs)  # type: ignore[arg-type]
    try:
        yield proxy
    finally:
        proxy.stop()
