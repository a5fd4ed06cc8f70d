"""Base images: turn a --base / runtime.base string into a `Base` whose blobs are all on local disk.

Forms: `aws` (AWS's Lambda Python base, public.ecr.aws/lambda/python:<python>), any registry reference
(by tag or digest; an index is resolved to one architecture), `oci:PATH` (an OCI layout), `docker-archive:PATH`
(a `docker save` tarball) and `debian` (built here from Debian packages with mmdebstrap, no registry).
Every blob is kept once in the user cache folder, by digest, and checked against its digest before use;
a corrupt entry is fetched again.

Of mlpack, only packager.registry speaks HTTP: registry bases are pulled through its client (mmdebstrap
fetches the debian packages itself). The debian base comes from bookworm, bookworm-updates and
bookworm-security (each package at its newest version among them); it carries the dpkg database of what
it holds (/var/lib/dpkg/status and info/*.list, written from the .debs exactly as dpkg writes them, so
image scanners see every OS package), and its standard library is compiled to bytecode as it is built
(Debian's maintainer scripts, which would do both, do not run), with a host python of the same version.
Takes the cache folder and the bytecode compiler from deps.py and the layer writer from layers.py; must
not import contents, build, checks or packager.cli.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import re
import shlex
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import filelock

from packager import oci
from packager.errors import BuildError, MlpackError
from packager.fsutil import write_atomic
from packager.image import layers
from packager.image.deps import cache_dir, compile_bytecode, find_interpreter
from packager.image.pins import PINS_FILE, Pin, package_diff

AWS_BASE_REPO = "public.ecr.aws/lambda/python"
AWS_DEFAULT_PYTHON = "3.12"
DEBIAN_SUITE = "bookworm"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
# the release with its point-release updates and its security updates: apt takes each package's highest
# version among them (the same priority), so the base has every security fix published when it is built
DEBIAN_SOURCES = (
    (DEBIAN_MIRROR, DEBIAN_SUITE),
    (DEBIAN_MIRROR, f"{DEBIAN_SUITE}-updates"),
    ("http://deb.debian.org/debian-security", f"{DEBIAN_SUITE}-security"),
)
DEBIAN_COMPONENTS = "main"
DEBIAN_PACKAGES = ("python3", "libstdc++6", "ca-certificates", "tzdata", "base-files", "netbase")
DEBIAN_ARCH = {"x86_64": "amd64", "arm64": "arm64"}
DEBIAN_RECIPE = "4"  # bump when the recipe below changes: it is part of the cache key
DEBIAN_PYTHON = "3.11"  # the suite's python3; the build checks that the root file system has it
DEBIAN_STDLIB = f"usr/lib/python{DEBIAN_PYTHON}"
# folders of the standard library left without bytecode: nothing a function runs imports them (the
# regression tests' support package; pydoc's help texts, 0.75 MB of source)
DEBIAN_STDLIB_SOURCE_ONLY = ("test", "pydoc_data")
ENTRYPOINT_AWS = "/lambda-entrypoint.sh"
PYTHON_RE = re.compile(r"^(var/lang|usr/local|usr)/bin/python(3\.\d+)$")
BASE_FORMS = ("aws", "debian", "REGISTRY/REPO[:TAG|@sha256:...]", "oci:PATH", "docker-archive:PATH")


@dataclass(frozen=True, kw_only=True)
class Base:
    """A base image with every blob in the local store."""

    spec: str  # what the user wrote: aws, debian, oci:..., a reference
    source: str  # where it came from, pinned: repo@sha256:..., oci:/abs/path, debian:<key>
    image: oci.Image
    python: str  # "3.12"
    python_exe: str  # in the image, e.g. /var/lang/bin/python3.12
    runtime_client: bool  # True when the base brings Lambda's runtime interface client
    uncompressed_sizes: tuple[int, ...]  # one per layer, for Lambda's 10 GB limit
    pin_key: str | None = None  # registry bases: the tag reference a rebuild may reuse the digest for

    @property
    def digest(self) -> str:
        return self.image.manifest.digest


def store() -> Path:
    """The cache's blob store: an OCI layout folder holding every base blob by digest."""
    root = cache_dir() / "store"
    if not (root / "oci-layout").exists():
        root.mkdir(parents=True, exist_ok=True)
        (root / "oci-layout").write_bytes(oci.canonical_json({"imageLayoutVersion": oci.OCI_LAYOUT_VERSION}))
    return root


def _forms_hint() -> str:
    return "other --base forms: " + ", ".join(BASE_FORMS)


def _blob_ok(path: Path, digest: str) -> bool:
    if not path.is_file():
        return False
    got, _ = oci.sha256_file(path)
    if got != digest:
        path.unlink()  # corrupt: drop it so it is fetched again
        return False
    return True


