"""The API Gateway front of `mlpack serve` at the HTTP level: chunked request bodies reach the
function whole; bad framing (Content-Length, Transfer-Encoding, chunked encoding) is a 400 with a
JSON message, never a dropped connection; an answer given before the body was read closes the
connection, so the unread body is never parsed as a request. And the work folder's removal never
changes a file outside it through a symlink.

Raw sockets where an HTTP client would normalise the request (or refuse to send it).
"""

from __future__ import annotations

import base64
import io
import json
import os
import socket
import stat
import tempfile
import textwrap
import traceback
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from handlers import contract as C
from packager.local import function as local
from packager.local.front import ApiGatewayFront, BodyError, read_chunked
from packager.local.prepare import _rmtree

ECHO = '''
import json

def handler(event, context):
    return {"statusCode": 200, "headers": {"Content-Type": "application/json"},
            "body": json.dumps({"body": event.get("body"), "b64": event.get("isBase64Encoded"),
                                "path": event.get("path") or event.get("rawPath")})}
'''
MB = 1024 * 1024
BINARY = bytes(range(256)) * 300  # every byte value; sent as application/octet-stream, so base64 in the event


@pytest.fixture(scope="module")
def fronts(tmp_path_factory):
    """An echo function (answers with the event's body) behind a REST and an HTTP API front."""
    root = tmp_path_factory.mktemp("echo")
    (root / "handlers").mkdir()
    (root / "handlers" / "__init__.py").write_text("")
    (root / "handlers" / "predict.py").write_text(textwrap.dedent(ECHO))
    (root / "model").mkdir()
    with local.LocalFunction(local.task_root_command(root, name="echo"), timeout_s=10, output=lambda s: None) as fn:
        fn.start()
        made = {api: ApiGatewayFront(fn, api=api) for api in ("rest", "http")}
        for front in made.values():
            front.start_background()
        try:
            yield made
        finally:
            for front in made.values():
                front.stop()


