"""The debian base's dpkg database (packager/image/bases.py `write_dpkg_database`, `read_deb`): written
from the .debs mmdebstrap unpacked, since its extract variant leaves /var/lib/dpkg/status empty and
image scanners would then see no OS package.

What is checked, on small .debs built here with dpkg-deb (no mirror): the status file is byte for byte
what dpkg itself writes for the same records (dpkg rewrites it on `--set-selections`, in its own field
order and format); dpkg-query reads every package as installed with its version; conffiles carry the
md5 of the file as unpacked; info/<pkg>.list, .md5sums and .conffiles are there, a Multi-Arch: same
package's qualified by its architecture; the cache key names the three suites (a base cached before
security updates were part of the recipe is never reused); and `--base debian`, run with a stand-in
mmdebstrap, asks for bookworm, -updates and -security and records what it unpacked.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from packager.errors import BuildError
from packager.image import bases

pytestmark = pytest.mark.skipif(shutil.which("dpkg-deb") is None or shutil.which("dpkg") is None,
                                reason="dpkg and dpkg-deb are needed (mmdebstrap needs them too)")


def make_deb(folder: Path, name: str, version: str, *, arch: str = "amd64", extra: str = "",
             files: dict[str, bytes] | None = None, conffiles: tuple[str, ...] = ()) -> Path:
    """A .deb built with dpkg-deb: control fields in Debian's usual order (not dpkg's status order)."""
    tree = folder / f"{name}-tree"
    (tree / "DEBIAN").mkdir(parents=True)
    for path, data in (files or {f"/usr/share/doc/{name}/README": b"hello\n"}).items():
        target = tree / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    md5 = "".join(f"{hashlib.md5(d).hexdigest()}  {p.lstrip('/')}\n"
                  for p, d in (files or {}).items() if p not in conffiles)
    if md5:
        (tree / "DEBIAN" / "md5sums").write_text(md5)
    if conffiles:
        (tree / "DEBIAN" / "conffiles").write_text("".join(f"{c}\n" for c in conffiles))
    (tree / "DEBIAN" / "control").write_text(
        f"Package: {name}\nVersion: {version}\nArchitecture: {arch}\nMaintainer: Someone <a@example.org>\n"
        f"{extra}Description: the {name} package\n a longer text\n .\n with a paragraph\n")
    out = folder / f"{name}_{version}_{arch}.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "-Zgzip", "--build", str(tree), str(out)], check=True,
                   capture_output=True)
    shutil.rmtree(tree)
    return out


def sample_debs(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    return [
        make_deb(folder, "libssl3", "3.0.22-1~deb12u2", extra="Source: openssl\nInstalled-Size: 6042\n"
                 "Depends: libc6 (>= 2.34)\nSection: libs\nPriority: optional\nMulti-Arch: same\n"
                 "Homepage: https://www.openssl.org/\n",
                 files={"/usr/lib/x86_64-linux-gnu/libssl.so.3": b"\x7fELF"}),
        make_deb(folder, "base-files", "12.4+deb12u15", extra="Essential: yes\nPriority: required\n"
                 "Section: admin\nReplaces: base, dpkg (<= 1.15.0)\nBuilt-Using: x (= 1)\n",
                 files={"/etc/debian_version": b"12.13\n", "/usr/lib/os-release": b"ID=debian\n"},
                 conffiles=("/etc/debian_version",)),
        make_deb(folder, "tzdata", "2026f-0+deb12u1", arch="all", extra="Multi-Arch: foreign\n"),
    ]


def unpacked_root(tmp_path: Path, debs: list[Path]) -> Path:
    root = tmp_path / "root"
    root.mkdir(parents=True)
    for deb in debs:
        subprocess.run(["dpkg-deb", "--extract", str(deb), str(root)], check=True)
    return root


def dpkg_rewrites(status: bytes, packages: list[bases.DebPackage], tmp_path: Path) -> bytes:
    """The status dpkg writes after reading `status` (dpkg rewrites the whole file on --set-selections)."""
    admin = tmp_path / "admin"
    (admin / "updates").mkdir(parents=True)
    (admin / "info").mkdir()
    (admin / "available").touch()
    (admin / "status").write_bytes(status)
    selections = "".join(f"{p.name}:{p.arch} install\n" for p in packages)
    subprocess.run(["dpkg", f"--admindir={admin}", "--force-not-root", "--set-selections"],
                   input=selections.encode(), check=True, capture_output=True)
    return (admin / "status").read_bytes()


def test_the_status_is_what_dpkg_writes(tmp_path: Path) -> None:
    debs = sample_debs(tmp_path / "debs")
    packages = [bases.read_deb(d) for d in debs]
    root = unpacked_root(tmp_path, debs)
    bases.write_dpkg_database(root, packages)
    status = (root / bases.DPKG_STATUS).read_bytes()
    assert status == dpkg_rewrites(status, packages, tmp_path)
    text = status.decode()
    # dpkg's order: Essential and Status right after Package, arbitrary fields after Description
    assert text.startswith("Package: base-files\nEssential: yes\nStatus: install ok installed\nPriority: required\n")
    conf_md5 = hashlib.md5(b"12.13\n").hexdigest()
    assert f"Conffiles:\n /etc/debian_version {conf_md5}\n" in text
    assert text.index("Description: the libssl3") < text.index("Homepage: https://www.openssl.org/")
    query = subprocess.run(["dpkg-query", f"--admindir={root / 'var/lib/dpkg'}", "-W",
                            "-f", "${Package} ${Version} ${db:Status-Abbrev}\n"],
                           capture_output=True, text=True, check=True).stdout
    assert query.splitlines() == ["base-files 12.4+deb12u15 ii ", "libssl3 3.0.22-1~deb12u2 ii ",
                                  "tzdata 2026f-0+deb12u1 ii "]


def test_info_files_list_each_package(tmp_path: Path) -> None:
    debs = sample_debs(tmp_path / "debs")
    packages = [bases.read_deb(d) for d in debs]
    root = unpacked_root(tmp_path, debs)
    bases.write_dpkg_database(root, packages)
    info = root / bases.DPKG_INFO
    assert sorted(p.name for p in info.iterdir()) == [
        "base-files.conffiles", "base-files.list", "base-files.md5sums", "format", "libssl3:amd64.list",
        "libssl3:amd64.md5sums", "tzdata.list"]
    listed = (info / "libssl3:amd64.list").read_text().splitlines()
    assert listed[0] == "/." and "/usr/lib/x86_64-linux-gnu/libssl.so.3" in listed and "/usr" in listed
    # dpkg -L reads the list
    out = subprocess.run(["dpkg-query", f"--admindir={root / 'var/lib/dpkg'}", "-L", "libssl3"],
                         capture_output=True, text=True, check=True).stdout
    assert "/usr/lib/x86_64-linux-gnu/libssl.so.3" in out.splitlines()
    assert (info / "base-files.conffiles").read_text() == "/etc/debian_version\n"


def test_the_same_debs_give_the_same_database(tmp_path: Path) -> None:
    debs = sample_debs(tmp_path / "debs")
    one, two = (unpacked_root(tmp_path / n, debs) for n in ("a", "b"))
    bases.write_dpkg_database(one, [bases.read_deb(d) for d in debs])
    bases.write_dpkg_database(two, [bases.read_deb(d) for d in reversed(debs)])  # order found: irrelevant
    files = sorted(p.relative_to(one).as_posix() for p in (one / "var/lib/dpkg").rglob("*"))
    assert files == sorted(p.relative_to(two).as_posix() for p in (two / "var/lib/dpkg").rglob("*"))
    for f in files:
        if (one / f).is_file():
            assert (one / f).read_bytes() == (two / f).read_bytes(), f


def test_the_cache_key_names_the_security_suites(monkeypatch: pytest.MonkeyPatch) -> None:
    assert [s.split()[2] for s in bases.debian_sources()] == ["bookworm", "bookworm-updates", "bookworm-security"]
    assert "deb http://deb.debian.org/debian-security bookworm-security main" in bases.debian_sources()
    now = bases.debian_key("x86_64", bytecode=True)
    monkeypatch.setattr(bases, "DEBIAN_SOURCES", bases.DEBIAN_SOURCES[:1])
    assert bases.debian_key("x86_64", bytecode=True) != now
    monkeypatch.undo()
    monkeypatch.setattr(bases, "DEBIAN_RECIPE", "3")  # the recipe before the dpkg database
    assert bases.debian_key("x86_64", bytecode=True) != now


# ---------------------------------------------------------------------------------------------------
# the whole --base debian path with a stand-in mmdebstrap


def fake_mmdebstrap(tmp_path: Path, rootfs_tar: Path, debs: list[Path] | None = None) -> Path:
    """An mmdebstrap stand-in on PATH's first folder: copies `rootfs_tar` where mmdebstrap writes its
    output, copies `debs` (default: one small .deb) where the extract hook's sync-out asks, and records
    its arguments in args.json beside it."""
    if debs is None:
        debs = [make_deb(tmp_path / "fake-debs", "python3", "3.11.2-1+b1")]
    fake = tmp_path / "bin" / "mmdebstrap"
    fake.parent.mkdir(exist_ok=True)
    fake.write_text(f"""#!{sys.executable}
