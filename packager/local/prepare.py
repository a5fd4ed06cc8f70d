"""What to run locally, made ready: a target folder in, a command to start the function with out.

Enters: TARGET as `mlpack invoke`/`mlpack serve` name it: a model project (built first, by the build
stage), an OCI image layout, an export folder (model.json + model.onnx) or a task root (handlers/ +
model/), with --isolate, --memory and --timeout. Leaves: a `Prepared` (the `RuntimeCommand`, the function's
name and timeout, and a note on how faithful the run is), valid inside `prepare`'s context: images are
unpacked into a temporary work folder (`mlpack-run-<pid>-…`), removed afterwards even where the image left
read-only folders, never changing a file outside it through a symlink; also when the process is stopped
with SIGTERM or SIGHUP (inside the context they raise SystemExit, so every clean-up on the way out runs).
A run folder left by a process killed outright (SIGKILL) is removed by the next run.

Must not import export, registry or anything that talks to AWS (a project is built through packager.image).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import stat
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from handlers import contract
from packager.errors import MlpackError
from packager.image import contents, deps
from packager.local import function

RUN_PREFIX = "mlpack-run-"
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


@dataclass(frozen=True)
class Prepared:
    """What `prepare` leaves: how to start the function, its name and timeout, and a note for the user."""

    command: function.RuntimeCommand
    name: str
    timeout_s: int
    note: str | None


def _rmtree(path: Path) -> None:
    """Remove a work folder holding an unpacked image, whose folders may be read-only: make each
    writable and retry. Only real folders inside `path` are ever chmod-ed: os.chmod follows symlinks
    (and Linux has no lchmod), so chmod-ing an image's link would change whatever it points to, a
    host file included. Checked with lstat just before; the work folder is ours, so nothing else
    swaps a folder for a link in between."""
    root = os.path.abspath(path)
    tried: set[str] = set()

    def make_writable(p: str) -> bool:
        if os.path.commonpath([root, p]) != root or not stat.S_ISDIR(os.lstat(p).st_mode):
            return False
        os.chmod(p, stat.S_IRWXU)
        return True

    def fix(func: Any, p: str, _exc: Any) -> None:
        p = os.path.abspath(p)
        if p in tried:  # fixed once and failed again: leave it rather than loop
            return
        tried.add(p)
        with contextlib.suppress(OSError):
            make_writable(os.path.dirname(p))  # unlink and rmdir need a writable parent
            if func is not os.rmdir and make_writable(p):
                shutil.rmtree(p, onerror=fix)  # a folder that could not be listed: list it now
            else:
                func(p)

    shutil.rmtree(path, onerror=fix)


@contextlib.contextmanager
def exit_on_stop_signals() -> Iterator[None]:
    """Inside: SIGTERM and SIGHUP raise SystemExit(128 + the signal's number) in the main thread, so the
    clean-up of every context being left runs (as for Ctrl-C), where their default would end the process
    on the spot. Only the first signal raises: one arriving during the clean-up does not cut it short.
    The previous handlers are back afterwards. Outside the main thread (where Python allows no handlers)
    it changes nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    stopping = [False]

    def stop(signum: int, _frame: object) -> None:
        if stopping[0]:
            return
        stopping[0] = True
        raise SystemExit(128 + signum)

    previous = {s: signal.signal(s, stop) for s in STOP_SIGNALS}
    try:
        yield
    finally:
        stopping[0] = True  # the clean-up of the contexts inside has run; this one's restore must too
        for s, handler in previous.items():
            signal.signal(s, handler)


def _kind(target: Path) -> str:
    if (target / "oci-layout").is_file():
        return "image"
    if (target / "mlpack.toml").is_file():
        return "project"
    if (target / contract.MODEL_JSON).is_file() and (target / contract.MODEL_FILE).is_file():
        return "model"
    if (target / "handlers").is_dir() and (target / "model").is_dir():
        return "task_root"
    raise MlpackError(f"{target}: not a model project, an OCI image layout, an export folder or a task root",
                      hint="pass a folder with mlpack.toml, an image built by `mlpack build` (its layout "
                      "folder), or an export folder holding model.json and model.onnx")


@contextlib.contextmanager
def prepare(target: Path, *, isolate: bool, memory_mb: int | None, timeout_s: int | None,
            log: Callable[[str], None] = lambda s: None) -> Iterator[Prepared]:
    """Everything needed to start the function, in a temporary folder removed afterwards."""
    kind = _kind(target)
    extra: dict[str, str] = {}
    name = target.name
    layout: Path | None = None
    if kind == "project":
        from packager.config import spec as spec_mod
        from packager.image import build as image_mod

        spec = spec_mod.resolve(spec_mod.load(target))
        log(f"building {spec.name} (mlpack build {target})")
        layout = image_mod.build(spec, log=log).layout
        name = spec.name
        memory_mb = memory_mb or spec.runtime.memory_mb
        timeout_s = timeout_s or spec.runtime.timeout_s
        extra = {contract.ENV_MAX_BATCH: str(spec.api.max_batch_size), contract.ENV_MODEL_NAME: spec.name}
    elif kind == "image":
        layout = target
    memory_mb = memory_mb or 1024
    timeout_s = timeout_s or 29
    if isolate and layout is None:
        raise MlpackError(f"{target}: --isolate runs an image's root file system; this is a {kind.replace('_', ' ')}",
                          hint="build an image first (`mlpack build PROJECT`) and pass the project or its layout")
    runs = Path(tempfile.gettempdir())
    # SIGTERM/SIGHUP from here on leave through the finally below (the build above cleans up after itself)
    with exit_on_stop_signals():
        deps.remove_stale(runs, RUN_PREFIX, remove=_rmtree)  # run folders of processes killed outright
        work = deps.pid_tempdir(runs, RUN_PREFIX)
        try:
            if layout is not None:
                cmd, note = _image_command(layout, work, isolate=isolate, name=name, memory_mb=memory_mb,
                                           timeout_s=timeout_s, extra=extra, log=log)
            elif kind == "model":
                view = task_root_view(work / "task", handlers_dir=contents.handlers_dir(), model_dir=target)
                cmd = function.task_root_command(view, name=name, memory_mb=memory_mb, timeout_s=timeout_s,
                                                 extra_env=extra)
                note = "running this checkout's handlers/ with the export folder's model (no image)"
            else:
                cmd = function.task_root_command(target.resolve(), name=name, memory_mb=memory_mb,
                                                 timeout_s=timeout_s)
                note = None
            yield Prepared(cmd, name, timeout_s, note)
        finally:
            _rmtree(work)


def _image_command(layout: Path, work: Path, *, isolate: bool, name: str, memory_mb: int, timeout_s: int,
                   extra: dict[str, str], log: Callable[[str], None]) -> tuple[function.RuntimeCommand, str | None]:
    """Unpack the image into `work`; the command that runs it (its root under unshare with --isolate, else
    its task root under this machine's Python) and a note on how faithful that is."""
    from packager import oci

    image = oci.read_layout(layout)
    # the project's API settings travel in the image's environment (image/build.py): an image folder served
    # alone keeps its batch limit and name; what the project gives (extra) wins
    env = dict(str(e).partition("=")[::2] for e in (image.config_json.get("config") or {}).get("Env") or [])
    extra = {**{k: env[k] for k in (contract.ENV_MAX_BATCH, contract.ENV_MODEL_NAME) if env.get(k)}, **extra}
    if isolate:
        problem = function.isolation_problem(image.arch)
        if problem:
            raise MlpackError(f"{layout}: cannot run the image isolated: {problem}")
    log(f"unpacking {layout} ({image.arch})")
    rootfs = oci.unpack(image, work)
    task = rootfs / contract.TASK_ROOT.lstrip("/")
    if not (task / "handlers").is_dir() or not (task / "model").is_dir():
        raise MlpackError(f"{layout}: the image has no {contract.TASK_ROOT}/handlers or /model",
                          hint="is this an image built by `mlpack build`?")
    if isolate:
        cmd = function.isolated_command(rootfs, image.config_json, arch=image.arch, name=name,
                                        memory_mb=memory_mb, timeout_s=timeout_s, extra_env=extra)
        emu = function.emulator(image.arch)
        note = (f"the {image.arch} image runs emulated by {emu.name} on this {function.HOST_ARCH} machine: "
                "its answers are real, its timings are not (expect it several times slower than "
                f"{image.arch} hardware)") if emu else None
        return cmd, note
    view = task_root_view(work / "task", handlers_dir=task / "handlers", model_dir=task / "model")
    cmd = function.task_root_command(view, name=name, memory_mb=memory_mb, timeout_s=timeout_s, extra_env=extra)
    return cmd, ("running the image's handler and model with this machine's Python packages; "
                 "--isolate runs the whole image (its Python, its packages)")


# --- task roots ---------------------------------------------------------------------------------


def task_root_view(dest: Path, *, handlers_dir: Path, model_dir: Path) -> Path:
    """A task root holding just handlers/ and model/ (symlinked), for running under this host's packages."""
    dest.mkdir(parents=True, exist_ok=True)
    for name, src in (("handlers", handlers_dir), ("model", model_dir)):
        link = dest / name
        if link.is_symlink() or link.exists():
            if link.is_dir() and not link.is_symlink():
                shutil.rmtree(link)
            else:
                link.unlink()
        link.symlink_to(src.resolve(), target_is_directory=True)
    return dest
