"""`mlpack init`, `mlpack validate`, `mlpack export`: model projects and their ONNX export, and the team
repository (`mlpack init --repo`) that holds many model projects and deploys them to several environments."""

from __future__ import annotations

import json
import os
import re
import tomllib
from importlib import metadata, resources
from importlib.abc import Traversable
from pathlib import Path
from typing import Any

import click

from handlers.names import ModelNames
from packager.cli import PROJECT, echo_json
from packager.config import repo as repo_mod
from packager.config import spec as spec_mod
from packager.errors import MlpackError

# The CDK CLI a team repository pins (its package.json and package-lock.json): the one this mlpack is
# tested with, i.e. the aws-cdk of mlpack's own package.json and package-lock.json. Kept equal to them by
# tests/functional/test_init_repo.py (the wheel does not ship those files, so the values live here).
AWS_CDK_VERSION = "2.1148.1"
AWS_CDK_INTEGRITY = "sha512-K3d02L17IwmAuiBWNuX1DzYhKUs9GrKYI7bZnGJfJ1bKz9ymXFxfudBOL3rUb8JAusDNSULiQU2fsJH7kyY2XA=="

# mlpack-repo.toml's rules for an environment: those of its reader, so init never writes a file it refuses
ENV_NAME_RE, ACCOUNT_RE, REGION_RE = repo_mod.ENV_NAME_RE, repo_mod.ACCOUNT_RE, repo_mod.REGION_RE
# what a tag value may hold (AWS's tag characters, minus the ones a TOML string would need escaped)
TAG_VALUE_RE = re.compile(r"^[A-Za-z0-9 _.:/=+@-]{1,256}$")
PLACEHOLDER_ENVS = (("dev", "111111111111", "eu-west-1"), ("prod", "222222222222", "eu-west-1"))

# What `mlpack init --repo` writes, from packager/templates/repo/ (the promote workflow only with two or
# more environments: there is nothing to promote to otherwise).
REPO_FILES = (
    "mlpack-repo.toml", "cdk.json", ".gitignore", "requirements.txt", "package.json", "package-lock.json",
    "README.md", "models/.gitkeep", ".github/mlpack_models.py", ".github/workflows/mlpack.yml",
    ".github/workflows/mlpack-promote.yml", ".github/workflows/mlpack-rollback.yml",
)
PROMOTE_WORKFLOW = ".github/workflows/mlpack-promote.yml"
_TOKEN_RE = re.compile(r"@@[A-Z_]+@@")
_PROMOTE_BLOCK_RE = re.compile(r"@@PROMOTE_BEGIN@@\n.*?@@PROMOTE_END@@\n", re.S)

Environment = tuple[str, str, str]  # name, account, region


class EnvironmentType(click.ParamType):  # type: ignore[type-arg]
    """--env NAME=ACCOUNT/REGION, e.g. dev=111111111111/eu-west-1."""

    name = "NAME=ACCOUNT/REGION"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Environment:
        if isinstance(value, tuple):
            return value
        text = str(value)
        name, eq, rest = text.partition("=")
        account, slash, region = rest.partition("/")
        example = "expected NAME=ACCOUNT/REGION, e.g. dev=111111111111/eu-west-1"
        if not eq or not slash:
            self.fail(f"{text!r}: {example}", param, ctx)
        if not ENV_NAME_RE.match(name):
            self.fail(f"{text!r}: the name {name!r} must be a lowercase letter, then up to 11 lowercase letters "
                      f"or digits; {example}", param, ctx)
        if not ACCOUNT_RE.match(account):
            self.fail(f"{text!r}: the account {account!r} must be 12 digits; {example}", param, ctx)
        if not REGION_RE.match(region):
            self.fail(f"{text!r}: {region!r} is not an AWS region name (like eu-west-1); {example}", param, ctx)
        return name, account, region


