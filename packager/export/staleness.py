"""Whether an export is stale: digests of what determined it.

Enters: a ModelSpec. Leaves: the sha256 of the source and samples files (`file_digests`, read once),
the source's sha256 model.json records (`source_sha256`: for a factory, its module's file), and
`inputs_hash`, one sha256 over everything that determines the export (source and samples bytes, the
project's Python files when a factory is involved, the spec sections that feed the export, and the
installed versions of mlpack and of the libraries that convert and check the model). pipeline.py skips
an export whose model.json holds the same inputs_hash.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path

from packager.config.spec import ModelSpec, is_factory
from packager.export.describe import dist_version


def source_sha256(spec: ModelSpec, file_digests: Mapping[str, str]) -> str:
    """The source file's sha256; for a factory, that of the file holding its module."""
    path = spec.source_path()
    if path is not None:
        return file_digests.get("source") or _file_sha256(path)
    module = spec.model.source.split(":", 1)[0].replace(".", "/")
    file = spec.project_dir / f"{module}.py"
    return _file_sha256(file if file.is_file() else spec.project_dir / module / "__init__.py")


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def file_digests(spec: ModelSpec) -> dict[str, str]:
    """sha256 of the source and samples files that exist (a missing one is reported when loading), read
    once for both the change check and model.json."""
    return {key: _file_sha256(path) for key, path in (("source", spec.source_path()), ("samples", spec.samples_path()))
            if path is not None and path.is_file()}


def inputs_hash(spec: ModelSpec, file_digests: Mapping[str, str]) -> str:
    """Everything that determines the export: source and samples bytes (for factories, the project's
    Python files), the spec sections that feed it, and the converter versions."""
    h = hashlib.sha256()

    def add(label: str, data: bytes) -> None:
        h.update(label.encode() + b"\0" + hashlib.sha256(data).digest())

    relevant = {
        "model": {k: v for k, v in vars(spec.model).items() if k != "owners"},
        "samples": vars(spec.samples), "export": vars(spec.export),
        "versions": {d: dist_version(d) for d in
                     ("mlpack-lambda", "onnx", "onnxruntime", "skl2onnx", "scikit-learn", "torch", "onnxscript",
                      "numpy")},
    }
    add("spec", json.dumps(relevant, sort_keys=True, default=str).encode())
    for key, digest in file_digests.items():
        add(key, digest.encode())
    if is_factory(spec.model.source) or is_factory(spec.samples.source):
        for py in sorted(spec.project_dir.rglob("*.py")):
            rel = py.relative_to(spec.project_dir)
            if rel.parts[0] in ("build", ".venv") or "__pycache__" in rel.parts:
                continue
            add(f"py:{rel.as_posix()}", py.read_bytes())
    return h.hexdigest()