# ---------------------------------------------------------------------------------------------------
# what a base is made of


@dataclass(frozen=True, kw_only=True)
class _Info:
    python: str
    python_exe: str
    problems: tuple[str, ...]
    uncompressed_sizes: tuple[int, ...]


def _inspect(image: oci.Image) -> _Info:
    """Find the base's python, check its layers (parent directories, gzip) and measure them; cached by
    manifest digest."""
    info_path = cache_dir() / "bases" / "info" / (image.manifest.digest.split(":", 1)[1] + ".json")
    try:
        data = json.loads(info_path.read_text())
        return _Info(python=data["python"], python_exe=data["python_exe"], problems=tuple(data["problems"]),
                     uncompressed_sizes=tuple(int(n) for n in data["uncompressed_sizes"]))
    except (OSError, ValueError, KeyError, TypeError):
        pass
    found: dict[str, str] = {}
    seen: set[str] = set()
    problems: list[str] = []
    sizes: list[int] = []

    def find_python(name: str, _is_dir: bool) -> None:
        match = PYTHON_RE.match(name)
        if match:
            found.setdefault(match.group(1), match.group(2))

    for desc in image.layers:
        st = oci.scan_layer(image.blob_path(desc.digest), desc, strict_normal=False, seen_dirs=seen,
                            visit=find_python)
        problems.extend(st.problems)
        sizes.append(st.uncompressed_size)
    prefix = next((p for p in ("var/lang", "usr/local", "usr") if p in found), None)
    info = _Info(python=found[prefix] if prefix else "",
                 python_exe=f"/{prefix}/bin/python{found[prefix]}" if prefix else "",
                 problems=tuple(problems), uncompressed_sizes=tuple(sizes))
    write_atomic(info_path, json.dumps({"python": info.python, "python_exe": info.python_exe,
                                        "problems": list(info.problems),
                                        "uncompressed_sizes": list(info.uncompressed_sizes)}).encode())
    return info


def _finish(spec: str, source: str, image: oci.Image, arch: str, python: str | None,
            pin_key: str | None = None) -> Base:
    if image.arch != arch:
        raise BuildError(f"base {spec}: its image is for {image.arch}, not {arch}",
                         hint="choose the base for this architecture or another --arch")
    info = _inspect(image)
    if info.problems:
        shown = "\n  ".join(info.problems[:10])
        raise BuildError(f"base {spec}: Lambda would refuse its layers:\n  {shown}",
                         hint="use a base with gzip layers and every parent directory; " + _forms_hint())
    if not info.python:
        raise BuildError(f"base {spec}: no python3.X under /var/lang/bin, /usr/local/bin or /usr/bin",
                         hint="mlpack needs a base with CPython; " + _forms_hint())
    if python is not None and python != info.python:
        raise BuildError(f"runtime.python = {python!r} but base {spec} ships python {info.python}",
                         hint=f"remove runtime.python, set it to {info.python!r}, or choose another base "
                              "(the aws base follows runtime.python)")
    entry = image.config_json.get("config", {}).get("Entrypoint") or []
    runtime_client = any(ENTRYPOINT_AWS in str(e) for e in entry)
    return Base(spec=spec, source=source, image=image, python=info.python, python_exe=info.python_exe,
                runtime_client=runtime_client, uncompressed_sizes=info.uncompressed_sizes, pin_key=pin_key)


# ---------------------------------------------------------------------------------------------------
# registry bases


def _aws_repo() -> str:
    # a seam for tests, which serve a stand-in base from a local registry
    return os.environ.get("MLPACK_AWS_BASE_REPO", AWS_BASE_REPO)


