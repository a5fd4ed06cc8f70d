"""Small OCI image layouts written by hand for registry and push tests (a stand-in for `mlpack build`).

Each layer is a deterministic tar.gz built from a {path: bytes} mapping, with parent directories.
Imports nothing from packager/.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
from pathlib import Path

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def tar_gz(files: dict[str, bytes]) -> tuple[bytes, str]:
    """A deterministic gzip'd tar of `files` plus every parent directory; returns (gz bytes, diff_id)."""
    raw = io.BytesIO()
    dirs = sorted({str(Path(p).parents[i]) for p in files for i in range(len(Path(p).parents) - 1)})
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for d in dirs:
            info = tarfile.TarInfo(d)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 0
            tar.addfile(info)
        for name in sorted(files):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(files[name]), 0o644, 0
            tar.addfile(info, io.BytesIO(files[name]))
    plain = raw.getvalue()
    return gzip.compress(plain, mtime=0), _digest(plain)


def write_layout(dest: Path, layers: list[dict[str, bytes]], *, arch: str = "amd64",
                 raw_layers: list[tuple[bytes, str]] | None = None, labels: dict[str, str] | None = None) -> str:
    """Write an OCI layout with one single-arch image; returns the manifest digest.
    `raw_layers` adds pre-made (gz bytes, diff_id) layers after `layers`."""
    blobs = dest / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)

    def put(data: bytes) -> str:
        d = _digest(data)
        (blobs / d.split(":")[1]).write_bytes(data)
        return d

    descs, diff_ids = [], []
    for gz, diff_id in [tar_gz(files) for files in layers] + list(raw_layers or []):
        descs.append({"mediaType": OCI_LAYER, "digest": put(gz), "size": len(gz)})
        diff_ids.append(diff_id)
    config = json.dumps({
        "architecture": arch, "os": "linux",
        "config": {"Env": ["PATH=/usr/bin:/bin"], "Cmd": ["/bin/true"], **({"Labels": labels} if labels else {})},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created_by": "tests.support.layouts"} for _ in diff_ids],
    }, sort_keys=True, separators=(",", ":")).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": put(config), "size": len(config)},
        "layers": descs,
    }, sort_keys=True, separators=(",", ":")).encode()
    mdigest = put(manifest)
    (dest / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    (dest / "index.json").write_text(json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": mdigest, "size": len(manifest),
                       "platform": {"architecture": arch, "os": "linux"}}],
    }))
    return mdigest


def random_layer(size: int, seed: int) -> tuple[bytes, str]:
    """A layer holding one file of `size` pseudo-random (incompressible) bytes."""
    data = hashlib.shake_256(seed.to_bytes(8, "big")).digest(size) if size <= 1 << 24 else os.urandom(size)
    return tar_gz({f"data/blob-{seed}.bin": data})
