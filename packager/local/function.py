"""Run a function locally the way Lambda runs it: AWS's runtime client (`awslambdaric`) in its own
process against our Runtime API (runtime_api.py), optionally inside the image's unpacked root file
system under `unshare`/`chroot`; and an HTTP front that turns requests into API Gateway events.

A handler that raises, hangs past the timeout or kills its process is reported the way Lambda and
API Gateway report it; the runtime process is then restarted and the server keeps serving.
Processes are ended by their own process group id, never by name.

Must not import export, registry or anything that talks to AWS.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import IO, Any, Protocol

from handlers import contract
from packager.errors import MlpackError
from packager.local.runtime_api import InvocationResult, QuietServer, RuntimeApi, error_payload
from packager.oci import resolve_inside

UNSHARE = "/usr/bin/unshare"
INIT_TIMEOUT_S = 30.0  # Lambda allows 10 s; a first local start compiles bytecode and warms the disk cache
HOST_ARCH = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}.get(
    platform.machine().lower(), platform.machine().lower())
TEXT_TYPES = ("application/json", "text/", "application/xml", "application/javascript")
GATEWAY_MAX_BODY = 10 * 1024 * 1024  # API Gateway's payload limit
MAX_CHUNK_LINE = 8192  # a chunk-size line (with its extensions) or a trailer line
MAX_TRAILERS = 100
TOO_LONG = b'{"message":"Request Too Long"}'
LINGER_IDLE_S = 1.0  # after an early answer: how long to wait for more of the unread body ...
LINGER_TOTAL_S = 5.0  # ... and how long to read it at most, before closing


class LocalRunError(MlpackError):
    """The function could not be started locally."""


@dataclass(frozen=True, kw_only=True)
class RuntimeCommand:
    """How to start one runtime process: argv, its whole environment, and a line saying what it is."""

    argv: tuple[str, ...]
    env: dict[str, str]
    cwd: Path
    description: str


def lambda_env(*, name: str, memory_mb: int, timeout_s: int, task_root: str) -> dict[str, str]:
    """The variables Lambda sets in every execution environment (no credentials: none are needed)."""
    return {
        "AWS_LAMBDA_FUNCTION_NAME": name, "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(memory_mb), "AWS_LAMBDA_FUNCTION_TIMEOUT": str(timeout_s),
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{name}", "AWS_LAMBDA_LOG_STREAM_NAME": "local",
        "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1", "AWS_EXECUTION_ENV": "mlpack-local",
        "LAMBDA_TASK_ROOT": task_root, "LAMBDA_RUNTIME_DIR": "/var/runtime", "_HANDLER": contract.HANDLER,
        "TZ": ":UTC", "LANG": "en_US.UTF-8", "PYTHONUNBUFFERED": "1",
    }


def task_root_command(task_root: Path, *, name: str, memory_mb: int = 1024, timeout_s: int = 29,
                      python: str = sys.executable, extra_env: dict[str, str] | None = None) -> RuntimeCommand:
    """The task root's handler and model under this machine's Python and packages."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **lambda_env(
        name=name, memory_mb=memory_mb, timeout_s=timeout_s, task_root=str(task_root))}
    env["PYTHONPATH"] = str(task_root)
    env[contract.ENV_MODEL_DIR] = str(task_root / "model")
    env.update(extra_env or {})
    return RuntimeCommand(argv=(python, "-m", "awslambdaric", contract.HANDLER), env=env, cwd=task_root,
                          description=f"{task_root} under {python} -m awslambdaric (this machine's packages)")


QEMU_ARCH = {"arm64": "aarch64", "x86_64": "x86_64"}
EMULATOR_IN_ROOT = "/.mlpack-emulator"  # where the emulator is copied inside an unpacked image


