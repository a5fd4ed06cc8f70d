"""mlpack.bases.json pins a repository's base by digest: a build takes that digest from the cache, else
from the pin's registry image (by digest), else builds the debian base and refuses another digest,
naming the packages that changed; `mlpack pin-base` writes pins, `--refresh` prints the package diff and
`--push` stores the base in a registry. The debian base comes from a stand-in mmdebstrap (no mirror)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from packager.cli import main
from packager.errors import BuildError
from packager.image import bases, pins
from tests.support import registry as registry_support
from tests.unit.test_debian_dpkg import _rootfs, fake_mmdebstrap, make_deb, sample_debs

local_registry = registry_support.local_registry


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    fake = fake_mmdebstrap(tmp_path, _rootfs(tmp_path), sample_debs(tmp_path / "debs"))
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("MLPACK_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(bases, "find_interpreter", lambda python: None)
    root = tmp_path / "repo"
    (root / ".git").mkdir(parents=True)
    monkeypatch.chdir(root)
    return root


def pin_base(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    code = main(["pin-base", "debian", *args])
    out = capsys.readouterr()
    assert code == 0, out.err
    return out.out


def test_pin_base_records_the_digest_and_the_packages_and_the_build_uses_it(repo, capsys, monkeypatch):
    pin_base(capsys)
    pinned = pins.read(repo / pins.PINS_FILE)["debian@x86_64"]
    assert pinned.packages["libssl3"] == "3.0.22-1~deb12u2"
    # from the cache: mmdebstrap is not even looked for
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    base = bases.resolve("debian", arch="x86_64", python=None, pin=pinned)
    assert base.image.digest == pinned.digest
    before = (repo / pins.PINS_FILE).read_bytes()
    pin_base(capsys)  # pinning it again changes nothing
    assert (repo / pins.PINS_FILE).read_bytes() == before


def test_another_machine_building_another_base_is_refused_naming_the_packages(repo, capsys, monkeypatch, tmp_path):
    pin_base(capsys)
    pinned = pins.read(repo / pins.PINS_FILE)["debian@x86_64"]
    # a clean machine a month later: an empty cache and a mirror with a newer libssl3
    newer = [make_deb(tmp_path / "newer", "libssl3", "3.0.23-1~deb12u1")]
    (tmp_path / "later").mkdir()
    fake = fake_mmdebstrap(tmp_path / "later", _rootfs(tmp_path), newer)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("MLPACK_CACHE_DIR", str(tmp_path / "cache2"))
    with pytest.raises(BuildError) as e:
        bases.resolve("debian", arch="x86_64", python=None, pin=pinned)
    assert pinned.digest in e.value.message and "mlpack pin-base" in (e.value.hint or "")
    # refreshing is the explicit change: it prints the package diff and writes the new pin
    out = pin_base(capsys, "--refresh")
    assert f"was {pinned.digest}" in out and "libssl3 3.0.22-1~deb12u2 -> 3.0.23-1~deb12u1" in out
    assert pins.read(repo / pins.PINS_FILE)["debian@x86_64"].digest != pinned.digest


def test_a_pushed_pin_is_pulled_by_digest_on_a_machine_without_it(repo, capsys, monkeypatch, tmp_path,
                                                                    local_registry):
    pin_base(capsys, "--push", f"{local_registry.host}/mlpack/base-debian")
    pinned = pins.read(repo / pins.PINS_FILE)["debian@x86_64"]
    assert pinned.image == f"{local_registry.host}/mlpack/base-debian@{pinned.digest}"
    monkeypatch.setenv("MLPACK_CACHE_DIR", str(tmp_path / "clean"))
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # no mmdebstrap: it must come from the registry
    base = bases.resolve("debian", arch="x86_64", python=None, pin=pinned)
    assert base.image.digest == pinned.digest


def test_a_damaged_pins_file_names_itself(repo):
    (repo / pins.PINS_FILE).write_text(json.dumps({"format": "mlpack.bases/1", "bases": {"debian@x86_64": {}}}))
    with pytest.raises(BuildError) as e:
        pins.read(repo / pins.PINS_FILE)
    assert "bases.debian@x86_64.digest" in e.value.message and "mlpack pin-base" in (e.value.hint or "")
