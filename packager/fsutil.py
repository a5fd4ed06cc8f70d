"""Writing files so readers see the old content or the new, never a part. Standard library only."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path


def write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write via a unique temp file in the same folder, fsync, then rename over `path`."""
    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())

    _via_temp(path, mode, write)


def copy_atomic(src: Path, path: Path, mode: int = 0o644) -> None:
    """Copy `src` via a unique temp file in `path`'s folder, then rename over `path`. No fsync: what is
    copied this way (blobs, often large) is checked against its digest when read."""
    _via_temp(path, mode, lambda tmp: shutil.copyfile(src, tmp))


def _via_temp(path: Path, mode: int, fill: Callable[[str], object]) -> None:
    # a unique name: two processes writing the same path must not share a temp file
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        fill(tmp)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
