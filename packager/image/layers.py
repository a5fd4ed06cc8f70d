"""Deterministic tar.gz layers: the same files give the same bytes, whatever the folder, clock, user or umask.

Entries are sorted, every parent directory has its own entry, owners are 0:0 without names, modes are
normalised (0755 for directories and executables, 0644 otherwise), every entry has the same mtime (the
caller's, by default SOURCE_DATE_EPOCH or 0), and the gzip header carries no name and mtime 0.

Enters: entries (image path, kind, mode, a source file or the bytes). Leaves: a Layer, the .tar.gz on disk
with its digest, diff_id and sizes.

Of mlpack, imports only packager.oci and packager.errors: nothing that touches the network.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import gzip
import hashlib
import io
import os
import stat
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

from packager.errors import BuildError
from packager.oci import ANNOTATION_LAYER, MT_OCI_LAYER_GZIP, Descriptor

GZIP_LEVEL = 6  # fixed: a different level is a different digest


def source_date_epoch() -> int:
    raw = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    if not raw:
        return 0
    try:
        value = int(raw)
    except ValueError as e:
        raise BuildError(f"SOURCE_DATE_EPOCH: must be a whole number of seconds (got {raw!r})",
                         hint="unset it or set it to e.g. the last commit's time") from e
    if value < 0:
        raise BuildError(f"SOURCE_DATE_EPOCH: must not be negative (got {raw!r})")
    return value


def iso_utc(epoch: int) -> str:
    """`epoch` as the RFC 3339 time an image config's `created` fields hold."""
    return dt.datetime.fromtimestamp(epoch, tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, kw_only=True)
class Entry:
    """One file, directory or symlink a layer will hold (path relative to /, no leading slash)."""

    path: str
    kind: str  # file | dir | symlink
    mode: int = 0o644
    source: Path | None = None  # a file on disk, for kind=file
    data: bytes | None = None  # or the content itself
    target: str = ""  # for kind=symlink


@dataclass(frozen=True, kw_only=True)
class Layer:
    """A written layer: the gzip blob on disk plus what the manifest and config need."""

    name: str  # deps | handler | model, or base for the debian base's one layer
    path: Path
    digest: str
    size: int
    diff_id: str
    uncompressed_size: int
    created_by: str
    files: int = 0

    def descriptor(self) -> Descriptor:
        return Descriptor(media_type=MT_OCI_LAYER_GZIP, digest=self.digest, size=self.size,
                          annotations={ANNOTATION_LAYER: self.name})


def _norm_mode(kind: str, mode: int) -> int:
    if kind == "dir":
        return 0o755
    if kind == "symlink":
        return 0o777
    return 0o755 if mode & 0o111 else 0o644


def tree_entries(src: Path, dest: str, *, exclude: Iterable[str] = ()) -> list[Entry]:
    """Entries for everything under `src`, placed at `dest` (e.g. "var/task"). `exclude` are
    directory or file names skipped wherever they appear (e.g. "__pycache__")."""
    skip = set(exclude)
    out: list[Entry] = []
    dest = dest.strip("/")
    for root, dirs, files in os.walk(src):
        dirs[:] = sorted(d for d in dirs if d not in skip)
        rel_root = Path(root).relative_to(src).as_posix()
        prefix = dest if rel_root == "." else f"{dest}/{rel_root}"
        if rel_root != ".":
            out.append(Entry(path=prefix, kind="dir"))
        # os.walk lists symlinked directories in `dirs` without walking them: they are kept as links
        for name in sorted(files) + [d for d in dirs if (Path(root) / d).is_symlink()]:
            if name in skip:
                continue
            p = Path(root) / name
            st = p.lstat()
            if stat.S_ISLNK(st.st_mode):
                out.append(Entry(path=f"{prefix}/{name}", kind="symlink", target=os.readlink(p)))
            elif stat.S_ISREG(st.st_mode):
                out.append(Entry(path=f"{prefix}/{name}", kind="file", mode=st.st_mode, source=p))
    return out


def with_parents(entries: Iterable[Entry]) -> list[Entry]:
    """Add an entry for every parent directory, drop duplicates (last wins), sort by path."""
    by_path: dict[str, Entry] = {}
    for e in entries:
        path = e.path.strip("/")
        if not path or ".." in PurePosixPath(path).parts:
            raise BuildError(f"layer entry {e.path!r}: must be a relative path inside the image")
        by_path[path] = dataclasses.replace(e, path=path)
    for path in list(by_path):
        parts = PurePosixPath(path).parts
        for i in range(1, len(parts)):
            parent = "/".join(parts[:i])
            by_path.setdefault(parent, Entry(path=parent, kind="dir"))
    return [by_path[k] for k in sorted(by_path)]


class _HashingWriter:
    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw
        self.hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.raw.write(data)
        self.hash.update(data)
        self.size += len(data)
        return len(data)

    def flush(self) -> None:
        self.raw.flush()


def write_layer(entries: Iterable[Entry], out: Path, *, name: str, created_by: str,
                mtime: int | None = None) -> Layer:
    """Write `entries` as a deterministic tar.gz at `out`; returns the Layer with both digests."""
    when = source_date_epoch() if mtime is None else mtime
    items = with_parents(entries)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    files = 0
    with tmp.open("wb") as raw:
        outer = _HashingWriter(raw)
        with gzip.GzipFile(filename="", mode="wb", fileobj=outer, compresslevel=GZIP_LEVEL,  # type: ignore[arg-type]
                           mtime=0) as gz:
            inner = _HashingWriter(gz)  # type: ignore[arg-type]
            with tarfile.open(fileobj=inner, mode="w|", format=tarfile.PAX_FORMAT) as tar:  # type: ignore[call-overload]
                for e in items:
                    info = tarfile.TarInfo(e.path)
                    info.mtime = when
                    info.uid = info.gid = 0
                    info.uname = info.gname = ""
                    info.mode = _norm_mode(e.kind, e.mode)
                    if e.kind == "dir":
                        info.type = tarfile.DIRTYPE
                        tar.addfile(info)
                    elif e.kind == "symlink":
                        info.type = tarfile.SYMTYPE
                        info.linkname = e.target
                        tar.addfile(info)
                    elif e.data is not None:
                        info.size = len(e.data)
                        tar.addfile(info, io.BytesIO(e.data))
                        files += 1
                    elif e.source is not None:
                        info.size = e.source.stat().st_size
                        with e.source.open("rb") as f:
                            tar.addfile(info, f)
                        files += 1
                    else:
                        raise BuildError(f"layer entry {e.path}: a file needs a source or data")
    os.replace(tmp, out)
    return Layer(name=name, path=out, digest="sha256:" + outer.hash.hexdigest(), size=outer.size,
                 diff_id="sha256:" + inner.hash.hexdigest(), uncompressed_size=inner.size,
                 created_by=created_by, files=files)
