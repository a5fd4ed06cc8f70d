"""`mlpack invoke` and `mlpack serve`: run what would be deployed, locally, the way Lambda runs it.

TARGET is a model project (built first with the build stage), an OCI image layout, an export folder
(model.json + model.onnx) or a task root (handlers/ + model/). The command-line edge of packager/local:
parses the options, gets the command from local/prepare.py, runs it with local/function.py (behind
local/front.py for `serve`) and prints what comes back.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from handlers import contract
from packager.errors import MlpackError
from packager.local import front
from packager.local import function as local
from packager.local.prepare import prepare


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
            event = front.http_event((method or ("POST" if data is not None else "GET")).upper(), route, "",
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
    status, _headers, out = front.gateway_response(result, api=event_kind)
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
@click.option("--capture", "capture", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Append drift capture lines to FILE (read them with `mlpack drift TARGET --capture FILE`).")
@click.option("--capture-rate", type=click.FloatRange(0, 1, min_open=True), default=1.0, show_default=True,
              help="With --capture: the share of requests captured.")
def serve(target: Path, isolate: bool, memory_mb: int | None, timeout_s: int | None, port: int, api: str,
          capture: Path | None, capture_rate: float) -> None:
    """Serve TARGET on 127.0.0.1 like API Gateway in front of its Lambda function, until Ctrl-C."""
    if capture is not None and isolate:
        raise MlpackError("--capture writes a file of this machine; the isolated function cannot see it",
                          hint="serve without --isolate to capture")
    with prepare(target, isolate=isolate, memory_mb=memory_mb, timeout_s=timeout_s, log=_log) as prep:
        if prep.note:
            _log(f"note: {prep.note}")
        if capture is not None:
            prep.command.env.update({contract.ENV_CAPTURE_FILE: str(capture.resolve()),
                                     contract.ENV_CAPTURE_RATE: repr(capture_rate)})
        with local.LocalFunction(prep.command, timeout_s=prep.timeout_s, output=_log, name=prep.name) as fn:
            fn.start()
            gateway = front.ApiGatewayFront(fn, port=port, api=api, log=_log)
            _log(f"serving {prep.name} at {gateway.url} ({prep.command.description}); Ctrl-C stops")
            try:
                gateway.serve_forever()
            except KeyboardInterrupt:
                _log("stopping")
            finally:
                gateway.stop()


commands = [invoke, serve]
