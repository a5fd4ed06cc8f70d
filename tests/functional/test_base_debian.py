"""The debian base, built for real with mmdebstrap from Debian's mirror: it has the security suite's
packages and a dpkg database that image scanners read.

What is checked: libssl3 and python3.11 in the base are each at the version apt itself picks from
bookworm + bookworm-updates + bookworm-security at build time (asked of a throwaway apt with the same
sources: its own lists, no host state, apt-cache policy's Candidate); /var/lib/dpkg/status lists every
package the base holds, installed, and is byte for byte what dpkg writes for those records; every
shared library under /usr/lib belongs to some package's info/*.list; and two builds in two empty
caches give the same digest.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from packager.image import bases

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(shutil.which("mmdebstrap") is None, reason="mmdebstrap is not installed")]

KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")


@contextlib.contextmanager
def cache_at(path: Path) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in ("MLPACK_CACHE_DIR", "SOURCE_DATE_EPOCH")}
    os.environ["MLPACK_CACHE_DIR"] = str(path)
    os.environ.pop("SOURCE_DATE_EPOCH", None)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[bases.Base, dict[str, bytes]]:
    with cache_at(tmp_path_factory.mktemp("cache-a")):
        base = bases.resolve("debian", arch="x86_64", python=None)
    files: dict[str, bytes] = {}
    with gzip.open(base.image.blob_path(base.image.layers[0].digest)) as gz, tarfile.open(fileobj=gz) as tar:
        for m in tar:
            if m.name.startswith("var/lib/dpkg/") and m.isfile():
                f = tar.extractfile(m)
                files[m.name] = f.read() if f else b""
            elif m.name.startswith("usr/lib/") and ".so" in m.name and (m.isfile() or m.issym()):
                files[m.name] = b""
    return base, files


def candidates(tmp_path: Path, names: list[str]) -> dict[str, str]:
    """What apt installs today from the base's sources (bases.debian_sources()), for amd64: a throwaway
    apt with its own lists, status and preferences, nothing of this machine's."""
    if not KEYRING.is_file():
        pytest.skip(f"{KEYRING} (debian-archive-keyring) is needed to verify the mirror's indices")
    root = tmp_path / "apt"
    for d in ("state/lists/partial", "cache/archives/partial", "etc/preferences.d", "etc/apt.conf.d"):
        (root / d).mkdir(parents=True)
    (root / "state" / "status").touch()
    (root / "etc" / "sources.list").write_text("".join(
        line.replace("deb ", f"deb [signed-by={KEYRING}] ", 1) + "\n" for line in bases.debian_sources()))
    opts = ["-o", f"Dir::Etc::SourceList={root}/etc/sources.list", "-o", "Dir::Etc::SourceParts=/nonexistent",
            "-o", f"Dir::Etc::Preferences={root}/etc/preferences",
            "-o", f"Dir::Etc::PreferencesParts={root}/etc/preferences.d",
            "-o", f"Dir::State={root}/state", "-o", f"Dir::State::status={root}/state/status",
            "-o", f"Dir::Cache={root}/cache", "-o", "APT::Architecture=amd64", "-o", "APT::Architectures=amd64",
            "-o", "Debug::NoLocking=1"]
    update = subprocess.run(["apt-get", *opts, "-q", "update"], capture_output=True, text=True, check=False)
    assert update.returncode == 0, update.stderr[-2000:]
    out = subprocess.run(["apt-cache", *opts, "policy", *names], capture_output=True, text=True, check=True).stdout
    found: dict[str, str] = {}
    current = ""
    for line in out.splitlines():
        if not line.startswith(" "):
            current = line.rstrip(":").split(":")[0]
        elif line.strip().startswith("Candidate:"):
            found[current] = line.split(":", 1)[1].strip()
    assert set(found) == set(names), out
    return found


def status_of(files: dict[str, bytes]) -> dict[str, dict[str, str]]:
    return {dict(p)["Package"]: dict(p) for p in bases.parse_status(files[bases.DPKG_STATUS].decode())}


def test_the_base_has_the_security_suites_versions(built: tuple[bases.Base, dict[str, bytes]],
                                                   tmp_path: Path) -> None:
    _base, files = built
    status = status_of(files)
    want = candidates(tmp_path, ["libssl3", "python3.11", "libc6"])
    for name, version in want.items():
        assert status[name]["Version"] == version, name
        assert status[name]["Status"] == "install ok installed"
    assert "deb12u" in status["libssl3"]["Version"]  # a security/point-release build, not bookworm's first


def test_the_status_lists_every_package_as_dpkg_writes_it(built: tuple[bases.Base, dict[str, bytes]],
                                                          tmp_path: Path) -> None:
    _base, files = built
    status = status_of(files)
    for name in ("python3", "python3.11", "libpython3.11-stdlib", "libstdc++6", "ca-certificates", "tzdata",
                 "base-files", "netbase", "libssl3", "libc6", "zlib1g"):
        assert name in status, name
    # dpkg rewrites the whole status on --set-selections: the same bytes come back
    admin = tmp_path / "admin"
    (admin / "updates").mkdir(parents=True)
    (admin / "info").mkdir()
    (admin / "available").touch()
    (admin / "status").write_bytes(files[bases.DPKG_STATUS])
    selections = "".join(f"{n}:{p['Architecture']} install\n" for n, p in status.items())
    subprocess.run(["dpkg", f"--admindir={admin}", "--force-not-root", "--set-selections"],
                   input=selections.encode(), check=True, capture_output=True)
    assert (admin / "status").read_bytes() == files[bases.DPKG_STATUS]
    # every package has its file list, and every shared library belongs to one
    owned: set[str] = set()
    for name, pkg in status.items():
        qualified = f"{name}:{pkg['Architecture']}" if pkg.get("Multi-Arch") == "same" else name
        listed = files[f"{bases.DPKG_INFO}/{qualified}.list"].decode().splitlines()
        assert listed[0] == "/."
        owned.update(p.lstrip("/") for p in listed)
    libs = [n for n in files if n.startswith("usr/lib/") and ".so" in n and "/python3" not in n]
    assert libs and not [n for n in libs if n not in owned]


def test_two_builds_give_the_same_digest(built: tuple[bases.Base, dict[str, bytes]],
                                         tmp_path: Path) -> None:
    first, _files = built
    with cache_at(tmp_path / "cache-b"):
        again = bases.resolve("debian", arch="x86_64", python=None)
    assert again.image.layout != first.image.layout
    assert again.digest == first.digest