class Conn:
    """One raw HTTP/1.1 connection: send any bytes, read responses one at a time."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.sock = socket.create_connection((parts.hostname, parts.port), timeout=30)
        self.rfile = self.sock.makefile("rb")

    def __enter__(self) -> Conn:
        return self

    def __exit__(self, *exc: object) -> None:
        self.rfile.close()
        self.sock.close()

    def send(self, raw: bytes) -> None:
        self.sock.sendall(raw)

    def response(self) -> tuple[int, dict[str, str], bytes]:
        status_line = self.rfile.readline()
        assert status_line.startswith(b"HTTP/1.1 "), f"no response (connection dropped?): {status_line!r}"
        headers: dict[str, str] = {}
        while (line := self.rfile.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        return int(status_line.split()[1]), headers, self.rfile.read(int(headers.get("content-length", "0")))

    def closed_by_server(self) -> bool:
        """True once the server has closed; False if it still holds the connection open (or answers more)."""
        self.sock.settimeout(5)
        try:
            return self.rfile.read(1) == b""
        except ConnectionResetError:
            return True
        except TimeoutError:
            return False


def post_head(path: str, *headers: str, ctype: str = "application/octet-stream") -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Type: {ctype}", *headers, "", ""]
    return "\r\n".join(lines).encode()


def chunked(body: bytes, sizes: list[int]) -> bytes:
    """`body` in chunks of the given sizes (the rest in one more), with the forms RFC 9112 allows:
    upper/lower-case hex, leading zeros, extensions, whitespace before ';', and a trailer."""
    out, i = [], 0
    for n, size in enumerate([*sizes, len(body)]):
        piece = body[i:i + size]
        i += len(piece)
        if not piece:
            continue
        size_text = [f"{len(piece):x}", f"{len(piece):X}", f"00{len(piece):x}"][n % 3]
        ext = ["", ";name=value", ' \t;a;b="quoted;value"'][n % 3]
        out.append(f"{size_text}{ext}\r\n".encode() + piece + b"\r\n")
    return b"".join(out) + b"0;last=1\r\nX-Checksum: whatever\r\nX-Other: 1\r\n\r\n"


def echoed(status: int, body: bytes) -> bytes:
    assert status == 200, body
    answer = json.loads(body)
    return base64.b64decode(answer["body"]) if answer["b64"] else (answer["body"] or "").encode()


# --- chunked bodies ------------------------------------------------------------------------------


@pytest.mark.parametrize("api", ["rest", "http"])
def test_a_chunked_body_reaches_the_function_whole_and_the_connection_stays_usable(fronts, api):
    with Conn(fronts[api].url) as conn:
        conn.send(post_head("/predict", "Transfer-Encoding: chunked") + chunked(BINARY, [1, 255, 4096, 7]))
        status, headers, out = conn.response()
        assert echoed(status, out) == BINARY
        assert headers.get("connection") != "close"
        # the next request on the same connection starts right after the trailers
        conn.send(post_head("/second", "Content-Length: 2", ctype="application/json") + b"{}")
        status, _, out = conn.response()
        assert echoed(status, out) == b"{}" and json.loads(out)["path"] == "/second"


def test_an_http_client_streaming_a_body_is_chunked_and_arrives_whole(fronts):
    pieces = [b'{"inputs": ', b"[[1, 2, 3, 4]", b", [5, 6, 7, 8]]}"]
    r = httpx.post(fronts["rest"].url + "/predict", content=iter(pieces),
                   headers={"content-type": "application/json"}, timeout=30)
    assert r.request.headers["transfer-encoding"] == "chunked"
    assert echoed(r.status_code, r.content) == b"".join(pieces)


def test_an_empty_chunked_body_is_an_empty_body(fronts):
    with Conn(fronts["rest"].url) as conn:
        conn.send(post_head("/predict", "Transfer-Encoding: chunked") + b"0\r\n\r\n")
        status, _, out = conn.response()
        assert echoed(status, out) == b""


def test_a_chunked_body_over_lambdas_limit_is_413_and_the_connection_stays_usable(fronts):
    body = b"x" * (C.MAX_BODY_BYTES + 1)
    with Conn(fronts["rest"].url) as conn:
        conn.send(post_head("/predict", "Transfer-Encoding: chunked") + chunked(body, [MB, 3 * MB]))
        status, headers, out = conn.response()
        assert (status, json.loads(out)) == (413, {"message": "Request Too Long"})
        assert headers.get("connection") != "close"  # the body was read to its end
        conn.send(post_head("/after", "Content-Length: 0"))
        assert echoed(*conn.response()[::2]) == b""


@pytest.mark.parametrize("tail", [
    pytest.param(lambda: chunked(b"y" * (10 * MB + 1), [4 * MB, 4 * MB]), id="sent"),
    pytest.param(lambda: f"{10 * MB + 1:x}\r\n".encode(), id="announced"),
])
def test_a_chunked_body_over_api_gateways_limit_is_413_and_closes_the_connection(fronts, tail):
    smuggled = b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
    with Conn(fronts["rest"].url) as conn:
        conn.send(post_head("/predict", "Transfer-Encoding: chunked") + tail() + smuggled)
        status, headers, out = conn.response()
        assert (status, json.loads(out)) == (413, {"message": "Request Too Long"})
        assert headers["connection"] == "close"
        assert conn.closed_by_server()


MALFORMED = {
    "size not hex": b"zz\r\nhello\r\n0\r\n\r\n",
    "size empty": b"\r\nhello\r\n0\r\n\r\n",
    "negative size": b"-5\r\nhello\r\n0\r\n\r\n",
    "size with 0x": b"0x5\r\nhello\r\n0\r\n\r\n",
    "data longer than its size": b"3\r\nhello\r\n0\r\n\r\n",
    "data shorter than its size": b"9\r\nhello\r\n0\r\n\r\n",
    "bare LF": b"5\nhello\n0\n\n",
    "trailer without a colon": b"5\r\nhello\r\n0\r\nnot a field\r\n\r\n",
    "too many trailers": b"5\r\nhello\r\n0\r\n" + b"X-T: 1\r\n" * 1000 + b"\r\n",
    "size line too long": b"5;" + b"e" * 20_000 + b"\r\nhello\r\n0\r\n\r\n",
    "no last chunk": b"5\r\nhello\r\n",
    "ends inside a chunk": b"5\r\nhel",
}


@pytest.mark.parametrize("raw", list(MALFORMED.values()), ids=list(MALFORMED))
def test_a_malformed_chunked_body_is_a_400_naming_the_fault(raw):
    with pytest.raises(BodyError) as caught:
        read_chunked(io.BytesIO(raw))
    assert caught.value.status == 400 and caught.value.message.startswith("chunked body: ")
    assert json.loads(caught.value.payload()) == {"message": caught.value.message}


@pytest.mark.parametrize("raw", [MALFORMED["size not hex"], MALFORMED["data longer than its size"],
                                 MALFORMED["ends inside a chunk"]], ids=["size", "data", "eof"])
def test_a_malformed_chunked_request_is_answered_400_and_the_connection_closed(fronts, raw):
    with Conn(fronts["rest"].url) as conn:
        conn.send(post_head("/predict", "Transfer-Encoding: chunked") + raw)
        if raw == MALFORMED["ends inside a chunk"]:
            conn.sock.shutdown(socket.SHUT_WR)  # the client gives up half way through
        status, headers, out = conn.response()
        assert status == 400 and json.loads(out)["message"].startswith("chunked body: ")
        assert headers["connection"] == "close"
        assert conn.closed_by_server()


def test_chunked_reading_stops_at_the_limit_without_reading_the_oversized_chunk():
    stream = io.BytesIO(b"5\r\nhello\r\n" + b"6\r\n" + b"z" * 6 + b"\r\n0\r\n\r\n")
    with pytest.raises(BodyError) as caught:
        read_chunked(stream, limit=10)
    assert caught.value.status == 413 and caught.value.payload() == b'{"message":"Request Too Long"}'
    assert stream.read() == b"z" * 6 + b"\r\n0\r\n\r\n"  # the 6-byte chunk was not read


# --- Content-Length and Transfer-Encoding headers -----------------------------------------------


BAD_FRAMING = {
    "not a number": (["Content-Length: abc"], "Content-Length"),
    "negative": (["Content-Length: -1"], "Content-Length"),
    "signed": (["Content-Length: +5"], "Content-Length"),
    "underscore": (["Content-Length: 5_0"], "Content-Length"),
    "conflicting list": (["Content-Length: 5, 6"], "Content-Length"),
    "conflicting headers": (["Content-Length: 5", "Content-Length: 6"], "Content-Length"),
    "both headers": (["Content-Length: 5", "Transfer-Encoding: chunked"], "Content-Length and Transfer-Encoding"),
    "not chunked last": (["Transfer-Encoding: chunked, gzip"], "Transfer-Encoding"),
    "unknown coding": (["Transfer-Encoding: gzip"], "Transfer-Encoding"),
}


@pytest.mark.parametrize(("headers", "named"), list(BAD_FRAMING.values()), ids=list(BAD_FRAMING))
def test_bad_framing_headers_are_a_400_naming_the_header_and_close_the_connection(fronts, headers, named):
    with Conn(fronts["rest"].url) as conn:
        conn.send(post_head("/predict", *headers) + b"hello")
        status, response_headers, out = conn.response()
        assert status == 400 and json.loads(out)["message"].startswith(named + ":"), out
        assert response_headers["connection"] == "close"
        assert conn.closed_by_server()


def test_a_transfer_coding_other_than_chunked_is_501(fronts):
    with Conn(fronts["rest"].url) as conn:
        conn.send(post_head("/predict", "Transfer-Encoding: gzip, chunked") + b"0\r\n\r\n")
        status, headers, out = conn.response()
        assert status == 501 and "only chunked" in json.loads(out)["message"]
        assert headers["connection"] == "close"


def test_a_repeated_identical_content_length_is_one_length(fronts):
    with Conn(fronts["rest"].url) as conn:
        conn.send(post_head("/predict", "Content-Length: 5, 5") + b"hello")
        assert echoed(*conn.response()[::2]) == b"hello"
        conn.send(post_head("/predict", "Content-Length: 2", "Content-Length: 2") + b"hi")
        assert echoed(*conn.response()[::2]) == b"hi"


@pytest.mark.parametrize("length", [str(10 * MB + 1), "9" * 40], ids=["over 10 MB", "40 digits"])
def test_an_early_413_closes_the_connection_so_the_unread_body_is_never_a_request(fronts, length):
    smuggled = b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
    with Conn(fronts["rest"].url) as conn:
        conn.send(post_head("/predict", f"Content-Length: {length}") + smuggled)
        status, headers, out = conn.response()
        assert (status, json.loads(out)) == (413, {"message": "Request Too Long"})
        assert headers["connection"] == "close"
        assert conn.closed_by_server()  # and no answer to /smuggled


@pytest.mark.parametrize("streamed", [False, True], ids=["content-length", "chunked"])
def test_a_client_uploading_over_10_mb_gets_the_413_not_a_reset(fronts, streamed):
    """The front answers before the body is read, then reads and drops the rest before closing."""
    body = b"z" * (10 * MB + 1)
    with httpx.Client(base_url=fronts["rest"].url, timeout=30) as client:
        r = client.post("/predict", content=iter([body[:MB], body[MB:]]) if streamed else body)
        assert (r.status_code, r.json(), r.headers["connection"]) == (413, {"message": "Request Too Long"}, "close")
        after = client.post("/predict", content=b"ok")  # on a new connection
        assert echoed(after.status_code, after.content) == b"ok"


def test_a_body_shorter_than_its_content_length_is_a_400(fronts):
    with Conn(fronts["rest"].url) as conn:
        conn.send(post_head("/predict", "Content-Length: 10") + b"hello")
        conn.sock.shutdown(socket.SHUT_WR)
        status, headers, out = conn.response()
        assert status == 400 and "5 of its 10 bytes" in json.loads(out)["message"]
        assert headers["connection"] == "close"


# --- removing an unpacked image ----------------------------------------------------------------


NOBODY = 65534


def run_unprivileged(fn, *args) -> None:
    """Run fn(*args) as an ordinary user: root ignores folder permissions, so as root the error
    path under test would never run. Forks and drops to `nobody` when the test runs as root."""
    if os.geteuid() != 0:
        fn(*args)
        return
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 1
        try:
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            fn(*args)
            code = 0
        except BaseException:
            traceback.print_exc()  # the parent's assertion says only that the child failed
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, "the unprivileged child failed"


def test_rmtree_removes_read_only_folders_and_never_chmods_through_a_symlink():
    base = Path(tempfile.mkdtemp(prefix="mlpack-rmtree-test-"))  # not under pytest's root-only tmp folder
    try:
        outside_file, outside_dir = base / "host-file", base / "host-dir"
        outside_file.write_text("a host file an image links to")
        outside_dir.mkdir()
        tree = base / "work"
        ro = tree / "rootfs" / "usr" / "lib"
        ro.mkdir(parents=True)
        (ro / "libx.so").write_text("x")
        (ro / "passwd").symlink_to(outside_file)
        (ro / "etc").symlink_to(outside_dir, target_is_directory=True)
        (ro / "dangling").symlink_to(base / "missing")
        locked = tree / "rootfs" / "root"  # not even listable
        locked.mkdir()
        (locked / "secret").write_text("s")
        (tree / "rootfs" / "top-link").symlink_to(outside_file)
        if os.geteuid() == 0:
            for p in [base, *base.rglob("*")]:
                os.chown(p, NOBODY, NOBODY, follow_symlinks=False)
        outside_file.chmod(0o640)
        outside_dir.chmod(0o750)
        locked.chmod(0)
        ro.chmod(0o555)
        ro.parent.chmod(0o555)

        run_unprivileged(_rmtree, tree)

        assert not tree.exists() and not tree.is_symlink()
        assert stat.S_IMODE(outside_file.stat().st_mode) == 0o640
        assert stat.S_IMODE(outside_dir.stat().st_mode) == 0o750
        assert stat.S_IMODE(base.stat().st_mode) == 0o700  # the folder holding the tree is not touched either
        assert outside_file.read_text() == "a host file an image links to"
    finally:
        for p in [base, *base.rglob("*")]:
            if not p.is_symlink():
                p.chmod(0o700)
        _rmtree(base)


def test_rmtree_of_a_symlink_leaves_it_and_its_target_alone(tmp_path):
    target = tmp_path / "target"
    target.mkdir()
    target.chmod(0o750)
    link = tmp_path / "link"
    link.symlink_to(target, target_is_directory=True)
    _rmtree(link)  # shutil refuses to remove through a link; the fixer must not chmod what it points to
    assert link.is_symlink() and stat.S_IMODE(target.stat().st_mode) == 0o750


def test_head_is_answered_as_get_without_a_body(fronts):
    for api in ("rest", "http"):
        r = httpx.head(fronts[api].url + "/health", timeout=10)
        assert r.status_code == 200 and r.content == b"" and int(r.headers["content-length"]) > 0


def test_every_method_reaches_the_function(fronts):
    """schemathesis sends TRACE: http.server alone answers methods it has no handler for with 501, a
    server error for what is the client's request. Every method reaches the function (here an echo; the
    real handler answers 405 where no route takes the method)."""
    for api in ("rest", "http"):
        for method in ("TRACE", "QUERY", "MADEUP", "PATCH", "DELETE", "PUT"):
            r = httpx.request(method, fronts[api].url + "/predict", timeout=10)
            assert r.status_code == 200 and r.json()["path"] == "/predict", (api, method, r.status_code, r.text[:200])


def test_a_binary_body_counts_against_lambdas_limit_as_base64(fronts):
    raw = b"\x00\xff" * (C.MAX_BODY_BYTES * 3 // 8 + 1)  # 4.5 MB: under 6 MB as bytes, over it in base64
    assert len(raw) < C.MAX_BODY_BYTES < len(base64.b64encode(raw))
    r = httpx.post(fronts["rest"].url + "/predict", content=raw,
                   headers={"content-type": "application/octet-stream"}, timeout=30)
    assert r.status_code == 413 and r.json() == {"message": "Request Too Long"}


def test_two_hundred_connections_opened_at_once_are_all_answered(fronts):
    """All connections are opened before any request is sent: each must be accepted (the standard
    library's backlog of 5 is raised), then each answered."""
    conns = [Conn(fronts["rest"].url) for _ in range(200)]
    try:
        for i, conn in enumerate(conns):
            conn.send(post_head(f"/c{i}", "Content-Length: 0"))
        assert [conn.response()[0] for conn in conns] == [200] * 200
    finally:
        for conn in conns:
            conn.__exit__()


def test_a_half_sent_request_is_cut_off_after_the_read_timeout(fronts, monkeypatch):
    from packager.local import front as front_mod

    monkeypatch.setattr(front_mod, "READ_TIMEOUT_S", 0.5)
    fn = fronts["rest"].function
    slow = ApiGatewayFront(fn, api="rest")
    slow.start_background()
    try:
        with Conn(slow.url) as conn:
            conn.send(post_head("/predict", "Content-Length: 100") + b'{"half":')
            conn.sock.settimeout(10)
            assert conn.sock.recv(65536) == b""  # the server closed the connection, no thread left waiting
    finally:
        slow.stop()
