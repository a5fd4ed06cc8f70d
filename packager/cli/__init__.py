"""The `mlpack` command line: the edge where strings become typed values and errors become exit codes.

Each stage's commands live in their own module (cmd_*.py) and are registered in COMMAND_MODULES;
this module holds the group, the shared parameter types and the error handling.
"""

from __future__ import annotations

import importlib
import json
import sys
import traceback
from pathlib import Path
from typing import Any

import click

from packager.config import spec as spec_mod
from packager.errors import MlpackError

# Modules that define a `commands` list of click commands, in the order `mlpack --help` shows them.
COMMAND_MODULES = (
    "packager.cli.project",
    "packager.cli.build",
    "packager.cli.push",
    "packager.cli.release",
    "packager.cli.run",
    "packager.cli.batch",
    "packager.cli.status",
    "packager.cli.drift",
)


class ProjectDir(click.ParamType):  # type: ignore[type-arg]
    """A model project folder (holding mlpack.toml); converts to an absolute Path."""

    name = "DIR"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Path:
        path = Path(value)
        if path.name == spec_mod.SPEC_FILE:
            path = path.parent
        if not path.is_dir():
            self.fail(f"{value}: no such folder (expected a model project with {spec_mod.SPEC_FILE})", param, ctx)
        return path.resolve()


class ArchType(click.Choice[str]):
    def __init__(self) -> None:
        super().__init__(list(spec_mod.ARCHES))


PROJECT = ProjectDir()


def echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
@click.version_option(package_name="mlpack-lambda", prog_name="mlpack")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """mlpack: from a trained model to a monitored AWS Lambda endpoint.

    \b
      mlpack build models/churn    export to ONNX, verify, build a Lambda image
      mlpack push models/churn     push it, pin its digest in mlpack.lock.json
      cdk deploy mlpack-churn      deploy the model's stack
    """
    ctx.obj = {"debug": debug}


def _register() -> None:
    for name in COMMAND_MODULES:
        module = importlib.import_module(name)
        for command in module.commands:
            cli.add_command(command)


_register()


def main(argv: list[str] | None = None) -> int:
    """Console entry point: domain errors become one clear message and a non-zero exit."""
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    try:
        rv = cli.main(args=args, prog_name="mlpack", standalone_mode=False)
    except MlpackError as e:
        if debug:
            traceback.print_exc()
        click.secho(f"error: {e}", fg="red", err=True)
        return e.exit_code
    except OSError as e:  # a file or folder we were told to use: name it, no traceback
        if debug:
            traceback.print_exc()
        where = f" ({e.filename})" if getattr(e, "filename", None) else ""
        click.secho(f"error: {e.strerror or e}{where}", fg="red", err=True)
        return 1
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 130
    except click.ClickException as e:
        e.show()
        return e.exit_code
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        return 130
    return rv if isinstance(rv, int) else 0

