"""Lambda's rules for a container image, and `mlpack check`: re-verify an image layout on disk.

Enters: a manifest and config (with the layers' uncompressed sizes when known), or a layout folder.
Leaves: the problems (what Lambda would refuse) and warnings found, as text; `check` also returns the image
it read and per-layer stats, and warns about Python modules that ship without bytecode (one of mlpack's own
rules: Lambda's file system is read-only, so they are compiled again at every cold start). build.py
applies `lambda_problems` to the image it composed before writing it; `check` applies them again, after
oci.verify, to a layout on disk. Reads only; writes nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from packager import oci
from packager.errors import BuildError

MAX_UNCOMPRESSED = 10 * 1024**3  # Lambda's limit for a container image
WARN_UNCOMPRESSED = 5 * 1024**3


def lambda_problems(manifest: dict[str, Any], config: dict[str, Any],
                    uncompressed_sizes: list[int] | None = None) -> tuple[list[str], list[str]]:
    """Lambda's rules on a manifest and its config. Returns (problems, warnings)."""
    problems: list[str] = []
    warnings: list[str] = []
    mt = manifest.get("mediaType")
    if mt in oci.INDEX_TYPES or "manifests" in manifest:
        problems.append("manifest: an image index; Lambda needs a single-architecture manifest")
        return problems, warnings
    if mt not in oci.MANIFEST_TYPES:
        problems.append(f"manifest: media type {mt!r} is not an OCI or Docker v2 image manifest")
    if manifest.get("schemaVersion") != 2:
        problems.append(f"manifest: schemaVersion must be 2 (got {manifest.get('schemaVersion')!r})")
    layer_list = manifest.get("layers") or []
    if not layer_list:
        problems.append("manifest: no layers")
    for i, layer in enumerate(layer_list):
        if layer.get("mediaType") not in oci.GZIP_LAYER_TYPES:
            problems.append(f"manifest: layer {i} has media type {layer.get('mediaType')!r}; Lambda needs gzip layers")
    arch = config.get("architecture")
    if arch not in oci.LAMBDA_ARCH:
        problems.append(f"config: architecture {arch!r}; Lambda runs amd64 (x86_64) or arm64")
    if config.get("os") != "linux":
        problems.append(f"config: os {config.get('os')!r}; Lambda runs linux")
    rootfs = config.get("rootfs") or {}
    if rootfs.get("type") != "layers":
        problems.append("config: rootfs.type must be 'layers'")
    if len(rootfs.get("diff_ids") or []) != len(layer_list):
        problems.append(f"config: rootfs.diff_ids lists {len(rootfs.get('diff_ids') or [])} layers, the manifest "
                        f"{len(layer_list)}")
    cfg = config.get("config") or {}
    if not (cfg.get("Entrypoint") or cfg.get("Cmd")):
        problems.append("config: neither Entrypoint nor Cmd is set; Lambda would not know what to run")
    if not cfg.get("WorkingDir"):
        problems.append("config: WorkingDir is not set")
    if uncompressed_sizes is not None:
        total = sum(uncompressed_sizes)
        if total > MAX_UNCOMPRESSED:
            problems.append(f"image: {total / 1e9:.2f} GB uncompressed; Lambda's limit is 10 GB")
        elif total > WARN_UNCOMPRESSED:
            warnings.append(f"image: {total / 1e9:.2f} GB uncompressed, more than half of Lambda's 10 GB limit")
    return problems, warnings


@dataclass(frozen=True, kw_only=True)
class CheckResult:
    image: oci.Image
    problems: tuple[str, ...]
    warnings: tuple[str, ...]
    stats: tuple[oci.LayerStats, ...]


