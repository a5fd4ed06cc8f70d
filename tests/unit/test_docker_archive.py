"""`--base docker-archive:FILE` (packager/image/bases._from_docker_archive): every layer is checked against the
config's rootfs.diff_ids, so an archive whose config does not describe its layers is refused."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile

import pytest

from packager.errors import BuildError
from packager.image import bases


def _layer() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("hello.txt")
        info.size = 5
        tar.addfile(info, io.BytesIO(b"hello"))
    return buf.getvalue()


def _archive(path, diff_ids):
    layer = _layer()
    config = {"architecture": "amd64", "os": "linux", "config": {}}
    if diff_ids is not None:
        config["rootfs"] = {"type": "layers", "diff_ids": diff_ids(layer)}
    files = {"manifest.json": json.dumps([{"Config": "config.json", "Layers": ["l1/layer.tar"]}]).encode(),
             "config.json": json.dumps(config).encode(), "l1/layer.tar": layer}
    with tarfile.open(path, "w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def _sha(b: bytes) -> str:
    return "sha256:" + hashlib.sha256(b).hexdigest()


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MLPACK_CACHE_DIR", str(tmp_path / "cache"))


def test_an_archive_whose_config_describes_its_layers_is_read(tmp_path):
    image, source = bases._from_docker_archive(_archive(tmp_path / "a.tar", lambda layer: [_sha(layer)]), "x", "x86_64")
    assert len(image.layers) == 1 and source.startswith("docker-archive:")


@pytest.mark.parametrize(("diff_ids", "words"), [
    (None, "lists no rootfs.diff_ids for 1 layer"),
    (lambda layer: [], "lists 0 rootfs.diff_ids for 1 layer"),
    (lambda layer: [_sha(layer), _sha(layer)], "lists 2 rootfs.diff_ids for 1 layer"),
    (lambda layer: [_sha(b"other")], "does not match the config's diff_id"),
])
def test_an_archive_whose_config_does_not_describe_its_layers_is_refused(tmp_path, diff_ids, words):
    with pytest.raises(BuildError, match=words):
        bases._from_docker_archive(_archive(tmp_path / "a.tar", diff_ids), "x", "x86_64")
