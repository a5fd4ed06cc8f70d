"""mlpack.bases.json: the base images a repository builds on, pinned by digest, committed.

    {"format": "mlpack.bases/1",
     "bases": {"debian@x86_64": {"digest": "sha256:...", "image": "REGISTRY/mlpack/base-debian@sha256:...",
                                 "packages": {"libssl3": "3.0.22-1~deb12u2", ...}},
               "aws@arm64": {"digest": "sha256:..."}}}

With a pin, every machine on every day builds on the same base: `mlpack build` takes the pinned digest
from the local cache, else from the pin's `image` (pulled by digest, verified), else (the debian base)
builds it and refuses a result with another digest, naming the packages that changed. Changing a pin is
an explicit, reviewable change: `mlpack pin-base` records what the build uses now, `--refresh` builds or
resolves it anew and prints the package-version diff, `--push REPO` stores it in a registry for other
machines.

Enters: a folder (`find` looks upwards for the file, stopping at the repository root) or the file's path,
and pins to record. Leaves: the pins by base and architecture (`read`; a damaged file is a BuildError
naming it), and the package diff of two pins. No network.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packager import oci
from packager.errors import BuildError
from packager.fsutil import write_atomic

PINS_FILE = "mlpack.bases.json"
PINS_FORMAT = "mlpack.bases/1"
ROOT_MARKERS = (".git", "cdk.json", "mlpack-repo.toml")


@dataclass(frozen=True)
class Pin:
    digest: str  # the base's manifest digest
    image: str | None = None  # where other machines get it: REGISTRY/REPO@digest
    packages: dict[str, str] = field(default_factory=dict)  # OS package -> version (debian)


def key(base: str, arch: str) -> str:
    return f"{base.strip()}@{arch}"


def find(start: Path) -> Path | None:
    """mlpack.bases.json in `start` or a folder above it, up to the repository root (the first folder with
    .git, cdk.json or mlpack-repo.toml); None when there is none."""
    start = start.resolve()
    for folder in (start, *start.parents):
        if (folder / PINS_FILE).is_file():
            return folder / PINS_FILE
        if any((folder / m).exists() for m in ROOT_MARKERS):
            return None
    return None


def default_path(start: Path) -> Path:
    """Where `mlpack pin-base` writes: the existing file, else the repository root, else `start`."""
    start = start.resolve()
    found = find(start)
    if found:
        return found
    for folder in (start, *start.parents):
        if any((folder / m).exists() for m in ROOT_MARKERS):
            return folder / PINS_FILE
    return start / PINS_FILE


def _damaged(path: Path, what: str) -> BuildError:
    return BuildError(f"{path}: {what}", hint="restore it from version control, or pin again with `mlpack pin-base`")


def read(path: Path) -> dict[str, Pin]:
    """The pins in the file; {} when it does not exist."""
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise _damaged(path, f"cannot read it: {e}") from e
    if not isinstance(data, dict) or data.get("format") != PINS_FORMAT or not isinstance(data.get("bases"), dict):
        raise _damaged(path, f"not an mlpack bases file (expected format {PINS_FORMAT!r} and an object of bases)")
    out: dict[str, Pin] = {}
    for name, entry in data["bases"].items():
        if not isinstance(entry, dict) or not isinstance(entry.get("digest"), str) \
                or not oci.DIGEST_RE.match(entry["digest"]):
            raise _damaged(path, f"bases.{name}.digest: expected a sha256 digest")
        image, packages = entry.get("image"), entry.get("packages", {})
        if image is not None and (not isinstance(image, str) or not image.endswith("@" + entry["digest"])):
            raise _damaged(path, f"bases.{name}.image: expected REGISTRY/REPO@{entry['digest']}")
        if not isinstance(packages, dict) or not all(isinstance(v, str) for v in packages.values()):
            raise _damaged(path, f"bases.{name}.packages: expected an object of package versions")
        out[name] = Pin(digest=entry["digest"], image=image, packages=dict(packages))
    return out


def dumps(pins: dict[str, Pin]) -> bytes:
    bases: dict[str, Any] = {}
    for name, pin in sorted(pins.items()):
        entry: dict[str, Any] = {"digest": pin.digest}
        if pin.image:
            entry["image"] = pin.image
        if pin.packages:
            entry["packages"] = dict(sorted(pin.packages.items()))
        bases[name] = entry
    return (json.dumps({"format": PINS_FORMAT, "bases": bases}, indent=2, sort_keys=True) + "\n").encode()


def record(path: Path, name: str, pin: Pin) -> bool:
    """Set one pin, keeping the others; returns whether the file changed (the same pin leaves it as it was)."""
    pins = read(path)
    if pins.get(name) == pin:
        return False
    pins[name] = pin
    write_atomic(path, dumps(pins))
    return True


def package_diff(old: dict[str, str], new: dict[str, str]) -> list[str]:
    """One line per package added, removed or at another version: `libssl3 3.0.20-1 -> 3.0.22-1`."""
    lines = []
    for name in sorted(set(old) | set(new)):
        a, b = old.get(name), new.get(name)
        if a != b:
            lines.append(f"{name} {a or '(none)'} -> {b or '(none)'}")
    return lines
