"""Unpack an image into a root file system, the way a container runtime applies its layers.

Enters: an `Image` whose blobs are on disk, and a destination folder. Leaves: `<dest>/rootfs` with every
layer applied in order (whiteouts and opaque directories included), each blob checked against its digest
on the way. `resolve_inside` resolves a path in such a tree without letting a symlink lead out of it.
Runs unprivileged: ownership is not restored and devices are skipped.
"""

from __future__ import annotations

import gzip
import os
import shutil
import stat
import tarfile
import zlib
from pathlib import Path, PurePosixPath
from typing import IO

from packager.errors import BuildError
from packager.oci.layout import CHUNK, GZIP_LAYER_TYPES, Image
from packager.oci.scan import HashingReader, norm_name


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
        # devices and fifos need privileges and are skipped: a local run of the unpacked root does without them


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
            outer = HashingReader(f)
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


def find_members(layer_blobs: list[tuple[Path, str]], paths: list[str], *, read: frozenset[str] = frozenset(),
                 limit: int = 64 << 20) -> dict[str, tuple[int, bytes | None]]:
    """The regular files `paths` (e.g. "var/task/model/model.json") of an image made of these layer blobs
    (path, media type, in image order): for each one found, its size and, for those in `read`, its bytes
    (over `limit` bytes is refused). The newest layer holding a file wins, so layers are read from the top
    down, each once, and the reading stops when every file is found. Read without unpacking. (No whiteouts:
    mlpack asks for files its own top layers write.)"""
    wanted = {norm_name(p): p for p in paths}
    found: dict[str, tuple[int, bytes | None]] = {}
    for blob, media_type in reversed(layer_blobs):
        with tarfile.open(blob, "r:gz" if media_type in GZIP_LAYER_TYPES else "r:") as tar:
            for member in tar:
                path = wanted.get(norm_name(member.name))
                if path is None or path in found or not member.isfile():
                    continue
                data = None
                if path in read:
                    if member.size > limit:
                        raise BuildError(f"{path}: {member.size} bytes in layer {blob.name[:12]}, over {limit}")
                    extracted = tar.extractfile(member)
                    data = extracted.read() if extracted else None
                found[path] = (int(member.size), data)
        if len(found) == len(wanted):
            break
    return found


def read_file(layer_blobs: list[tuple[Path, str]], path: str, *, limit: int = 64 << 20) -> bytes | None:
    """The content of the regular file `path` in an image made of these layer blobs (find_members); None
    when no layer has it."""
    return find_members(layer_blobs, [path], read=frozenset({path}), limit=limit).get(path, (0, None))[1]