def _pull(ref_text: str, spec: str, arch: str, pinned: str | None, pull: bool,
          log: Callable[[str], None], *, exact: bool = False) -> tuple[oci.Image, str]:
    """exact: `pinned` is a committed pin (mlpack.bases.json): when the store lacks it, fetch that digest,
    never what the tag names today."""
    from packager.registry import client as registry

    ref = registry.ImageRef.parse(ref_text)
    if exact and pinned:
        ref = registry.ImageRef(ref.registry, ref.repository, None, pinned)
    st = store()
    # a digest we already hold, from the reference itself or from the previous build: no network
    want = ref.digest or (pinned if not pull else None)
    if want and _blob_ok(oci.blob_path(st, want), want):
        try:
            return _image_in_store(st, want, spec), f"{ref.name}@{want}"
        except BuildError:
            pass  # some blob is missing or corrupt: fetch again below
    try:
        with registry.RegistryClient(ref.registry) as client:
            data, media_type, digest = client.resolve(ref, arch)
            if media_type not in oci.MANIFEST_TYPES:
                raise BuildError(f"base {spec}: unsupported manifest type {media_type}")
            oci.put_blob_bytes(st, data)
            doc = json.loads(data)
            config = oci.Descriptor.from_json(doc.get("config"), f"base {spec}: config")
            blobs = [config] + [oci.Descriptor.from_json(x, f"base {spec}: layer") for x in doc.get("layers", [])]
            for desc in blobs:
                path = oci.blob_path(st, desc.digest)
                if _blob_ok(path, desc.digest):
                    continue
                log(f"pulling {ref.name}@{desc.digest[:19]} ({desc.size / 1e6:.1f} MB)")
                client.fetch_blob(ref.repository, desc.digest, path)  # streams and verifies the digest
    except MlpackError as e:
        raise BuildError(f"base {spec}: cannot pull {ref}: {e.message}",
                         hint=(e.hint + "; " if e.hint else "") + _forms_hint()) from e
    except OSError as e:
        raise BuildError(f"base {spec}: cannot reach {ref.registry}: {e}", hint=_forms_hint()) from e
    return _image_in_store(st, digest, spec), f"{ref.name}@{digest}"


def _image_in_store(st: Path, digest: str, spec: str) -> oci.Image:
    path = oci.blob_path(st, digest)
    data = path.read_bytes()
    doc = json.loads(data)
    desc = oci.Descriptor(media_type=str(doc.get("mediaType", oci.MT_OCI_MANIFEST)), digest=digest, size=len(data))
    image = oci.image_from_manifest(st, desc, data, f"base {spec}")
    for layer in image.layers:
        if not _blob_ok(image.blob_path(layer.digest), layer.digest):
            raise BuildError(f"base {spec}: cached layer {layer.digest} is missing or corrupt")
    return image


# ---------------------------------------------------------------------------------------------------
# oci:PATH and docker-archive:PATH


def _from_layout(path: Path, spec: str, arch: str) -> tuple[oci.Image, str]:
    if not path.exists():
        raise BuildError(f"base {spec}: {path} does not exist", hint=_forms_hint())
    image = oci.read_layout(path, arch=arch)
    st = store()
    for desc in (image.config, *image.layers):
        src = image.blob_path(desc.digest)
        if not src.is_file():
            raise BuildError(f"base {spec}: blob {desc.digest} is missing from {path}",
                             hint="the layout must hold every blob (skopeo copy writes complete layouts)")
        got, size = oci.sha256_file(src)
        if got != desc.digest or size != desc.size:
            raise BuildError(f"base {spec}: blob {src} does not match its digest {desc.digest}",
                             hint="the layout is damaged; copy it again")
        oci.put_blob_file(st, src, desc.digest)
    oci.put_blob_bytes(st, image.manifest_bytes)
    return _image_in_store(st, image.manifest.digest, spec), f"oci:{path.resolve()}@{image.manifest.digest}"


def _from_docker_archive(path: Path, spec: str, arch: str) -> tuple[oci.Image, str]:
    if not path.is_file():
        raise BuildError(f"base {spec}: {path} is not a file", hint="make one with `docker save IMAGE -o FILE`; "
                         + _forms_hint())
    st = store()
    with tempfile.TemporaryDirectory(prefix="docker-archive-", dir=st.parent) as tmp:
        work = Path(tmp)
        try:
            with tarfile.open(path) as tar:
                tar.extractall(work, filter="data")
        except (tarfile.TarError, OSError) as e:
            raise BuildError(f"base {spec}: {path} is not a readable tar archive: {e}",
                             hint="make one with `docker save IMAGE -o FILE`") from e
        if (work / "oci-layout").exists():  # docker 25+ writes an OCI layout inside the archive
            image, _ = _from_layout(work, spec, arch)
            return image, f"docker-archive:{path.resolve()}@{image.manifest.digest}"
        inside = work.resolve()

        def member(name: Any) -> Path:
            # names come from the archive: an absolute path or ../ must not reach files outside it
            p = (work / str(name)).resolve()
            if not p.is_relative_to(inside) or not p.is_file():
                raise ValueError(f"{name!r} is not a file in the archive")
            return p

        try:
            manifest = json.loads((work / "manifest.json").read_text())
            entry = manifest[0]
            config_bytes = member(entry["Config"]).read_bytes()
            layer_files = [member(name) for name in entry["Layers"]]
            config = json.loads(config_bytes)
            if not isinstance(config, dict):
                raise ValueError("the config is not a JSON object")
        except (OSError, ValueError, KeyError, IndexError, TypeError) as e:
            raise BuildError(f"base {spec}: {path} has no valid manifest.json ({e})",
                             hint="make one with `docker save IMAGE -o FILE`") from e
        rootfs = config.get("rootfs")
        diff_ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
        if not isinstance(diff_ids, list) or len(diff_ids) != len(layer_files):
            # every layer must be checked against the config: an image whose config does not describe its
            # layers is refused by umoci, and by Lambda
            listed = len(diff_ids) if isinstance(diff_ids, list) else "no"
            raise BuildError(f"base {spec}: {path}'s config lists {listed} rootfs.diff_ids for "
                             f"{len(layer_files)} layer(s)", hint="the archive is damaged; save it again")
        descs = []
        for i, lf in enumerate(layer_files):
            raw = lf.read_bytes()
            if raw[:2] == b"\x1f\x8b":
                gz = raw
                diff = oci.sha256_bytes(gzip.decompress(raw))
            else:
                diff = oci.sha256_bytes(raw)
                gz = gzip.compress(raw, compresslevel=layers.GZIP_LEVEL, mtime=0)
            if diff != diff_ids[i]:
                raise BuildError(f"base {spec}: layer {lf.name} does not match the config's diff_id {diff_ids[i]}",
                                 hint="the archive is damaged; save it again")
            digest = oci.put_blob_bytes(st, gz)
            descs.append(oci.Descriptor(media_type=oci.MT_OCI_LAYER_GZIP, digest=digest, size=len(gz)))
        config_digest = oci.put_blob_bytes(st, config_bytes)
        manifest_doc = {"schemaVersion": 2, "mediaType": oci.MT_OCI_MANIFEST,
                        "config": {"mediaType": oci.MT_OCI_CONFIG, "digest": config_digest,
                                   "size": len(config_bytes)},
                        "layers": [d.to_json() for d in descs]}
        mbytes = oci.canonical_json(manifest_doc)
        mdigest = oci.put_blob_bytes(st, mbytes)
    return _image_in_store(st, mdigest, spec), f"docker-archive:{path.resolve()}@{mdigest}"


