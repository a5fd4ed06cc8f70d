"""Whether an export is stale: digests of what determined it.

Enters: a ModelSpec, and the files the last export recorded in model.json's `read_files`. Leaves:
- `file_digests`: the sha256 of the source and samples files (read once);
- `source_sha256`: the source's sha256 model.json records (for a factory, its module's file);
- `recording`: a context manager around loading the source and the samples that records every regular
  file they open for reading (a factory's `torch.load("weights.pt")`, `joblib.load(...)`,
  `np.loadtxt(...)`) as `ReadFile`s, path and sha256;
- `recheck`: the recorded files hashed again now, and what changed in them ("weights.pt changed");
- `inputs_hash`: one sha256 over everything that determines the export (source and samples bytes, the
  files the load read, the project's Python files when a factory is involved, the spec sections that
  feed the export, and the installed versions of mlpack and of the libraries that convert and check
  the model).
pipeline.py skips an export whose model.json holds the same inputs_hash, computed over the files that
export recorded as they are now.

Files are seen through Python's audit hook for the "open" event, installed once per process (a hook
cannot be removed) and idle outside `recording`. While a recording is active, opens from every thread
count, so a factory's worker threads are seen; mlpack loads one model at a time. Files that native code
opens by name, without Python's open, are not seen (xgboost's `load_model(path)`, LightGBM's
`Booster(model_file=...)`, `torch.export.load(path)`): open them in Python and pass the file or its
bytes (`torch.export.load(open(p, "rb"))`, `load_model(bytearray(Path(p).read_bytes()))`,
`Booster(model_str=Path(p).read_text())`), or export with --force.
Not recorded: files of the Python installation (prefixes, standard library, site-packages, any
distribution's .dist-info or .egg-info metadata), mlpack's own packages (their version is hashed), /proc,
/sys and /dev, the system's time zone, locale and certificate data (_SYSTEM_DATA), the project's build/
folder, __pycache__ and .pyc files, files the load also wrote, anything not a regular file, and files
whose bytes the hash covers already (source and samples files; with a factory, the project's Python files).
"""

from __future__ import annotations

import hashlib
import json
import os
import site
import stat
import sys
import sysconfig
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Any

import handlers
import packager
from handlers.model_json import ReadFile
from packager import oci
from packager.config.spec import ModelSpec, is_factory
from packager.export.describe import dist_version

# Distributions whose installed version is part of inputs_hash: what converts, runs and checks models.
# A distribution that is not installed counts as "unknown" (xgboost ships as xgboost or xgboost-cpu).
VERSIONED = ("mlpack-lambda", "onnx", "onnxruntime", "skl2onnx", "scikit-learn", "torch", "onnxscript", "numpy",
             "xgboost", "xgboost-cpu", "lightgbm", "onnxmltools", "pandas")
_MISSING = "missing"  # the digest of a recorded file that cannot be read any more
_VIRTUAL = ("/proc", "/sys", "/dev")
# The operating system's shared data, which libraries open on their own and only once per process (time
# zones when pandas or datetime first need one, locales, CA certificates): not a model's input, and
# recording it made a second export in one process record other files than the first, and so another
# model version (found by the build's reproducibility test).
_SYSTEM_DATA = ("/usr/share/zoneinfo", "/usr/share/locale", "/usr/lib/locale", "/usr/share/ca-certificates",
                "/etc/localtime", "/etc/timezone", "/etc/ssl", "/etc/pki", "/usr/lib/ssl")


def source_sha256(spec: ModelSpec, file_digests: Mapping[str, str]) -> str:
    """The source file's sha256; for a factory, that of the file holding its module."""
    path = spec.source_path()
    if path is not None:
        return file_digests.get("source") or _file_sha256(path)
    module = spec.model.source.split(":", 1)[0].replace(".", "/")
    file = spec.project_dir / f"{module}.py"
    return _file_sha256(file if file.is_file() else spec.project_dir / module / "__init__.py")


def _file_sha256(path: Path | str) -> str:
    """The file's sha256 as bare hex, the form model.json records."""
    return oci.sha256_file(Path(path))[0].removeprefix("sha256:")


