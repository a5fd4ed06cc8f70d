"""The API Gateway front of a local function: HTTP requests in, API Gateway's answers out.

Enters: HTTP requests (the request line, headers and a body framed by Content-Length or chunked, at
most 10 MB) on 127.0.0.1. Leaves: API Gateway proxy events (REST, payload 1.0, or HTTP API, 2.0) handed
to a `LocalFunction` (function.py), and its results answered the way API Gateway answers them: the
proxy response (status, headers, base64 bodies decoded), or API Gateway's own error. A body the front
cannot take is a JSON 400/413/501 answer that closes the connection, never a dropped one.

`http_event` and `gateway_response` are also used alone (`mlpack invoke` builds one event and reads one
result). Must not import export, registry or anything that talks to AWS.
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
import socket
import threading
import time
from collections.abc import Callable
from email.message import Message
from http.server import BaseHTTPRequestHandler
from typing import Any, Protocol

from handlers import contract
from packager.local.function import LocalFunction
from packager.local.runtime_api import InvocationResult, QuietServer

TEXT_TYPES = ("application/json", "text/", "application/xml", "application/javascript")
GATEWAY_MAX_BODY = 10 * 1024 * 1024  # API Gateway's payload limit
MAX_CHUNK_LINE = 8192  # a chunk-size line (with its extensions) or a trailer line
MAX_TRAILERS = 100
TOO_LONG = b'{"message":"Request Too Long"}'
LINGER_IDLE_S = 1.0  # after an early answer: how long to wait for more of the unread body ...
LINGER_TOTAL_S = 5.0  # ... and how long to read it at most, before closing
READ_TIMEOUT_S = 30.0  # a client silent this long while sending its request is cut off (API Gateway: 30 s)


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
            timeout = READ_TIMEOUT_S  # socket reads: a half-sent request never holds a thread forever

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
                head = self.command == "HEAD"  # API Gateway answers HEAD as GET, without the body
                event = http_event("GET" if head else self.command, path, query, dict(self.headers.items()), body,
                                   api=api)
                # Lambda's limit applies to the invoke payload: the event, with a binary body in base64
                if len(json.dumps(event, separators=(",", ":"))) > contract.MAX_BODY_BYTES:
                    self._reply(413, {}, TOO_LONG)
                    return
                status, out_headers, out = gateway_response(front.function.invoke(event), api=api)
                self._reply(status, out_headers, out, head=head)

            def _reply(self, status: int, headers: dict[str, str], body: bytes, *, close: bool = False,
                       head: bool = False) -> None:
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
                if not head:
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

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_HEAD = _serve

            def __getattr__(self, name: str) -> Any:
                # every other method (TRACE, CONNECT, QUERY, made-up ones) reaches the function too, which
                # answers 405 where no route takes it: http.server alone answers them 501, a server error
                # for what is the client's request
                if name.startswith("do_"):
                    return self._serve
                raise AttributeError(name)

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
