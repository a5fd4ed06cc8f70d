"""Run a function locally the way Lambda runs it: AWS's runtime client (`awslambdaric`) in its own
process against our Runtime API (runtime_api.py), optionally inside the image's unpacked root file
system under `unshare`/`chroot`.

Enters: a task root (handlers/ + model/) or an unpacked image root with its config, and the function's
name, memory and timeout. Leaves: a `RuntimeCommand` (argv, environment, working folder) and a
`LocalFunction` that runs it: events in, `InvocationResult`s out.

A handler that raises, hangs past the timeout or kills its process is reported the way Lambda reports
it; the runtime process is then restarted and the next invocation finds a fresh one. Processes are
ended by their own process group id, never by name.

Must not import export, registry or anything that talks to AWS.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from handlers import contract
from packager.errors import MlpackError
from packager.local.runtime_api import InvocationResult, RuntimeApi, error_payload
from packager.oci import resolve_inside

UNSHARE = "/usr/bin/unshare"
INIT_TIMEOUT_S = 30.0  # Lambda allows 10 s; a first local start compiles bytecode and warms the disk cache
HOST_ARCH = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}.get(
    platform.machine().lower(), platform.machine().lower())


class LocalRunError(MlpackError):
    """The function could not be started locally."""


@dataclass(frozen=True, kw_only=True)
class RuntimeCommand:
    """How to start one runtime process: argv, its whole environment, and a line saying what it is."""

    argv: tuple[str, ...]
    env: dict[str, str]
    cwd: Path
    description: str


def lambda_env(*, name: str, memory_mb: int, timeout_s: int, task_root: str) -> dict[str, str]:
    """The variables Lambda sets in every execution environment (no credentials: none are needed)."""
    return {
        "AWS_LAMBDA_FUNCTION_NAME": name, "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(memory_mb), "AWS_LAMBDA_FUNCTION_TIMEOUT": str(timeout_s),
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{name}", "AWS_LAMBDA_LOG_STREAM_NAME": "local",
        "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1", "AWS_EXECUTION_ENV": "mlpack-local",
        "LAMBDA_TASK_ROOT": task_root, "LAMBDA_RUNTIME_DIR": "/var/runtime", "_HANDLER": contract.HANDLER,
        "TZ": ":UTC", "LANG": "en_US.UTF-8", "PYTHONUNBUFFERED": "1",
    }


def task_root_command(task_root: Path, *, name: str, memory_mb: int = 1024, timeout_s: int = 29,
                      python: str = sys.executable, extra_env: dict[str, str] | None = None) -> RuntimeCommand:
    """The task root's handler and model under this machine's Python and packages."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **lambda_env(
        name=name, memory_mb=memory_mb, timeout_s=timeout_s, task_root=str(task_root))}
    env["PYTHONPATH"] = str(task_root)
    env[contract.ENV_MODEL_DIR] = str(task_root / "model")
    env.update(extra_env or {})
    return RuntimeCommand(argv=(python, "-m", "awslambdaric", contract.HANDLER), env=env, cwd=task_root,
                          description=f"{task_root} under {python} -m awslambdaric (this machine's packages)")


QEMU_ARCH = {"arm64": "aarch64", "x86_64": "x86_64"}
EMULATOR_IN_ROOT = "/.mlpack-emulator"  # where the emulator is copied inside an unpacked image


def emulator(arch: str) -> Path | None:
    """A user-mode emulator that runs `arch` programs on this machine (qemu-user-static: a static binary,
    so it also runs inside the image's root), or None when the host runs them natively or has none."""
    if arch == HOST_ARCH or arch not in QEMU_ARCH:
        return None
    name = f"qemu-{QEMU_ARCH[arch]}-static"
    found = shutil.which(name) or next((p for p in (f"/usr/bin/{name}", f"/usr/local/bin/{name}")
                                        if os.access(p, os.X_OK)), None)
    return Path(found) if found else None


