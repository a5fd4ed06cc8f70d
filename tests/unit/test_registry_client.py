"""RegistryClient against an in-memory fake registry (httpx.MockTransport): authentication,
retries, index resolution, digest checks, upload protocol details."""

from __future__ import annotations

import base64
import hashlib
import io
import json
from pathlib import Path

import httpx
import pytest

from packager.errors import RegistryError
from packager.registry.client import (
    DOCKER_LIST,
    OCI_MANIFEST,
    Credentials,
    ImageRef,
    RegistryClient,
    RetryPolicy,
    sha256_digest,
)

NO_WAIT = RetryPolicy(attempts=4, sleep=lambda s: None)


def manifest(layer: bytes = b"layer") -> bytes:
    return json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                       "config": {"mediaType": "c", "digest": sha256_digest(b"{}"), "size": 2},
                       "layers": [{"mediaType": "l", "digest": sha256_digest(layer), "size": len(layer)}]}).encode()


class FakeRegistry:
    """Just enough of the distribution API to test the client; records every request."""

    def __init__(self) -> None:
        self.manifests: dict[tuple[str, str], tuple[bytes, str]] = {}
        self.blobs: dict[str, bytes] = {}
        self.uploads: dict[str, bytearray] = {}
        self.requests: list[httpx.Request] = []
        self.fail_next: list[int | str] = []  # status codes or "drop" for the next requests
        self.auth: str | None = None  # "bearer" | "basic"
        self.post_headers: dict[str, str] = {}

    def add_manifest(self, repo: str, ref: str, data: bytes, media_type: str = OCI_MANIFEST) -> str:
        d = sha256_digest(data)
        self.manifests[(repo, ref)] = (data, media_type)
        self.manifests[(repo, d)] = (data, media_type)
        return d

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        url = request.url
        if url.host == "auth.example":
            assert request.url.params.get("service") == "reg"
            scopes = request.url.params.get_list("scope")
            return httpx.Response(200, json={"token": "tok:" + ",".join(scopes)})
        if self.fail_next:
            what = self.fail_next.pop(0)
            if what == "drop":
                raise httpx.RemoteProtocolError("connection dropped", request=request)
            return httpx.Response(int(what))
        if self.auth == "bearer" and not request.headers.get("authorization", "").startswith("Bearer tok:"):
            return httpx.Response(401, headers={"WWW-Authenticate":
                                                'Bearer realm="https://auth.example/token",service="reg",'
                                                'scope="repository:x:pull"'})
        if self.auth == "basic" and request.headers.get("authorization") != "Basic " + base64.b64encode(
                b"AWS:pw").decode():
            return httpx.Response(401, headers={"WWW-Authenticate": 'Basic realm="reg"'})
        path = url.path
        parts = path.split("/")
        if "/manifests/" in path:
            repo, ref = "/".join(parts[2:-2]), parts[-1]
            if request.method == "PUT":
                data = request.read()
                d = self.add_manifest(repo, ref, data, request.headers["content-type"])
                return httpx.Response(201, headers={"Docker-Content-Digest": d})
            if (repo, ref) not in self.manifests:
                return httpx.Response(404)
            data, mt = self.manifests[(repo, ref)]
            return httpx.Response(200, content=data if request.method == "GET" else b"",
                                  headers={"Content-Type": mt, "Docker-Content-Digest": sha256_digest(data)})
        if "/blobs/uploads/" in path:
            if request.method == "POST":
                uid = f"u{len(self.uploads)}"
                self.uploads[uid] = bytearray()
                return httpx.Response(202, headers={"Location": f"/v2/x/blobs/uploads/{uid}?_state=s{uid}",
                                                    **self.post_headers})
            uid = parts[-1]
            assert url.params.get("_state") == f"s{uid}", "the upload URL's own query must survive"
            self.uploads[uid] += request.read()
            if request.method == "PATCH":
                return httpx.Response(202, headers={"Location": f"/v2/x/blobs/uploads/{uid}?_state=s{uid}",
                                                    "Range": f"0-{len(self.uploads[uid]) - 1}"})
            data = bytes(self.uploads.pop(uid))
            digest = url.params["digest"]
            if sha256_digest(data) != digest:
                return httpx.Response(400, json={"errors": [{"code": "DIGEST_INVALID", "message": "bad"}]})
            self.blobs[digest] = data
            return httpx.Response(201, headers={"Docker-Content-Digest": digest})
        if "/blobs/" in path:
            digest = parts[-1]
            if digest not in self.blobs:
                return httpx.Response(404)
            data = self.blobs[digest]
            return httpx.Response(200, content=data if request.method == "GET" else b"",
                                  headers={"Content-Length": str(len(data))})
        return httpx.Response(404)

    def client(self, **kw: object) -> RegistryClient:
        return RegistryClient("reg.example", transport=httpx.MockTransport(self.handler),
                              retry=kw.pop("retry", NO_WAIT), **kw)  # type: ignore[arg-type]


