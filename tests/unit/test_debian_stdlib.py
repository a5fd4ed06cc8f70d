"""The debian base's standard library is compiled as the base is built (packager/image/bases.py
`_normalise_rootfs_tar`): tried on a small stand-in for mmdebstrap's tar, so no mirror and no minutes.

What is checked: unchecked-hash pycs naming the in-image path; a module that is a symbolic link compiled
from its target inside the root file system (never from this machine's file of that name) and kept a
link; test/ and pydoc_data/ left as source; the same tar gives the same layer wherever it is built; no
interpreter, no bytecode.
The whole `--base debian` path runs once more with a stand-in mmdebstrap (it copies that tar, and a
small .deb where the extract hook asks): a base built without bytecode says so and is cached apart from
one with it.
"""

from __future__ import annotations

import gzip
import io
import marshal
import os
import sys
import tarfile
from pathlib import Path

import pytest

from packager.image import bases, deps
from tests.unit.test_debian_dpkg import fake_mmdebstrap

STDLIB = f"usr/lib/python{bases.DEBIAN_PYTHON}"
TAG = sys.implementation.cache_tag
FILES = {
    f"{STDLIB}/os.py": b"SEP = '/'\n",
    f"{STDLIB}/json/__init__.py": b"from json.decoder import X\n",
    f"{STDLIB}/json/decoder.py": b"X = {'a', 'b', 'c', 'd'}\n",
    f"{STDLIB}/test/support.py": b"HEAVY = 1\n",
    f"{STDLIB}/pydoc_data/topics.py": b"topics = {}\n",
    f"etc/python{bases.DEBIAN_PYTHON}/sitecustomize.py": b"WHERE = 'inside the image'\n",
    f"usr/bin/python{bases.DEBIAN_PYTHON}": b"\x7fELF",
}
LINKS = {
    # absolute, as Debian ships it: on this machine the same path may hold another file
    f"{STDLIB}/sitecustomize.py": f"/etc/python{bases.DEBIAN_PYTHON}/sitecustomize.py",
    # absolute and dangling inside the image, though this machine has a file there
    f"{STDLIB}/hostfile.py": "/etc/hostname" if Path("/etc/hostname").is_file() else "/etc/passwd",
    f"{STDLIB}/_sysconfigdata__alias.py": "os.py",  # relative
}


def _rootfs_tar(path: Path) -> Path:
    with tarfile.open(path, "w") as tar:
        for name, data in FILES.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in LINKS.items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
    return path


def _layer_members(path: Path) -> dict[str, tuple[tarfile.TarInfo, bytes]]:
    out: dict[str, tuple[tarfile.TarInfo, bytes]] = {}
    with gzip.open(path) as gz, tarfile.open(fileobj=gz) as tar:
        for m in tar.getmembers():
            f = tar.extractfile(m) if m.isfile() else None
            out[m.name] = (m, f.read() if f else b"")
    return out


def _out(folder: Path) -> Path:
    folder.mkdir(parents=True)
    return folder / "layer.tar.gz"


def _interpreter() -> str:
    found = deps.find_interpreter(bases.DEBIAN_PYTHON)
    if found is None:
        pytest.skip(f"no python{bases.DEBIAN_PYTHON} here to compile with")
    return found


def _pyc(members: dict[str, tuple[tarfile.TarInfo, bytes]], module: str) -> bytes:
    folder, _, name = module.rpartition("/")
    return members[f"{folder}/__pycache__/{name[:-3]}.{TAG}.pyc"][1]