# ---------------------------------------------------------------------------------------------------
# debian


def debian_sources() -> list[str]:
    """DEBIAN_SOURCES as the one-line apt sources mmdebstrap takes (and a throwaway apt can be given)."""
    return [f"deb {url} {suite} {DEBIAN_COMPONENTS}" for url, suite in DEBIAN_SOURCES]


def debian_key(arch: str, *, bytecode: bool) -> str:
    """The cached debian base's key: what its bytes depend on (`bytecode`: its standard library is
    compiled, which needs a host python DEBIAN_PYTHON)."""
    return hashlib.sha256(json.dumps({"suite": DEBIAN_SUITE, "arch": arch, "packages": DEBIAN_PACKAGES,
                                      "sources": debian_sources(),
                                      "recipe": DEBIAN_RECIPE, "epoch": layers.source_date_epoch(),
                                      "bytecode": bytecode, "python": DEBIAN_PYTHON,
                                      "source_only": DEBIAN_STDLIB_SOURCE_ONLY},
                                     sort_keys=True).encode()).hexdigest()[:32]


# ---------------------------------------------------------------------------------------------------
# the dpkg database: mmdebstrap's extract variant unpacks packages without dpkg, leaving
# /var/lib/dpkg/status empty, so scanners (ECR, Trivy, Grype) would see no OS package. It is written here
# from the .deb files themselves, as dpkg would have written it after installing them.

# the fields of a status record in the order dpkg writes them (lib/dpkg/parse.c's fieldinfos); any
# other field follows them in the order of the package's control file
DPKG_FIELD_ORDER = ("Package", "Essential", "Protected", "Status", "Priority", "Section", "Installed-Size",
                    "Origin", "Maintainer", "Bugs", "Architecture", "Multi-Arch", "Source", "Version",
                    "Config-Version", "Replaces", "Provides", "Depends", "Pre-Depends", "Recommends", "Suggests",
                    "Breaks", "Conflicts", "Enhances", "Conffiles", "Description", "Triggers-Pending",
                    "Triggers-Awaited")
_DPKG_CANONICAL = {f.lower(): f for f in DPKG_FIELD_ORDER}
DPKG_ARCHIVE_FIELDS = frozenset({"filename", "size", "md5sum", "msdos-filename"})  # never in the status
DPKG_STATUS = "var/lib/dpkg/status"
DPKG_INFO = "var/lib/dpkg/info"


@dataclass(frozen=True, kw_only=True)
class DebPackage:
    """One .deb as dpkg would record it once installed."""

    name: str
    version: str
    arch: str
    multi_arch: str
    sha256: str  # of the .deb file
    fields: tuple[tuple[str, str], ...]  # the control file's fields in its order, values as written
    conffiles: tuple[str, ...]
    md5sums: bytes
    files: tuple[str, ...]  # the data archive's paths as dpkg lists them: "/.", "/usr", "/usr/lib", ...

    @property
    def info_name(self) -> str:
        """The package's name in /var/lib/dpkg/info: dpkg qualifies a Multi-Arch: same package by arch."""
        return f"{self.name}:{self.arch}" if self.multi_arch == "same" else self.name

    def to_json(self) -> dict[str, str]:
        return {"name": self.name, "version": self.version, "arch": self.arch, "sha256": self.sha256}


