"""Pushes that meet trouble: a large layer through a proxy failing a share of its requests (connection
drops and cuts included) arrives whole with the pushing process's memory bounded; a push killed half-way
is resumed by the next one from the registry's upload session; a session the registry no longer has is
started over; a host name that does not resolve fails at once, with a hint for what was being done.

The large pushes run in a subprocess (`PUSHER`) so that its peak RSS is the push's alone (VmHWM of its
own address space: getrusage's ru_maxrss would start from pytest's peak, which a forked child inherits);
they talk to Debian's docker-registry on 127.0.0.1 through tests/support/registry.py's fault proxy,
whose byte counter says what was sent. The host name test uses `nonexistent.invalid` (.invalid never
resolves).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import httpx
import pytest

from packager.errors import MlpackError, RegistryError
from packager.registry.client import ImageRef, RegistryClient, RetryPolicy, UploadSessions
from packager.registry.client import cache_dir as registry_cache_dir
from tests.support import registry as registry_support
from tests.support.registry import fault_proxy

local_registry = registry_support.local_registry  # the session fixture, shared

REPO_ROOT = Path(__file__).resolve().parents[2]
MB = 1024 * 1024
# MLPACK_TEST_BIG_MB=2048 MLPACK_TEST_CHUNK_MB=32 for the full-size run (32 MB is mlpack's chunk size)
BIG_MB = int(os.environ.get("MLPACK_TEST_BIG_MB", "300"))
CHUNK = int(os.environ.get("MLPACK_TEST_CHUNK_MB", "8")) * MB
RSS_LIMIT = 100 * MB

# Push one layout with mlpack's own plan and execute, in a process of its own; print what it did and its
# peak RSS. stop_after=N: after the registry confirmed N chunks, kill this process (SIGKILL: no clean-up
# of any kind runs) or raise (the push stops like an interrupted one).
PUSHER = r"""
import json, os, signal, sys
from pathlib import Path
from packager import oci
from packager.registry import push as push_mod
from packager.registry.client import ImageRef, RegistryClient, RetryPolicy

def peak_rss():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")

args = json.loads(sys.argv[1])
image = oci.read_layout(Path(args["layout"]))
dest = ImageRef.parse(args["dest"])
confirmed = []

class Stop(Exception):
    pass

def on_chunk(step, offset):
    confirmed.append(offset)
    if len(confirmed) == args.get("stop_after"):
        print(json.dumps({"stopped_at": offset}), flush=True)
        if args["stop"] == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        raise Stop()

retry = RetryPolicy(attempts=6, sleep=lambda s: None)
with RegistryClient(dest.registry, endpoint=args["endpoint"], retry=retry, chunk_size=args["chunk"]) as client:
    plan = push_mod.plan_push(image, dest, client)
    try:
        result = push_mod.execute(plan, image, client, chunk_progress=on_chunk)
    except Stop:
        sys.exit(3)
print(json.dumps({"bytes_sent": result.bytes_sent, "counts": result.counts, "chunks": len(confirmed),
                  "maxrss": peak_rss()}), flush=True)