def emulator(arch: str) -> Path | None:
    """A user-mode emulator that runs `arch` programs on this machine (qemu-user-static: a static binary,
    so it also runs inside the image's root), or None when the host runs them natively or has none."""
    if arch == HOST_ARCH or arch not in QEMU_ARCH:
        return None
    name = f"qemu-{QEMU_ARCH[arch]}-static"
    found = shutil.which(name) or next((p for p in (f"/usr/bin/{name}", f"/usr/local/bin/{name}")
                                        if os.access(p, os.X_OK)), None)
    return Path(found) if found else None


def isolation_problem(arch: str) -> str | None:
    """Why this host cannot run an image's root file system itself, or None."""
    if sys.platform != "linux":
        return "--isolate needs Linux (unshare and chroot)"
    if arch != HOST_ARCH and emulator(arch) is None:
        return (f"the image is {arch} and this machine is {HOST_ARCH}: its programs cannot run here. Install "
                "qemu-user-static (Debian/Ubuntu: apt install qemu-user-static) and mlpack runs it emulated, or run "
                "without --isolate (the image's handler and model under this machine's Python packages), or on an "
                f"{arch} machine (for arm64: a Graviton instance or an arm64 CI runner)")
    if not os.access(UNSHARE, os.X_OK):
        return f"{UNSHARE} is missing (Debian package util-linux / coreutils)"
    return None


