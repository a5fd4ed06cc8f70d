"""OCI image layouts on disk: write one, read one, verify it, unpack it into a root file system.

An image here is one architecture inside an OCI layout folder (oci-layout, index.json, blobs/sha256/...)
that holds every blob it references, base layers included, so `skopeo inspect oci:DIR`, `umoci unpack`
and a push need nothing else. Docker media types are read too (bases come in both).

Must not import image, registry, deps or anything that touches the network.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import shutil
import stat
import tarfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any

from packager.errors import BuildError
from packager.fsutil import copy_atomic, write_atomic

OCI_LAYOUT_VERSION = "1.0.0"
MT_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MT_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
MT_OCI_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
MT_OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
MT_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MT_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MT_DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
MT_DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
MT_DOCKER_LAYER_TAR = "application/vnd.docker.image.rootfs.diff.tar"

INDEX_TYPES = (MT_OCI_INDEX, MT_DOCKER_LIST)
MANIFEST_TYPES = (MT_OCI_MANIFEST, MT_DOCKER_MANIFEST)
GZIP_LAYER_TYPES = (MT_OCI_LAYER_GZIP, MT_DOCKER_LAYER_GZIP)
LAYER_TYPES = (*GZIP_LAYER_TYPES, MT_OCI_LAYER_TAR, MT_DOCKER_LAYER_TAR, MT_OCI_LAYER_ZSTD)

# Lambda's names (x86_64, arm64) against the OCI platform names.
OCI_ARCH = {"x86_64": "amd64", "arm64": "arm64"}
LAMBDA_ARCH = {v: k for k, v in OCI_ARCH.items()}

ANNOTATION_LAYER = "org.mlpack.layer"  # deps | handler | model, on layers mlpack wrote
ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"
# config labels `mlpack build` sets and `mlpack push` reads back: which model the image holds
LABEL_TITLE = "org.opencontainers.image.title"
LABEL_VERSION = "org.opencontainers.image.version"
LABEL_MODEL_SHA256 = "org.mlpack.model.sha256"
DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
CHUNK = 1 << 20


@dataclass(frozen=True, kw_only=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    annotations: dict[str, str] | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.annotations:
            out["annotations"] = dict(sorted(self.annotations.items()))
        return out

    @classmethod
    def from_json(cls, data: Any, where: str) -> Descriptor:
        try:
            ann = data.get("annotations")
            return cls(media_type=str(data["mediaType"]), digest=str(data["digest"]), size=int(data["size"]),
                       annotations=dict(ann) if ann else None)
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise BuildError(f"{where}: not a valid descriptor ({e!r})",
                             hint="the image layout is damaged; rebuild it") from e


@dataclass(frozen=True, kw_only=True)
class Image:
    """An image inside an OCI layout on disk, one architecture."""

    layout: Path
    manifest: Descriptor
    manifest_bytes: bytes
    config: Descriptor
    config_json: dict[str, Any]
    layers: tuple[Descriptor, ...]
    arch: str  # Lambda's name: x86_64 | arm64

    def blob_path(self, digest: str) -> Path:
        return blob_path(self.layout, digest)

    @property
    def digest(self) -> str:
        return self.manifest.digest

    @property
    def diff_ids(self) -> list[str]:
        return list(self.config_json.get("rootfs", {}).get("diff_ids", []))


# ---------------------------------------------------------------------------------------------------
# blobs


def blob_path(layout: Path, digest: str) -> Path:
    algo, _, hexd = digest.partition(":")
    if algo != "sha256" or len(hexd) != 64 or any(c not in "0123456789abcdef" for c in hexd):
        raise BuildError(f"{layout}: unsupported or malformed digest {digest!r}",
                         hint="only sha256 digests are supported")
    return layout / "blobs" / "sha256" / hexd


def sha256_bytes(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> tuple[str, int]:
    h = hashlib.sha256()
    size = 0
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
            size += len(chunk)
    return "sha256:" + h.hexdigest(), size


def canonical_json(data: Any) -> bytes:
    """Stable JSON bytes: sorted keys, no whitespace. What gets hashed must not depend on dict order."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def put_blob_bytes(layout: Path, data: bytes) -> str:
    digest = sha256_bytes(data)
    dest = blob_path(layout, digest)
    if not dest.exists():
        write_atomic(dest, data)
    return digest