def file_digests(spec: ModelSpec) -> dict[str, str]:
    """sha256 of the source and samples files that exist (a missing one is reported when loading), read
    once for both the change check and model.json."""
    return {key: _file_sha256(path) for key, path in (("source", spec.source_path()), ("samples", spec.samples_path()))
            if path is not None and path.is_file()}


def inputs_hash(spec: ModelSpec, file_digests: Mapping[str, str], read_files: Sequence[ReadFile]) -> str:
    """Everything that determines the export: source and samples bytes, the files the load read (as
    `recording` or `recheck` found them), for factories the project's Python files, the spec sections
    that feed it, and the converter versions."""
    h = hashlib.sha256()

    def add(label: str, data: bytes) -> None:
        h.update(label.encode() + b"\0" + hashlib.sha256(data).digest())

    relevant = {
        "model": {k: v for k, v in vars(spec.model).items() if k != "owners"},
        "samples": vars(spec.samples), "export": vars(spec.export),
        "versions": {d: dist_version(d) for d in VERSIONED},
        "read_files": 1,  # recorded since this format: older exports (without the list) are stale once
    }
    add("spec", json.dumps(relevant, sort_keys=True, default=str).encode())
    for key, digest in file_digests.items():
        add(key, digest.encode())
    for read in sorted(read_files, key=lambda r: r.path):
        add(f"read:{read.path}", read.sha256.encode())
    if _factory(spec):
        for py in _project_python(spec):
            add(f"py:{py.relative_to(spec.project_dir).as_posix()}", py.read_bytes())
    return h.hexdigest()


def _factory(spec: ModelSpec) -> bool:
    return is_factory(spec.model.source) or is_factory(spec.samples.source)


def _project_python(spec: ModelSpec) -> list[Path]:
    """The project's Python files, outside build/, .venv/ and __pycache__/, sorted."""
    out = []
    for py in sorted(spec.project_dir.rglob("*.py")):
        rel = py.relative_to(spec.project_dir)
        if rel.parts[0] not in ("build", ".venv") and "__pycache__" not in rel.parts:
            out.append(py)
    return out


def recheck(spec: ModelSpec, recorded: Sequence[ReadFile]) -> tuple[list[ReadFile], list[str]]:
    """The files the last export recorded, hashed now (one that cannot be read gets the digest
    "missing"), and a note for each that differs: "<path> changed", "<path> is missing", "<path>
    cannot be read (<reason>)"."""
    now: list[ReadFile] = []
    changes: list[str] = []
    for read in recorded:
        path = Path(read.path) if PurePosixPath(read.path).is_absolute() else spec.project_dir / read.path
        try:
            digest = _file_sha256(path)
        except FileNotFoundError:
            digest = _MISSING
            changes.append(f"{read.path} is missing")
        except OSError as e:
            digest = _MISSING
            changes.append(f"{read.path} cannot be read ({e.strerror or type(e).__name__})")
        else:
            if digest != read.sha256:
                changes.append(f"{read.path} changed")
        now.append(ReadFile(path=read.path, sha256=digest))
    return now, changes


# ---------------------------------------------------------------------------------------------------
# recording the files a load opens


class Recording:
    """The files opened while `recording` was active: `files` once it has ended."""

    def __init__(self) -> None:
        self.read: set[str] = set()  # absolute paths as opened
        self.written: set[str] = set()
        self.files: tuple[ReadFile, ...] = ()

    def saw(self, path: Any, mode: Any, flags: Any) -> None:
        """One "open" audit event: the path (str, bytes, a path object or a descriptor), the mode
        string (None from os.open) and the os.open flags."""
        if isinstance(path, int):
            return
        reads, writes = _access(mode, flags)
        name = os.path.abspath(os.fsdecode(path))
        if reads:
            self.read.add(name)
        if writes:
            self.written.add(name)


