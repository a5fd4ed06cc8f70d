"""The lock file: which image each model deploys, and what it deployed before. Written by `mlpack push`,
`promote`, `rollback` and `relock`; read by the CDK app (stacks/plan.py).

    {"format": "mlpack.lock/2",
     "models": {"iris": {"repository": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/mlpack/iris",
                         "digest": "sha256:...", "arch": "x86_64", "model_version": "3f2a9c01b7d4",
                         "model_sha256": "...", "project": "models/iris", "pushed_at": "2026-11-27T05:00:00Z",
                         "pushed_by": "alice", "how": "push"}},
     "history": {"iris": [{...the entry it replaced...}, ...]}}

One lock per environment (mlpack.<env>.lock.json; mlpack.lock.json without environments), so
environments never overwrite each other. `history` holds, newest first, up to HISTORY_MAX entries each
model deployed before (what `mlpack rollback` returns to). What the stacks need from each image's export
lives beside the lock in its deploy record (packager/config/records.py), keyed by digest.

Enters: the lock file's path (and, to record, a model's name and `LockEntry`). Leaves: the validated
entries (`read`, `read_lock`; a damaged file is a `DeployError` naming the file, the entry and how to
recover), and whether a record changed the file. `check_writable` tells, before a push uploads anything,
whether the lock could be written at all. Format 1 files (no history, no pushed_by/how) are read too;
every write is format 2.

Writes are atomic (temp file + rename) and merged under a file lock, so pushes of different models
at the same time lose nothing. A record that changes nothing but who and when (`pushed_at`, `pushed_by`,
`how`) leaves the file byte-identical. No network, no AWS.
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
LOCK_FORMAT = "mlpack.lock/2"
READ_FORMATS = ("mlpack.lock/1", LOCK_FORMAT)
HISTORY_MAX = 20  # entries kept per model for rollback (the deploy records stay on disk regardless)


def lock_file_for(environment: str | None) -> str:
    """The lock file's default name: mlpack.<env>.lock.json per environment, else mlpack.lock.json."""
    return f"mlpack.{environment}.lock.json" if environment else LOCK_FILE


@dataclass(frozen=True, kw_only=True)
class LockEntry:
    repository: str  # registry host + repository path, no tag
    digest: str  # sha256:... of the image manifest
    arch: str
    model_version: str
    model_sha256: str
    project: str  # the model project folder, relative to the lock file
    pushed_at: str  # UTC, ISO 8601: when this entry was recorded
    pushed_by: str = ""  # who recorded it (GITHUB_ACTOR in CI, else the user name)
    how: str = "push"  # push | promote from <env> | rollback | relock
    sbom: str = ""  # digest of the image's SBOM artifact in the registry (it refers to the image), if pushed

    @property
    def image_uri(self) -> str:
        return f"{self.repository}@{self.digest}"

    def same_image(self, other: LockEntry) -> bool:
        """Equal in everything but who recorded it, when and how."""
        return replace(self, pushed_at=other.pushed_at, pushed_by=other.pushed_by, how=other.how) == other


@dataclass(frozen=True)
class Lock:
    """The whole file: each model's current entry and, newest first, the ones it replaced."""

    models: dict[str, LockEntry]
    history: dict[str, tuple[LockEntry, ...]]

    def entries(self, name: str) -> tuple[LockEntry, ...]:
        """The model's current entry, then its history; () when the lock does not hold the model."""
        current = self.models.get(name)
        return ((current,) if current else ()) + self.history.get(name, ())


def _move_aside(path: Path) -> str:
    return f"mv {shlex.quote(str(path))} {shlex.quote(str(path) + '.damaged')}"


def _damaged_file(path: Path, what: str) -> DeployError:
    return DeployError(
        f"{path}: {what}",
        hint=f"restore it from version control, or move it aside ({_move_aside(path)}) and, for each model it "
             "pinned, push again or run `mlpack relock MODEL --image REPOSITORY@DIGEST` (rewrites the entry from "
             "the registry)")