def parse_control(text: str) -> list[tuple[str, str]]:
    """A deb822 paragraph's fields in order; a value keeps its continuation lines ("short\n long...")."""
    out: list[tuple[str, str]] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        if line[0] in " \t":
            if not out:
                raise ValueError(f"continuation line before any field: {line!r}")
            name, value = out[-1]
            out[-1] = (name, f"{value}\n{line}")
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise ValueError(f"not a field: {line!r}")
        out.append((name.strip(), value.strip()))
    return out


def parse_status(text: str) -> list[list[tuple[str, str]]]:
    """A dpkg status (or Packages) file: one list of fields per paragraph."""
    return [parse_control(p) for p in re.split(r"\n\s*\n", text) if p.strip()]


def _dpkg_deb(deb: Path, what: str) -> bytes:
    proc = subprocess.run(["dpkg-deb", what, str(deb)], capture_output=True, check=False)
    if proc.returncode != 0:
        raise BuildError(f"base debian: dpkg-deb {what} {deb.name} failed: "
                         f"{proc.stderr.decode(errors='replace')[-800:]}")
    return proc.stdout


def read_deb(deb: Path) -> DebPackage:
    """A .deb's control file, conffiles, md5sums and file list (read with dpkg-deb, which mmdebstrap needs
    anyway)."""
    members: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(_dpkg_deb(deb, "--ctrl-tarfile"))) as tar:
        for m in tar:
            f = tar.extractfile(m) if m.isfile() else None
            if f is not None:
                members[m.name.removeprefix("./")] = f.read()
    files: list[str] = []
    with tarfile.open(fileobj=io.BytesIO(_dpkg_deb(deb, "--fsys-tarfile")), mode="r|") as tar:
        for m in tar:
            name = "/" + m.name.removeprefix("./").removeprefix("/").rstrip("/")
            files.append("/." if name == "/" else name)
    try:
        fields = parse_control(members["control"].decode())
    except (KeyError, UnicodeDecodeError, ValueError) as e:
        raise BuildError(f"base debian: {deb.name} has no readable control file ({e})") from e
    values = {k.lower(): v for k, v in fields}
    conffiles = []
    for line in members.get("conffiles", b"").decode().splitlines():
        parts = line.split()
        if parts and parts[0].startswith("/"):  # a flagged line ("remove-on-upgrade /etc/x") installs nothing
            conffiles.append(parts[0])
    return DebPackage(name=values.get("package", ""), version=values.get("version", ""),
                      arch=values.get("architecture", ""), multi_arch=values.get("multi-arch", ""),
                      sha256=oci.sha256_file(deb)[0], fields=tuple(fields), conffiles=tuple(conffiles),
                      md5sums=members.get("md5sums", b""), files=tuple(files))


def status_record(pkg: DebPackage, conffile_md5: dict[str, str]) -> str:
    """The package's paragraph of /var/lib/dpkg/status, field for field what dpkg writes once it is
    installed ("install ok installed"; the md5 of each conffile as unpacked)."""
    fields: dict[str, str] = {}
    for name, value in pkg.fields:
        low = name.lower()
        if low in DPKG_ARCHIVE_FIELDS or low == "status" or (low in ("essential", "protected") and value != "yes"):
            continue
        fields[_DPKG_CANONICAL.get(low, name)] = value
    fields["Status"] = "install ok installed"
    lines = [f" {path} {conffile_md5[path]}" for path in pkg.conffiles if path in conffile_md5]
    if lines:
        fields["Conffiles"] = "\n" + "\n".join(lines)
    known = [f for f in DPKG_FIELD_ORDER if f in fields]
    others = [f for f in fields if f not in _DPKG_CANONICAL.values()]
    out = []
    for name in (*known, *others):
        value = fields[name]
        out.append(f"{name}:{value}\n" if value.startswith("\n") or not value else f"{name}: {value}\n")
    return "".join(out)