def put_blob_file(layout: Path, src: Path, digest: str) -> None:
    """Copy a blob whose digest the caller verified. A copy, not a hard link: a layout must not change
    when the cache it came from is damaged or cleaned, nor the other way round."""
    dest = blob_path(layout, digest)
    if not dest.exists():
        copy_atomic(src, dest)


# ---------------------------------------------------------------------------------------------------
# write


def write_layout(dest: Path, *, manifest_bytes: bytes, media_type: str, arch: str,
                 blobs: Iterable[tuple[str, Path]], config_bytes: bytes,
                 ref_name: str | None = None) -> Image:
    """Write a complete OCI layout for one image into `dest` (which must not exist or be empty).

    `blobs` are (digest, file) pairs for the layers, already verified by the caller.
    """
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "oci-layout").write_bytes(canonical_json({"imageLayoutVersion": OCI_LAYOUT_VERSION}))
    for digest, src in blobs:
        put_blob_file(dest, src, digest)
    put_blob_bytes(dest, config_bytes)
    digest = put_blob_bytes(dest, manifest_bytes)
    entry: dict[str, Any] = {
        "mediaType": media_type,
        "digest": digest,
        "size": len(manifest_bytes),
        "platform": {"architecture": OCI_ARCH[arch], "os": "linux"},
    }
    if ref_name:
        entry["annotations"] = {ANNOTATION_REF_NAME: ref_name}
    index = {"schemaVersion": 2, "mediaType": MT_OCI_INDEX, "manifests": [entry]}
    (dest / "index.json").write_bytes(canonical_json(index))
    return read_layout(dest)


# ---------------------------------------------------------------------------------------------------
# read


def _load_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_bytes())
    except FileNotFoundError as e:
        raise BuildError(f"{path}: missing ({what})", hint="is this an OCI image layout? "
                         "`mlpack build` writes one to build/<name>/image") from e
    except (OSError, ValueError) as e:
        raise BuildError(f"{path}: not readable JSON ({what}): {e}",
                         hint="the layout is damaged; rebuild it") from e


def _read_blob(layout: Path, desc: Descriptor, what: str) -> bytes:
    path = blob_path(layout, desc.digest)
    try:
        data = path.read_bytes()
    except FileNotFoundError as e:
        raise BuildError(f"{path}: {what} blob {desc.digest} is missing",
                         hint="the layout is incomplete; rebuild it") from e
    if sha256_bytes(data) != desc.digest or len(data) != desc.size:
        raise BuildError(f"{path}: {what} blob does not match its digest {desc.digest} / size {desc.size}",
                         hint="the layout is damaged; rebuild it")
    return data


def _platform_arch(platform: Any) -> str | None:
    if isinstance(platform, dict) and platform.get("os", "linux") == "linux":
        return LAMBDA_ARCH.get(str(platform.get("architecture")))
    return None


def select_manifest(index: dict[str, Any], where: str, arch: str | None,
                    load_child: Callable[[Descriptor], dict[str, Any]] | None = None) -> Descriptor:
    """Pick the one manifest for `arch` from an index (image index or docker manifest list).

    Entries whose platform names `arch` win over entries without a platform (and nested indexes)."""
    raw_entries = list(index.get("manifests", []))
    if not raw_entries:
        raise BuildError(f"{where}: the index lists no manifests", hint="the layout is empty; rebuild it")
    exact: list[Descriptor] = []
    others: list[Descriptor] = []
    for raw in raw_entries:
        desc = Descriptor.from_json(raw, where)
        if desc.media_type in INDEX_TYPES:
            if load_child is None:
                raise BuildError(f"{where}: nested index not supported here")
            child = load_child(desc)
            others.append(select_manifest(child, f"{where} -> {desc.digest}", arch, load_child))
        elif desc.media_type in MANIFEST_TYPES:  # not attestations, signatures
            if arch is not None and _platform_arch(raw.get("platform")) == arch:
                exact.append(desc)
            elif raw.get("platform") is None or arch is None:
                others.append(desc)
    candidates = exact or others
    if not candidates:
        have = sorted({str(_platform_arch(r.get("platform")) or r.get("platform")) for r in raw_entries})
        raise BuildError(f"{where}: no image for architecture {arch} (has: {', '.join(have)})",
                         hint="choose another --arch or a base that ships this architecture")
    if len(candidates) > 1:
        raise BuildError(f"{where}: {len(candidates)} images match architecture {arch}; cannot choose one",
                         hint="point at one image (a layout with a single manifest)")
    return candidates[0]