def _damaged_entry(path: Path, name: str, what: str) -> DeployError:
    return DeployError(
        f"{path}: models.{name}{what}",
        hint=f"run `mlpack relock {name}` (with --image REPOSITORY@DIGEST if its digest is damaged) to rewrite "
             f"the entry from the registry; or delete models.{name} from {path} (or move the whole file aside: "
             f"{_move_aside(path)}), then push {name} again with `mlpack push` to record it anew")


REQUIRED = ("arch", "digest", "model_sha256", "model_version", "project", "pushed_at", "repository")
OPTIONAL = ("how", "pushed_by", "sbom")


def _entry(path: Path, name: str, entry: object, where: str = "") -> LockEntry:
    if not isinstance(entry, dict) or not set(REQUIRED) <= set(entry) or not set(entry) <= {*REQUIRED, *OPTIONAL}:
        got = ", ".join(sorted(entry)) if isinstance(entry, dict) else f"a JSON {type(entry).__name__}"
        optional = f" (and optionally {', '.join(OPTIONAL)})"
        raise _damaged_entry(path, name, f"{where}: expected keys {', '.join(REQUIRED)}{optional} "
                                         f"(got {got or 'none'})")
    for key in REQUIRED:
        if not isinstance(entry[key], str) or not entry[key]:
            raise _damaged_entry(path, name, f"{where}.{key}: expected a non-empty string (got {entry[key]!r})")
    for key in OPTIONAL:
        if key in entry and not isinstance(entry[key], str):
            raise _damaged_entry(path, name, f"{where}.{key}: expected a string (got {entry[key]!r})")
    if not oci.DIGEST_RE.match(entry["digest"]):
        raise _damaged_entry(path, name, f"{where}.digest: not a sha256 digest (got {entry['digest']!r})")
    return LockEntry(**entry)


def _parse(path: Path, text: str, *, lenient: str | None = None) -> Lock:
    """The lock in text. lenient: a model whose damaged entry (or history) is dropped instead of raising."""
    try:
        data = json.loads(text)
    except ValueError as e:
        raise _damaged_file(path, f"cannot read the lock file: not valid JSON ({e})") from e
    if not isinstance(data, dict) or data.get("format") not in READ_FORMATS or not isinstance(data.get("models"),
                                                                                               dict):
        raise _damaged_file(path, f"not an mlpack lock file (expected format {LOCK_FORMAT!r} and an object "
                                  "of models)")
    raw_history = data.get("history", {})
    if not isinstance(raw_history, dict):
        raise _damaged_file(path, "history: expected an object of lists of entries")
    models: dict[str, LockEntry] = {}
    history: dict[str, tuple[LockEntry, ...]] = {}
    for name in sorted({*data["models"], *raw_history}):
        try:  # the current entry and the history fail apart: relock (lenient) keeps what is intact
            if name in data["models"]:
                models[name] = _entry(path, name, data["models"][name])
        except DeployError:
            if name != lenient:
                raise
        try:
            past = raw_history.get(name, [])
            if not isinstance(past, list):
                raise _damaged_entry(path, name, " (history): expected a list of entries")
            if past:
                history[name] = tuple(_entry(path, name, e, f" (history[{i}])") for i, e in enumerate(past))
        except DeployError:
            if name != lenient:
                raise
    return Lock(models=models, history=history)


def read_lock(path: Path, *, lenient: str | None = None) -> Lock:
    """The whole lock file (an empty one when it does not exist). A damaged file or entry raises
    `DeployError` naming the file, what is wrong, and how to recover; `lenient` names one model whose
    damaged entry is left out instead (what `relock` replaces)."""
    if not path.exists():
        return Lock(models={}, history={})
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, ValueError) as e:
        raise _damaged_file(path, f"cannot read the lock file: {e}") from e
    return _parse(path, text, lenient=lenient)


def read(path: Path) -> dict[str, LockEntry]:
    """The current entry of each model recorded in the lock file; {} when it does not exist."""
    return read_lock(path).models


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


def _plain(entry: LockEntry) -> dict[str, str]:
    return {k: v for k, v in asdict(entry).items() if v or k in REQUIRED}  # no empty optional field


