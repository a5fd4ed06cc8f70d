"""The dependency layer: PyPI wheels for the target python and architecture, installed with pip's
--platform/--target options (never by running the target), stripped, compiled to bytecode (with a host
interpreter of the target's version, else with the base image's own interpreter run isolated on its root
file system: `ImageInterpreter`), written as a deterministic layer and cached by what determines it.

A lock (every distribution with version and wheel sha256) pins the set: the build report of the previous
build, else the cache's lock for the same requirements/python/arch. With a lock and a cached layer the
build does not touch the network.

Enters: requirements and a Target (python, arch). Leaves: a DepsResult, the layer (in the cache folder) and
what it holds, for the build report.

Also the build's temporary folders (`pid_tempdir`, `remove_stale`, used by build.py and local/prepare.py
too): each is named with the process id of the build that made it, so that the next build removes those
of a build that was killed (nothing else ever would) and only those: a folder whose process still runs
is never touched.

Writes its layer with layers.py; must not import bases, contents, build, checks, registry or packager.cli.
pip is the only thing here that reaches a package index.
"""

from __future__ import annotations

import contextlib
import fnmatch
import functools
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import filelock

from handlers import contract
from packager import oci
from packager.errors import BuildError
from packager.fsutil import write_atomic
from packager.image import layers

PIP_PLATFORMS = {
    "x86_64": ("manylinux_2_28_x86_64", "manylinux2014_x86_64"),
    "arm64": ("manylinux_2_28_aarch64", "manylinux2014_aarch64"),
}
# What inference never needs. Bump STRIP_VERSION when these change: it is part of the cache key.
STRIP_VERSION = "3"
STRIP_DIRS = ("__pycache__", "tests", "test")  # wherever they appear
STRIP_PATHS = (
    "bin",  # console scripts: their shebangs name the build machine's interpreter
    "numpy/f2py",
    "numpy/distutils",  # build-time only (present for python < 3.12)
    "numpy/_pyinstaller",
    "numpy/_core/include",
    "numpy/_core/lib",
    "numpy/doc",
    "onnxruntime/tools",
    "onnxruntime/transformers",
    "onnxruntime/quantization",
    "onnxruntime/datasets",
)
STRIP_GLOBS = (
    "*.pyi",
    "*.pxd",
    "conftest.py",
    # numpy's test-only extension modules (imported by its test suite, never by numpy itself)
    "numpy/_core/_simd.*.so",
    "numpy/_core/_*_tests.*.so",
    # pysimdjson ships the C++ and Cython sources it was built from (7.6 MB) next to its extension
    "simdjson/*.cpp",
    "simdjson/*.h",
    "simdjson/*.pyx",
    # the Python extension does not link the separate C API library (checked with readelf)
    "onnxruntime/capi/libonnxruntime.so.*",
    # METADATA stays (onnxruntime reads it); these hold build-machine paths or stale hashes
    "*.dist-info/RECORD",
    "*.dist-info/INSTALLER",
    "*.dist-info/REQUESTED",
    "*.dist-info/direct_url.json",
)
NO_WHEEL_RE = re.compile(r"No matching distribution found for ([^\s]+)")
NO_VERSION_RE = re.compile(r"Could not find a version that satisfies the requirement ([^\s]+)")


@dataclass(frozen=True, kw_only=True)
class Distribution:
    name: str
    version: str
    sha256: str
    wheel: str

    def to_json(self) -> dict[str, str]:
        return {"name": self.name, "version": self.version, "sha256": self.sha256, "wheel": self.wheel}


@dataclass(frozen=True, kw_only=True)
class Target:
    python: str  # "3.12"
    arch: str  # x86_64 | arm64