def test_get_manifest_returns_exact_bytes_and_digest():
    reg = FakeRegistry()
    data = manifest()
    d = reg.add_manifest("x", "v1", data)
    got, mt, digest = reg.client().get_manifest("x", "v1")
    assert (got, mt, digest) == (data, OCI_MANIFEST, d)
    assert "application/vnd.oci.image.index.v1+json" in reg.requests[0].headers["accept"]


def test_manifest_fetched_by_digest_is_verified():
    reg = FakeRegistry()
    reg.manifests[("x", "sha256:" + "0" * 64)] = (manifest(), OCI_MANIFEST)
    with pytest.raises(RegistryError, match=r"altered|digest is"):
        reg.client().get_manifest("x", "sha256:" + "0" * 64)


def test_resolve_follows_the_index_to_the_requested_arch():
    reg = FakeRegistry()
    amd, arm = manifest(b"amd"), manifest(b"arm")
    entries = []
    for data, arch in ((amd, "amd64"), (arm, "arm64")):
        entries.append({"mediaType": OCI_MANIFEST, "digest": reg.add_manifest("x", arch, data), "size": len(data),
                        "platform": {"os": "linux", "architecture": arch}})
    reg.add_manifest("x", "3.12", json.dumps({"schemaVersion": 2, "manifests": entries}).encode(), DOCKER_LIST)
    ref = ImageRef.parse("reg.example/x:3.12")
    assert reg.client().resolve(ref, "arm64") == (arm, OCI_MANIFEST, sha256_digest(arm))
    assert reg.client().resolve(ref, "x86_64")[0] == amd
    del entries[1]
    reg.add_manifest("x", "3.12", json.dumps({"schemaVersion": 2, "manifests": entries}).encode(), DOCKER_LIST)
    with pytest.raises(RegistryError, match=r"no linux/arm64 image in its index \(has linux/amd64\)"):
        reg.client().resolve(ref, "arm64")


def test_bearer_challenge_is_answered_with_a_scoped_token():
    reg = FakeRegistry()
    reg.auth = "bearer"
    reg.add_manifest("x", "v1", manifest())
    client = reg.client()
    client.get_manifest("x", "v1")
    client.get_manifest("x", "v1")
    token_requests = [r for r in reg.requests if r.url.host == "auth.example"]
    assert len(token_requests) == 1  # cached per scope
    assert token_requests[0].url.params.get_list("scope") == ["repository:x:pull"]
    assert reg.requests[-1].headers["authorization"] == "Bearer tok:repository:x:pull"


def test_token_service_gets_the_credentials_when_given():
    reg = FakeRegistry()
    reg.auth = "bearer"
    reg.add_manifest("x", "v1", manifest())
    reg.client(credentials=Credentials("ana", "secret")).get_manifest("x", "v1")
    token_request = next(r for r in reg.requests if r.url.host == "auth.example")
    assert token_request.headers["authorization"] == "Basic " + base64.b64encode(b"ana:secret").decode()


