"""The image's SBOM (packager/image/sbom.py; written by `mlpack build`, printed by `mlpack sbom`).

Fast, on a small layout made here: the final file system decides (a later layer's dpkg status wins, a
whiteout removes a distribution), packages not installed are left out, the document validates against
CycloneDX 1.6's schema (cyclonedx-python-lib's strict validator) and the same image gives the same bytes.
Slow, on the iris example built on the debian base: the SBOM beside the layout validates, lists
onnxruntime, numpy (with their wheels' sha256 from the build report) and libssl3 (at the version of the
image's dpkg status), the model's sha256 and mlpack's version; `mlpack sbom LAYOUT` gives the same bytes,
and so does a second build.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator

from packager import oci
from packager.cli import cli
from packager.image import layers, sbom
from tests.support.images import copy_example

STATUS_OLD = b"Package: libssl3\nStatus: install ok installed\nArchitecture: amd64\nVersion: 3.0.20-1~deb12u1\n\n"
STATUS_NEW = (b"Package: libssl3\nStatus: install ok installed\nArchitecture: amd64\nSource: openssl\n"
              b"Version: 3.0.22-1~deb12u2\n\n"
              b"Package: gone\nStatus: deinstall ok config-files\nArchitecture: amd64\nVersion: 1\n\n"
              b"Package: libcrypt1\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1:4.4.33-2\n\n")


def validate(doc: bytes) -> None:
    error = JsonStrictValidator(SchemaVersion.V1_6).validate_str(doc.decode())
    assert error is None, error


def _metadata(name: str, version: str) -> bytes:
    return f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\nLicense: MIT\n\nlong text\n".encode()


def small_layout(tmp_path: Path) -> oci.Image:
    """Two layers: a base (os-release, an old dpkg status) and a top one (a new status, two
    distributions, a whiteout removing a third)."""
    f = layers.Entry
    bottom = [f(path="etc/os-release", kind="file", data=b'ID=debian\nVERSION_ID="12"\n'),
              f(path="etc/debian_version", kind="file", data=b"12.13\n"),
              f(path="var/lib/dpkg/status", kind="file", data=STATUS_OLD),
              f(path="var/task/old_pkg-1.0.dist-info/METADATA", kind="file", data=_metadata("Old_Pkg", "1.0"))]
    top = [f(path="var/lib/dpkg/status", kind="file", data=STATUS_NEW),
           f(path="var/task/numpy-2.0.0.dist-info/METADATA", kind="file", data=_metadata("numpy", "2.0.0")),
           f(path="var/task/onnxruntime-1.20.0.dist-info/METADATA", kind="file",
             data=_metadata("onnxruntime", "1.20.0")),
           f(path="var/task/.wh.old_pkg-1.0.dist-info", kind="file", data=b"")]
    written = [layers.write_layer(e, tmp_path / f"{n}.tar.gz", name=n, created_by=n, mtime=0)
               for n, e in (("base", bottom), ("deps", top))]
    config = oci.canonical_json({
        "architecture": "amd64", "os": "linux", "created": "2023-11-14T22:13:20Z",
        "config": {"Labels": {oci.LABEL_TITLE: "tiny", oci.LABEL_VERSION: "abc123",
                              oci.LABEL_MODEL_SHA256: "ab" * 32}},
        "rootfs": {"type": "layers", "diff_ids": [w.diff_id for w in written]}})
    manifest = oci.canonical_json({
        "schemaVersion": 2, "mediaType": oci.MT_OCI_MANIFEST,
        "config": {"mediaType": oci.MT_OCI_CONFIG, "digest": oci.sha256_bytes(config), "size": len(config)},
        "layers": [w.descriptor().to_json() for w in written]})
    return oci.write_layout(tmp_path / "image", manifest_bytes=manifest, media_type=oci.MT_OCI_MANIFEST,
                            arch="x86_64", blobs=[(w.digest, w.path) for w in written], config_bytes=config)


def by_name(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in doc["components"] if c["type"] == "library"}


def test_the_final_file_system_decides(tmp_path: Path) -> None:
    image = small_layout(tmp_path)
    report = {"dependencies": {"distributions": [{"name": "numpy", "version": "2.0.0", "sha256": "cd" * 32}]}}
    doc = sbom.sbom(image, report)
    found = by_name(doc)
    assert sorted(found) == ["libcrypt1", "libssl3", "numpy", "onnxruntime"]  # no "gone", no old_pkg
    assert found["libssl3"]["version"] == "3.0.22-1~deb12u2"
    assert found["libssl3"]["purl"] == "pkg:deb/debian/libssl3@3.0.22-1~deb12u2?arch=amd64&distro=debian-12"
    assert found["libcrypt1"]["purl"].startswith("pkg:deb/debian/libcrypt1@1%3A4.4.33-2?")
    assert found["numpy"]["purl"] == "pkg:pypi/numpy@2.0.0"
    assert found["numpy"]["hashes"] == [{"alg": "SHA-256", "content": "cd" * 32}]
    assert "hashes" not in found["onnxruntime"]  # not in the report: no hash rather than a guessed one
    model = next(c for c in doc["components"] if c["type"] == "machine-learning-model")
    assert model["hashes"] == [{"alg": "SHA-256", "content": "ab" * 32}] and model["version"] == "abc123"
    assert next(c for c in doc["components"] if c["type"] == "operating-system")["version"] == "12.13"
    assert doc["metadata"]["component"]["hashes"][0]["content"] == image.manifest.digest.split(":")[1]
    assert doc["metadata"]["timestamp"] == "2023-11-14T22:13:20Z"
    assert doc["metadata"]["tools"]["components"][0]["name"] == "mlpack-lambda"
    validate(sbom.to_bytes(doc))


def test_the_same_image_gives_the_same_bytes(tmp_path: Path) -> None:
    image = small_layout(tmp_path / "a")
    one = sbom.to_bytes(sbom.sbom(image))
    again = small_layout(tmp_path / "b")
    assert again.manifest.digest == image.manifest.digest
    assert sbom.to_bytes(sbom.sbom(again)) == one
    assert json.loads(one)["serialNumber"].startswith("urn:uuid:")


def test_an_image_without_dpkg_says_so(tmp_path: Path) -> None:
    image = small_layout(tmp_path)
    f = layers.Entry
    # a layout of only the top layer's python files: no os-release, no dpkg
    only = [f(path="var/task/numpy-2.0.0.dist-info/METADATA", kind="file", data=_metadata("numpy", "2.0.0"))]
    w = layers.write_layer(only, tmp_path / "only.tar.gz", name="deps", created_by="deps", mtime=0)
    config = oci.canonical_json({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers",
                                                                                   "diff_ids": [w.diff_id]}})
    manifest = oci.canonical_json({
        "schemaVersion": 2, "mediaType": oci.MT_OCI_MANIFEST,
        "config": {"mediaType": oci.MT_OCI_CONFIG, "digest": oci.sha256_bytes(config), "size": len(config)},
        "layers": [w.descriptor().to_json()]})
    bare = oci.write_layout(tmp_path / "bare", manifest_bytes=manifest, media_type=oci.MT_OCI_MANIFEST,
                            arch="x86_64", blobs=[(w.digest, w.path)], config_bytes=config)
    doc = sbom.sbom(bare)
    assert doc["metadata"]["properties"][0]["value"].startswith("none found")
    assert list(by_name(doc)) == ["numpy"]
    validate(sbom.to_bytes(doc))
    assert image.manifest.digest != bare.manifest.digest


# ---------------------------------------------------------------------------------------------------
# a real build


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    project = copy_example("iris", tmp_path_factory.mktemp("iris"))
    result = CliRunner().invoke(cli, ["build", str(project), "--base", "debian", "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return project, json.loads(result.stdout)


@pytest.mark.slow
def test_a_build_writes_a_valid_sbom_of_what_it_ships(built: tuple[Path, dict[str, Any]]) -> None:
    project, out = built
    path = Path(out["sbom"])
    assert path == project / "build" / "iris" / sbom.SBOM_FILE
    data = path.read_bytes()
    validate(data)
    doc = json.loads(data)
    found = by_name(doc)
    report = json.loads(Path(out["report"]).read_text())
    wheels = {d["name"]: d for d in report["dependencies"]["distributions"]}
    for name in ("onnxruntime", "numpy"):
        assert found[name]["version"] == wheels[name]["version"]
        assert found[name]["hashes"] == [{"alg": "SHA-256", "content": wheels[name]["sha256"]}]
    # every distribution the dependency layer installed is in the SBOM: its dist-info/METADATA stayed
    assert set(wheels) <= set(found)
    assert found["libssl3"]["version"].startswith("3.") and "deb12u" in found["libssl3"]["version"]
    model = next(c for c in doc["components"] if c["type"] == "machine-learning-model")
    assert model["hashes"][0]["content"] == report["model"]["sha256"].removeprefix("sha256:")
    assert doc["metadata"]["component"]["hashes"][0]["content"] == out["digest"].split(":")[1]
    assert doc["metadata"]["tools"]["components"][0]["version"] == sbom._tool_version() != "unknown"


@pytest.mark.slow
def test_the_sbom_is_the_same_from_the_layout_and_from_a_rebuild(built: tuple[Path, dict[str, Any]],
                                                                  tmp_path: Path) -> None:
    project, out = built
    data = Path(out["sbom"]).read_bytes()
    printed = CliRunner().invoke(cli, ["sbom", out["layout"]], catch_exceptions=False)
    assert printed.exit_code == 0 and printed.stdout.encode() == data
    written = CliRunner().invoke(cli, ["sbom", out["layout"], "-o", str(tmp_path / "x.json")])
    assert written.exit_code == 0 and (tmp_path / "x.json").read_bytes() == data
    os.utime(project / "mlpack.toml")  # a rebuild of the same inputs
    again = CliRunner().invoke(cli, ["build", str(project), "--base", "debian", "--json"], catch_exceptions=False)
    assert again.exit_code == 0 and json.loads(again.stdout)["digest"] == out["digest"]
    assert Path(out["sbom"]).read_bytes() == data