import json, shlex, shutil, sys
args = sys.argv[1:]
json.dump(args, open({str(fake.parent / 'args.json')!r}, "w"))
for a in args:
    if a.startswith("--extract-hook=sync-out "):
        dest = shlex.split(a.split("=", 1)[1])[-1]
        for deb in {[str(d) for d in debs]!r}:
            shutil.copy(deb, dest)
positional = [a for a in args if not a.startswith("-")]
shutil.copyfile({str(rootfs_tar)!r}, positional[1])
""")
    fake.chmod(0o755)
    return fake


def _rootfs(tmp_path: Path) -> Path:
    """The smallest root file system the base accepts: a python binary and an (empty) dpkg status."""
    path = tmp_path / "rootfs.tar"
    with tarfile.open(path, "w") as tar:
        for name, data in ((f"usr/bin/python{bases.DEBIAN_PYTHON}", b"\x7fELF"), (bases.DPKG_STATUS, b"")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_base_debian_asks_for_the_three_suites_and_records_its_packages(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = fake_mmdebstrap(tmp_path, _rootfs(tmp_path), sample_debs(tmp_path / "debs"))
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("MLPACK_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(bases, "find_interpreter", lambda python: None)
    base = bases.resolve("debian", arch="x86_64", python=None)
    args = json.loads((fake.parent / "args.json").read_text())
    assert args[-3:] == bases.debian_sources() and "--variant=extract" in args
    with tarfile.open(base.image.blob_path(base.image.layers[0].digest)) as tar:
        status = tar.extractfile(bases.DPKG_STATUS)
        assert status is not None
        text = status.read().decode()
        names = tar.getnames()
    assert [p[0][1] for p in bases.parse_status(text)] == ["base-files", "libssl3", "tzdata"]
    assert f"{bases.DPKG_INFO}/libssl3:amd64.list" in names
    assert "bookworm-security" in base.image.config_json["history"][0]["created_by"]
    record = json.loads(next((tmp_path / "cache" / "bases").glob("debian-*.json")).read_text())
    assert [(p["name"], p["version"]) for p in record["installed"]] == [
        ("base-files", "12.4+deb12u15"), ("libssl3", "3.0.22-1~deb12u2"), ("tzdata", "2026f-0+deb12u1")]
    assert all(len(p["sha256"]) == 71 for p in record["installed"])


def test_no_debs_from_mmdebstrap_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = fake_mmdebstrap(tmp_path, _rootfs(tmp_path), [])
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("MLPACK_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(BuildError) as e:
        bases.resolve("debian", arch="x86_64", python=None)
    assert "no .deb" in e.value.message and e.value.hint


def test_two_cold_builds_at_once_build_the_base_once(tmp_path: Path) -> None:
    """The second build waits for the first's lock on the cache entry, then finds its base: mmdebstrap runs
    once, and both builds have the same base digest."""
    fake = fake_mmdebstrap(tmp_path, _rootfs(tmp_path), sample_debs(tmp_path / "debs"))
    real = fake.with_name("mmdebstrap-real")
    fake.rename(real)
    runs = tmp_path / "runs"
    fake.write_text(f"#!/bin/sh\necho run >> {runs}\nsleep 2\nexec {real} \"$@\"\n")
    fake.chmod(0o755)
    code = ("import sys; from packager.image import bases; bases.find_interpreter = lambda python: None; "
            "print(bases.resolve('debian', arch='x86_64', python=None).image.digest)")
    env = {**os.environ, "PATH": f"{fake.parent}{os.pathsep}{os.environ['PATH']}",
           "MLPACK_CACHE_DIR": str(tmp_path / "cache")}
    root = Path(__file__).resolve().parents[2]
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env, cwd=root, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    assert runs.read_text().count("run") == 1
    assert outs[0][0].strip() == outs[1][0].strip() and outs[0][0].startswith("sha256:")
