"""`mlpack push`: send a built image to ECR or any OCI registry and pin its digest in mlpack.lock.json.

The edge of the push stage: turns arguments into an Image, an ImageRef and a RegistryClient (the
destination is decided in `destination`, in one place), then plans, prints or executes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from packager.cli import echo_json
from packager.config import spec as spec_mod
from packager.errors import MlpackError, RegistryError
from packager.registry import push as push_mod
from packager.registry.client import Credentials, ImageRef, RegistryClient

ENV_ENDPOINT = "MLPACK_REGISTRY_ENDPOINT"  # send registry API calls here instead (a proxy, or tests)
ENV_USERNAME = "MLPACK_REGISTRY_USERNAME"
ENV_PASSWORD = "MLPACK_REGISTRY_PASSWORD"
ECR_REPO_PREFIX = "mlpack/"


class ImageRefParam(click.ParamType):  # type: ignore[type-arg]
    """REGISTRY/REPO[:TAG]; no default tag (the model version is used)."""

    name = "REGISTRY/REPO[:TAG]"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> ImageRef:
        if isinstance(value, ImageRef):
            return value
        try:
            ref = ImageRef.parse(str(value), default_tag=None)
        except RegistryError as e:
            self.fail(str(e), param, ctx)
        if ref.digest:
            self.fail(f"{value}: a push destination cannot name a digest (the image decides it)", param, ctx)
        return ref


@dataclass(frozen=True, kw_only=True)
class Source:
    """What is being pushed: the layout, its model.json, and the project folder it came from."""

    layout: Path
    model_json: Path
    project_dir: Path
    registry_repository: str | None  # from mlpack.toml [registry].repository


def find_source(path: Path) -> Source:
    """A model project (mlpack.toml; image at build/<name>/image) or an OCI layout folder."""
    path = path.resolve()
    if (path / spec_mod.SPEC_FILE).exists():
        spec = spec_mod.resolve(spec_mod.load(path))
        build = spec.default_build_dir()
        return Source(layout=build / "image", model_json=build / "model.json", project_dir=path,
                      registry_repository=spec.registry.repository)
    if (path / "oci-layout").exists():
        project = next((p for p in path.parents if (p / spec_mod.SPEC_FILE).exists()), None)
        repo = spec_mod.resolve(spec_mod.load(project)).registry.repository if project else None
        return Source(layout=path, model_json=path.parent / "model.json", project_dir=project or path.parent,
                      registry_repository=repo)
    raise RegistryError(f"{path}: neither a model project ({spec_mod.SPEC_FILE}) nor an OCI image layout (oci-layout)",
                        hint="pass the project folder after `mlpack build`, or the image folder it wrote")


@dataclass(frozen=True, kw_only=True)
class Destination:
    ref: ImageRef  # registry/repository:tag
    client: RegistryClient


def destination(to: ImageRef | None, source: Source, model: push_mod.ModelInfo, *, dry_run: bool) -> Destination:
    """Where the image goes: --to, else [registry].repository in mlpack.toml, else ECR of the current
    AWS account and region (repository mlpack/<model>). The tag is the one given, else the model version."""
    from packager import aws as aws_mod  # boto3 loads only when needed

    ref = to
    if ref is None and source.registry_repository:
        ref = ImageRef.parse(source.registry_repository, default_tag=None)
    endpoint = os.environ.get(ENV_ENDPOINT) or None
    aws: aws_mod.Aws | None = None
    if ref is None:
        aws = aws_mod.Aws()
        registry = aws.default_registry()
        ref = ImageRef(registry.host, ECR_REPO_PREFIX + model.name, None, None)
    ref = ref.with_tag(ref.tag or model.version)
    ecr = aws_mod.parse_ecr_host(ref.registry)
    if ecr is not None:
        aws = aws or aws_mod.Aws(region=ecr.region)
        if not dry_run:
            aws.ensure_repository(ecr, ref.repository)
        creds = aws.registry_credentials(ecr)
        client = RegistryClient(ref.registry, credentials=creds, endpoint=endpoint, basic_first=True)
        return Destination(ref=ref, client=client)
    user, password = os.environ.get(ENV_USERNAME), os.environ.get(ENV_PASSWORD)
    basic = Credentials(user, password) if user and password else None
    return Destination(ref=ref, client=RegistryClient(ref.registry, credentials=basic, endpoint=endpoint))


def _size(n: float) -> str:
    if n < 1024:
        return f"{n:.0f} B"
    for unit in ("KB", "MB"):
        n /= 1024
        if n < 1024:
            return f"{n:.1f} {unit}"
    return f"{n / 1024:.1f} GB"


def print_plan(plan: push_mod.PushPlan) -> None:
    click.echo(f"push {plan.pinned} as {plan.dest}")
    for b in plan.blobs:
        extra = f" (from {b.mount_from})" if b.mount_from else ""
        click.echo(f"  {b.action:<6} {b.kind:<6} {b.digest[:19]}  {_size(b.size):>9}{extra}")
    manifest = "present" if plan.manifest_present else "put"
    tag = {"absent": "set", "same": "already set", "conflict": f"CONFLICT (points to {plan.tag_points_to})",
           "none": "-"}[plan.tag_state]
    click.echo(f"  manifest {manifest}; tag {plan.dest.tag}: {tag}")
    click.echo(f"  to upload: {_size(plan.bytes_to_upload)}")


@click.command()
@click.argument("path", type=click.Path(exists=True, file_okay=False, path_type=Path), metavar="DIR|LAYOUT")
@click.option("--to", "to", type=ImageRefParam(), help="Destination REGISTRY/REPO[:TAG] (default: [registry] in "
              "mlpack.toml, else ECR of the current AWS account/region, repository mlpack/<model>).")
@click.option("--lock", "lock_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Lock file to record the digest in (default: mlpack.lock.json at the repository root).")
@click.option("--dry-run", is_flag=True, help="Print what would be uploaded, mounted or skipped; change nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the plan or the result as JSON.")
def push(path: Path, to: ImageRef | None, lock_path: Path | None, dry_run: bool, as_json: bool) -> None:
    """Push the image `mlpack build` wrote for DIR (or an OCI LAYOUT) and pin its digest in mlpack.lock.json."""
    from packager import oci

    source = find_source(path)
    if not (source.layout / "oci-layout").exists():
        raise RegistryError(f"{source.layout}: no image here", hint=f"run `mlpack build {path}` first")
    image = oci.read_layout(source.layout)
    model = push_mod.model_info_for(image, source.model_json)
    lock_path = (lock_path or push_mod.default_lock_path(source.project_dir)).resolve()
    dest = destination(to, source, model, dry_run=dry_run)
    with dest.client as client:
        plan = push_mod.plan_push(image, dest.ref, client,
                                  mount_candidates=push_mod.mount_candidates(lock_path, dest.ref))
        if dry_run:
            if as_json:
                echo_json({"dry_run": True, **plan.to_json()})
            else:
                print_plan(plan)
            push_mod.check_plan(plan)
            return

        def progress(step: push_mod.BlobStep, action: str) -> None:
            if not as_json:
                click.echo(f"  {action:<6} {step.kind:<6} {step.digest[:19]}  {_size(step.size):>9}", err=True)

        result = push_mod.execute(plan, image, client, progress=progress)
    try:
        entry = push_mod.record_lock(lock_path, model=model, ref=result.ref, arch=image.arch,
                                     project_dir=source.project_dir)
    except MlpackError as e:
        raise MlpackError(f"pushed {result.ref}, but could not record it in {lock_path}: {e.message}",
                          hint=e.hint) from e
    if as_json:
        echo_json({**result.to_json(), "lock": str(lock_path), "model": model.name, "arch": entry.arch})
        return
    click.echo(f"pushed {result.ref.name}@{result.ref.digest} (tag {result.ref.tag}); "
               f"sent {_size(result.bytes_sent)}, {result.counts['upload']} uploaded, "
               f"{result.counts['mount']} mounted, {result.counts['skip']} already there")
    shown = os.path.relpath(lock_path)
    click.echo(f"recorded {model.name} in {lock_path if shown.startswith('..') else shown}")


commands = [push]