def _access(mode: Any, flags: Any) -> tuple[bool, bool]:
    """(reads the existing bytes, writes) for an open with this mode string or os.open flags."""
    if isinstance(flags, int):
        access = flags & os.O_ACCMODE
        return access != os.O_WRONLY and not flags & os.O_TRUNC, access != os.O_RDONLY
    text = mode if isinstance(mode, str) else "r"
    return "r" in text or ("+" in text and "w" not in text), any(c in text for c in "wax+")


_active: list[Recording] = []
_hooked = False


def _audit(event: str, args: tuple[Any, ...]) -> None:
    """The process's audit hook: every audited event passes here, so anything but an open during a
    recording returns at once. It must never raise: an exception would fail the open it watches."""
    if event == "open" and _active:
        try:
            for rec in _active:
                rec.saw(*args[:3])
        except Exception:  # a path this cannot read is one it cannot record
            pass


@contextmanager
def recording(spec: ModelSpec) -> Iterator[Recording]:
    """Record the regular files opened for reading inside the block; on leaving it, `files` holds them
    (filtered as the module docstring says), each hashed, sorted by path."""
    global _hooked
    if not _hooked:
        sys.addaudithook(_audit)
        _hooked = True
    rec = Recording()
    _active.append(rec)
    try:
        yield rec
    finally:
        _active.remove(rec)
    rec.files = _recorded(spec, rec)


def _recorded(spec: ModelSpec, rec: Recording) -> tuple[ReadFile, ...]:
    written = {_normal(p) for p in rec.written}
    skip = _covered(spec)
    roots = _install_roots(spec.project_dir)
    out: dict[str, str] = {}
    for name in sorted({_normal(p) for p in rec.read} - written - skip):
        if _excluded(name, spec.project_dir, roots):
            continue
        try:
            if not stat.S_ISREG(os.stat(name).st_mode):
                continue
            digest = _file_sha256(name)
        except OSError:
            continue  # probed but absent, or gone already: nothing to compare with next time
        out[_display(name, spec.project_dir)] = digest
    return tuple(ReadFile(path=path, sha256=digest) for path, digest in sorted(out.items()))


def _normal(name: str) -> str:
    """An absolute path with its folders' symbolic links resolved (the file's own link is kept)."""
    head, tail = os.path.split(name)
    return os.path.join(os.path.realpath(head), tail)


def _covered(spec: ModelSpec) -> set[str]:
    """Files whose bytes inputs_hash takes in anyway."""
    paths = [p for p in (spec.source_path(), spec.samples_path()) if p is not None]
    if _factory(spec):
        paths += _project_python(spec)
    return {_normal(str(p)) for p in paths}


def _install_roots(project_dir: Path) -> list[str]:
    """Folders of the Python installation: the standard library and site-packages always, and each
    prefix unless the project lies inside it (a prefix of "/usr" or "/" must not hide the project)."""
    paths = sysconfig.get_paths()
    roots = [paths[k] for k in ("stdlib", "platstdlib", "purelib", "platlib") if k in paths]
    roots += [str(Path(m.__file__).parent) for m in (packager, handlers) if m.__file__]  # an editable mlpack
    roots += [*site.getsitepackages(), site.getusersitepackages()]
    project = str(project_dir)
    for prefix in {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}:
        real = os.path.realpath(prefix)
        if not _inside(project, real):
            roots.append(real)
    return sorted({os.path.realpath(r) for r in roots})


def _inside(name: str, folder: str) -> bool:
    return name == folder or name.startswith(folder.rstrip(os.sep) + os.sep)


def _excluded(name: str, project_dir: Path, roots: list[str]) -> bool:
    parts = Path(name).parts
    if name.endswith(".pyc") or "__pycache__" in parts or any(p.endswith((".dist-info", ".egg-info")) for p in parts):
        return True
    if any(_inside(name, v) for v in (*_VIRTUAL, *_SYSTEM_DATA)) or _inside(name, str(project_dir / "build")):
        return True
    return any(_inside(name, root) for root in roots)


def _display(name: str, project_dir: Path) -> str:
    """The path model.json records: POSIX relative to the project folder when inside it, else absolute."""
    path = Path(name)
    if path.is_relative_to(project_dir):
        return path.relative_to(project_dir).as_posix()
    return path.as_posix()