def write_dpkg_database(root: Path, packages: list[DebPackage]) -> None:
    """/var/lib/dpkg/status and each package's info files (.list, .md5sums, .conffiles; info/format) under
    `root`, for packages already unpacked there; records sorted by name and architecture, as dpkg sorts
    them."""
    info = root / DPKG_INFO
    info.mkdir(parents=True, exist_ok=True)
    (info / "format").write_text("1\n")  # info files of Multi-Arch: same packages are named pkg:arch
    records = []
    for pkg in sorted(packages, key=lambda p: (p.name, p.arch)):
        md5 = {}
        for path in pkg.conffiles:
            target = root / path.lstrip("/")
            if target.is_file() and not target.is_symlink():
                md5[path] = hashlib.md5(target.read_bytes(), usedforsecurity=False).hexdigest()
        records.append(status_record(pkg, md5) + "\n")
        (info / f"{pkg.info_name}.list").write_text("".join(f"{f}\n" for f in pkg.files))
        if pkg.md5sums:
            (info / f"{pkg.info_name}.md5sums").write_bytes(pkg.md5sums)
        if pkg.conffiles:
            (info / f"{pkg.info_name}.conffiles").write_text("".join(f"{c}\n" for c in pkg.conffiles))
    (root / DPKG_STATUS).write_text("".join(records))


_PASSWD = b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
_GROUP = b"root:x:0:\nnogroup:x:65534:\n"


def _compile_stdlib(root: Path, interpreter: str) -> None:
    """Compile the standard library under `root` in place, as it lies in the image: unchecked-hash pycs
    naming /usr/lib/python3.X/... (Lambda's file system is read-only: a module without one is compiled
    again at every cold start)."""
    stdlib = root / DEBIAN_STDLIB
    if not (stdlib / "os.py").is_file():
        raise BuildError(f"base debian: no python {DEBIAN_PYTHON} standard library at /{DEBIAN_STDLIB}",
                         hint=f"DEBIAN_PYTHON must be {DEBIAN_SUITE}'s python3 version")
    # a module that is a symbolic link (sitecustomize.py -> /etc/python3.11/...) is compiled from its
    # target in the root file system, never from this machine's: a copy stands in for the link meanwhile
    links: dict[Path, str] = {}
    for dirpath, _dirs, files in os.walk(stdlib):
        for name in files:
            path = Path(dirpath) / name
            if name.endswith(".py") and path.is_symlink():
                links[path] = os.readlink(path)
                target = oci.resolve_inside(root, path.relative_to(root).as_posix(), follow_last=True)
                path.unlink()
                if target.is_file():
                    shutil.copyfile(target, path)
    skip = "|".join(re.escape(d) for d in DEBIAN_STDLIB_SOURCE_ONLY)
    try:
        proc = compile_bytecode(stdlib, f"/{DEBIAN_STDLIB}", interpreter,
                                exclude=rf"^{re.escape(str(stdlib))}/(?:{skip})/")
    finally:
        for path, target_text in links.items():
            path.unlink(missing_ok=True)
            path.symlink_to(target_text)
    if proc.returncode != 0:
        raise BuildError(f"base debian: compiling the standard library failed: "
                         f"{proc.stdout[-800:]}{proc.stderr[-800:]}")