def test_the_standard_library_is_compiled_as_it_lies_in_the_image(tmp_path: Path) -> None:
    interpreter = _interpreter()
    layer = bases._normalise_rootfs_tar(_rootfs_tar(tmp_path / "rootfs.tar"), _out(tmp_path / "out"),
                                        1_700_000_000, interpreter)
    members = _layer_members(layer.path)
    for module in ("os.py", "json/__init__.py", "json/decoder.py", "sitecustomize.py"):
        data = _pyc(members, f"{STDLIB}/{module}")
        assert int.from_bytes(data[4:8], "little") == 1  # hash-based, source never checked (read-only)
        if sys.implementation.cache_tag == f"cpython-{bases.DEBIAN_PYTHON.replace('.', '')}":
            assert marshal.loads(data[16:]).co_filename == f"/{STDLIB}/{module}"  # no build path
    # compiled from the image's own /etc/python3.X/sitecustomize.py, and still a link to it
    assert b"inside the image" in _pyc(members, f"{STDLIB}/sitecustomize.py")
    assert members[f"{STDLIB}/sitecustomize.py"][0].issym()
    assert members[f"{STDLIB}/sitecustomize.py"][0].linkname == LINKS[f"{STDLIB}/sitecustomize.py"]
    assert members[f"{STDLIB}/hostfile.py"][0].issym()
    assert f"{STDLIB}/__pycache__/hostfile.{TAG}.pyc" not in members
    assert f"{STDLIB}/__pycache__/_sysconfigdata__alias.{TAG}.pyc" in members
    # what no function imports stays source only
    assert not [n for n in members if n.endswith(".pyc") and ("/test/" in n or "/pydoc_data/" in n)]
    assert "mlpack: debian" in layer.created_by and "standard library compiled" in layer.created_by


def test_the_same_tar_gives_the_same_layer_anywhere(tmp_path: Path) -> None:
    interpreter = _interpreter()
    src = _rootfs_tar(tmp_path / "rootfs.tar")
    one = bases._normalise_rootfs_tar(src, _out(tmp_path / "a"), 1_700_000_000, interpreter)
    other = tmp_path / "somewhere" / "much" / "deeper"
    two = bases._normalise_rootfs_tar(src, _out(other), 1_700_000_000, interpreter)
    assert one.digest == two.digest and one.diff_id == two.diff_id


def test_without_an_interpreter_the_base_has_no_bytecode_and_another_key(tmp_path: Path) -> None:
    layer = bases._normalise_rootfs_tar(_rootfs_tar(tmp_path / "rootfs.tar"), _out(tmp_path / "out"),
                                        1_700_000_000, None)
    members = _layer_members(layer.path)
    assert f"{STDLIB}/os.py" in members
    assert not [n for n in members if n.endswith(".pyc")]
    assert "compiled" not in layer.created_by
    # a base cached without bytecode is never taken for one with it (and the other way round)
    assert bases.debian_key("x86_64", bytecode=True) != bases.debian_key("x86_64", bytecode=False)


def test_a_missing_standard_library_is_named(tmp_path: Path) -> None:
    interpreter = _interpreter()
    with tarfile.open(tmp_path / "empty.tar", "w") as tar:
        info = tarfile.TarInfo("etc")
        info.type = tarfile.DIRTYPE
        tar.addfile(info)
    from packager.errors import BuildError

    with pytest.raises(BuildError) as e:
        bases._normalise_rootfs_tar(tmp_path / "empty.tar", _out(tmp_path / "out"), 0, interpreter)
    assert f"/{STDLIB}" in e.value.message


def test_a_base_without_bytecode_says_so_and_is_cached_apart(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    interpreter = _interpreter()
    fake = fake_mmdebstrap(tmp_path, _rootfs_tar(tmp_path / "r.tar"))
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("MLPACK_CACHE_DIR", str(tmp_path / "cache"))

    def pycs(base: bases.Base) -> list[str]:
        return [n for n in _layer_members(base.image.blob_path(base.image.layers[0].digest)) if n.endswith(".pyc")]

    said: list[str] = []
    monkeypatch.setattr(bases, "find_interpreter", lambda python: None)
    plain = bases.resolve("debian", arch="x86_64", python=None, log=said.append)
    assert [s for s in said if f"no python{bases.DEBIAN_PYTHON} on this machine" in s]
    assert "no bytecode" in said[-1] and pycs(plain) == []
    monkeypatch.setattr(bases, "find_interpreter", lambda python: interpreter)
    said.clear()
    compiled = bases.resolve("debian", arch="x86_64", python=None, log=said.append)
    assert said and "mmdebstrap" in said[0]  # built anew: the cached base without bytecode is not reused
    assert compiled.digest != plain.digest and pycs(compiled)
    assert bases.resolve("debian", arch="x86_64", python=None).digest == compiled.digest  # and cached itself