@dataclass(frozen=True, kw_only=True)
class DepsResult:
    layer: layers.Layer
    distributions: tuple[Distribution, ...]
    requirements: tuple[str, ...]
    target: Target
    lock_key: str
    cache_hit: bool
    bytecode: bool
    key: str
    unstripped_bytes: int
    stripped_bytes: int

    def report(self) -> dict[str, Any]:
        return {
            "requirements": list(self.requirements),
            "python": self.target.python,
            "arch": self.target.arch,
            "lock_key": self.lock_key,
            "distributions": [d.to_json() for d in self.distributions],
            "bytecode": self.bytecode,
            "layer_key": self.key,
            "installed_bytes": self.unstripped_bytes,
            "stripped_bytes": self.stripped_bytes,
        }


def read_requirements(path: Path) -> list[str]:
    out: list[str] = []
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise BuildError(f"{path}: cannot read the handler's requirements: {e}") from e
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            out.append(line)
    return out


def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def lock_key(requirements: tuple[str, ...], target: Target) -> str:
    return _hash({"requirements": sorted(requirements), "python": target.python, "arch": target.arch})


def layer_key(dists: tuple[Distribution, ...], target: Target, *, bytecode: bool | str, mtime: int) -> str:
    """What determines the layer's bytes. `bytecode`: False, True (a host interpreter) or the label of the
    image's own interpreter that compiled it."""
    return _hash({
        "dists": sorted((d.name, d.version, d.sha256) for d in dists),
        "python": target.python, "arch": target.arch, "strip": [STRIP_VERSION, STRIP_DIRS, STRIP_PATHS,
                                                               STRIP_GLOBS],
        "bytecode": bytecode, "mtime": mtime, "format": layers.GZIP_LEVEL,
    })


@functools.lru_cache(maxsize=8)
def find_interpreter(python: str) -> str | None:
    """A host interpreter of the target's version, for bytecode (bytecode does not depend on the CPU).
    A candidate must run and say its version: version-manager shims exist without an interpreter."""
    if f"{sys.version_info.major}.{sys.version_info.minor}" == python:
        return sys.executable
    found = shutil.which(f"python{python}")
    if found is None:
        return None
    try:
        proc = subprocess.run([found, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                              capture_output=True, text=True, timeout=30, check=False)
    except OSError:
        return None
    return found if proc.returncode == 0 and proc.stdout.strip() == python else None


QEMU_ARCH = {"arm64": "aarch64", "x86_64": "x86_64"}
HOST_ARCH = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}.get(
    platform.machine().lower(), platform.machine().lower())
UNSHARE = "/usr/bin/unshare"
COMPILE_MOUNT = "/.mlpack-compile"  # where the tree to compile is bound inside the image's root
EMULATOR_IN_ROOT = "/.mlpack-emulator"


def emulator_for(arch: str) -> str | None:
    """qemu-user-static for `arch` (a static binary: it runs inside the image's root too), or None when this
    machine runs `arch` itself or has no emulator. (packager/local/function.py finds it the same way.)"""
    if arch == HOST_ARCH or arch not in QEMU_ARCH:
        return None
    name = f"qemu-{QEMU_ARCH[arch]}-static"
    return shutil.which(name) or next((p for p in (f"/usr/bin/{name}", f"/usr/local/bin/{name}")
                                       if os.access(p, os.X_OK)), None)