def _cost_center(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is not None and not TAG_VALUE_RE.match(value):
        raise click.BadParameter(f"{value!r}: 1-256 letters, digits, spaces and _ . : / = + @ -", ctx, param)
    return value


@click.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--repo", is_flag=True,
              help="Write a team repository (mlpack-repo.toml, CI workflows, README) instead of a model project.")
@click.option("--name", help="Model name (default: the folder's name, made DNS-safe).")
@click.option("--owner", default="owner@example.com", show_default=True,
              help="Owner's email for alarms; with --repo, the platform team's contact in README.md.")
@click.option("--env", "environments", type=EnvironmentType(), multiple=True,
              help="With --repo: an environment, NAME=ACCOUNT/REGION (repeatable; the first is where main deploys, "
                   "the last what it is promoted to). Default: dev and prod with placeholder accounts.")
@click.option("--cost-center", callback=_cost_center,
              help="With --repo: the cost-center tag on every AWS resource (default: no tags).")
@click.option("--force", is_flag=True, help="Overwrite files that exist already.")
def init(directory: Path, repo: bool, name: str | None, owner: str, environments: tuple[Environment, ...],
         cost_center: str | None, force: bool) -> None:
    """Write a commented, valid starter project into DIRECTORY, or with --repo a team repository
    (models/<name> projects, one lock per environment, GitHub Actions that check, deploy, promote and
    roll back)."""
    if repo:
        if name:
            raise click.UsageError("--name names a model project; with --repo, start one inside it later "
                                   "(mlpack init DIRECTORY/models/NAME)")
        _init_repo(directory, environments, cost_center, owner, force)
        return
    for flag, given in (("--env", environments), ("--cost-center", cost_center)):
        if given:
            raise click.UsageError(f"{flag} applies to a team repository: add --repo")
    name = name or re.sub(r"[^a-z0-9-]+", "-", directory.resolve().name.lower()).strip("-")[:40] or "model"
    if not re.match(r"^[a-z]", name):
        name = f"m-{name}"[:40].rstrip("-")
    targets = {
        spec_mod.SPEC_FILE: resources.files("packager.templates").joinpath("mlpack.toml").read_text()
        .replace("{name}", name).replace("{owner}", owner),
        "train.py": resources.files("packager.templates").joinpath("train.py").read_text(),
    }
    _refuse_existing(directory, targets, force)
    directory.mkdir(parents=True, exist_ok=True)
    for filename, text in targets.items():
        (directory / filename).write_text(text, encoding="utf-8")
    spec_mod.load(directory)  # the starter must validate; a failure here is a bug in the template
    click.echo(f"wrote {directory / spec_mod.SPEC_FILE} and {directory / 'train.py'} (model {name!r})")
    click.echo(f"next: mlpack export {directory}")


def _refuse_existing(directory: Path, targets: dict[str, str], force: bool) -> None:
    existing = [f for f in targets if (directory / f).exists()]
    if existing and not force:
        raise MlpackError(f"{directory}: {', '.join(existing)} already exist(s)", hint="pass --force to overwrite")


def _template(rel: str) -> str:
    node: Traversable = resources.files("packager.templates").joinpath("repo")
    for part in rel.split("/"):
        node = node.joinpath(part)
    return node.read_text(encoding="utf-8")


def _mlpack_version() -> str:
    try:
        return metadata.version("mlpack-lambda")
    except metadata.PackageNotFoundError:  # running from a checkout that was never installed
        return "0.1.0"