def image_from_manifest(layout: Path, manifest: Descriptor, manifest_bytes: bytes, where: str) -> Image:
    try:
        data = json.loads(manifest_bytes)
    except ValueError as e:
        raise BuildError(f"{where}: manifest {manifest.digest} is not JSON") from e
    mt = data.get("mediaType", manifest.media_type)
    if mt in INDEX_TYPES:
        raise BuildError(f"{where}: {manifest.digest} is an image index, not a single-architecture manifest",
                         hint="Lambda rejects image indexes; select one architecture")
    config = Descriptor.from_json(data.get("config"), f"{where}: manifest config")
    layers = tuple(Descriptor.from_json(x, f"{where}: manifest layer") for x in data.get("layers", []))
    config_json = json.loads(_read_blob(layout, config, "config"))
    if not isinstance(config_json, dict):
        raise BuildError(f"{where}: config {config.digest} is not a JSON object")
    arch = LAMBDA_ARCH.get(str(config_json.get("architecture")), str(config_json.get("architecture")))
    return Image(layout=layout, manifest=manifest, manifest_bytes=manifest_bytes, config=config,
                 config_json=config_json, layers=layers, arch=arch)


def read_layout(path: Path, *, arch: str | None = None) -> Image:
    """Read the image in an OCI layout. With several manifests, `arch` picks one (x86_64 | arm64)."""
    path = Path(path)
    layout_file = _load_json(path / "oci-layout", "OCI layout marker")
    if not isinstance(layout_file, dict) or "imageLayoutVersion" not in layout_file:
        raise BuildError(f"{path / 'oci-layout'}: no imageLayoutVersion", hint="not an OCI image layout")
    index = _load_json(path / "index.json", "OCI index")
    if not isinstance(index, dict):
        raise BuildError(f"{path / 'index.json'}: not a JSON object")

    def load_child(desc: Descriptor) -> dict[str, Any]:
        child = json.loads(_read_blob(path, desc, "index"))
        return child if isinstance(child, dict) else {}

    manifest = select_manifest(index, str(path / "index.json"), arch, load_child)
    manifest_bytes = _read_blob(path, manifest, "manifest")
    return image_from_manifest(path, manifest, manifest_bytes, str(path))


# ---------------------------------------------------------------------------------------------------
# verify