def check(layout: Path, *, arch: str | None = None) -> CheckResult:
    """Re-verify a layout: blobs against digests and sizes, diff_ids, tar normalisation, Lambda's rules."""
    index = layout / "index.json"
    if index.is_file():
        try:
            doc = json.loads(index.read_bytes())
        except ValueError:
            doc = {}
        if len(doc.get("manifests", [])) > 1 and arch is None:
            raise BuildError(f"{index}: {len(doc['manifests'])} images; Lambda takes one architecture",
                             hint="pass --arch to check one of them")
    image = oci.read_layout(layout, arch=arch)
    files: set[str] = set()  # the final file system, gathered as verify streams the layers
    problems, stats = oci.verify(image, visit=lambda name, is_dir: _apply(files, name, is_dir))
    lp, warns = lambda_problems(json.loads(image.manifest_bytes), image.config_json,
                                [s.uncompressed_size for s in stats])
    if not problems:  # the layers read as tars: which modules lack bytecode
        missing = _without_bytecode(files)
        if missing:
            shown = ", ".join(missing[:3]) + (", ..." if len(missing) > 3 else "")
            warns.append(f"image: {len(missing)} Python module(s) ship without bytecode ({shown}); Lambda's file "
                         "system is read-only, so each cold start compiles the ones it imports again (build on a "
                         "machine with the image's Python version, whose interpreter mlpack compiles them with)")
    return CheckResult(image=image, problems=tuple(problems + lp), warnings=tuple(warns), stats=tuple(stats))


# where a Lambda image's Python imports from: the task root, AWS's runtime and layers, the interpreters'
# standard libraries and site-packages
PYTHON_ROOTS = ("var/task/", "var/runtime/", "var/lang/lib/", "opt/python/", "usr/lib/python3", "usr/local/lib/python3")
# parts of a standard library or of packages that nothing imports at run time
UNIMPORTED = {"test", "tests", "idlelib", "lib2to3", "tkinter", "turtledemo", "pydoc_data", "ensurepip", "__pycache__"}


def modules_without_bytecode(image: oci.Image) -> list[str]:
    """The .py files under PYTHON_ROOTS of the image's final file system (layers applied in order,
    whiteouts honoured) with neither __pycache__/<name>.cpython-*.pyc (not an optimised .opt- one) nor a
    <name>.pyc beside them; sorted."""
    files: set[str] = set()
    oci.verify(image, visit=lambda name, is_dir: _apply(files, name, is_dir))
    return _without_bytecode(files)


def _without_bytecode(files: set[str]) -> list[str]:
    """modules_without_bytecode on a final file system's file list."""
    compiled = _compiled(files)
    out = []
    for name in sorted(files):
        if not name.endswith(".py") or not name.startswith(PYTHON_ROOTS) or name in compiled:
            continue
        if not UNIMPORTED.intersection(PurePosixPath(name).parts[:-1]):
            out.append(name)
    return out


def _compiled(files: set[str]) -> set[str]:
    """The .py paths some bytecode in `files` was compiled from: dir/__pycache__/x.cpython-*.pyc (not an
    optimised .opt- one, which a plain interpreter does not read) or a legacy dir/x.pyc."""
    out = set()
    for f in files:
        if not f.endswith(".pyc"):
            continue
        folder, _, base = f.rpartition("/")
        if folder.endswith("__pycache__") and ".cpython-" in base and ".opt-" not in base:
            parent = folder[: -len("__pycache__")]
            out.add(f"{parent}{base.split('.cpython-')[0]}.py")
        elif not folder.endswith("__pycache__"):
            out.add(f[:-1])
    return out


def _apply(files: set[str], name: str, is_dir: bool) -> None:
    """One layer entry on the file list: a whiteout removes a path (or, opaque, a folder's contents)."""
    if is_dir or not name:
        return
    folder, _, base = name.rpartition("/")
    if base == ".wh..wh..opq":
        prefix = f"{folder}/"
        files.difference_update([f for f in files if f.startswith(prefix)])
    elif base.startswith(".wh."):
        gone = f"{folder}/{base[4:]}" if folder else base[4:]
        files.difference_update([f for f in files if f == gone or f.startswith(gone + "/")])
    else:
        files.add(name)
