"""OCI layouts: write, read back, verify (digests, sizes, diff_ids, parents, normalisation), unpack."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from packager import oci
from packager.cli import cli
from packager.errors import BuildError
from packager.image import checks, layers


def _layout(tmp_path: Path, *extra: layers.Layer, arch: str = "x86_64") -> oci.Image:
    work = tmp_path / "work"
    l1 = layers.write_layer([layers.Entry(path="var/task/a.txt", kind="file", data=b"one"),
                             layers.Entry(path="var/task/gone.txt", kind="file", data=b"bye"),
                             layers.Entry(path="var/task/dir/x.txt", kind="file", data=b"x"),
                             layers.Entry(path="var/task/ro", kind="dir")],
                            work / "1.tar.gz", name="deps", created_by="one")
    l2 = layers.write_layer([layers.Entry(path="var/task/a.txt", kind="file", data=b"two"),
                             layers.Entry(path="var/task/.wh.gone.txt", kind="file", data=b""),
                             layers.Entry(path="var/task/dir/.wh..wh..opq", kind="file", data=b""),
                             layers.Entry(path="var/task/dir/y.txt", kind="file", data=b"y"),
                             layers.Entry(path="var/task/link", kind="symlink", target="/etc/passwd")],
                            work / "2.tar.gz", name="model", created_by="two")
    ours = [l1, l2, *extra]
    config = {"architecture": oci.OCI_ARCH[arch], "os": "linux",
              "config": {"Cmd": ["handlers.predict.handler"], "WorkingDir": "/var/task"},
              "rootfs": {"type": "layers", "diff_ids": [x.diff_id for x in ours]},
              "history": [{"created_by": x.created_by} for x in ours]}
    cb = oci.canonical_json(config)
    manifest = {"schemaVersion": 2, "mediaType": oci.MT_OCI_MANIFEST,
                "config": {"mediaType": oci.MT_OCI_CONFIG, "digest": oci.sha256_bytes(cb), "size": len(cb)},
                "layers": [x.descriptor().to_json() for x in ours]}
    return oci.write_layout(tmp_path / "layout", manifest_bytes=oci.canonical_json(manifest),
                            media_type=oci.MT_OCI_MANIFEST, arch=arch,
                            blobs=[(x.digest, x.path) for x in ours], config_bytes=cb)


def test_written_layout_reads_back_and_verifies(tmp_path: Path) -> None:
    img = _layout(tmp_path)
    again = oci.read_layout(tmp_path / "layout")
    assert again.manifest.digest == img.manifest.digest == oci.sha256_bytes(img.manifest_bytes)
    assert again.arch == "x86_64"
    assert len(again.layers) == 2
    problems, stats = oci.verify(again)
    assert problems == []
    assert [s.diff_id for s in stats] == again.diff_ids
    index = json.loads((tmp_path / "layout" / "index.json").read_text())
    assert index["manifests"][0]["platform"] == {"architecture": "amd64", "os": "linux"}


def test_unpack_applies_layers_in_order_with_whiteouts(tmp_path: Path) -> None:
    img = _layout(tmp_path)
    rootfs = oci.unpack(img, tmp_path / "bundle")
    task = rootfs / "var" / "task"
    assert (task / "a.txt").read_text() == "two"
    assert not (task / "gone.txt").exists()
    assert sorted(p.name for p in (task / "dir").iterdir()) == ["y.txt"]  # opaque dir dropped x.txt
    assert (task / "link").is_symlink() and str((task / "link").readlink()) == "/etc/passwd"
    assert not list(rootfs.rglob(".wh.*"))


def test_unpack_never_writes_outside_the_root_through_symlinks(tmp_path: Path) -> None:
    work = tmp_path / "w"
    outside = tmp_path / "outside"
    outside.mkdir()
    l1 = layers.write_layer([layers.Entry(path="escape", kind="symlink", target=str(outside))],
                            work / "1.tar.gz", name="a", created_by="a")
    l2 = _raw_layer(tmp_path, ["escape/pwned.txt"])  # no parent entry: the symlink stays in the way
    img = _layout(tmp_path, l1, l2)
    rootfs = oci.unpack(img, tmp_path / "bundle")
    assert not (outside / "pwned.txt").exists()
    assert (rootfs / str(outside).lstrip("/") / "pwned.txt").exists()


def test_verify_names_a_corrupt_blob(tmp_path: Path) -> None:
    img = _layout(tmp_path)
    blob = img.blob_path(img.layers[1].digest)
    blob.chmod(0o644)
    data = bytearray(blob.read_bytes())
    data[-20] ^= 0xFF
    blob.write_bytes(bytes(data))
    problems, _ = oci.verify(oci.read_layout(tmp_path / "layout"))
    assert any(img.layers[1].digest in p and "hashes to" in p for p in problems)


def test_verify_catches_diff_id_mismatch(tmp_path: Path) -> None:
    img = _layout(tmp_path)
    config = dict(img.config_json)
    config["rootfs"] = {"type": "layers", "diff_ids": list(reversed(img.diff_ids))}
    cb = oci.canonical_json(config)
    manifest = json.loads(img.manifest_bytes)
    manifest["config"] = {"mediaType": oci.MT_OCI_CONFIG, "digest": oci.sha256_bytes(cb), "size": len(cb)}
    blobs = [(d.digest, img.blob_path(d.digest)) for d in img.layers]
    bad = oci.write_layout(tmp_path / "bad", manifest_bytes=oci.canonical_json(manifest),
                           media_type=oci.MT_OCI_MANIFEST, arch="x86_64", blobs=blobs, config_bytes=cb)
    problems, _ = oci.verify(bad)
    assert any("does not match config rootfs.diff_ids[0]" in p for p in problems)


def _raw_layer(tmp_path: Path, names: list[str], *, mtime: int = 0, uid: int = 0) -> layers.Layer:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for i, n in enumerate(names):
            info = tarfile.TarInfo(n)
            info.size, info.mtime, info.uid = 1, mtime + i, uid
            tar.addfile(info, io.BytesIO(b"x"))
    plain = buf.getvalue()
    gz = gzip.compress(plain, mtime=0)
    p = tmp_path / "raw.tar.gz"
    p.write_bytes(gz)
    return layers.Layer(name="handler", path=p, digest=oci.sha256_bytes(gz), size=len(gz),
                        diff_id=oci.sha256_bytes(plain), uncompressed_size=len(plain), created_by="raw")


def test_verify_reports_missing_parents_and_unnormalised_tar(tmp_path: Path) -> None:
    raw = _raw_layer(tmp_path, ["zz/b.txt", "opt/deep/a.txt"], mtime=5, uid=1000)
    img = _layout(tmp_path, raw)
    problems, _ = oci.verify(img)
    text = "\n".join(problems)
    assert "parent directory zz/ has no entry" in text
    assert "parent directory opt/deep/ has no entry" in text
    assert "not sorted" in text
    assert "owner is not 0:0" in text
    assert "different mtimes" in text


def test_read_layout_names_the_missing_file(tmp_path: Path) -> None:
    with pytest.raises(BuildError, match="oci-layout"):
        oci.read_layout(tmp_path)
    img = _layout(tmp_path)
    img.blob_path(img.config.digest).unlink()
    with pytest.raises(BuildError, match="config blob"):
        oci.read_layout(tmp_path / "layout")


def test_multi_arch_layout_needs_an_arch(tmp_path: Path) -> None:
    a = _layout(tmp_path / "a", arch="x86_64")
    b = _layout(tmp_path / "b", arch="arm64")
    merged = tmp_path / "merged"
    merged.mkdir()
    (merged / "oci-layout").write_bytes((tmp_path / "a" / "layout" / "oci-layout").read_bytes())
    entries = []
    for img in (a, b):
        for blob in (img.layout / "blobs" / "sha256").iterdir():
            oci.put_blob_file(merged, blob, "sha256:" + blob.name)
        entries.append({**img.manifest.to_json(), "platform": {"architecture": oci.OCI_ARCH[img.arch],
                                                               "os": "linux"}})
    (merged / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": entries}))
    assert oci.read_layout(merged, arch="arm64").manifest.digest == b.manifest.digest
    assert oci.read_layout(merged, arch="x86_64").manifest.digest == a.manifest.digest
    with pytest.raises(BuildError, match="cannot choose"):
        oci.read_layout(merged)
    result = CliRunner().invoke(cli, ["check", str(merged)])
    assert result.exit_code != 0


def test_lambda_rules() -> None:
    good_manifest = {"schemaVersion": 2, "mediaType": oci.MT_OCI_MANIFEST,
                     "layers": [{"mediaType": oci.MT_OCI_LAYER_GZIP}]}
    good_config = {"architecture": "arm64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": ["x"]},
                   "config": {"Cmd": ["h"], "WorkingDir": "/var/task"}}
    assert checks.lambda_problems(good_manifest, good_config, [100]) == ([], [])
    probs, _ = checks.lambda_problems({"mediaType": oci.MT_OCI_INDEX, "manifests": []}, good_config)
    assert "index" in probs[0]
    bad_manifest = {**good_manifest, "layers": [{"mediaType": oci.MT_OCI_LAYER_TAR}]}
    probs, _ = checks.lambda_problems(bad_manifest, {**good_config, "architecture": "s390x", "config": {}})
    text = "\n".join(probs)
    assert "gzip" in text and "s390x" in text and "Entrypoint nor Cmd" in text and "WorkingDir" in text
    probs, warns = checks.lambda_problems(good_manifest, good_config, [6 * 1024**3])
    assert probs == [] and "half" in warns[0]
    probs, _ = checks.lambda_problems(good_manifest, good_config, [11 * 1024**3])
    assert "10 GB" in probs[0]


def test_check_command_passes_a_good_layout_and_names_a_bad_blob(tmp_path: Path) -> None:
    img = _layout(tmp_path)
    ok = CliRunner().invoke(cli, ["check", str(tmp_path / "layout")])
    assert ok.exit_code == 0, ok.output
    assert img.manifest.digest in ok.output
    blob = img.blob_path(img.layers[0].digest)
    blob.write_bytes(blob.read_bytes()[:-5])
    from packager.cli import main

    assert main(["check", str(tmp_path / "layout")]) == 1


def _typed_layer(tmp_path: Path, members: list[tuple[str, bytes, str]], name: str) -> layers.Layer:
    """A gzip layer written as given (no normalisation): (tar name, tar type, symlink target)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for n, kind, target in members:
            info = tarfile.TarInfo(n)
            info.type, info.linkname, info.mode = kind, target, 0o777
            tar.addfile(info, io.BytesIO(b"") if kind == tarfile.REGTYPE else None)
    plain = buf.getvalue()
    gz = gzip.compress(plain, mtime=0)
    p = tmp_path / f"{name}.tar.gz"
    p.write_bytes(gz)
    return layers.Layer(name="handler", path=p, digest=oci.sha256_bytes(gz), size=len(gz),
                        diff_id=oci.sha256_bytes(plain), uncompressed_size=len(plain), created_by="typed")