def _dump(lock: Lock) -> str:
    body: dict[str, Any] = {"format": LOCK_FORMAT, "models": {n: _plain(e) for n, e in sorted(lock.models.items())}}
    if any(lock.history.values()):
        body["history"] = {n: [_plain(e) for e in h] for n, h in sorted(lock.history.items()) if h}
    return json.dumps(body, indent=2, sort_keys=True) + "\n"


def update_lock(path: Path, change: Callable[[Lock], Lock], *, lenient: str | None = None) -> bool:
    """Read, change and write the lock file under an exclusive file lock, atomically. When the change
    leaves the lock as it was, the file is not written. Returns whether it was."""
    path = path.resolve()
    try:
        with FileLock(str(path) + ".lock", timeout=60):
            before = read_lock(path, lenient=lenient)
            after = change(Lock(models=dict(before.models), history=dict(before.history)))
            changed = after != before  # an older format is rewritten only when something changes
            if changed:
                write_atomic(path, _dump(after).encode())
    except Timeout as e:
        raise DeployError(f"{path}: another process has held its lock for 60 s",
                          hint="let the other mlpack command finish, then run this one again") from e
    except OSError as e:
        raise DeployError(f"{path}: cannot write the lock file: {e}",
                          hint="check that its folder exists and is writable, or pass --lock FILE") from e
    return changed


def update(path: Path, change: Callable[[dict[str, LockEntry]], dict[str, LockEntry]]) -> bool:
    """`update_lock` for changes to the current entries only; history is kept as it is."""
    return update_lock(path, lambda lock: Lock(models=change(lock.models), history=lock.history))


def put(lock: Lock, name: str, entry: LockEntry) -> Lock:
    """Make `entry` the model's current entry; the entry it replaces goes first in its history. The same
    image is never twice in one model's history, so rolling back and forth keeps the list short. An entry
    of the same image as the current one changes nothing."""
    old = lock.models.get(name)
    if old is not None and old.same_image(entry):
        return lock
    past = [e for e in ((old,) if old else ()) + lock.history.get(name, ()) if not e.same_image(entry)]
    unique: list[LockEntry] = []
    for e in past:
        if not any(u.same_image(e) for u in unique):
            unique.append(e)
    history = dict(lock.history)
    history[name] = tuple(unique[:HISTORY_MAX])
    return Lock(models={**lock.models, name: entry}, history=history)


def record(path: Path, name: str, entry: LockEntry, *, lenient: bool = False) -> bool:
    """Set one model's entry, keeping every other model's (and this one's history). Returns False, and
    leaves the file as it was, when the file already records this image. lenient: the model's current
    entry may be damaged (relock), it is replaced."""
    return update_lock(path, lambda lock: put(lock, name, entry), lenient=name if lenient else None)


def as_json(models: dict[str, LockEntry]) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(_dump(Lock(models=models, history={})))
    return data


def select(lock: Lock, name: str, wanted: str | None, *, path: Path) -> LockEntry:
    """One of the model's entries (current first, then history): by model version, by digest (whole or
    its first 7+ hex digits), or, with wanted None, the one before the current. DeployError lists the
    choices when there is no such entry, or more than one."""
    entries = lock.entries(name)
    if not entries:
        raise DeployError(f"{path}: no entry for model {name!r}",
                          hint=f"models there: {', '.join(sorted(lock.models)) or 'none'}")
    choices = "; ".join(f"{e.model_version} {e.digest[7:19]} ({e.how}, {e.pushed_at})" for e in entries)
    if wanted is None:
        if len(entries) < 2:
            raise DeployError(f"{path}: {name} has no earlier entry to return to", hint=f"entries: {choices}")
        return entries[1]
    hexpart = wanted.removeprefix("sha256:").lower()
    hits = [e for e in entries if e.model_version == wanted
            or (len(hexpart) >= 7 and e.digest.removeprefix("sha256:").startswith(hexpart))]
    unique = [e for i, e in enumerate(hits) if not any(h.same_image(e) for h in hits[:i])]
    if len(unique) != 1:
        what = "matches no entry" if not unique else "matches several entries; give the digest"
        raise DeployError(f"{path}: {name}: {wanted!r} {what}", hint=f"entries, newest first: {choices}")
    return unique[0]
