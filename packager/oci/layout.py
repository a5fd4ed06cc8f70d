"""OCI image layouts on disk: media types, descriptors, blobs, and writing and reading one layout.

Enters: a folder (oci-layout, index.json, blobs/sha256/...) to read, or the manifest, config and layer blobs
to write one. Leaves: an `Image` (one architecture: its manifest, config and layer descriptors, every blob
in the same folder). Docker media types are read too (bases come in both); what is written is OCI.

Must not import image, registry, deps or anything that touches the network.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packager.errors import BuildError
from packager.fsutil import copy_atomic, write_atomic

OCI_LAYOUT_VERSION = "1.0.0"
MT_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MT_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
MT_OCI_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
MT_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MT_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MT_DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
MT_DOCKER_LAYER_TAR = "application/vnd.docker.image.rootfs.diff.tar"

INDEX_TYPES = (MT_OCI_INDEX, MT_DOCKER_LIST)
MANIFEST_TYPES = (MT_OCI_MANIFEST, MT_DOCKER_MANIFEST)
GZIP_LAYER_TYPES = (MT_OCI_LAYER_GZIP, MT_DOCKER_LAYER_GZIP)

# Lambda's names (x86_64, arm64) against the OCI platform names.
OCI_ARCH = {"x86_64": "amd64", "arm64": "arm64"}
LAMBDA_ARCH = {v: k for k, v in OCI_ARCH.items()}

ANNOTATION_LAYER = "org.mlpack.layer"  # on layers mlpack wrote: deps | handler | model, or base (debian)
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


