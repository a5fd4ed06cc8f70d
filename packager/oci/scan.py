"""Layer blobs checked without unpacking them: digests, sizes, diff_ids and what Lambda needs of each tar.

Enters: a layer blob and its descriptor (`scan_layer`) or a whole `Image` (`verify`). Leaves: `LayerStats`
per layer (compressed and uncompressed digest and size, entry count) and the problems found, as text.
Reads blobs only; writes nothing.
"""

from __future__ import annotations

import gzip
import hashlib
import tarfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO

from packager.oci.layout import (
    ANNOTATION_LAYER,
    CHUNK,
    GZIP_LAYER_TYPES,
    MT_DOCKER_LAYER_TAR,
    MT_OCI_LAYER_TAR,
    Descriptor,
    Image,
)


class HashingReader:
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


@dataclass
class _Found:
    """What reading a layer's tar collects; kept when the stream breaks halfway."""

    entries: int = 0
    names: list[str] = field(default_factory=list)
    mtimes: set[int] = field(default_factory=set)


def _tar_stream(f: IO[bytes], outer: HashingReader, desc: Descriptor, problems: list[str]) -> IO[bytes] | None:
    """The layer's uncompressed tar, read through `outer`; None (with a problem) when it is not read as a tar."""
    if desc.media_type in GZIP_LAYER_TYPES:
        gz_magic = f.read(2)
        f.seek(0)
        if gz_magic == b"\x1f\x8b":
            return gzip.GzipFile(fileobj=outer, mode="rb")  # type: ignore[arg-type,call-overload,no-any-return]
        problems.append(f"layer {desc.digest}: media type says gzip but the blob is not gzip")
        return None
    if desc.media_type in (MT_OCI_LAYER_TAR, MT_DOCKER_LAYER_TAR):
        problems.append(f"layer {desc.digest}: uncompressed layer ({desc.media_type}); Lambda needs gzip")
        return outer  # type: ignore[return-value]
    problems.append(f"layer {desc.digest}: unsupported media type {desc.media_type}; "
                    "Lambda needs gzip")
    return None


def _check_entries(tar: tarfile.TarFile, desc: Descriptor, found: _Found, problems: list[str], *,
                   seen: set[str], strict_normal: bool, visit: Callable[[str, bool], None] | None) -> None:
    """Walk the tar's entries: missing parent directories, and (strict_normal) owners; names and mtimes go
    into `found` for the checks that need every entry."""
    for m in tar:
        found.entries += 1
        name = norm_name(m.name)
        if not name:
            continue
        found.names.append(name)
        if visit is not None:
            visit(name, m.isdir())
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
            found.mtimes.add(int(m.mtime))


def scan_layer(path: Path, desc: Descriptor, *, strict_normal: bool, seen_dirs: set[str] | None = None,
               visit: Callable[[str, bool], None] | None = None) -> LayerStats:
    """Hash a layer blob and its uncompressed tar, and check its entries.

    Lambda needs every parent directory as an entry (in this layer or an earlier one: `seen_dirs`).
    `strict_normal` also checks mlpack's normalisation (sorted, uid/gid 0, fixed mtime, no names).
    `visit` is called with each entry's name and whether it is a directory, so a caller looking for files
    needs no second pass.
    """
    problems: list[str] = []
    seen = seen_dirs if seen_dirs is not None else set()
    found = _Found()
    with path.open("rb") as f:
        outer = HashingReader(f)
        stream = _tar_stream(f, outer, desc, problems)
        if stream is None:  # hashed, not read as a tar
            outer.drain()
            return LayerStats(digest="sha256:" + outer.hash.hexdigest(), size=outer.size, diff_id="",
                              uncompressed_size=0, entries=0, problems=tuple(problems))
        inner = HashingReader(stream)
        try:
            with tarfile.open(fileobj=inner, mode="r|") as tar:  # type: ignore[call-overload]
                _check_entries(tar, desc, found, problems, seen=seen, strict_normal=strict_normal, visit=visit)
            inner.drain()
        except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
            problems.append(f"layer {desc.digest}: not a readable tar stream ({e})")
        outer.drain()
    if strict_normal:
        if found.names != sorted(found.names):
            problems.append(f"layer {desc.digest}: entries are not sorted by name")
        if len(found.mtimes) > 1:
            problems.append(f"layer {desc.digest}: entries carry {len(found.mtimes)} different mtimes "
                            "(expected one)")
    return LayerStats(digest="sha256:" + outer.hash.hexdigest(), size=outer.size,
                      diff_id="sha256:" + inner.hash.hexdigest(), uncompressed_size=inner.size,
                      entries=found.entries, problems=tuple(problems))


def verify(image: Image, *, visit: Callable[[str, bool], None] | None = None) -> tuple[list[str], list[LayerStats]]:
    """Check every blob and the config against the layers. Returns (problems, per-layer stats). `visit`
    sees every layer's entries in order, as scan_layer gives them."""
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
        st = scan_layer(path, desc, strict_normal=strict, seen_dirs=seen_dirs, visit=visit)
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
