"""Deploy records: what the stacks need from a pushed image's export, committed beside the lock.

    mlpack.records/<model>/<64 hex of the image digest>.json
    {"format": "mlpack.record/1", "model": "iris", "digest": "sha256:...", "arch": "x86_64",
     "model_bytes": 1234, "model_json": {... the image's model.json: version, signature, classes, profile ...}}

`mlpack push` writes one for every image it records in a lock (`relock` rewrites it from the image in
the registry), so `cdk synth` on a clean checkout, which has no build outputs, weights or training data,
still has the request schema, the classes and the profile figures the alarms use. A record belongs to
an image, not to an environment: a promoted image or a rollback reuses the record already there, and
records are never changed once written (the digest names the content).

Enters: the lock file's path, a model name, an image digest (and, to write, its architecture and
model.json). Leaves: the record's path; its model.json (`read`, a `DeployError` naming the file and the
fix when it is missing or damaged). No network, no AWS.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from packager.errors import DeployError
from packager.fsutil import write_atomic

RECORDS_DIR = "mlpack.records"
RECORD_FORMAT = "mlpack.record/1"


def path_for(lock_path: Path, model: str, digest: str) -> Path:
    """Where the record of `model`'s image `digest` lives: mlpack.records/ beside the lock."""
    return lock_path.parent / RECORDS_DIR / model / f"{digest.partition(':')[2]}.json"


def dump(model: str, digest: str, arch: str, model_json: dict[str, Any], model_bytes: int | None = None) -> bytes:
    body: dict[str, Any] = {"format": RECORD_FORMAT, "model": model, "digest": digest, "arch": arch,
                            "model_json": model_json}
    if model_bytes is not None:
        body["model_bytes"] = model_bytes  # model.onnx's size: what the function's memory must hold
    return (json.dumps(body, indent=1, sort_keys=True, ensure_ascii=False) + "\n").encode()


def write(lock_path: Path, model: str, digest: str, arch: str, model_json: dict[str, Any],
          model_bytes: int | None = None) -> tuple[Path, bool]:
    """Write the record (atomically); returns its path and whether the file changed (an identical record
    already there is left untouched, byte for byte)."""
    path = path_for(lock_path, model, digest)
    data = dump(model, digest, arch, model_json, model_bytes)
    if path.is_file() and path.read_bytes() == data:
        return path, False
    try:
        write_atomic(path, data)
    except OSError as e:
        raise DeployError(f"{path}: cannot write the deploy record: {e}",
                          hint="make the folder beside the lock file writable") from e
    return path, True


def read(lock_path: Path, model: str, digest: str) -> dict[str, Any]:
    """The image's model.json from its record. Raises DeployError naming the file and what to run."""
    return read_record(lock_path, model, digest)[0]


def read_record(lock_path: Path, model: str, digest: str) -> tuple[dict[str, Any], int | None]:
    """(the image's model.json, model.onnx's size in bytes or None when the record predates it)."""
    path = path_for(lock_path, model, digest)
    fix = (f"commit it with {lock_path.name} (git add {RECORDS_DIR}), or rewrite it from the registry with "
           f"`mlpack relock {model}`")
    if not path.is_file():
        raise DeployError(f"{path}: no deploy record for {model}'s image {digest[:19]}", hint=fix)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise DeployError(f"{path}: cannot read the deploy record: {e}", hint=fix) from e
    if not isinstance(data, dict) or data.get("format") != RECORD_FORMAT or not isinstance(data.get("model_json"),
                                                                                           dict):
        raise DeployError(f"{path}: not an mlpack deploy record (expected format {RECORD_FORMAT!r})", hint=fix)
    if data.get("model") != model or data.get("digest") != digest:
        raise DeployError(f"{path}: records {data.get('model')!r} {str(data.get('digest'))[:19]}, not {model!r} "
                          f"{digest[:19]}", hint=fix)
    model_json: dict[str, Any] = data["model_json"]
    size = data.get("model_bytes")
    return model_json, size if isinstance(size, int) and not isinstance(size, bool) else None