def test_unpack_never_chmods_outside_the_root_through_a_later_symlink(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    (outside / "b").mkdir(parents=True)
    (outside / "b").chmod(0o700)
    l1 = _typed_layer(tmp_path, [("a", tarfile.DIRTYPE, ""), ("a/b", tarfile.DIRTYPE, "")], "l1")
    l2 = _typed_layer(tmp_path, [("a", tarfile.SYMTYPE, str(outside))], "l2")
    img = _layout(tmp_path, l1, l2)
    oci.unpack(img, tmp_path / "bundle")
    assert (outside / "b").stat().st_mode & 0o7777 == 0o700


@pytest.mark.parametrize("member", [("..", tarfile.REGTYPE), ("var/..", tarfile.SYMTYPE), (".wh...", tarfile.REGTYPE)])
def test_unpack_never_removes_the_folder_around_the_root(tmp_path: Path, member: tuple[str, bytes]) -> None:
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "keep.txt").write_text("mine")
    bad = _typed_layer(tmp_path, [(member[0], member[1], "x")], "bad")
    img = _layout(tmp_path, bad)
    try:
        oci.unpack(img, bundle)
    except BuildError as e:
        assert ".." in str(e)
    assert (bundle / "keep.txt").read_text() == "mine"
    assert (bundle / "rootfs" / "var" / "task").is_dir()


def test_docker_archive_entries_must_stay_inside_the_archive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                             ) -> None:
    """manifest.json names its config and layers by path: one pointing outside must not read host files."""
    from packager.image import bases

    monkeypatch.setenv("MLPACK_CACHE_DIR", str(tmp_path / "cache"))
    secret = tmp_path / "secret.tar"
    with tarfile.open(secret, "w") as tar:
        info = tarfile.TarInfo("etc")
        info.type = tarfile.DIRTYPE
        tar.addfile(info)
    outside_config = tmp_path / "config.json"
    outside_config.write_text(json.dumps({"architecture": "amd64", "os": "linux",
                                          "rootfs": {"type": "layers", "diff_ids": []}}))
    archive = tmp_path / "base.tar"
    manifest = json.dumps([{"Config": str(outside_config), "Layers": ["../../secret.tar"]}]).encode()
    with tarfile.open(archive, "w") as tar:
        info = tarfile.TarInfo("manifest.json")
        info.size = len(manifest)
        tar.addfile(info, io.BytesIO(manifest))
    with pytest.raises(BuildError, match=r"manifest\.json"):
        bases._from_docker_archive(archive, f"docker-archive:{archive}", "x86_64")
