"""The read side of RegistryClient against a real registry (docker-registry on 127.0.0.1), with
images put there by a third-party tool (skopeo): manifests, index resolution, blob fetch, faults."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess

import pytest

from packager.errors import RegistryError
from packager.registry.client import OCI_INDEX, OCI_MANIFEST, ImageRef, RegistryClient, RetryPolicy
from tests.support import registry as registry_support
from tests.support.layouts import write_layout
from tests.support.registry import RegistryServer, fault_proxy, start_registry

local_registry = registry_support.local_registry  # the session fixture, shared

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def multiarch(local_registry: RegistryServer, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A two-architecture image (an OCI index) pushed with skopeo; returns arch -> manifest digest."""
    layout = tmp_path_factory.mktemp("multi")
    digests = {}
    for arch in ("amd64", "arm64"):
        digests[arch] = write_layout(layout, [{f"etc/{arch}": arch.encode() * 1000}], arch=arch)
    entries = []
    for arch, d in digests.items():
        size = (layout / "blobs/sha256" / d[7:]).stat().st_size
        entries.append({"mediaType": OCI_MANIFEST, "digest": d, "size": size,
                        "platform": {"architecture": arch, "os": "linux"}})
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}).encode()
    index_digest = "sha256:" + hashlib.sha256(index).hexdigest()
    (layout / "blobs/sha256" / index_digest[7:]).write_bytes(index)
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [
        {"mediaType": OCI_INDEX, "digest": index_digest, "size": len(index),
         "annotations": {"org.opencontainers.image.ref.name": "3.12"}}]}))
    subprocess.run(["skopeo", "copy", "--all", "--dest-tls-verify=false", f"oci:{layout}:3.12",
                    f"docker://{local_registry.host}/base/python:3.12"], check=True, capture_output=True)
    return digests


def test_resolve_picks_the_architecture_from_the_index(local_registry, multiarch):
    client = RegistryClient(local_registry.host)
    ref = ImageRef.parse(f"{local_registry.host}/base/python:3.12")
    for arch, oci_arch in (("x86_64", "amd64"), ("arm64", "arm64")):
        data, media_type, digest = client.resolve(ref, arch)
        assert digest == multiarch[oci_arch] == "sha256:" + hashlib.sha256(data).hexdigest()
        assert media_type == OCI_MANIFEST
    # Pinned by digest, the same bytes come back.
    pinned = ref.with_digest(multiarch["arm64"])
    assert client.resolve(pinned, "arm64")[2] == multiarch["arm64"]


def test_fetch_blob_streams_and_verifies(local_registry, multiarch, tmp_path):
    client = RegistryClient(local_registry.host)
    data, _, _ = client.resolve(ImageRef.parse(f"{local_registry.host}/base/python:3.12"), "arm64")
    layer = json.loads(data)["layers"][0]
    client.fetch_blob("base/python", layer["digest"], tmp_path / "cache" / "layer.tar.gz")
    got = (tmp_path / "cache" / "layer.tar.gz").read_bytes()
    assert len(got) == layer["size"] and "sha256:" + hashlib.sha256(got).hexdigest() == layer["digest"]


def test_missing_things_are_named(local_registry, multiarch, tmp_path):
    client = RegistryClient(local_registry.host)
    with pytest.raises(RegistryError, match=r"base/python:3.99: not found"):
        client.get_manifest("base/python", "3.99")
    with pytest.raises(RegistryError, match="not found"):
        client.fetch_blob("base/python", "sha256:" + "0" * 64, tmp_path / "x")
    assert not (tmp_path / "x").exists()
    assert client.head_manifest("base/python", "3.99") is None


def test_reads_survive_faults(local_registry, multiarch, tmp_path):
    with fault_proxy(local_registry.host, drop_share=0.3, error_share=0.3, seed=5) as proxy:
        client = RegistryClient(local_registry.host, endpoint=proxy.url,
                                retry=RetryPolicy(attempts=30, sleep=lambda s: None))
        for i in range(5):
            data, _, digest = client.resolve(ImageRef.parse(f"{local_registry.host}/base/python:3.12"), "x86_64")
            assert digest == multiarch["amd64"]
            layer = json.loads(data)["layers"][0]
            client.fetch_blob("base/python", layer["digest"], tmp_path / f"l{i}")
    assert proxy.stats.dropped + proxy.stats.errors > 0


def test_unreachable_registry_fails_clearly(tmp_path):
    server = start_registry(tmp_path)
    server.stop()  # a port nothing listens on any more
    client = RegistryClient(server.host, retry=RetryPolicy(attempts=2, sleep=lambda s: None))
    with pytest.raises(RegistryError, match="gave up after 2 attempts") as e:
        client.get_manifest("a/b", "v1")
    assert "reachable" in str(e.value.hint)


def test_fixture_stops_the_server_by_pid(tmp_path):
    server = start_registry(tmp_path)
    assert server.process is not None and server.process.poll() is None
    server.stop()
    assert server.process.poll() is not None
    with pytest.raises(ProcessLookupError):
        os.kill(server.process.pid, 0)  # stopped and reaped, not left behind
