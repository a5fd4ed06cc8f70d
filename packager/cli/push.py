"""`mlpack push`: send a built image to ECR or any OCI registry and pin its digest in mlpack.lock.json.

The edge of the push stage: parses the arguments, reads and checks the lock file first (a damaged or
unwritable one stops the push before anything is sent), asks packager/registry/destination.py for the
source image and the destination, packager/registry/push.py for the plan (which creates a missing ECR
repository first), then prints the plan (--dry-run) or executes it and records the lock entry (leaving
the file as it was when it already records this image).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import click

from packager.cli import echo_json
from packager.config import records as records_mod
from packager.config import repo as repo_mod
from packager.config.repo import Environment
from packager.errors import MlpackError, RegistryError
from packager.registry import destination as dest_mod
from packager.registry import push as push_mod
from packager.registry.ref import ImageRef


class ImageRefParam(click.ParamType):  # type: ignore[type-arg]
    """REGISTRY/REPO[:TAG]; no default tag (destination.py names the image: <model version>-<digest prefix>)."""

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


def _attach_sbom(client: Any, repository: str, image: Any, source: dest_mod.Source, *, quiet: bool) -> str | None:
    """Push the image's SBOM (sbom.cdx.json, which `mlpack build` writes beside the layout) as an artifact
    referring to the image; its manifest digest, or None when there is no SBOM of this very image."""
    from packager.registry import referrers

    path = source.layout.parent / "sbom.cdx.json"
    try:
        data = path.read_bytes()
        doc = json.loads(data)
    except (OSError, ValueError):
        return None
    props = {p.get("name"): p.get("value") for p in (doc.get("metadata", {}).get("properties") or [])
             if isinstance(p, dict)} if isinstance(doc, dict) else {}
    if props.get("mlpack:image:digest") != image.manifest.digest:
        if not quiet:
            click.echo(f"  note: {path} describes another image; not attached (run `mlpack build` again)", err=True)
        return None
    attached = referrers.attach(client, repository, image.manifest, data)
    if not quiet:
        how = "in the referrers fallback tag" if attached.fallback else "for the referrers API"
        click.echo(f"  attach sbom   {attached.digest[:19]}  ({how})", err=True)
    return attached.digest


def environment_for(start: Path, env: str | None, *, explicit_lock: bool = False) -> Environment | None:
    """The environment of the mlpack-repo.toml above `start` named `env` (default: its only one); None
    in a repository without one (unless --env was given: an error). With --lock and no --env, none."""
    found = repo_mod.find(start)
    if found is None:
        if env is not None:
            raise MlpackError(f"--env {env}: no {repo_mod.REPO_FILE} in {start} or above it declares environments",
                              hint="create the team repository with `mlpack init --repo DIR`, or drop --env")
        return None
    if env is None and explicit_lock:
        return None
    return repo_mod.load(found).environment(env)


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
    if plan.create_repository:
        click.echo(f"  create repository {plan.create_repository}")
    for b in plan.blobs:
        extra = f" (from {b.mount_from})" if b.mount_from else ""
        click.echo(f"  {b.action:<6} {b.kind:<6} {b.digest[:19]}  {_size(b.size):>9}{extra}")
    manifest = "present" if plan.manifest_present else "put"
    tag = {"absent": "set", "same": "already set", "conflict": f"CONFLICT (points to {plan.tag_points_to})",
           "none": "-"}[plan.tag_state]
    click.echo(f"  manifest {manifest}; tag {plan.dest.tag}: {tag}")
    if plan.free_tag:
        click.echo(f"  free tag for this image: {plan.free_tag}")
    click.echo(f"  to upload: {_size(plan.bytes_to_upload)}")


@click.command()
@click.argument("path", type=click.Path(exists=True, file_okay=False, path_type=Path), metavar="DIR|LAYOUT")
@click.option("--to", "to", type=ImageRefParam(), help="Destination REGISTRY/REPO[:TAG] (default: [registry] in "
              "mlpack.toml, else ECR of the current AWS account/region, repository mlpack/<model>). Without "
              "a TAG the image is tagged <model version>-<first 12 hex of its digest>; a tag is never moved.")
@click.option("--env", "env", metavar="ENV", help="Environment of mlpack-repo.toml to push to: its ECR (account "
              "and region) and its lock. Default: the only one, when the repository declares one.")
@click.option("--lock", "lock_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Lock file to record the digest in (default: the environment's, else mlpack.lock.json at the "
              "repository root). Checked before anything is uploaded.")
@click.option("--dry-run", is_flag=True,
              help="Print what would be created, uploaded, mounted or skipped; change nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the plan or the result as JSON.")
def push(path: Path, to: ImageRef | None, env: str | None, lock_path: Path | None, dry_run: bool,
         as_json: bool) -> None:
    """Push the image `mlpack build` wrote for DIR (or an OCI LAYOUT) and pin its digest in the lock.

    Also writes the image's deploy record (mlpack.records/<model>/<digest>.json beside the lock): what
    the stacks need from the export, so a clean checkout deploys. Commit both."""
    source = dest_mod.find_source(path)
    image = dest_mod.read_image(source, path)
    model = push_mod.model_info_for(image, source.model_json)
    environment = environment_for(source.project_dir, env, explicit_lock=lock_path is not None)
    lock_path = (lock_path or (environment.lock if environment else None)
                 or push_mod.default_lock_path(source.project_dir)).resolve()
    recorded = push_mod.read_lock(lock_path)
    push_mod.check_same_project(recorded, lock_path, model.name, source.project_dir)
    facts = push_mod.deploy_facts(image, model, source.model_json)
    dest = dest_mod.destination(to, source, model, image.manifest.digest, environment=environment)
    with dest.client as client:
        plan = push_mod.plan_push(image, dest.ref, client, repositories=dest.repositories,
                                  mount_candidates=push_mod.mount_candidates(recorded, dest.ref))
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

        if plan.create_repository and not as_json:
            click.echo(f"  create repository {plan.create_repository}", err=True)
        result = push_mod.execute(plan, image, client, progress=progress, repositories=dest.repositories)
        sbom = _attach_sbom(client, dest.ref.repository, image, source, quiet=as_json)
    try:
        entry, changed = push_mod.record_lock(lock_path, model=model, ref=result.ref, arch=image.arch,
                                              project_dir=source.project_dir, facts=facts, sbom=sbom,
                                              model_bytes=push_mod.model_size(image))
    except MlpackError as e:
        raise MlpackError(f"pushed {result.ref}, but could not record it in {lock_path}: {e.message}",
                          hint=e.hint) from e
    if as_json:
        echo_json({**result.to_json(), "lock": str(lock_path), "lock_changed": changed, "model": model.name,
                   "arch": entry.arch})
        return
    click.echo(f"pushed {result.ref.name}@{result.ref.digest} (tag {result.ref.tag}); "
               f"sent {_size(result.bytes_sent)}, {result.counts['upload']} uploaded, "
               f"{result.counts['mount']} mounted, {result.counts['skip']} already there")
    shown = os.path.relpath(lock_path)
    shown = str(lock_path) if shown.startswith("..") else shown
    if changed:
        click.echo(f"recorded {model.name} in {shown} (commit it with {records_mod.RECORDS_DIR}/{model.name}/)")
    else:
        click.echo(f"{shown} already records {model.name} at this digest; left unchanged")


commands = [push]
