"""`mlpack invoke` and `mlpack serve`: run what would be deployed, locally, the way Lambda runs it.

TARGET is a model project (built first with the build stage), an OCI image layout, an export folder
(model.json + model.onnx) or a task root (handlers/ + model/). The command-line edge of local.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from handlers import contract
from packager.errors import MlpackError
from packager.local import function as local


@dataclass(frozen=True)
class Prepared:
    command: local.RuntimeCommand
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
    work = Path(tempfile.mkdtemp(prefix="mlpack-run-"))
    try:
        if layout is not None:
            from packager import oci

            image = oci.read_layout(layout)
            if isolate:
                problem = local.isolation_problem(image.arch)
                if problem:
                    raise MlpackError(f"{layout}: cannot run the image isolated: {problem}")
            log(f"unpacking {layout} ({image.arch})")
            rootfs = oci.unpack(image, work)
            task = rootfs / contract.TASK_ROOT.lstrip("/")
            if not (task / "handlers").is_dir() or not (task / "model").is_dir():
                raise MlpackError(f"{layout}: the image has no {contract.TASK_ROOT}/handlers or /model",
                                  hint="is this an image built by `mlpack build`?")
            if isolate:
                cmd = local.isolated_command(rootfs, image.config_json, arch=image.arch, name=name,
                                             memory_mb=memory_mb, timeout_s=timeout_s, extra_env=extra)
                emu = local.emulator(image.arch)
                note = (f"the {image.arch} image runs emulated by {emu.name} on this {local.HOST_ARCH} machine: "
                        "its answers are real, its timings are not (expect it several times slower than "
                        f"{image.arch} hardware)") if emu else None
            else:
                view = local.task_root_view(work / "task", handlers_dir=task / "handlers", model_dir=task / "model")
                cmd = local.task_root_command(view, name=name, memory_mb=memory_mb, timeout_s=timeout_s,
                                              extra_env=extra)
                note = ("running the image's handler and model with this machine's Python packages; "
                        "--isolate runs the whole image (its Python, its packages)")
        elif kind == "model":
            view = local.task_root_view(work / "task", handlers_dir=local.handlers_source(), model_dir=target)
            cmd = local.task_root_command(view, name=name, memory_mb=memory_mb, timeout_s=timeout_s,
                                          extra_env=extra)
            note = "running this checkout's handlers/ with the export folder's model (no image)"
        else:
            cmd = local.task_root_command(target.resolve(), name=name, memory_mb=memory_mb, timeout_s=timeout_s)
            note = None
        yield Prepared(cmd, name, timeout_s, note)
    finally:
        _rmtree(work)


def _log(s: str) -> None:
    click.echo(s, err=True)


def _read_data(data: str) -> tuple[bytes, str]:
    if data.startswith("@"):
        path = Path(data[1:])
        try:
            raw = path.read_bytes()
        except OSError as e:
            raise MlpackError(f"--data {data}: cannot read {path}: {e.strerror}") from e
        if raw.startswith(b"\x93NUMPY"):
            return raw, contract.NPY_CONTENT_TYPE
        return raw, contract.JSON_CONTENT_TYPE
    return data.encode(), contract.JSON_CONTENT_TYPE


_COMMON = [
    click.argument("target", type=click.Path(exists=True, file_okay=False, path_type=Path)),
    click.option("--isolate", is_flag=True, help="Run the image's whole root file system under unshare + chroot "
                 "(Linux; an image of another architecture runs emulated when qemu-user-static is installed)."),
    click.option("--memory", "memory_mb", type=click.IntRange(128, 10240),
                 help="AWS_LAMBDA_FUNCTION_MEMORY_SIZE (sets onnxruntime's threads; default runtime.memory_mb)."),
    click.option("--timeout", "timeout_s", type=click.IntRange(1, 900),
                 help="Function timeout in seconds (default runtime.timeout_s, else 29)."),
]


def _common(f: Any) -> Any:
    for deco in reversed(_COMMON):
        f = deco(f)
    return f


@click.command()
@_common
@click.option("-d", "--data", help="Request body: JSON text, or @FILE (a .npy file is sent as binary, "
              "base64-encoded as API Gateway does). Without it: no body, GET.")
@click.option("--path", "route", default="/predict", show_default=True, help="Route to call.")
@click.option("-X", "--method", default=None, help="HTTP method (default: POST with --data, else GET).")
@click.option("--event", "event_kind", type=click.Choice(["rest", "http", "direct"]), default="rest",
              show_default=True, help="Event format: REST API (1.0), HTTP API (2.0) or a direct invoke.")
def invoke(target: Path, isolate: bool, memory_mb: int | None, timeout_s: int | None, data: str | None,
           route: str, method: str | None, event_kind: str) -> None:
    """Run one request through TARGET under AWS's runtime client and print the response.

    \b
      mlpack invoke models/iris -d '{"inputs": [[5.1, 3.5, 1.4, 0.2]]}'
      mlpack invoke models/iris/build/iris/image --isolate -d @rows.npy
      mlpack invoke models/iris --path /health
    """
    body, ctype = _read_data(data) if data is not None else (b"", "")
    if event_kind == "direct" and data is None:
        raise MlpackError("--event direct needs --data: a direct invoke's event is the request body")

    with prepare(target, isolate=isolate, memory_mb=memory_mb, timeout_s=timeout_s, log=_log) as prep:
        if prep.note:
            _log(f"note: {prep.note}")
        if event_kind == "direct":
            try:
                event: Any = json.loads(body)
            except ValueError as e:
                raise MlpackError(f"--data: a direct invoke needs a JSON body ({e})") from e
        else:
            headers = {"content-type": ctype} if ctype else {}
            event = local.http_event((method or ("POST" if data is not None else "GET")).upper(), route, "",
                                     headers, body, api=event_kind)
        with local.LocalFunction(prep.command, timeout_s=prep.timeout_s, output=_log, name=prep.name) as fn:
            fn.start()
            result = fn.invoke(event)
    if event_kind == "direct":
        click.echo(result.payload.decode("utf-8", "replace"))
        if not result.ok:
            click.secho(f"function error ({result.error_type})", fg="red", err=True)
            raise click.exceptions.Exit(1)
        return
    status, _headers, out = local.gateway_response(result, api=event_kind)
    click.echo(out.decode("utf-8", "replace"))
    click.echo(f"HTTP {status}", err=True)
    if status >= 400:  # like curl --fail: scripts can tell a refused request from an answer
        raise click.exceptions.Exit(1)


@click.command()
@_common
@click.option("-p", "--port", type=click.IntRange(0, 65535), default=8080, show_default=True,
              help="Port on 127.0.0.1 (0 picks a free one).")
@click.option("--api", type=click.Choice(["rest", "http"]), default="rest", show_default=True,
              help="Which API Gateway to imitate: REST API (payload 1.0) or HTTP API (2.0).")
def serve(target: Path, isolate: bool, memory_mb: int | None, timeout_s: int | None, port: int, api: str) -> None:
    """Serve TARGET on 127.0.0.1 like API Gateway in front of its Lambda function, until Ctrl-C."""

    with prepare(target, isolate=isolate, memory_mb=memory_mb, timeout_s=timeout_s, log=_log) as prep:
        if prep.note:
            _log(f"note: {prep.note}")
        with local.LocalFunction(prep.command, timeout_s=prep.timeout_s, output=_log, name=prep.name) as fn:
            fn.start()
            front = local.ApiGatewayFront(fn, port=port, api=api, log=_log)
            _log(f"serving {prep.name} at {front.url} ({prep.command.description}); Ctrl-C stops")
            try:
                front.serve_forever()
            except KeyboardInterrupt:
                _log("stopping")
            finally:
                front.stop()


commands = [invoke, serve]