"""


def big_image(dest: Path, size: int, seed: int) -> tuple[str, int]:
    """An OCI layout whose one layer is `size` random bytes, written a MB at a time; returns its digest
    and size. The registry does not look inside blobs, so the layer need not be a real tar.gz."""
    import random

    blobs = dest / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    rnd = random.Random(seed)
    h = hashlib.sha256()
    tmp = blobs / "layer.tmp"
    with tmp.open("wb") as f:
        left = size
        while left:
            piece = rnd.randbytes(min(MB, left))
            h.update(piece)
            f.write(piece)
            left -= len(piece)
    layer = "sha256:" + h.hexdigest()
    tmp.rename(blobs / layer[7:])

    def put(doc: dict[str, Any]) -> tuple[str, int]:
        data = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        (blobs / digest[7:]).write_bytes(data)
        return digest, len(data)

    config = put({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["/bin/true"]},
                  "rootfs": {"type": "layers", "diff_ids": [layer]}})
    manifest = put({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config[0],
                               "size": config[1]},
                    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer,
                                "size": size}]})
    (dest / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    (dest / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manifest[0], "size": manifest[1],
         "platform": {"architecture": "amd64", "os": "linux"}}]}))
    return layer, size


def push(layout: Path, dest: str, endpoint: str, cache: Path, **extra: object) -> tuple[int, dict[str, Any]]:
    """Run PUSHER; its exit code and its last JSON line."""
    args = {"layout": str(layout), "dest": dest, "endpoint": endpoint, "chunk": CHUNK, **extra}
    env = {**os.environ, "MLPACK_CACHE_DIR": str(cache)}
    proc = subprocess.run([sys.executable, "-c", PUSHER, json.dumps(args)], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=1800)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert lines or proc.returncode != 0, proc.stderr[-3000:]
    return proc.returncode, (json.loads(lines[-1]) if lines else {"stderr": proc.stderr[-3000:]})


def sessions_in(cache: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted((cache / "uploads").glob("*.json"))]


@pytest.mark.slow
def test_a_large_layer_through_a_failing_proxy_arrives_with_memory_bounded(tmp_path, local_registry):
    layout = tmp_path / "img"
    digest, _ = big_image(layout, BIG_MB * MB, seed=7)
    # about 15% of the requests fail: cut part-way through the body, dropped (mostly before the registry
    # sees them; a fifth of the drops after it handled them, the answer lost), or answered 500 by the proxy.
    # A lost answer to a chunk costs the whole session with this registry (see the next tests), so it is
    # the rarer fault here, as it is on a real network: the answer is small, the chunk is not.
    with fault_proxy(local_registry.host, drop_share=0.075, error_share=0.075, cut_share=0.05, drop_after_share=0.2,
                     seed=4) as proxy:
        code, out = push(layout, f"{local_registry.host}/faults/big:v1", proxy.url, tmp_path / "cache")
    assert code == 0, out
    assert out["counts"]["upload"] == 2
    assert local_registry.blob_exists("faults/big", digest)
    faults = proxy.stats.dropped + proxy.stats.errors + proxy.stats.cut
    # more failures than one blob's old budget of 6 attempts: only the reset on progress got it through
    assert faults > 6, proxy.stats
    assert out["maxrss"] < RSS_LIMIT, f"peak RSS {out['maxrss'] / MB:.1f} MB"
    print(f"\n{BIG_MB} MB in {CHUNK // MB} MB chunks through the proxy: {faults} faults in {proxy.stats.requests} "
          f"requests ({proxy.stats}), {out['bytes_sent'] / MB:.1f} MB sent, peak RSS {out['maxrss'] / MB:.1f} MB")
    assert sessions_in(tmp_path / "cache") == []  # finished: nothing left to resume


@pytest.mark.slow
def test_a_killed_push_is_resumed_by_the_next_from_the_registrys_session(tmp_path, local_registry):
    layout = tmp_path / "img"
    digest, size = big_image(layout, 160 * MB, seed=8)
    cache = tmp_path / "cache"
    dest = f"{local_registry.host}/faults/resumed:v1"
    with fault_proxy(local_registry.host, drop_share=0, error_share=0) as proxy:
        code, out = push(layout, dest, proxy.url, cache, stop_after=6, stop="kill")
        assert code == -signal.SIGKILL
        stopped_at = out["stopped_at"]
        assert stopped_at == 6 * CHUNK
        [session] = sessions_in(cache)
        assert (session["registry"], session["repository"], session["digest"]) == (local_registry.host,
                                                                                  "faults/resumed", digest)
        assert not local_registry.blob_exists("faults/resumed", digest)
        before = proxy.stats.bytes_in

        code, out = push(layout, dest, proxy.url, cache)
        resent = proxy.stats.bytes_in - before
    assert code == 0, out
    assert local_registry.blob_exists("faults/resumed", digest)
    # the second push sent the rest of the layer (then the small config and the manifest), not the 48 MB
    # already there; the proxy's count agrees with the push's own
    assert size - stopped_at <= out["bytes_sent"] < size - stopped_at + 4096
    assert 0 < resent - out["bytes_sent"] < 4096  # the manifest, by digest and by tag
    print(f"\nresumed at {stopped_at / MB:.0f} MB of {size / MB:.0f} MB: {resent / MB:.1f} MB sent the second time")
    assert sessions_in(cache) == []


@pytest.mark.slow
def test_a_push_stopped_by_a_killed_registry_resumes_once_it_is_back(tmp_path):
    """The registry is killed half-way through a layer (the push stops), then comes back: the next push
    sends the rest of the layer only."""
    server = registry_support.start_registry(tmp_path)
    try:
        layout = tmp_path / "img"
        digest, size = big_image(layout, 96 * MB, seed=11)
        cache = tmp_path / "cache"
        dest = f"{server.host}/faults/crashed:v1"
        code, out = push(layout, dest, server.url, cache, stop_after=4, stop="raise")
        assert code == 3 and out["stopped_at"] == 4 * CHUNK
        server.kill_and_restart()
        code, out = push(layout, dest, server.url, cache)
        assert code == 0, out
        assert size - 4 * CHUNK <= out["bytes_sent"] < size - 4 * CHUNK + 4096
        assert server.blob_exists("faults/crashed", digest)
    finally:
        server.stop()


@pytest.mark.slow
def test_a_session_the_registry_no_longer_has_is_started_over(tmp_path, local_registry):
    layout = tmp_path / "img"
    digest, size = big_image(layout, 80 * MB, seed=9)
    cache = tmp_path / "cache"
    dest = f"{local_registry.host}/faults/lost:v1"
    code, _ = push(layout, dest, local_registry.url, cache, stop_after=2, stop="raise")
    assert code == 3
    [session] = sessions_in(cache)
    # the registry forgets the upload (as one does after its expiry): the next push is told 404
    url = session["location"]
    url = url if url.startswith("http") else local_registry.url + url
    with urllib.request.urlopen(urllib.request.Request(url, method="DELETE"), timeout=10) as r:
        assert r.status == 204
    code, out = push(layout, dest, local_registry.url, cache)
    assert code == 0, out
    assert out["bytes_sent"] >= size
    assert local_registry.blob_exists("faults/lost", digest)
    assert sessions_in(cache) == []


@pytest.mark.slow
def test_a_lost_answer_to_a_chunk_starts_the_session_over_and_the_push_succeeds(tmp_path, local_registry):
    """The distribution registry cancels a session asked about with the URL from before a chunk it
    received but whose answer was lost (the URL's signed state names the old offset): mlpack starts a new
    session and the push still succeeds, in one run."""
    layout = tmp_path / "img"
    digest, size = big_image(layout, 80 * MB, seed=10)
    with fault_proxy(local_registry.host, drop_share=0, error_share=0,
                     scripted={("PATCH", 3): "drop_after"}) as proxy:
        code, out = push(layout, f"{local_registry.host}/faults/lostanswer:v1", proxy.url, tmp_path / "cache")
    assert code == 0, out
    assert proxy.stats.dropped == 1
    assert local_registry.blob_exists("faults/lostanswer", digest)
    assert out["bytes_sent"] >= size + 3 * CHUNK  # the three chunks of the cancelled session went again


def test_upload_sessions_are_kept_per_registry_repository_and_blob(tmp_path):
    sessions = UploadSessions(tmp_path / "uploads")
    digest = "sha256:" + "a" * 64
    sessions.save("reg.example", "a/b", digest, 100, "/v2/a/b/blobs/uploads/u1?_state=s", 40)
    assert sessions.load("reg.example", "a/b", digest, 100) == "/v2/a/b/blobs/uploads/u1?_state=s"
    assert sessions.load("reg.example", "a/c", digest, 100) is None  # another repository
    assert sessions.load("other.example", "a/b", digest, 100) is None  # another registry
    assert sessions.load("reg.example", "a/b", digest, 101) is None  # not the same blob after all
    [path] = (tmp_path / "uploads").iterdir()
    assert path.stat().st_mode & 0o077 == 0  # the session URL is the user's alone
    path.write_text("{not json")
    assert sessions.load("reg.example", "a/b", digest, 100) is None  # damaged: ignored, not an error
    sessions.forget("reg.example", "a/b", digest)
    assert list((tmp_path / "uploads").iterdir()) == []


def test_the_registry_plumbing_finds_the_cache_where_the_build_does(tmp_path, monkeypatch):
    from packager.image.deps import cache_dir as build_cache_dir

    for env in ({"MLPACK_CACHE_DIR": str(tmp_path / "c")}, {"XDG_CACHE_HOME": str(tmp_path / "x")}, {}):
        for var in ("MLPACK_CACHE_DIR", "XDG_CACHE_HOME"):
            monkeypatch.delenv(var, raising=False)
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        assert registry_cache_dir() == build_cache_dir()


# ---------------------------------------------------------------------------------------------------
# a host name that does not resolve


class Counting(httpx.HTTPTransport):
    """The real transport (it does resolve names), counting the requests it was asked to send."""

    def __init__(self) -> None:
        super().__init__()
        self.requests = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        return super().handle_request(request)


def unresolvable() -> tuple[RegistryClient, Counting, list[float]]:
    transport, pauses = Counting(), []
    client = RegistryClient("nonexistent.invalid", transport=transport,
                            retry=RetryPolicy(attempts=6, sleep=pauses.append))
    return client, transport, pauses


def test_a_base_on_a_host_that_does_not_resolve_is_one_attempt_with_the_offline_way():
    client, transport, pauses = unresolvable()
    with pytest.raises(RegistryError) as e:
        client.resolve(ImageRef.parse("nonexistent.invalid/lambda/python:3.12"), "x86_64")
    assert (transport.requests, pauses) == (1, [])  # not retried
    assert "cannot resolve the host name nonexistent.invalid" in e.value.message
    assert "gave up" not in e.value.message
    assert "--base debian" in str(e.value.hint) and "nonexistent.invalid" in str(e.value.hint)
    assert "upload" not in str(e.value.hint)


def test_a_push_to_a_host_that_does_not_resolve_is_one_attempt_with_a_push_hint(tmp_path):
    client, transport, pauses = unresolvable()
    with pytest.raises(RegistryError) as e:
        client.blob_size("a/b", "sha256:" + "0" * 64)
    assert (transport.requests, pauses) == (1, [])
    assert "cannot resolve the host name nonexistent.invalid" in e.value.message
    assert "--to" in str(e.value.hint) and "--base" not in str(e.value.hint)

    client, transport, pauses = unresolvable()
    data = b"x" * 1000
    with pytest.raises(RegistryError):
        client.upload_blob("a/b", "sha256:" + hashlib.sha256(data).hexdigest(), len(data),
                           lambda: io.BytesIO(data))
    assert (transport.requests, pauses) == (1, [])


def test_the_build_reports_an_unresolvable_base_registry_once_with_the_offline_way(tmp_path, monkeypatch):
    from packager.image import bases

    monkeypatch.setenv("MLPACK_CACHE_DIR", str(tmp_path / "cache"))
    slept: list[float] = []
    monkeypatch.setattr("packager.registry.transport.time.sleep", slept.append)
    with pytest.raises(MlpackError) as e:
        bases.resolve("nonexistent.invalid/lambda/python:3.12", arch="x86_64", python=None)
    assert slept == []
    assert e.value.message.startswith("base nonexistent.invalid/lambda/python:3.12: cannot pull ")
    assert "cannot resolve the host name nonexistent.invalid" in e.value.message
    assert "--base debian" in str(e.value.hint)


@pytest.mark.slow
def test_a_stopped_registry_still_gets_its_retries(tmp_path):
    """A refused connection (nothing listening) is not a DNS failure: retried, then the push hint."""
    server = registry_support.start_registry(tmp_path)
    server.stop()
    pauses: list[float] = []
    client = RegistryClient(server.host, retry=RetryPolicy(attempts=3, sleep=pauses.append))
    with pytest.raises(RegistryError, match="gave up after 3 attempts") as e:
        client.blob_size("a/b", "sha256:" + "0" * 64)
    assert len(pauses) == 2
    assert "resumes" in str(e.value.hint)
    with pytest.raises(RegistryError, match="gave up after 3 attempts") as e:
        client.get_manifest("a/b", "v1")
    assert "resumes" not in str(e.value.hint)



def test_the_retry_budget_starts_again_whenever_the_registry_confirms_more():
    """Ten failures in all, never more than two in a row between confirmed bytes: a budget of three
    attempts gets through; the same failures without progress exhaust it."""
    from packager.registry.transport import RegistryHttp, _Retryable

    pauses: list[float] = []
    http = RegistryHttp("reg.example", retry=RetryPolicy(attempts=3, sleep=pauses.append))
    held = [0]
    calls = [0]

    def attempt() -> str:
        calls[0] += 1
        if calls[0] <= 10:
            if calls[0] % 2 == 0:
                held[0] += 1  # this attempt got a chunk accepted before it failed
            raise _Retryable(f"failure {calls[0]}")
        return "done"

    assert http.retrying("upload", attempt, side="push", progress=lambda: held[0]) == "done"
    assert calls[0] == 11 and len(pauses) == 10

    calls[0] = 0
    with pytest.raises(RegistryError, match=r"gave up after 3 attempts \(last: failure 3\)"):
        http.retrying("upload", attempt, side="push", progress=lambda: 0)