def repo_files(environments: tuple[Environment, ...], cost_center: str | None, contact: str) -> dict[str, str]:
    """The team repository's files (path relative to it -> text), rendered from packager/templates/repo/."""
    envs = environments or PLACEHOLDER_ENVS
    names = [e[0] for e in envs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise click.BadParameter(f"environment {duplicates[0]!r} is given more than once", param_hint="'--env'")
    placeholder = "  # a placeholder: put the environment's AWS account here" if not environments else ""
    tables = [f'[environments.{n}]\naccount = "{a}"{placeholder}\nregion = "{r}"\n# lock = "mlpack.{n}.lock.json"'
              for n, a, r in envs]
    first, last = names[0], names[-1]
    promote = len(envs) > 1
    values = {
        "ENVIRONMENTS": "\n\n".join(tables),
        "TAGS": f'[tags]\ncost-center = "{cost_center}"' if cost_center
                else '# [tags]\n# cost-center = "ml-platform"',
        "FIRST_ENV": first,
        "LAST_ENV": last,
        "ENV_CHOICES": f"[{', '.join(names)}]",
        "ENV_LIST": ", ".join(f"`{n}` (account {a}, {r})" for n, a, r in envs),
        "PROMOTE_LINE": (f"promotion to the next environment ({last} by default) is a manual, reviewed step "
                         "(below).") if promote else "it is the only environment.",
        "CONTACT": contact,
        "MLPACK_VERSION": _mlpack_version(),
        "AWS_CDK_VERSION": AWS_CDK_VERSION,
        "AWS_CDK_INTEGRITY": AWS_CDK_INTEGRITY,
    }
    out: dict[str, str] = {}
    for rel in REPO_FILES:
        if rel == PROMOTE_WORKFLOW and not promote:
            continue
        text = _template(rel)
        text = text.replace("@@PROMOTE_BEGIN@@\n", "").replace("@@PROMOTE_END@@\n", "") if promote \
            else _PROMOTE_BLOCK_RE.sub("", text)
        text = _TOKEN_RE.sub(lambda m: values[m.group(0).strip("@")], text)
        out[rel] = text
    # the templates' own consistency; a failure here is a bug in them
    tomllib.loads(out["mlpack-repo.toml"])
    for rel in ("cdk.json", "package.json", "package-lock.json"):
        json.loads(out[rel])
    return out


def _init_repo(directory: Path, environments: tuple[Environment, ...], cost_center: str | None, contact: str,
               force: bool) -> None:
    targets = repo_files(environments, cost_center, contact)
    _refuse_existing(directory, targets, force)
    for rel, text in targets.items():
        path = directory / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    envs = environments or PLACEHOLDER_ENVS
    names = [e[0] for e in envs]
    click.echo(f"wrote team repository {directory} (environments {', '.join(names)}):")
    for rel in targets:
        click.echo(f"  {rel}")
    steps = []
    if not environments:
        steps.append(f"put the real AWS accounts in {directory / 'mlpack-repo.toml'} (111111111111 and "
                     "222222222222 are placeholders), or run again with --env NAME=ACCOUNT/REGION --force")
    steps += [
        f"cd {directory} && git init -b main && git add . && git commit -m 'mlpack team repository'",
        "once, in AWS and GitHub: README.md, \"AWS access\" (cdk bootstrap, the OIDC role of each environment, "
        f"GitHub Environments {', '.join(names)} with the variable MLPACK_AWS_ROLE"
        + (f", required reviewers on {names[-1]})" if len(names) > 1 else ")"),
        "a first model: mlpack init models/NAME, train it, mlpack build models/NAME, open a pull request",
    ]
    click.echo("next:")
    for i, step in enumerate(steps, 1):
        click.echo(f"  {i}. {step}")


@click.command()
@click.argument("project", type=PROJECT)
@click.option("--json", "as_json", is_flag=True, help="Print the resolved project as JSON.")
def validate(project: Path, as_json: bool) -> None:
    """Check PROJECT/mlpack.toml and report every problem at once."""
    spec = spec_mod.resolve(spec_mod.load(project))
    if as_json:
        echo_json(spec_mod.to_raw(spec))
    else:
        found = repo_mod.find(project)
        envs = list(repo_mod.load(found).environments) if found else []
        stacks = ", ".join(ModelNames(spec.name, e).stack for e in envs) if envs else spec.stack_name
        click.echo(f"{spec.spec_path}: ok (model {spec.name!r}, stack{'s' if len(envs) > 1 else ''} {stacks})")


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