class _HashingReader:
    """Wraps a binary stream, hashing and counting what is read through it."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw
        self.hash = hashlib.sha256()
        self.size = 0

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self.hash.update(data)
        self.size += len(data)
        return data

    def drain(self) -> None:
        while self.read(CHUNK):
            pass


@dataclass(frozen=True, kw_only=True)
class LayerStats:
    digest: str
    size: int
    diff_id: str
    uncompressed_size: int
    entries: int
    problems: tuple[str, ...]


def _parents(name: str) -> Iterator[str]:
    parts = PurePosixPath(name).parts
    for i in range(1, len(parts)):
        yield "/".join(parts[:i])


def norm_name(name: str) -> str:
    n = name
    while n.startswith("./"):
        n = n[2:]
    return n.strip("/")


def scan_layer(path: Path, desc: Descriptor, *, strict_normal: bool, seen_dirs: set[str] | None = None,
               visit: Callable[[str], None] | None = None) -> LayerStats:
    """Hash a layer blob and its uncompressed tar, and check its entries.

    Lambda needs every parent directory as an entry (in this layer or an earlier one: `seen_dirs`).
    `strict_normal` also checks mlpack's normalisation (sorted, uid/gid 0, fixed mtime, no names).
    `visit` is called with each entry's name, so a caller looking for files needs no second pass.
    """
    problems: list[str] = []
    seen = seen_dirs if seen_dirs is not None else set()
    entries = 0
    with path.open("rb") as f:
        outer = _HashingReader(f)
        stream: IO[bytes] | None = None
        if desc.media_type in GZIP_LAYER_TYPES:
            gz_magic = f.read(2)
            f.seek(0)
            if gz_magic == b"\x1f\x8b":
                stream = gzip.GzipFile(fileobj=outer, mode="rb")  # type: ignore[arg-type,call-overload]
            else:
                problems.append(f"layer {desc.digest}: media type says gzip but the blob is not gzip")
        elif desc.media_type in (MT_OCI_LAYER_TAR, MT_DOCKER_LAYER_TAR):
            problems.append(f"layer {desc.digest}: uncompressed layer ({desc.media_type}); Lambda needs gzip")
            stream = outer  # type: ignore[assignment]
        else:
            problems.append(f"layer {desc.digest}: unsupported media type {desc.media_type}; "
                            "Lambda needs gzip")
        if stream is None:  # hashed, not read as a tar
            outer.drain()
            return LayerStats(digest="sha256:" + outer.hash.hexdigest(), size=outer.size, diff_id="",
                              uncompressed_size=0, entries=0, problems=tuple(problems))
        inner = _HashingReader(stream)
        names: list[str] = []
        mtimes: set[int] = set()
        try:
            with tarfile.open(fileobj=inner, mode="r|") as tar:  # type: ignore[call-overload]
                for m in tar:
                    entries += 1
                    name = norm_name(m.name)
                    if not name:
                        continue
                    names.append(name)
                    if visit is not None:
                        visit(name)
                    base = PurePosixPath(name).name
                    for parent in _parents(name):
                        if parent not in seen:
                            problems.append(f"layer {desc.digest}: {name}: parent directory {parent}/ "
                                            "has no entry")
                            seen.add(parent)  # report each missing parent once
                    if m.isdir():
                        seen.add(name)
                    if m.issym() and not base.startswith(".wh."):
                        seen.add(name)  # a symlink to a directory is a valid parent (merged /usr)
                    if strict_normal:
                        if m.uid != 0 or m.gid != 0 or m.uname or m.gname:
                            problems.append(f"layer {desc.digest}: {name}: owner is not 0:0 without names")
                        mtimes.add(int(m.mtime))
            inner.drain()
        except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
            problems.append(f"layer {desc.digest}: not a readable tar stream ({e})")
        outer.drain()
    if strict_normal:
        if names != sorted(names):
            problems.append(f"layer {desc.digest}: entries are not sorted by name")
        if len(mtimes) > 1:
            problems.append(f"layer {desc.digest}: entries carry {len(mtimes)} different mtimes "
                            "(expected one)")
    return LayerStats(digest="sha256:" + outer.hash.hexdigest(), size=outer.size,
                      diff_id="sha256:" + inner.hash.hexdigest(), uncompressed_size=inner.size,
                      entries=entries, problems=tuple(problems))


def verify(image: Image) -> tuple[list[str], list[LayerStats]]:
    """Check every blob and the config against the layers. Returns (problems, per-layer stats)."""
    problems: list[str] = []
    stats: list[LayerStats] = []
    diff_ids = image.diff_ids
    if len(diff_ids) != len(image.layers):
        problems.append(f"config: rootfs.diff_ids lists {len(diff_ids)} layers but the manifest has "
                        f"{len(image.layers)}")
    seen_dirs: set[str] = set()
    for i, desc in enumerate(image.layers):
        path = image.blob_path(desc.digest)
        if not path.is_file():
            problems.append(f"layer {i} {desc.digest}: blob missing ({path})")
            continue
        strict = bool(desc.annotations and ANNOTATION_LAYER in desc.annotations)
        st = scan_layer(path, desc, strict_normal=strict, seen_dirs=seen_dirs)
        stats.append(st)
        problems.extend(st.problems)
        if st.digest != desc.digest:
            problems.append(f"layer {i}: blob {path} hashes to {st.digest}, manifest says {desc.digest}")
        if st.size != desc.size:
            problems.append(f"layer {i} {desc.digest}: blob is {st.size} bytes, manifest says {desc.size}")
        if i < len(diff_ids) and st.diff_id and st.diff_id != diff_ids[i]:
            problems.append(f"layer {i} {desc.digest}: uncompressed digest {st.diff_id} does not match "
                            f"config rootfs.diff_ids[{i}] {diff_ids[i]}")
    return problems, stats


# ---------------------------------------------------------------------------------------------------
# unpack


def resolve_inside(root: Path, rel: str, *, follow_last: bool, depth: int = 0) -> Path:
    """Resolve `rel` under `root` as if `root` were `/`: symlinks (absolute ones too) never leave it."""
    if depth > 40:
        raise BuildError(f"{rel}: too many levels of symbolic links while unpacking")
    current = root
    parts = [p for p in rel.split("/") if p not in ("", ".")]  # "//x" must not become an absolute path
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if part == "..":
            current = current.parent if current != root else root
            continue
        candidate = current / part
        if candidate.is_symlink() and (follow_last or not last):
            target = os.readlink(candidate)
            base = root if target.startswith("/") else current
            rel_base = base.relative_to(root).as_posix() if base != root else ""
            current = resolve_inside(root, f"{rel_base}/{target}", follow_last=True, depth=depth + 1)
        else:
            current = candidate
    return current


def _remove(path: Path) -> None:
    if path.is_symlink():
        path.unlink()
        return
    if not path.exists():
        return
    if path.is_dir():
        for sub in path.rglob("*"):
            if sub.is_dir() and not sub.is_symlink():
                sub.chmod(sub.stat().st_mode | stat.S_IRWXU)
        path.chmod(path.stat().st_mode | stat.S_IRWXU)
        shutil.rmtree(path)
    else:
        path.unlink()


def _apply_layer(tar: tarfile.TarFile, root: Path, dir_modes: dict[Path, int]) -> None:
    for m in tar:
        name = norm_name(m.name)
        if not name:
            continue
        pp = PurePosixPath(name)
        base = pp.name
        # a last part of ".." (or a whiteout of it) would name the folder around the root
        if ".." in pp.parts or (base.startswith(".wh.") and base[4:] in ("", ".", "..")):
            raise BuildError(f"layer entry {m.name!r}: a path with '..' or an empty whiteout",
                             hint="the image is malformed; run `mlpack check` on the layout")
        parent = resolve_inside(root, str(pp.parent), follow_last=True) if str(pp.parent) != "." else root
        if base == ".wh..wh..opq":
            if parent.is_dir():
                for child in parent.iterdir():
                    _remove(child)
            continue
        if base.startswith(".wh."):
            _remove(parent / base[4:])
            continue
        parent.mkdir(parents=True, exist_ok=True)
        target = parent / base
        if m.isdir():
            if (target.exists() and not target.is_dir()) or target.is_symlink():
                _remove(target)
            target.mkdir(exist_ok=True)
            # keep directories writable while unpacking; their real modes are applied at the end
            target.chmod(0o700)
            dir_modes[target] = m.mode & 0o7777
            continue
        if target.is_symlink() or target.exists():
            _remove(target)
        if m.issym():
            os.symlink(m.linkname, target)
        elif m.islnk():
            src = resolve_inside(root, norm_name(m.linkname), follow_last=False)
            try:
                os.link(src, target)
            except OSError:
                shutil.copy2(src, target)
        elif m.isfile():
            src_f = tar.extractfile(m)
            assert src_f is not None
            with open(target, "wb") as out:
                shutil.copyfileobj(src_f, out, CHUNK)
            os.chmod(target, m.mode & 0o7777)
        # devices and fifos need privileges; an unpacked root file system for tests does without them


def unpack(image: Image, dest: Path) -> Path:
    """Apply the image's layers in order (whiteouts included) into `dest`/rootfs; returns that folder.

    The blobs are checked against their digests on the way. Ownership is not restored (unprivileged).
    """
    rootfs = Path(dest) / "rootfs"
    if rootfs.exists():
        _remove(rootfs)
    rootfs.mkdir(parents=True)
    dir_modes: dict[Path, int] = {}
    for desc in image.layers:
        path = image.blob_path(desc.digest)
        if not path.is_file():
            raise BuildError(f"{path}: layer blob {desc.digest} is missing", hint="rebuild the image")
        with path.open("rb") as f:
            outer = _HashingReader(f)
            stream: IO[bytes] = (gzip.GzipFile(fileobj=outer, mode="rb")  # type: ignore[assignment,arg-type,call-overload]
                                 if desc.media_type in GZIP_LAYER_TYPES else outer)
            try:
                with tarfile.open(fileobj=stream, mode="r|") as tar:  # type: ignore[call-overload]
                    _apply_layer(tar, rootfs, dir_modes)
            except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
                raise BuildError(f"{path}: layer {desc.digest} cannot be unpacked: {e}",
                                 hint="run `mlpack check` on the layout") from e
            try:
                outer.drain()
            except (OSError, EOFError) as e:
                raise BuildError(f"{path}: layer {desc.digest} cannot be read: {e}") from e
        if "sha256:" + outer.hash.hexdigest() != desc.digest:
            raise BuildError(f"{path}: layer blob does not match its digest {desc.digest}",
                             hint="the layout is damaged; rebuild it")
    real_root = rootfs.resolve()
    for d, mode in sorted(dir_modes.items(), key=lambda kv: -len(kv[0].parts)):
        # a later layer may have turned a parent into a symlink: never chmod what it points at
        if d.is_dir() and d.resolve() == real_root / d.relative_to(rootfs):
            d.chmod(mode)
    return rootfs