def test_a_token_service_that_answers_html_fails_clearly():
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "auth.example":
            return httpx.Response(200, text="<html>sign in to the wifi</html>")
        return httpx.Response(401, headers={"www-authenticate": 'Bearer realm="https://auth.example/token"'})

    client = RegistryClient("reg.example", transport=httpx.MockTransport(handler), retry=NO_WAIT)
    with pytest.raises(RegistryError, match="did not answer with JSON"):
        client.get_manifest("x", "v1")


def test_basic_challenge_uses_the_credentials_and_bad_ones_fail_clearly():
    reg = FakeRegistry()
    reg.auth = "basic"
    reg.add_manifest("x", "v1", manifest())
    assert reg.client(credentials=Credentials("AWS", "pw")).get_manifest("x", "v1")[0] == manifest()
    with pytest.raises(RegistryError, match="requires credentials") as e:
        reg.client(credentials=Credentials("AWS", "wrong")).get_manifest("x", "v1")
    assert e.value.hint
    with pytest.raises(RegistryError, match="requires credentials"):
        reg.client().get_manifest("x", "v1")


def test_basic_first_sends_credentials_without_waiting_for_a_challenge():
    reg = FakeRegistry()
    reg.auth = "basic"
    reg.add_manifest("x", "v1", manifest())
    reg.client(credentials=Credentials("AWS", "pw"), basic_first=True).get_manifest("x", "v1")
    assert len(reg.requests) == 1


def test_retries_5xx_and_dropped_connections_then_succeeds():
    reg = FakeRegistry()
    reg.add_manifest("x", "v1", manifest())
    pauses: list[float] = []
    reg.fail_next = [503, "drop", 500]
    client = reg.client(retry=RetryPolicy(attempts=4, base_s=0.1, sleep=pauses.append))
    assert client.get_manifest("x", "v1")[0] == manifest()
    assert len(pauses) == 3 and pauses[0] < pauses[2]  # backing off


def test_gives_up_after_the_last_attempt_with_a_clear_error():
    reg = FakeRegistry()
    reg.fail_next = [500] * 10
    with pytest.raises(RegistryError, match=r"gave up after 4 attempts \(last: GET .*HTTP 500\)"):
        reg.client().get_manifest("x", "v1")


def test_fetch_blob_verifies_and_writes_atomically(tmp_path: Path):
    reg = FakeRegistry()
    reg.blobs[sha256_digest(b"good")] = b"good"
    dest = tmp_path / "blob"
    reg.client().fetch_blob("x", sha256_digest(b"good"), dest)
    assert dest.read_bytes() == b"good"
    wrong = "sha256:" + hashlib.sha256(b"other").hexdigest()
    reg.blobs[wrong] = b"tampered"
    with pytest.raises(RegistryError, match="received data has digest"):
        reg.client().fetch_blob("x", wrong, tmp_path / "bad")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blob"]  # no partial files left


def test_upload_keeps_the_state_query_and_checks_the_digest():
    reg = FakeRegistry()
    data = b"x" * 5000
    d = sha256_digest(data)
    res = reg.client().upload_blob("x", d, len(data), lambda: io.BytesIO(data))
    assert reg.blobs[d] == data and res.bytes_sent == 5000
    put = next(r for r in reg.requests if r.method == "PUT")
    assert put.url.params["_state"] == "su0" and put.url.params["digest"] == d
    with pytest.raises(RegistryError, match="another digest"):
        reg.client().upload_blob("x", sha256_digest(b"y"), 5000, lambda: io.BytesIO(data))


def test_chunked_upload_sends_content_ranges_in_order():
    reg = FakeRegistry()
    data = bytes(range(256)) * 40  # 10240 bytes
    d = sha256_digest(data)
    reg.client(chunked_above=1000, chunk_size=4096).upload_blob("x", d, len(data), lambda: io.BytesIO(data))
    assert reg.blobs[d] == data
    patches = [r for r in reg.requests if r.method == "PATCH"]
    assert [p.headers["content-range"] for p in patches] == ["0-4095", "4096-8191"]


def test_existing_blob_is_not_uploaded_again():
    reg = FakeRegistry()
    reg.blobs[sha256_digest(b"have")] = b"have"
    res = reg.client().upload_blob("x", sha256_digest(b"have"), 4, lambda: io.BytesIO(b"have"))
    assert res.bytes_sent == 0 and [r.method for r in reg.requests] == ["HEAD"]