class ImageInterpreter:
    """The base image's own interpreter, for bytecode when this machine has none of the target's version:
    the base unpacked (on first use) and its python run on that root inside new user, mount and pid
    namespaces (`unshare -r -m -p -f`, then chroot), as `mlpack invoke --isolate` runs an image; emulated by
    qemu-user-static when the base is for the other architecture. The tree to compile is bound at
    COMPILE_MOUNT inside the root; -s/-p and unchecked-hash keep that path and every mtime out of the
    bytecode, so the layer is the same wherever it is built. `label` (the base's digest) is part of the
    dependency layer's cache key: bytecode from another interpreter is another layer."""

    def __init__(self, image: oci.Image, python_exe: str, arch: str, work: Path) -> None:
        self.image, self.python_exe, self.arch, self.work = image, python_exe, arch, work
        self.label = f"image:{image.manifest.digest}"
        self._root: Path | None = None

    def root(self) -> Path:
        if self._root is None:
            root = oci.unpack(self.image, self.work)
            for d in ("dev", "proc", "tmp", COMPILE_MOUNT.lstrip("/")):
                (root / d).mkdir(exist_ok=True)
            emu = emulator_for(self.arch)
            if emu is not None:
                shutil.copy2(emu, root / EMULATOR_IN_ROOT.lstrip("/"))
            self._root = root
        return self._root

    def argv(self, tree: Path, *args: str) -> list[str]:
        """`python args...` in the image's root with `tree` bound at COMPILE_MOUNT."""
        root = self.root()
        program = [*([EMULATOR_IN_ROOT] if emulator_for(self.arch) else []), self.python_exe, *args]
        script = ('r="$1"; t="$2"; shift 2; mount --rbind /dev "$r/dev" && mount -t proc proc "$r/proc" '
                  f'&& mount --bind "$t" "$r{COMPILE_MOUNT}" && exec {UNSHARE} --root="$r" --wd=/ "$@"')
        return [UNSHARE, "-r", "-m", "-p", "-f", "--kill-child", "/bin/sh", "-c", script, "sh", str(root),
                str(tree), *program]

    def problem(self, python: str) -> str | None:
        """Why this interpreter cannot compile for `python` here, or None (it ran and said its version)."""
        if sys.platform != "linux" or not os.access(UNSHARE, os.X_OK):
            return "running the base's interpreter needs Linux and unshare"
        if self.arch != HOST_ARCH and emulator_for(self.arch) is None:
            return f"the base is {self.arch} and qemu-user-static is not installed"
        self.work.mkdir(parents=True, exist_ok=True)
        try:
            proc = subprocess.run(self.argv(self.work, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"),
                                  capture_output=True, text=True, timeout=120, check=False, env=_compile_env())
        except (OSError, subprocess.TimeoutExpired) as e:
            return f"the base's {self.python_exe} did not run ({e})"
        if proc.returncode != 0 or proc.stdout.strip() != python:
            return f"the base's {self.python_exe} did not run here ({(proc.stderr or proc.stdout).strip()[-200:]})"
        return None

    def close(self) -> None:
        shutil.rmtree(self.work, ignore_errors=True)


Compiler = str | ImageInterpreter  # a host interpreter's path, or the image's own


@contextlib.contextmanager
def bytecode_compiler(python: str, *, image: oci.Image, python_exe: str, arch: str,
                      log: Callable[[str], None] = lambda s: None) -> Iterator[Compiler | None]:
    """What compiles the image's bytecode: a host interpreter of `python`, else the base's own
    `python_exe` run isolated on its root file system (unpacked into a folder of the cache, removed at the
    end), else None (with a note: the function would compile its modules at every cold start)."""
    host = find_interpreter(python)
    if host is not None:
        yield host
        return
    parent = cache_dir() / "deps"
    parent.mkdir(parents=True, exist_ok=True)
    remove_stale(parent, "rootfs-")
    inside = ImageInterpreter(image, python_exe, arch, pid_tempdir(parent, "rootfs-"))
    try:
        problem = inside.problem(python)
        if problem is not None:
            log(f"note: no python{python} on this machine and {problem}, so the dependency and handler layers "
                f"have no bytecode; the function compiles what it imports at every cold start (install python"
                f"{python} to fix)")
            yield None
        else:
            yield inside
    finally:
        inside.close()


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def strip_tree(root: Path) -> None:
    """Remove what inference never needs (see STRIP_* above)."""
    for rel in STRIP_PATHS:
        p = root / rel
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        elif p.exists() or p.is_symlink():
            p.unlink()
    for dirpath, dirnames, filenames in os.walk(root, topdown=True):
        rel_dir = Path(dirpath).relative_to(root).as_posix()
        for d in list(dirnames):
            if d in STRIP_DIRS:
                shutil.rmtree(Path(dirpath) / d)
                dirnames.remove(d)
        for f in filenames:
            rel = f if rel_dir == "." else f"{rel_dir}/{f}"
            if any(fnmatch.fnmatchcase(rel, g) or fnmatch.fnmatchcase(f, g) for g in STRIP_GLOBS):
                (Path(dirpath) / f).unlink()


def tree_size(root: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            p = Path(dirpath) / f
            if not p.is_symlink():
                total += p.stat().st_size
    return total


def pip_install(requirements: list[str], target: Target, dest: Path, *, pins: tuple[Distribution, ...] | None,
                report_path: Path) -> tuple[Distribution, ...]:
    """Install wheels for the target into dest; returns what was installed (from pip's report)."""
    args = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
            "--no-warn-script-location", "--target", str(dest)]
    for plat in PIP_PLATFORMS[target.arch]:
        args += ["--platform", plat]
    args += ["--python-version", target.python, "--implementation", "cp", "--only-binary=:all:",
             "--no-compile", "--report", str(report_path)]
    if pins:
        # the exact wheels of the lock: same versions, and pip refuses any other file
        req_file = dest.parent / "locked-requirements.txt"
        req_file.write_text("".join(f"{d.name}=={d.version} --hash=sha256:{d.sha256}\n" for d in pins))
        args += ["--require-hashes", "--no-deps", "-r", str(req_file)]
    else:
        args += requirements
    env = dict(os.environ, PIP_NO_INPUT="1")
    proc = subprocess.run(args, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        err = proc.stderr
        platform = f"python {target.python} on {target.arch} ({', '.join(PIP_PLATFORMS[target.arch])})"
        m = NO_WHEEL_RE.search(err) or NO_VERSION_RE.search(err)
        if m:
            raise BuildError(f"dependencies: no wheel of {m.group(1)} for {platform}",
                             hint="the image is built from binary wheels only; pick a version that ships one "
                                  "for this platform, another --arch or another python")
        if "THESE PACKAGES DO NOT MATCH THE HASHES" in err:
            raise BuildError("dependencies: a locked wheel's sha256 differs from the build report",
                             hint="delete build/<name>/build-report.json to resolve again")
        tail = "\n".join(line for line in err.splitlines() if line.strip()
                         and "is ignored: it is neither" not in line)[-2000:]
        raise BuildError(f"dependencies: pip install failed for {platform}:\n{tail}",
                         hint="check the package index is reachable (PIP_INDEX_URL) and the requirements")
    report = json.loads(report_path.read_text())
    out: list[Distribution] = []
    for item in report.get("install", []):
        info = item.get("download_info", {})
        hashes = info.get("archive_info", {}).get("hashes", {})
        sha = hashes.get("sha256") or info.get("archive_info", {}).get("hash", "=").split("=", 1)[1]
        out.append(Distribution(name=_normalise(item["metadata"]["name"]), version=item["metadata"]["version"],
                                sha256=sha, wheel=info.get("url", "").rsplit("/", 1)[-1]))
    return tuple(sorted(out, key=lambda d: d.name))


def _compile_env() -> dict[str, str]:
    # No PYTHON* variable of the caller's reaches the compiler (PYTHONPYCACHEPREFIX would put the pycs
    # elsewhere, PYTHONOPTIMIZE would name them .opt-1); a fixed hash seed keeps sets of constants in one order.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PYTHONHASHSEED"] = "0"
    return env


def compile_bytecode(tree: Path, prefix: str, interpreter: Compiler, *,
                     exclude: str | None = None) -> subprocess.CompletedProcess[str]:
    """Compile `tree` as if it lay at `prefix` in the image; the caller reports a failure. `exclude` is a
    regular expression searched for in each file's path as the compiler sees it (compileall's -x: on this
    machine for a host interpreter, under COMPILE_MOUNT for the image's): matches stay without bytecode."""
    # stable paths (-s/-p) and unchecked-hash pycs: no build path and no mtime in the bytecode
    where = str(tree) if isinstance(interpreter, str) else COMPILE_MOUNT
    args = ["-m", "compileall", "-q", "-q", "-s", where, "-p", prefix, "--invalidation-mode", "unchecked-hash",
            "-j", "1", *(["-x", exclude] if exclude else []), where]
    argv = [interpreter, *args] if isinstance(interpreter, str) else interpreter.argv(tree, *args)
    return subprocess.run(argv, capture_output=True, text=True, check=False, env=_compile_env())


# ---------------------------------------------------------------------------------------------------
# temporary folders


def pid_tempdir(parent: Path, prefix: str) -> Path:
    """A new, private folder `<prefix><pid>-<random>` in `parent`: `remove_stale` can tell from its name
    whether the process that made it is still running."""
    parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-", dir=parent))


def process_alive(pid: int) -> bool:
    """Whether process `pid` runs on this machine (signal 0: nothing is sent). Unsure counts as alive."""
    if pid <= 0:  # 0 and negative numbers name process groups, never one process
        return True
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OSError, OverflowError):  # PermissionError: another user's process, alive
        return True
    return True


def remove_stale(parent: Path, prefix: str, remove: Callable[[Path], None] | None = None) -> list[Path]:
    """Remove the folders of `parent` named `<prefix><pid>-…` (or `<prefix><pid>`) whose process is gone:
    what a killed build left behind. Folders named otherwise, links and files are left alone. `remove`
    removes one folder (default: shutil.rmtree, errors ignored). Returns the folders removed."""
    pattern = re.compile(re.escape(prefix) + r"(\d{1,10})(?:-|$)")
    try:
        entries = list(parent.iterdir())
    except OSError:
        return []
    removed = []
    for entry in entries:
        m = pattern.match(entry.name)
        if m is None or entry.is_symlink() or not entry.is_dir() or process_alive(int(m.group(1))):
            continue
        if remove is None:
            shutil.rmtree(entry, ignore_errors=True)
        else:
            remove(entry)
        removed.append(entry)
    return removed


# ---------------------------------------------------------------------------------------------------
# the cache


def cache_dir() -> Path:
    override = os.environ.get("MLPACK_CACHE_DIR")
    if override:
        return Path(override)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "mlpack"


def _load_lock(path: Path, key: str) -> tuple[Distribution, ...] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    deps = data.get("dependencies", data)
    if not isinstance(deps, dict) or deps.get("lock_key") != key:
        return None
    try:
        return tuple(Distribution(name=d["name"], version=d["version"], sha256=d["sha256"], wheel=d.get("wheel", ""))
                     for d in deps["distributions"])
    except (KeyError, TypeError):
        return None


_HOST = "host"  # compiler=_HOST: dependency_layer looks for a host interpreter itself


def dependency_layer(requirements: list[str], target: Target, *, previous_report: Path | None = None,
                     compiler: Compiler | None = _HOST, log: Callable[[str], None] = lambda s: None) -> DepsResult:
    """The dependency layer for `requirements` on `target`, from the cache when possible. `compiler`
    (from bytecode_compiler) compiles its bytecode; by default a host interpreter of the target's version,
    if any."""
    reqs = tuple(requirements)
    lkey = lock_key(reqs, target)
    root = cache_dir() / "deps"
    lock_path = root / "locks" / f"{lkey}.json"
    pins = None
    if previous_report is not None:
        pins = _load_lock(previous_report, lkey)
    if pins is None:
        pins = _load_lock(lock_path, lkey)
    interpreter = find_interpreter(target.python) if compiler == _HOST else compiler
    bytecode = interpreter is not None
    how: bool | str = interpreter.label if isinstance(interpreter, ImageInterpreter) else bytecode
    mtime = layers.source_date_epoch()
    if pins is not None:
        key = layer_key(pins, target, bytecode=how, mtime=mtime)
        hit = _cached_layer(root, key, pins)
        if hit is not None:
            return DepsResult(layer=hit[0], distributions=pins, requirements=reqs, target=target,
                              lock_key=lkey, cache_hit=True,
                              bytecode=bytecode, key=key, unstripped_bytes=hit[1], stripped_bytes=hit[2])
    if not bytecode and compiler == _HOST:  # bytecode_compiler has said why otherwise
        log(f"note: no python{target.python} on this machine, so the dependency layer has no bytecode; "
            "the function compiles it at every cold start (install python"
            f"{target.python} to fix)")
    root.mkdir(parents=True, exist_ok=True)
    remove_stale(root, "deps-")  # killed builds' work folders (a live build's are kept)
    with filelock.FileLock(str(root / f"{lkey}.lock")), _work_folder(root, "deps-") as work:
        tree = work / "site"
        dists = pip_install(list(reqs), target, tree, pins=pins, report_path=work / "pip-report.json")
        unstripped = tree_size(tree)
        strip_tree(tree)
        if interpreter is not None:
            proc = compile_bytecode(tree, contract.TASK_ROOT, interpreter)
            if proc.returncode != 0:
                raise BuildError("dependencies: compiling bytecode failed: "
                                 f"{proc.stderr[-1000:] or proc.stdout[-1000:]}")
        stripped = tree_size(tree)
        key = layer_key(dists, target, bytecode=how, mtime=mtime)
        layers_dir = root / "layers"
        layer = layers.write_layer(layers.tree_entries(tree, contract.TASK_ROOT), layers_dir / f"{key}.tar.gz",
                                   name="deps", created_by=f"mlpack: dependencies ({' '.join(reqs)}) for python "
                                   f"{target.python} {target.arch}", mtime=mtime)
        meta = {"layer": {"digest": layer.digest, "size": layer.size, "diff_id": layer.diff_id,
                          "uncompressed_size": layer.uncompressed_size, "created_by": layer.created_by,
                          "files": layer.files},
                "installed_bytes": unstripped, "stripped_bytes": stripped}
        write_atomic(layers_dir / f"{key}.json", json.dumps(meta, indent=1, sort_keys=True).encode())
        lock = {"lock_key": lkey, "requirements": list(reqs), "python": target.python, "arch": target.arch,
                "distributions": [d.to_json() for d in dists]}
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(lock_path, json.dumps(lock, indent=1, sort_keys=True).encode())
    return DepsResult(layer=layer, distributions=dists, requirements=reqs, target=target,
                      lock_key=lkey, cache_hit=False, bytecode=bytecode,
                      key=key, unstripped_bytes=unstripped, stripped_bytes=stripped)


@contextlib.contextmanager
def _work_folder(parent: Path, prefix: str) -> Iterator[Path]:
    work = pid_tempdir(parent, prefix)
    try:
        yield work
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _cached_layer(root: Path, key: str, pins: tuple[Distribution, ...]) -> tuple[layers.Layer, int, int] | None:
    """The cached layer for `key`, if present and intact (its digest is checked; a bad entry is dropped)."""
    blob = root / "layers" / f"{key}.tar.gz"
    meta_path = root / "layers" / f"{key}.json"
    try:
        meta = json.loads(meta_path.read_text())
        lm = meta["layer"]
        layer = layers.Layer(name="deps", path=blob, digest=str(lm["digest"]), size=int(lm["size"]),
                             diff_id=str(lm["diff_id"]), uncompressed_size=int(lm["uncompressed_size"]),
                             created_by=str(lm["created_by"]), files=int(lm.get("files", 0)))
        sizes = int(meta.get("installed_bytes", 0)), int(meta.get("stripped_bytes", 0))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):  # unreadable or not ours: build anew
        return None
    if not blob.is_file():
        return None
    if oci.sha256_file(blob)[0] != layer.digest:
        blob.unlink(missing_ok=True)
        meta_path.unlink(missing_ok=True)
        return None
    return layer, *sizes
