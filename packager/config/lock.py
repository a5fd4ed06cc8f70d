"""mlpack.lock.json: which image digest each model deploys. Written by `mlpack push`, read by app.py.

    {"format": "mlpack.lock/1",
     "models": {"iris": {"repository": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/mlpack/iris",
                         "digest": "sha256:...", "arch": "x86_64", "model_version": "3f2a9c01b7d4",
                         "model_sha256": "...", "project": "examples/iris", "pushed_at": "2026-11-27T05:00:00Z"}}}

Enters: the lock file's path (and, to record, a model's name and `LockEntry`). Leaves: the validated
entries (`read`; a damaged file is a `DeployError` naming the file, the entry and how to recover), and
whether a record changed the file. `check_writable` tells, before a push uploads anything, whether the
lock could be written at all.

Writes are atomic (temp file + rename) and merged under a file lock, so pushes of different models
at the same time lose nothing. A record that changes nothing but the time (`pushed_at`) leaves the file
byte-identical. No network, no AWS.
"""

from __future__ import annotations

import json
import os
import shlex
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
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

    def same_image(self, other: LockEntry) -> bool:
        """Equal in everything but the time it was pushed."""
        return replace(self, pushed_at=other.pushed_at) == other


def _move_aside(path: Path) -> str:
    return f"mv {shlex.quote(str(path))} {shlex.quote(str(path) + '.damaged')}"


def _damaged_file(path: Path, what: str) -> DeployError:
    return DeployError(
        f"{path}: {what}",
        hint=f"restore it from version control, or move it aside ({_move_aside(path)}) and run "
             "`mlpack push` again for each model it pinned (the push writes a new lock file)")


def _damaged_entry(path: Path, name: str, what: str) -> DeployError:
    return DeployError(
        f"{path}: models.{name}{what}",
        hint=f"delete models.{name} from {path} (or move the whole file aside: {_move_aside(path)}), "
             f"then push {name} again with `mlpack push` to record it anew")


def _entry(path: Path, name: str, entry: object) -> LockEntry:
    fields = sorted(LockEntry.__dataclass_fields__)
    if not isinstance(entry, dict) or sorted(entry) != fields:
        got = ", ".join(sorted(entry)) if isinstance(entry, dict) else f"a JSON {type(entry).__name__}"
        raise _damaged_entry(path, name, f": expected keys {', '.join(fields)} (got {got or 'none'})")
    for key in fields:
        if not isinstance(entry[key], str) or not entry[key]:
            raise _damaged_entry(path, name, f".{key}: expected a non-empty string (got {entry[key]!r})")
    if not oci.DIGEST_RE.match(entry["digest"]):
        raise _damaged_entry(path, name, f".digest: not a sha256 digest (got {entry['digest']!r})")
    return LockEntry(**entry)


def read(path: Path) -> dict[str, LockEntry]:
    """The models recorded in the lock file; {} when it does not exist. A damaged file or entry raises
    `DeployError` naming the file, what is wrong, and how to recover."""
    if not path.exists():
        return {}
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, ValueError) as e:
        raise _damaged_file(path, f"cannot read the lock file: {e}") from e
    try:
        data = json.loads(text)
    except ValueError as e:
        raise _damaged_file(path, f"cannot read the lock file: not valid JSON ({e})") from e
    if not isinstance(data, dict) or data.get("format") != LOCK_FORMAT or not isinstance(data.get("models"), dict):
        raise _damaged_file(path, f"not an mlpack lock file (expected format {LOCK_FORMAT!r} and an object "
                                  "of models)")
    return {name: _entry(path, name, entry) for name, entry in sorted(data["models"].items())}


def check_writable(path: Path) -> None:
    """Raise unless the lock file could be written: its folder (or the nearest one that exists, since
    writing creates the missing ones) is a folder this process may write in. Changes nothing."""
    folder = path.resolve().parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        problem = f"{folder} is not a folder"
    elif not os.access(folder, os.W_OK | os.X_OK):
        problem = f"the folder {folder} is not writable"
    else:
        return
    raise DeployError(f"{path}: cannot write the lock file: {problem}",
                      hint="make its folder writable, or pass --lock FILE")


def _dump(models: dict[str, LockEntry]) -> str:
    body = {"format": LOCK_FORMAT, "models": {n: asdict(e) for n, e in sorted(models.items())}}
    return json.dumps(body, indent=2, sort_keys=True) + "\n"


def update(path: Path, change: Callable[[dict[str, LockEntry]], dict[str, LockEntry]]) -> bool:
    """Read, change and write the lock file under an exclusive file lock, atomically. When the change
    leaves the models as they were, the file is not written. Returns whether it was."""
    path = path.resolve()
    try:
        with FileLock(str(path) + ".lock", timeout=60):
            before = read(path)
            models = change(dict(before))
            changed = models != before
            if changed:
                write_atomic(path, _dump(models).encode())
    except Timeout as e:
        raise DeployError(f"{path}: another process has held its lock for 60 s",
                          hint="let the other `mlpack push` finish, then run this one again") from e
    except OSError as e:
        raise DeployError(f"{path}: cannot write the lock file: {e}",
                          hint="check that its folder exists and is writable, or pass --lock FILE") from e
    return changed


def record(path: Path, name: str, entry: LockEntry) -> bool:
    """Set one model's entry, keeping every other model's. Returns False, and leaves the file as it was,
    when the file already records this entry in everything but the time."""

    def put(models: dict[str, LockEntry]) -> dict[str, LockEntry]:
        old = models.get(name)
        if old is None or not old.same_image(entry):
            models[name] = entry
        return models

    return update(path, put)


def as_json(models: dict[str, LockEntry]) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(_dump(models))
    return data