def _normalise_rootfs_tar(src: Path, out: Path, mtime: int, interpreter: str | None,
                          packages: list[DebPackage] | None = None) -> layers.Layer:
    """Rewrite mmdebstrap's tar as one normalised layer: sorted, fixed mtime, hard links as files; the
    dpkg database of `packages` (the .debs unpacked in it) written; the standard library compiled with
    `interpreter` (None: left as source)."""
    with tempfile.TemporaryDirectory(prefix="rootfs-", dir=out.parent) as tmp:
        root = Path(tmp)
        with tarfile.open(src) as tar:
            members = [m for m in tar.getmembers() if m.isfile() or m.isdir() or m.issym() or m.islnk()]
            tar.extractall(root, members=members, filter="fully_trusted", numeric_owner=True)
        if packages:
            write_dpkg_database(root, packages)
        (root / "etc").mkdir(exist_ok=True)
        for name, data in (("passwd", _PASSWD), ("group", _GROUP)):
            p = root / "etc" / name
            if not p.exists():
                p.write_bytes(data)
        for sub in ("var/task", "var/runtime", "tmp"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        if interpreter is not None:
            _compile_stdlib(root, interpreter)
        entries = layers.tree_entries(root, "")
        compiled = ", standard library compiled" if interpreter is not None else ""
        suites = "+".join(suite for _url, suite in DEBIAN_SOURCES)
        layer = layers.write_layer(entries, out, name="base", created_by=f"mlpack: debian {suites} "
                                   f"({' '.join(DEBIAN_PACKAGES)}) via mmdebstrap{compiled}", mtime=mtime)
    return layer


def _debian_pinned(arch: str, spec: str, log: Callable[[str], None], pin: Pin) -> tuple[oci.Image, str]:
    """The pinned debian base: from the store, else from the pin's image (by digest), else built here, which
    must give the pinned digest (the mirror moves on: a build next month has other package versions)."""
    try:
        return _image_in_store(store(), pin.digest, spec), f"debian:{DEBIAN_SUITE}@{pin.digest}"
    except (OSError, ValueError, BuildError):
        pass
    if pin.image:
        log(f"pulling the pinned debian base {pin.image}")
        return _pull(pin.image, spec, arch, pin.digest, False, log, exact=True)
    image, source = _debian(arch, spec, log)
    if image.digest != pin.digest:
        changed = package_diff(pin.packages, debian_packages(image.digest))
        raise BuildError(
            f"base debian ({arch}): {PINS_FILE} pins {pin.digest}, but this machine has or builds {image.digest}"
            + (f"; packages that differ: {', '.join(changed[:8])}" if changed else ""),
            hint="build where the pinned base is (or pin it with `mlpack pin-base debian --push REPO` so every "
                 "machine can pull it), or pin the new one with `mlpack pin-base debian --refresh` (a change "
                 "to review)")
    return image, source


def debian_packages(digest: str) -> dict[str, str]:
    """name -> version of the OS packages of a debian base this machine built ({} when it has no record)."""
    for path in sorted((cache_dir() / "bases").glob("debian-*.json")):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if record.get("digest") == digest:
            return {str(p["name"]): str(p["version"]) for p in record.get("installed", []) if "name" in p}
    return {}


def _debian(arch: str, spec: str, log: Callable[[str], None], *, fresh: bool = False) -> tuple[oci.Image, str]:
    interpreter = find_interpreter(DEBIAN_PYTHON)
    key = debian_key(arch, bytecode=interpreter is not None)
    ref_path = cache_dir() / "bases" / f"debian-{key}.json"
    st = store()

    def cached() -> tuple[oci.Image, str] | None:
        try:
            digest = json.loads(ref_path.read_text())["digest"]
            return _image_in_store(st, digest, spec), f"debian:{DEBIAN_SUITE}:{key}@{digest}"
        except (OSError, ValueError, KeyError, BuildError):
            return None

    found = None if fresh else cached()
    if found is not None:
        return found
    binary = shutil.which("mmdebstrap")
    if binary is None:
        raise BuildError("base debian: mmdebstrap is not installed",
                         hint="install the Debian package mmdebstrap (scripts/setup does); " + _forms_hint())
    mtime = layers.source_date_epoch()
    ref_path.parent.mkdir(parents=True, exist_ok=True)
    with filelock.FileLock(str(ref_path) + ".lock"):
        # two cold builds at once: the second waited for the first's lock, and finds its base
        found = None if fresh else cached()
        if found is not None:
            return found
        return _build_debian(arch, spec, log, binary=binary, interpreter=interpreter, key=key, ref_path=ref_path,
                             st=st, mtime=mtime)


def _build_debian(arch: str, spec: str, log: Callable[[str], None], *, binary: str, interpreter: str | None, key: str,
                  ref_path: Path, st: Path, mtime: int) -> tuple[oci.Image, str]:
    """Build the debian base with mmdebstrap and record it in the cache (the caller holds the cache's lock)."""
    with tempfile.TemporaryDirectory(prefix="debian-", dir=st.parent) as tmp:
        work = Path(tmp)
        log(f"building the debian base ({DEBIAN_SUITE}, {arch}) with mmdebstrap")
        if interpreter is None:
            log(f"note: no python{DEBIAN_PYTHON} on this machine, so the debian base's standard library has no "
                f"bytecode; the function compiles what it imports at every cold start (install python"
                f"{DEBIAN_PYTHON} to fix)")
        # extract variant: unpack the packages without running maintainer scripts, so a foreign
        # architecture needs no emulation; what the scripts would create (passwd) is added above
        # (the .debs it unpacked are copied out before apt's cache is emptied: the dpkg database is written
        # from them)
        debs = work / "debs"
        debs.mkdir()
        args = [binary, "--quiet", "--mode=auto", "--variant=extract", f"--architectures={DEBIAN_ARCH[arch]}",
                f"--include={','.join(DEBIAN_PACKAGES)}", "--format=tar", "--skip=output/dev",
                f"--extract-hook=sync-out /var/cache/apt/archives {shlex.quote(str(debs))}",
                DEBIAN_SUITE, str(work / "rootfs.tar"), *debian_sources()]
        env = dict(os.environ, SOURCE_DATE_EPOCH=str(mtime))
        proc = subprocess.run(args, capture_output=True, text=True, env=env, check=False)
        if proc.returncode != 0:
            mirrors = ", ".join(sorted({url for url, _suite in DEBIAN_SOURCES}))
            raise BuildError(f"base debian: mmdebstrap failed:\n{proc.stderr[-2000:]}",
                             hint=f"check that {mirrors} can be reached; " + _forms_hint())
        packages = [read_deb(deb) for deb in sorted(debs.rglob("*.deb"))]
        if not packages:
            raise BuildError("base debian: mmdebstrap left no .deb files to record in the dpkg database",
                             hint="mmdebstrap 1.x with --extract-hook sync-out is needed; " + _forms_hint())
        layer = _normalise_rootfs_tar(work / "rootfs.tar", work / "layer.tar.gz", mtime, interpreter, packages)
        oci.put_blob_file(st, layer.path, layer.digest)
        created = layers.iso_utc(mtime)
        config = {
            "architecture": oci.OCI_ARCH[arch], "os": "linux", "created": created,
            "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                               "LANG=C.UTF-8", "TZ=:/etc/localtime"],
                       "WorkingDir": "/"},
            "rootfs": {"type": "layers", "diff_ids": [layer.diff_id]},
            "history": [{"created": created, "created_by": layer.created_by}],
        }
        config_bytes = oci.canonical_json(config)
        config_digest = oci.put_blob_bytes(st, config_bytes)
        manifest = {"schemaVersion": 2, "mediaType": oci.MT_OCI_MANIFEST,
                    "config": {"mediaType": oci.MT_OCI_CONFIG, "digest": config_digest, "size": len(config_bytes)},
                    "layers": [layer.descriptor().to_json()]}
        mbytes = oci.canonical_json(manifest)
        digest = oci.put_blob_bytes(st, mbytes)
        write_atomic(ref_path, json.dumps({"digest": digest, "arch": arch, "packages": DEBIAN_PACKAGES,
                                           "bytecode": interpreter is not None, "sources": debian_sources(),
                                           "installed": [p.to_json() for p in
                                                         sorted(packages, key=lambda p: (p.name, p.arch))]},
                                          indent=1, sort_keys=True).encode())
    return _image_in_store(st, digest, spec), f"debian:{DEBIAN_SUITE}:{key}@{digest}"