def isolation_problem(arch: str) -> str | None:
    """Why this host cannot run an image's root file system itself, or None."""
    if sys.platform != "linux":
        return "--isolate needs Linux (unshare and chroot)"
    if arch != HOST_ARCH and emulator(arch) is None:
        return (f"the image is {arch} and this machine is {HOST_ARCH}: its programs cannot run here. Install "
                "qemu-user-static (Debian/Ubuntu: apt install qemu-user-static) and mlpack runs it emulated, or run "
                "without --isolate (the image's handler and model under this machine's Python packages), or on an "
                f"{arch} machine (for arm64: a Graviton instance or an arm64 CI runner)")
    if not os.access(UNSHARE, os.X_OK):
        return f"{UNSHARE} is missing (Debian package util-linux / coreutils)"
    return None


def isolated_command(rootfs: Path, config: dict[str, Any], *, arch: str, name: str, memory_mb: int = 1024,
                     timeout_s: int = 29, extra_env: dict[str, str] | None = None) -> RuntimeCommand:
    """The image's own Entrypoint + Cmd with the image's environment, chrooted into its root file system
    inside new user, mount and pid namespaces (no privileges needed, the host network is shared)."""
    problem = isolation_problem(arch)
    if problem:
        raise LocalRunError(f"cannot run the image isolated: {problem}")
    inner = config.get("config") or {}
    entry = list(inner.get("Entrypoint") or []) + list(inner.get("Cmd") or [])
    if not entry:
        raise LocalRunError("the image sets neither Entrypoint nor Cmd", hint="rebuild it with `mlpack build`")
    env: dict[str, str] = {}
    for item in inner.get("Env") or []:
        k, _, v = item.partition("=")
        env[k] = v
    env.setdefault("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    workdir = inner.get("WorkingDir") or contract.TASK_ROOT
    env.update(lambda_env(name=name, memory_mb=memory_mb, timeout_s=timeout_s, task_root=contract.TASK_ROOT))
    env.update(extra_env or {})
    emu = emulator(arch)
    how = "unshare --root"
    if emu is not None:
        # qemu-user runs one program; what that program execs is not emulated (no binfmt_misc here), so
        # the entry point must be the program itself, not a script that starts it
        program = resolve_inside(rootfs, entry[0], follow_last=True)  # the image's links, never the host's
        try:
            with program.open("rb") as f:
                is_elf = f.read(4) == b"\x7fELF"
        except OSError as e:
            raise LocalRunError(f"the image's entry point {entry[0]} cannot be read: {e}") from e
        if not is_elf:
            raise LocalRunError(f"cannot run the {arch} image emulated: its entry point {entry[0]} is a script, "
                                "and the programs a script starts would not be emulated",
                                hint=f"build it with --base debian (its entry point is python itself), or run it on "
                                     f"an {arch} machine")
        shutil.copy2(emu, rootfs / EMULATOR_IN_ROOT.lstrip("/"))
        entry = [EMULATOR_IN_ROOT, *entry]
        how = f"unshare --root, emulated by {emu.name}"
    for d in ("dev", "proc", "tmp"):
        (rootfs / d).mkdir(exist_ok=True)
    # inside the namespaces: give the root a /dev and /proc, then enter it in WorkingDir. The image may
    # have no shell of its own (the debian base has none), so the host's unshare does the chroot + chdir.
    script = ('r="$1"; w="$2"; shift 2; mount --rbind /dev "$r/dev" && mount -t proc proc "$r/proc" '
              f'&& exec {UNSHARE} --root="$r" --wd="$w" "$@"')
    argv = (UNSHARE, "-r", "-m", "-p", "-f", "--kill-child", "/bin/sh", "-c", script, "sh", str(rootfs), workdir,
            *entry)
    return RuntimeCommand(argv=argv, env=env, cwd=rootfs, description=f"{' '.join(entry)} in {rootfs} ({how})")


@dataclass
class LocalFunction:
    """One execution environment: a runtime process, restarted after a crash or a timeout."""

    command: RuntimeCommand
    timeout_s: float = 29.0
    output: Callable[[str], None] = field(kw_only=True)  # where the runtime's lines go (the command line's log)
    name: str | None = None  # default: the command's AWS_LAMBDA_FUNCTION_NAME
    api: RuntimeApi = field(init=False)
    proc: subprocess.Popen[bytes] | None = field(default=None, init=False)
    restarts: int = field(default=0, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)

    def __post_init__(self) -> None:
        self.name = self.name or self.command.env.get("AWS_LAMBDA_FUNCTION_NAME") or "mlpack-local"
        self.api = RuntimeApi(function_name=self.name).start()

    def __enter__(self) -> LocalFunction:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def _spawn(self) -> None:
        self.api.reset_init()
        env = {**self.command.env, "AWS_LAMBDA_RUNTIME_API": self.api.address}
        self.proc = subprocess.Popen(list(self.command.argv), env=env, cwd=self.command.cwd,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        threading.Thread(target=self._pump, args=(self.proc.stdout,), daemon=True).start()

    def _pump(self, stream: IO[bytes] | None) -> None:
        if stream is None:
            return
        for raw in iter(stream.readline, b""):
            self.output(raw.decode("utf-8", "replace").rstrip("\n"))

    def _kill(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # our own process group, started by _spawn
        proc.wait()

    def start(self) -> None:
        """Start the runtime and wait for its init to end (it asks for work, or reports an init error)."""
        self._spawn()
        deadline = time.monotonic() + INIT_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.api.ready.is_set() or self.api.init_error_event.is_set():
                return
            if self.proc is not None and self.proc.poll() is not None:
                return  # exited during init: reported by the first invoke
            time.sleep(0.02)

    def _alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def invoke(self, event: Any) -> InvocationResult:
        payload = event if isinstance(event, bytes) else json.dumps(event).encode()
        with self._lock:  # one execution environment runs one invocation at a time
            if not self._alive():
                if self.proc is not None:
                    self.restarts += 1
                self._kill()
                self.start()
            inv = self.api.submit(payload, self.timeout_s)
            submitted = time.monotonic()
            while not inv.done.wait(0.02):
                now = time.monotonic()
                if self.api.init_error_event.is_set() and not inv.started:
                    inv.finish(InvocationResult("init_error", self.api.init_error or b"", inv.request_id, 0.0,
                                                "Runtime.InitError"))
                elif not self._alive():
                    code = self.proc.returncode if self.proc is not None else None
                    inv.finish(InvocationResult(
                        "crash", error_payload("Runtime.ExitError", f"RequestId: {inv.request_id} Error: Runtime "
                                               f"exited with error: exit status {code}"),
                        inv.request_id, inv.elapsed_ms(), "Runtime.ExitError"))
                elif inv.started and now - inv.started > self.timeout_s:
                    inv.finish(InvocationResult(
                        "timeout", error_payload("Sandbox.Timedout", f"RequestId: {inv.request_id} Error: Task "
                                                 f"timed out after {self.timeout_s:.2f} seconds"),
                        inv.request_id, inv.elapsed_ms(), "Sandbox.Timedout"))
                elif not inv.started and now - submitted > INIT_TIMEOUT_S + self.timeout_s:
                    inv.finish(InvocationResult("timeout", error_payload(
                        "Runtime.InitTimeout", "the runtime never asked for the invocation"),
                        inv.request_id, 0.0, "Runtime.InitTimeout"))
            result = inv.result
            assert result is not None
            self.api.current = None
            if result.status in ("timeout", "crash", "init_error"):
                self.output(f"mlpack: {result.status}: {result.payload.decode('utf-8', 'replace')}")
                self._kill()  # Lambda discards the environment; the next invoke starts a fresh one
                self.restarts += 1
            return result

    def stop(self) -> None:
        self._kill()
        self.api.stop()
