"""Deterministic layers: same files -> same bytes, whatever folder, clock or umask; parents; normalisation."""

from __future__ import annotations

import gzip
import io
import os
import tarfile
from pathlib import Path

import pytest

from packager.errors import BuildError
from packager.image import layers


def _tree(root: Path) -> Path:
    (root / "pkg" / "sub").mkdir(parents=True)
    (root / "pkg" / "__init__.py").write_text("x = 1\n")
    (root / "pkg" / "sub" / "run.sh").write_text("#!/bin/sh\n")
    (root / "pkg" / "sub" / "run.sh").chmod(0o700)
    (root / "pkg" / "data.bin").write_bytes(bytes(range(256)) * 10)
    (root / "pkg" / "link").symlink_to("data.bin")
    return root


def _members(path: Path) -> list[tarfile.TarInfo]:
    with tarfile.open(path, "r:gz") as tar:
        return tar.getmembers()


def test_same_files_in_different_folders_give_the_same_digest(tmp_path: Path) -> None:
    a = _tree(tmp_path / "a")
    old = os.umask(0o077)
    try:
        b = _tree(tmp_path / "elsewhere" / "b")
        os.utime(b / "pkg" / "__init__.py", (1_000_000, 1_000_000))
    finally:
        os.umask(old)
    la = layers.write_layer(layers.tree_entries(a, "var/task"), tmp_path / "a.tar.gz", name="t", created_by="t")
    lb = layers.write_layer(layers.tree_entries(b, "var/task"), tmp_path / "b.tar.gz", name="t", created_by="t")
    assert la.digest == lb.digest
    assert la.diff_id == lb.diff_id
    assert (tmp_path / "a.tar.gz").read_bytes() == (tmp_path / "b.tar.gz").read_bytes()


def test_content_change_changes_digest(tmp_path: Path) -> None:
    a = _tree(tmp_path / "a")
    l1 = layers.write_layer(layers.tree_entries(a, "var/task"), tmp_path / "1.tar.gz", name="t", created_by="t")
    (a / "pkg" / "__init__.py").write_text("x = 2\n")
    l2 = layers.write_layer(layers.tree_entries(a, "var/task"), tmp_path / "2.tar.gz", name="t", created_by="t")
    assert l1.digest != l2.digest


def test_entries_are_sorted_normalised_and_have_parents(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    src = _tree(tmp_path / "src")
    layer = layers.write_layer(layers.tree_entries(src, "var/task"), tmp_path / "l.tar.gz", name="t",
                               created_by="t")
    members = _members(layer.path)
    names = [m.name for m in members]
    assert names == sorted(names)
    assert names[:3] == ["var", "var/task", "var/task/pkg"]
    for m in members:
        assert (m.uid, m.gid, m.uname, m.gname) == (0, 0, "", "")
        assert m.mtime == 1700000000
    modes = {m.name: m.mode for m in members}
    assert modes["var/task/pkg/sub/run.sh"] == 0o755  # executable stays executable, group/other readable
    assert modes["var/task/pkg/__init__.py"] == 0o644
    assert modes["var/task/pkg/sub"] == 0o755
    link = next(m for m in members if m.name == "var/task/pkg/link")
    assert link.issym() and link.linkname == "data.bin"


def test_gzip_header_has_no_name_or_time(tmp_path: Path) -> None:
    layer = layers.write_layer([layers.Entry(path="a/b.txt", kind="file", data=b"hi")], tmp_path / "x.tar.gz",
                               name="t", created_by="t")
    raw = layer.path.read_bytes()
    assert raw[:3] == b"\x1f\x8b\x08"
    assert raw[3] == 0  # no FNAME flag
    assert raw[4:8] == b"\0\0\0\0"  # mtime 0
    plain = gzip.decompress(raw)
    assert len(plain) == layer.uncompressed_size
    with tarfile.open(fileobj=io.BytesIO(plain)) as tar:
        assert tar.getnames() == ["a", "a/b.txt"]


def test_digest_fields_match_the_bytes(tmp_path: Path) -> None:
    import hashlib

    layer = layers.write_layer([layers.Entry(path="m/model.onnx", kind="file", data=b"\0" * 1000)],
                               tmp_path / "m.tar.gz", name="model", created_by="t")
    raw = layer.path.read_bytes()
    assert layer.digest == "sha256:" + hashlib.sha256(raw).hexdigest()
    assert layer.size == len(raw)
    assert layer.diff_id == "sha256:" + hashlib.sha256(gzip.decompress(raw)).hexdigest()
    assert layer.descriptor().annotations == {"org.mlpack.layer": "model"}


@pytest.mark.parametrize("bad", ["../etc/passwd", "a/../../b", "/"])
def test_paths_escaping_the_image_are_refused(tmp_path: Path, bad: str) -> None:
    with pytest.raises(BuildError):
        layers.write_layer([layers.Entry(path=bad, kind="file", data=b"x")], tmp_path / "x.tar.gz",
                           name="t", created_by="t")


def test_bad_source_date_epoch_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "yesterday")
    with pytest.raises(BuildError, match="SOURCE_DATE_EPOCH"):
        layers.source_date_epoch()
