"""mlpack.lock.json: which image digest each model deploys. Written by `mlpack push`, read by app.py.

    {"format": "mlpack.lock/1",
     "models": {"iris": {"repository": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/mlpack/iris",
                         "digest": "sha256:...", "arch": "x86_64", "model_version": "3f2a9c01b7d4",
                         "model_sha256": "...", "project": "examples/iris", "pushed_at": "2026-11-27T05:00:00Z"}}}

Writes are atomic (temp file + rename) and merged under a file lock, so pushes of different models
at the same time lose nothing. No network, no AWS.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from packager import oci
from packager.errors import DeployError
from packager.fsutil import write_atomic

LOCK_FILE = "mlpack.lock.json"
LOCK_FORMAT = "mlpack.lock/1"


@dataclass(frozen=True, kw_only=True)
class LockEntry:
    repository: str  # registry host + repository path, no tag
    digest: str  # sha256:... of the image manifest
    arch: str
    model_version: str
    model_sha256: str
    project: str  # the model project folder, relative to the lock file
    pushed_at: str  # UTC, ISO 8601

    @property
    def image_uri(self) -> str:
        return f"{self.repository}@{self.digest}"


def read(path: Path) -> dict[str, LockEntry]:
    """The models recorded in the lock file; {} when it does not exist."""
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise DeployError(f"{path}: cannot read the lock file: {e}",
                          hint="restore it from version control or push the models again") from e
    if not isinstance(data, dict) or data.get("format") != LOCK_FORMAT or not isinstance(data.get("models"), dict):
        raise DeployError(f"{path}: not an mlpack lock file (expected format {LOCK_FORMAT!r})",
                          hint="restore it from version control or push the models again")
    out: dict[str, LockEntry] = {}
    fields = set(LockEntry.__dataclass_fields__)
    for name, entry in sorted(data["models"].items()):
        if not isinstance(entry, dict) or set(entry) != fields:
            raise DeployError(f"{path}: models.{name}: expected keys {', '.join(sorted(fields))}",
                              hint="push the model again with `mlpack push` to rewrite its entry")
        if not oci.DIGEST_RE.match(str(entry["digest"])):
            raise DeployError(f"{path}: models.{name}.digest: not a sha256 digest (got {entry['digest']!r})")
        out[name] = LockEntry(**{k: str(v) for k, v in entry.items()})
    return out


def _dump(models: dict[str, LockEntry]) -> str:
    body = {"format": LOCK_FORMAT, "models": {n: asdict(e) for n, e in sorted(models.items())}}
    return json.dumps(body, indent=2, sort_keys=True) + "\n"


def update(path: Path, change: Callable[[dict[str, LockEntry]], dict[str, LockEntry]]) -> dict[str, LockEntry]:
    """Read, change and write the lock file under an exclusive file lock, atomically."""
    path = path.resolve()
    try:
        with FileLock(str(path) + ".lock", timeout=60):
            models = change(dict(read(path)))
            write_atomic(path, _dump(models).encode())
    except Timeout as e:
        raise DeployError(f"{path}: another process has held its lock for 60 s",
                          hint="let the other `mlpack push` finish, then run this one again") from e
    except OSError as e:
        raise DeployError(f"{path}: cannot write the lock file: {e}",
                          hint="check that its folder exists and is writable, or pass --lock FILE") from e
    return models


def record(path: Path, name: str, entry: LockEntry) -> dict[str, LockEntry]:
    """Set one model's entry, keeping every other model's."""

    def put(models: dict[str, LockEntry]) -> dict[str, LockEntry]:
        models[name] = entry
        return models

    return update(path, put)


def as_json(models: dict[str, LockEntry]) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(_dump(models))
    return data