def isolated_command(rootfs: Path, config: dict[str, Any], *, arch: str, name: str, memory_mb: int = 1024,
                     timeout_s: int = 29, extra_env: dict[str, str] | None = None) -> RuntimeCommand:
    """The image's own Entrypoint + Cmd with the image's environment, chrooted into its root file system
    inside new user, mount and pid namespaces (no privileges needed, the host network is shared)."""
    problem = isolation_problem(arch)
    if problem:
        raise LocalRunError(f"cannot run the image isolated: {problem}")
    inner = config.get("config") or {}
    entry = list(inner.get("Entrypoint") or []) + list(inner.get("Cmd") or [])
    if not entry:
        raise LocalRunError("the image sets neither Entrypoint nor Cmd", hint="rebuild it with `mlpack build`")
    env: dict[str, str] = {}
    for item in inner.get("Env") or []:
        k, _, v = item.partition("=")
        env[k] = v
    env.setdefault("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    workdir = inner.get("WorkingDir") or contract.TASK_ROOT
    env.update(lambda_env(name=name, memory_mb=memory_mb, timeout_s=timeout_s, task_root=contract.TASK_ROOT))
    env.update(extra_env or {})
    emu = emulator(arch)
    how = "unshare --root"
    if emu is not None:
        # qemu-user runs one program; what that program execs is not emulated (no binfmt_misc here), so
        # the entry point must be the program itself, not a script that starts it
        program = resolve_inside(rootfs, entry[0], follow_last=True)  # the image's links, never the host's
        try:
            with program.open("rb") as f:
                is_elf = f.read(4) == b"\x7fELF"
        except OSError as e:
            raise LocalRunError(f"the image's entry point {entry[0]} cannot be read: {e}") from e
        if not is_elf:
            raise LocalRunError(f"cannot run the {arch} image emulated: its entry point {entry[0]} is a script, "
                                "and the programs a script starts would not be emulated",
                                hint=f"build it with --base debian (its entry point is python itself), or run it on "
                                     f"an {arch} machine")
        shutil.copy2(emu, rootfs / EMULATOR_IN_ROOT.lstrip("/"))
        entry = [EMULATOR_IN_ROOT, *entry]
        how = f"unshare --root, emulated by {emu.name}"
    for d in ("dev", "proc", "tmp"):
        (rootfs / d).mkdir(exist_ok=True)
    # inside the namespaces: give the root a /dev and /proc, then enter it in WorkingDir. The image may
    # have no shell of its own (the debian base has none), so the host's unshare does the chroot + chdir.
    script = ('r="$1"; w="$2"; shift 2; mount --rbind /dev "$r/dev" && mount -t proc proc "$r/proc" '
              f'&& exec {UNSHARE} --root="$r" --wd="$w" "$@"')
    argv = (UNSHARE, "-r", "-m", "-p", "-f", "--kill-child", "/bin/sh", "-c", script, "sh", str(rootfs), workdir,
            *entry)
    return RuntimeCommand(argv=argv, env=env, cwd=rootfs, description=f"{' '.join(entry)} in {rootfs} ({how})")


@dataclass
class LocalFunction:
    """One execution environment: a runtime process, restarted after a crash or a timeout."""

    command: RuntimeCommand
    timeout_s: float = 29.0
    output: Callable[[str], None] = field(default=lambda line: print(line, file=sys.stderr))
    name: str | None = None  # default: the command's AWS_LAMBDA_FUNCTION_NAME
    api: RuntimeApi = field(init=False)
    proc: subprocess.Popen[bytes] | None = field(default=None, init=False)
    restarts: int = field(default=0, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)

    def __post_init__(self) -> None:
        self.name = self.name or self.command.env.get("AWS_LAMBDA_FUNCTION_NAME") or "mlpack-local"
        self.api = RuntimeApi(function_name=self.name).start()

    def __enter__(self) -> LocalFunction:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def _spawn(self) -> None:
        self.api.reset_init()
        env = {**self.command.env, "AWS_LAMBDA_RUNTIME_API": self.api.address}
        self.proc = subprocess.Popen(list(self.command.argv), env=env, cwd=self.command.cwd,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        threading.Thread(target=self._pump, args=(self.proc.stdout,), daemon=True).start()

    def _pump(self, stream: IO[bytes] | None) -> None:
        if stream is None:
            return
        for raw in iter(stream.readline, b""):
            self.output(raw.decode("utf-8", "replace").rstrip("\n"))

    def _kill(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # our own process group, started by _spawn
        proc.wait()

    def start(self) -> None:
        """Start the runtime and wait for its init to end (it asks for work, or reports an init error)."""
        self._spawn()
        deadline = time.monotonic() + INIT_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.api.ready.is_set() or self.api.init_error_event.is_set():
                return
            if self.proc is not None and self.proc.poll() is not None:
                return  # exited during init: reported by the first invoke
            time.sleep(0.02)

    def _alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def invoke(self, event: Any) -> InvocationResult:
        payload = event if isinstance(event, bytes) else json.dumps(event).encode()
        with self._lock:  # one execution environment runs one invocation at a time
            if not self._alive():
                if self.proc is not None:
                    self.restarts += 1
                self._kill()
                self.start()
            inv = self.api.submit(payload, self.timeout_s)
            submitted = time.monotonic()
            while not inv.done.wait(0.02):
                now = time.monotonic()
                if self.api.init_error_event.is_set() and not inv.started:
                    inv.finish(InvocationResult("init_error", self.api.init_error or b"", inv.request_id, 0.0,
                                                "Runtime.InitError"))
                elif not self._alive():
                    code = self.proc.returncode if self.proc is not None else None
                    inv.finish(InvocationResult(
                        "crash", error_payload("Runtime.ExitError", f"RequestId: {inv.request_id} Error: Runtime "
                                               f"exited with error: exit status {code}"),
                        inv.request_id, inv.elapsed_ms(), "Runtime.ExitError"))
                elif inv.started and now - inv.started > self.timeout_s:
                    inv.finish(InvocationResult(
                        "timeout", error_payload("Sandbox.Timedout", f"RequestId: {inv.request_id} Error: Task "
                                                 f"timed out after {self.timeout_s:.2f} seconds"),
                        inv.request_id, inv.elapsed_ms(), "Sandbox.Timedout"))
                elif not inv.started and now - submitted > INIT_TIMEOUT_S + self.timeout_s:
                    inv.finish(InvocationResult("timeout", error_payload(
                        "Runtime.InitTimeout", "the runtime never asked for the invocation"),
                        inv.request_id, 0.0, "Runtime.InitTimeout"))
            result = inv.result
            assert result is not None
            self.api.current = None
            if result.status in ("timeout", "crash", "init_error"):
                self.output(f"mlpack: {result.status}: {result.payload.decode('utf-8', 'replace')}")
                self._kill()  # Lambda discards the environment; the next invoke starts a fresh one
                self.restarts += 1
            return result

    def stop(self) -> None:
        self._kill()
        self.api.stop()


# --- API Gateway in front ----------------------------------------------------------------------


def http_event(method: str, path: str, query: str, headers: dict[str, str], body: bytes, *,
               api: str = "rest") -> dict[str, Any]:
    """An API Gateway proxy event for one HTTP request: REST (payload 1.0) or HTTP API (2.0)."""
    # header names arrive as the client spelled them: REST events keep that spelling, HTTP API
    # events lower-case them
    http = api == "http"
    if http:
        headers = {k.lower(): v for k, v in headers.items()}
    ctype = next((v for k, v in headers.items() if k.lower() == "content-type"), "").lower()
    b64 = bool(body) and not (any(ctype.startswith(t) for t in TEXT_TYPES) or ctype.endswith("+json"))
    body_s = (base64.b64encode(body).decode() if b64 else body.decode("utf-8", "replace")) if body else None
    now = int(time.time() * 1000)
    request_id = f"local-{now}"
    if http:
        return {"version": "2.0", "routeKey": "$default", "rawPath": path, "rawQueryString": query,
                "headers": headers,
                "requestContext": {"http": {"method": method, "path": path, "protocol": "HTTP/1.1",
                                            "sourceIp": "127.0.0.1", "userAgent": headers.get("user-agent", "")},
                                   "requestId": request_id, "stage": "$default", "timeEpoch": now,
                                   "routeKey": "$default", "accountId": "000000000000", "apiId": "local"},
                "body": body_s, "isBase64Encoded": b64}
    params = dict(p.partition("=")[::2] for p in query.split("&") if p) or None
    return {"resource": "/{proxy+}", "path": path, "httpMethod": method, "headers": headers,
            "multiValueHeaders": {k: [v] for k, v in headers.items()},
            "queryStringParameters": params, "pathParameters": {"proxy": path.lstrip("/")},
            "requestContext": {"resourcePath": "/{proxy+}", "httpMethod": method, "path": f"/local{path}",
                               "stage": "local", "requestId": request_id,
                               "identity": {"sourceIp": "127.0.0.1"}},
            "body": body_s, "isBase64Encoded": b64}


def gateway_response(result: InvocationResult, *, api: str = "rest") -> tuple[int, dict[str, str], bytes]:
    """What API Gateway answers for a Lambda result: the proxy response, or its own error."""
    headers = {"x-amzn-RequestId": result.request_id}
    rest = api == "rest"
    status, message = 502, b'{"message": "Internal server error"}'  # a REST API's answer to every failure
    if result.ok:
        try:
            resp = json.loads(result.payload)
            code = int(resp["statusCode"])
            body = resp.get("body") or ""
            out = base64.b64decode(body) if resp.get("isBase64Encoded") else str(body).encode()
            headers.update({str(k): str(v) for k, v in (resp.get("headers") or {}).items()})
            return code, headers, out
        except (ValueError, KeyError, TypeError):
            if not rest and result.payload:  # HTTP APIs take a bare JSON value as a 200
                return 200, {**headers, "Content-Type": "application/json"}, result.payload
    elif not rest:
        status, message = ((503, b'{"message":"Service Unavailable"}') if result.status == "timeout"
                           else (500, b'{"message":"Internal Server Error"}'))
    return status, {**headers, "x-amzn-ErrorType": "InternalServerErrorException"}, message


class Reader(Protocol):
    """What the body readers need of a connection: a buffered binary stream (or io.BytesIO)."""

    def read(self, size: int, /) -> bytes: ...

    def readline(self, size: int, /) -> bytes: ...


class BodyError(Exception):
    """A request body the front cannot take: the status and message to answer. The rest of the
    connection is then unusable (an unread or half-read body), so the answer closes it."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    def payload(self) -> bytes:
        return TOO_LONG if self.status == 413 else json.dumps({"message": self.message}).encode()


_DIGITS = re.compile(r"[0-9]+")
_HEX = re.compile(rb"[0-9A-Fa-f]+")


def _too_long() -> BodyError:
    return BodyError(413, "Request Too Long")


def _content_length(values: list[str]) -> int:
    # RFC 9110 8.6: a list of identical values ("42, 42", or the header twice) is one length
    distinct = {v.strip() for value in values for v in value.split(",")}
    if len(distinct) != 1:
        raise BodyError(400, f"Content-Length: conflicting values {sorted(distinct)}: send one length")
    (raw,) = distinct
    if not _DIGITS.fullmatch(raw):  # int() would take "+5", " 5", "5_0" and "-1"
        raise BodyError(400, f"Content-Length: {raw!r} is not a length in bytes (a whole number, 0 or more)")
    if len(raw.lstrip("0")) > 12:  # beyond any limit, and int() refuses very long digit strings
        raise _too_long()
    return int(raw)


def _chunk_line(rfile: Reader) -> bytes:
    line = rfile.readline(MAX_CHUNK_LINE + 1)
    if line.endswith(b"\r\n"):
        return line[:-2]
    if len(line) > MAX_CHUNK_LINE:
        raise BodyError(400, f"chunked body: a chunk-size or trailer line longer than {MAX_CHUNK_LINE} bytes")
    if line.endswith(b"\n"):
        raise BodyError(400, "chunked body: lines must end with CRLF, not a bare LF")
    raise BodyError(400, "chunked body: the request ended before its last (0-size) chunk")


def read_chunked(rfile: Reader, limit: int = GATEWAY_MAX_BODY) -> bytes:
    """A Transfer-Encoding: chunked body (RFC 9112 7.1): hex size lines, extensions after ';' (ignored),
    data, CRLF, a 0-size last chunk, then trailer lines (ignored) up to an empty line. Bodies over
    `limit` stop reading at the chunk that crosses it."""
    parts: list[bytes] = []
    total = 0
    while True:
        line = _chunk_line(rfile)
        size_text = line.partition(b";")[0].strip(b" \t")
        if not _HEX.fullmatch(size_text):
            raise BodyError(400, f"chunked body: {line[:40]!r} is not a chunk size (hexadecimal digits, "
                            "then optional ;extensions)")
        if len(size_text.lstrip(b"0")) > 12:
            raise _too_long()
        size = int(size_text, 16)
        if size == 0:
            break
        total += size
        if total > limit:
            raise _too_long()
        data = rfile.read(size)
        if len(data) < size:
            raise BodyError(400, f"chunked body: the request ended inside a chunk ({len(data)} of {size} bytes)")
        if rfile.read(2) != b"\r\n":
            raise BodyError(400, f"chunked body: a chunk of {size} bytes is not followed by CRLF "
                            "(does its size match its data?)")
        parts.append(data)
    for _ in range(MAX_TRAILERS + 1):
        trailer = _chunk_line(rfile)
        if not trailer:
            return b"".join(parts)
        if b":" not in trailer:
            raise BodyError(400, f"chunked body: trailer {trailer[:40]!r} is not a 'name: value' field")
    raise BodyError(400, f"chunked body: more than {MAX_TRAILERS} trailer fields")


def read_body(headers: Message, rfile: Reader) -> bytes:
    """The request body as API Gateway takes it: by Content-Length or chunked, at most 10 MB."""
    lengths = headers.get_all("Content-Length") or []
    encodings = headers.get_all("Transfer-Encoding") or []
    if encodings:
        if lengths:  # RFC 9112 6.3: a request smuggling vector; refuse rather than pick one
            raise BodyError(400, "Content-Length and Transfer-Encoding: both are set; send only one of them")
        codings = [c.strip().lower() for value in encodings for c in value.split(",") if c.strip()]
        if codings[-1:] != ["chunked"]:
            raise BodyError(400, f"Transfer-Encoding: {', '.join(encodings)!r}: a request's last transfer "
                            "coding must be chunked")
        if codings != ["chunked"]:
            raise BodyError(501, f"Transfer-Encoding: {', '.join(encodings)!r}: only chunked is supported")
        return read_chunked(rfile)
    length = _content_length(lengths) if lengths else 0
    if length > GATEWAY_MAX_BODY:
        raise _too_long()
    body = rfile.read(length) if length else b""
    if len(body) < length:
        raise BodyError(400, f"Content-Length: the request ended after {len(body)} of its {length} bytes")
    return body


class ApiGatewayFront:
    """A local HTTP endpoint in front of a LocalFunction: same paths, status codes, headers, base64."""

    def __init__(self, function: LocalFunction, *, host: str = "127.0.0.1", port: int = 0, api: str = "rest",
                 log: Callable[[str], None] | None = None) -> None:
        front = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                if front.log:
                    front.log(f"{self.address_string()} {format % args}")

            def _serve(self) -> None:
                path, _, query = self.path.partition("?")
                try:
                    body = read_body(self.headers, self.rfile)
                except BodyError as e:
                    # the body is unread or half read: what is left of it must not be parsed as a request
                    self._reply(e.status, {}, e.payload(), close=True)
                    self._linger()
                    return
                if len(body) > contract.MAX_BODY_BYTES:  # Lambda's invoke limit, as API Gateway reports it
                    self._reply(413, {}, TOO_LONG)
                    return
                event = http_event(self.command, path, query, dict(self.headers.items()), body, api=api)
                status, out_headers, out = gateway_response(front.function.invoke(event), api=api)
                self._reply(status, out_headers, out)

            def _reply(self, status: int, headers: dict[str, str], body: bytes, *, close: bool = False) -> None:
                self.send_response(status)
                if close:
                    self.close_connection = True
                    self.send_header("Connection", "close")
                for k, v in headers.items():
                    if k.lower() not in ("content-length", "connection", "transfer-encoding"):
                        self.send_header(k, v)
                if not any(k.lower() == "content-type" for k in headers):
                    self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _linger(self) -> None:
                # a lingering close: closing a socket with unread data sends a reset, and a client still
                # sending its body would get a broken pipe and may lose the answer. End our side (FIN
                # after the answer), then read and drop what it still sends, for a bounded time.
                deadline = time.monotonic() + LINGER_TOTAL_S
                with contextlib.suppress(OSError):  # timeouts and resets included: we are closing anyway
                    self.connection.shutdown(socket.SHUT_WR)
                    self.connection.settimeout(LINGER_IDLE_S)
                    while time.monotonic() < deadline and self.rfile.read1(65536):
                        pass

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _serve

        self.function = function
        self.log = log
        self.server = QuietServer((host, port), Handler)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def serve_forever(self) -> None:
        self.server.serve_forever(poll_interval=0.2)

    def start_background(self) -> threading.Thread:
        t = threading.Thread(target=self.serve_forever, name="api-front", daemon=True)
        t.start()
        return t

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# --- what to run -----------------------------------------------------------------------------------


def handlers_source() -> Path:
    import handlers

    return Path(handlers.__file__).resolve().parent


def task_root_view(dest: Path, *, handlers_dir: Path, model_dir: Path) -> Path:
    """A task root holding just handlers/ and model/ (symlinked), for running under this host's packages."""
    dest.mkdir(parents=True, exist_ok=True)
    for name, src in (("handlers", handlers_dir), ("model", model_dir)):
        link = dest / name
        if link.is_symlink() or link.exists():
            if link.is_dir() and not link.is_symlink():
                shutil.rmtree(link)
            else:
                link.unlink()
        link.symlink_to(src.resolve(), target_is_directory=True)
    return dest