def test_put_manifest_checks_the_returned_digest():
    reg = FakeRegistry()
    data = manifest()
    assert reg.client().put_manifest("x", "v1", data, OCI_MANIFEST) == sha256_digest(data)
    assert reg.manifests[("x", "v1")] == (data, OCI_MANIFEST)

    def lying(request: httpx.Request) -> httpx.Response:
        return httpx.Response(201, headers={"Docker-Content-Digest": "sha256:" + "1" * 64})

    client = RegistryClient("reg.example", transport=httpx.MockTransport(lying), retry=NO_WAIT)
    with pytest.raises(RegistryError, match="reports digest sha256:1111"):
        client.put_manifest("x", "v1", data, OCI_MANIFEST)


def test_chunks_respect_the_registry_minimum():
    reg = FakeRegistry()
    reg.post_headers = {"OCI-Chunk-Min-Length": "6000"}
    data = bytes(range(256)) * 40
    d = sha256_digest(data)
    reg.client(chunked_above=1000, chunk_size=4096).upload_blob("x", d, len(data), lambda: io.BytesIO(data))
    assert reg.blobs[d] == data
    assert [p.headers["content-range"] for p in reg.requests if p.method == "PATCH"] == ["0-5999"]


def test_interrupted_chunked_upload_resumes_where_the_registry_stopped():
    reg = FakeRegistry()
    data = bytes(range(256)) * 40
    d = sha256_digest(data)
    calls = {"n": 0}
    real = reg.handler

    def flaky(request: httpx.Request) -> httpx.Response:
        if request.method == "PATCH":
            calls["n"] += 1
            if calls["n"] == 2:  # the second chunk's connection drops before it arrives
                raise httpx.RemoteProtocolError("dropped", request=request)
        if request.method == "GET" and "/blobs/uploads/" in request.url.path:
            uid = request.url.path.split("/")[-1]
            return httpx.Response(204, headers={"Range": f"0-{len(reg.uploads[uid]) - 1}",
                                                "Location": str(request.url)})
        return real(request)

    client = RegistryClient("reg.example", transport=httpx.MockTransport(flaky), retry=NO_WAIT,
                            chunked_above=1000, chunk_size=4096)
    res = client.upload_blob("x", d, len(data), lambda: io.BytesIO(data))
    assert reg.blobs[d] == data
    ranges = [r.headers["content-range"] for r in reg.requests if r.method == "PATCH"]
    assert ranges == ["0-4095", "4096-8191"]  # the first chunk was not sent again
    assert res.bytes_sent == len(data) + 4096  # the lost chunk went twice, nothing else


def test_lost_final_put_is_completed_without_resending_data():
    reg = FakeRegistry()
    data = bytes(range(256)) * 40
    d = sha256_digest(data)
    dropped = {"done": False}
    real = reg.handler

    def flaky(request: httpx.Request) -> httpx.Response:
        if request.method == "PUT" and not dropped["done"]:
            # The final chunk reaches the registry's buffer, but the commit's connection drops.
            dropped["done"] = True
            uid = request.url.path.split("/")[-1]
            reg.uploads[uid] += request.read()
            raise httpx.RemoteProtocolError("dropped", request=request)
        if request.method == "GET" and "/blobs/uploads/" in request.url.path:
            uid = request.url.path.split("/")[-1]
            return httpx.Response(204, headers={"Range": f"0-{len(reg.uploads[uid]) - 1}",
                                                "Location": str(request.url)})
        return real(request)

    client = RegistryClient("reg.example", transport=httpx.MockTransport(flaky), retry=NO_WAIT,
                            chunked_above=1000, chunk_size=4096)
    client.upload_blob("x", d, len(data), lambda: io.BytesIO(data))
    assert reg.blobs[d] == data
    final_put = [r for r in reg.requests if r.method == "PUT"][-1]
    assert final_put.headers["content-length"] == "0"