# ---------------------------------------------------------------------------------------------------


def resolve(base: str, *, arch: str, python: str | None, pinned: dict[str, str] | None = None,
            pull: bool = False, log: Callable[[str], None] = lambda s: None, pin: Pin | None = None,
            fresh: bool = False) -> Base:
    """The base for `base` (a runtime.base string) on `arch`, with every blob in the local store.

    `python` is an explicit runtime.python (None = let the base decide). `pinned` maps registry
    references (registry/repo:tag) to the manifest digest the previous build used: a rebuild reuses it
    without asking the registry, unless `pull`. `pin`: the repository's committed pin (pins.py) for this
    base and architecture: that digest and no other. `fresh`: build the debian base anew, whatever the
    cache holds (`mlpack pin-base --refresh`).
    """
    pins = pinned or {}
    text = base.strip()
    if text == "aws":
        py = python or AWS_DEFAULT_PYTHON
        ref_text = f"{_aws_repo()}:{py}"
        if pin is not None:
            image, source = _pull(pin.image or ref_text, base, arch, pin.digest, False, log, exact=True)
        else:
            image, source = _pull(ref_text, base, arch, pins.get(ref_text), pull, log)
        return _finish(base, source, image, arch, py, pin_key=ref_text)
    if text == "debian":
        image, source = _debian_pinned(arch, base, log, pin) if pin else _debian(arch, base, log, fresh=fresh)
        return _finish(base, source, image, arch, python)
    if text.startswith("oci:"):
        image, source = _from_layout(Path(text[4:]).expanduser(), base, arch)
        return _finish(base, source, image, arch, python)
    if text.startswith("docker-archive:"):
        image, source = _from_docker_archive(Path(text[len("docker-archive:"):]).expanduser(), base, arch)
        return _finish(base, source, image, arch, python)
    if "/" not in text and ":" not in text and "." not in text:
        raise BuildError(f"base {base!r}: not a known base", hint=_forms_hint())
    if pin is not None:
        image, source = _pull(pin.image or text, base, arch, pin.digest, False, log, exact=True)
        return _finish(base, source, image, arch, python, pin_key=text)
    image, source = _pull(text, base, arch, pins.get(text), pull, log)
    return _finish(base, source, image, arch, python, pin_key=text)


def layer_paths(base: Base) -> list[tuple[str, Path]]:
    return [(d.digest, base.image.blob_path(d.digest)) for d in base.image.layers]


def history_for(image: oci.Image) -> list[dict[str, Any]]:
    hist = image.config_json.get("history")
    if isinstance(hist, list) and sum(1 for h in hist if not h.get("empty_layer")) == len(image.layers):
        return [dict(h) for h in hist]
    return [{"created_by": f"base layer {i}"} for i in range(len(image.layers))]

