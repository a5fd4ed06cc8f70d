"""`mlpack init`, `mlpack validate`, `mlpack export`: model projects and their ONNX export."""

from __future__ import annotations

import os
import re
from importlib import resources
from pathlib import Path

import click

from packager.cli import PROJECT, echo_json
from packager.config import spec as spec_mod
from packager.errors import MlpackError


@click.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--name", help="Model name (default: the folder's name, made DNS-safe).")
@click.option("--owner", default="owner@example.com", show_default=True, help="Owner's email for alarms.")
@click.option("--force", is_flag=True, help="Overwrite an existing mlpack.toml / train.py.")
def init(directory: Path, name: str | None, owner: str, force: bool) -> None:
    """Write a commented, valid starter project into DIRECTORY."""
    name = name or re.sub(r"[^a-z0-9-]+", "-", directory.resolve().name.lower()).strip("-")[:40] or "model"
    if not re.match(r"^[a-z]", name):
        name = f"m-{name}"[:40].rstrip("-")
    targets = {
        spec_mod.SPEC_FILE: resources.files("packager.templates").joinpath("mlpack.toml").read_text()
        .replace("{name}", name).replace("{owner}", owner),
        "train.py": resources.files("packager.templates").joinpath("train.py").read_text(),
    }
    existing = [f for f in targets if (directory / f).exists()]
    if existing and not force:
        raise MlpackError(f"{directory}: {', '.join(existing)} already exist(s)", hint="pass --force to overwrite")
    directory.mkdir(parents=True, exist_ok=True)
    for filename, text in targets.items():
        (directory / filename).write_text(text, encoding="utf-8")
    spec_mod.load(directory)  # the starter must validate; a failure here is a bug in the template
    click.echo(f"wrote {directory / spec_mod.SPEC_FILE} and {directory / 'train.py'} (model {name!r})")
    click.echo(f"next: mlpack export {directory}")


@click.command()
@click.argument("project", type=PROJECT)
@click.option("--json", "as_json", is_flag=True, help="Print the resolved project as JSON.")
def validate(project: Path, as_json: bool) -> None:
    """Check PROJECT/mlpack.toml and report every problem at once."""
    spec = spec_mod.resolve(spec_mod.load(project))
    if as_json:
        echo_json(spec_mod.to_raw(spec))
    else:
        click.echo(f"{spec.spec_path}: ok (model {spec.name!r}, stack {spec.stack_name})")


@click.command()
@click.argument("project", type=PROJECT)
@click.option("-o", "--out", type=click.Path(file_okay=False, path_type=Path),
              help="Output folder (default: PROJECT/build/<name>).")
@click.option("--force", is_flag=True, help="Export even when nothing changed since the last export.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def export(project: Path, out: Path | None, force: bool, as_json: bool) -> None:
    """Export PROJECT's model to ONNX, check parity on the samples, profile the training inputs."""
    from packager.export import pipeline as export_mod

    spec = spec_mod.resolve(spec_mod.load(project))
    result = export_mod.export(spec, out, force=force)
    art = result.artifact
    if as_json:
        echo_json({"skipped": result.skipped, "reason": result.reason, "out": str(art.out_dir),
                   "model": str(art.model_path),
                   "model_sha256": art.model_sha256, "version": art.version,
                   "parity": art.metadata["parity"]})
        return
    rel = os.path.relpath(art.out_dir)
    if result.skipped:
        click.echo(f"{spec.name}: up to date, export skipped ({rel}); --force to redo it")
        return
    parity = art.metadata["parity"]
    click.echo(f"{spec.name}: exported {art.metadata['source']['kind']} model to {rel}/model.onnx "
               f"({art.model_path.stat().st_size:,} bytes, opset {art.metadata['opset']})")
    if result.reason:
        click.echo(f"  why: {result.reason}")
    for check in parity["checks"]:
        click.echo(f"  parity {check['output']}: {check['summary']}")
    click.echo(f"  profile: {art.metadata['profile']['rows']} rows; version {art.version}")


commands = [init, validate, export]
