"""`mlpack promote`, `rollback`, `history`, `relock`: a pushed image's way between environments and back.

The edge of the release stage, read like push: find the locks (packager/config/repo.py names each
environment's), plan from them (plain data: which entry, which image, where), then act through the
registry client and packager/aws.py; `--dry-run` prints the plan and changes nothing.

- promote copies the exact image (the manifest's bytes, so the digest is the same) from one
  environment's registry into another's, never rebuilding, and records it in the target lock with the
  same deploy record. It refuses an image the source lock does not hold.
- rollback returns a model's lock entry to an earlier one of its history (for the next deploy); with
  --live it also points the function's `live` alias at the published version that runs that image,
  which takes seconds and needs no deploy (the emergency path).
- relock rewrites a model's lock entry and deploy record from the image in the registry (a damaged lock,
  a lost record).
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

import click

from handlers import contract
from handlers.names import ModelNames
from packager import oci
from packager.cli import echo_json
from packager.config import lock as lock_mod
from packager.config import records as records_mod
from packager.config import repo as repo_mod
from packager.config import spec as spec_mod
from packager.config.repo import Environment
from packager.errors import DeployError, MlpackError, RegistryError
from packager.registry import destination as dest_mod
from packager.registry import pull as pull_mod
from packager.registry import push as push_mod
from packager.registry.client import ImageRef

LIVE_ALIAS = "live"
ENV_OPTION = click.option("--env", "env", metavar="ENV", help="Environment (default: the only one).")
LOCK_OPTION = click.option("--lock", "lock", type=click.Path(dir_okay=False, path_type=Path),
                           help="Lock file instead of --env's.")


def _repo(start: Path | None = None) -> repo_mod.Repo:
    found = repo_mod.find(start or Path.cwd())
    if found is None:
        raise MlpackError(f"no {repo_mod.REPO_FILE} in {start or Path.cwd()} or above it: environments are declared "
                          "there", hint="run this in the team repository (create one with `mlpack init --repo DIR`)")
    return repo_mod.load(found)


def _lock_of(env: str | None, lock: Path | None) -> tuple[Path, Environment | None]:
    """The lock to work on: --lock, else the environment's (the only one by default), else mlpack.lock.json
    at the root of the repository the current folder is in."""
    if lock is not None and env is None:
        return lock.resolve(), None
    found = repo_mod.find(Path.cwd())
    if found is None:
        if env is not None:
            raise MlpackError(f"--env {env}: no {repo_mod.REPO_FILE} in {Path.cwd()} or above it",
                              hint="run this in the team repository, or name the lock with --lock FILE")
        return push_mod.default_lock_path(Path.cwd()), None
    environment = repo_mod.load(found).environment(env)
    return (lock or environment.lock).resolve(), environment


def _show(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _line(e: lock_mod.LockEntry) -> str:
    return f"{e.model_version:<14} {e.digest[7:19]}  {e.arch:<7} {e.pushed_at}  {e.pushed_by or '-':<12} {e.how}"


# --- promote --------------------------------------------------------------------------------------------


@click.command()
@click.argument("model")
@click.option("--from", "source", required=True, metavar="ENV", help="Environment whose lock holds the image.")
@click.option("--to", "target", required=True, metavar="ENV", help="Environment to copy it to.")
@click.option("--image", "wanted", metavar="VERSION|DIGEST",
              help="Which of the source lock's entries (current or history) to promote; default: its current one.")
@click.option("--dry-run", is_flag=True, help="Print what would be copied and recorded; change nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the plan or the result as JSON.")
def promote(model: str, source: str, target: str, wanted: str | None, dry_run: bool, as_json: bool) -> None:
    """Copy MODEL's image by digest from one environment to another and record it in the target's lock.

    The image is copied, never rebuilt: the target deploys the very bytes the source tested."""
    repo = _repo()
    src, dst = repo.environment(source), repo.environment(target)
    if src.name == dst.name:
        raise MlpackError(f"--from and --to are both {src.name}", hint="name two different environments")
    src_lock = lock_mod.read_lock(src.lock)
    if model not in src_lock.models and model not in src_lock.history:
        raise DeployError(f"{src.lock}: {src.name} holds no image of {model!r}; only an image the source lock "
                          "records can be promoted", hint=f"push it first: `mlpack push PROJECT --env {src.name}`")
    entry = lock_mod.select(src_lock, model, wanted, path=src.lock) if wanted else src_lock.models[model]
    facts, model_bytes = records_mod.read_record(src.lock, model, entry.digest)  # before anything is sent
    lock_mod.read_lock(dst.lock)
    lock_mod.check_writable(dst.lock)
    repository = entry.repository.partition("/")[2]
    identity = push_mod.ModelInfo(name=model, version=entry.model_version, model_sha256=entry.model_sha256)
    src_dest = dest_mod.connect(ImageRef.parse(entry.image_uri, default_tag=None))
    target_ref = ImageRef(dst.registry, repository, push_mod.image_tag(entry.model_version, entry.digest), None)
    dst_dest = dest_mod.connect(target_ref)
    with tempfile.TemporaryDirectory(prefix="mlpack-promote-") as tmp, src_dest.client as src_client, \
            dst_dest.client as dst_client:
        if not as_json:
            click.echo(f"promote {model} {entry.model_version} ({entry.digest[:19]}) from {src.name} to {dst.name}",
                       err=True)
        image = pull_mod.pull(src_client, src_dest.ref.repository, entry.digest, Path(tmp) / "image")
        plan = push_mod.plan_push(image, dst_dest.ref, dst_client, repositories=dst_dest.repositories)
        if dry_run:
            if as_json:
                echo_json({"dry_run": True, "from": src.name, "to": dst.name, **plan.to_json()})
            else:
                from packager.cli.push import print_plan

                print_plan(plan)
            push_mod.check_plan(plan)
            return
        result = push_mod.execute(plan, image, dst_client, repositories=dst_dest.repositories)
    if result.ref.digest != entry.digest:  # exact bytes in, exact bytes out
        raise RegistryError(f"{result.ref}: the target registry holds digest {result.ref.digest}, not {entry.digest}")
    project_dir = src.lock.parent / entry.project
    _, changed = push_mod.record_lock(dst.lock, model=identity, ref=result.ref, arch=entry.arch,
                                      project_dir=project_dir, facts=facts, how=f"promote from {src.name}",
                                      model_bytes=model_bytes)
    if as_json:
        echo_json({**result.to_json(), "from": src.name, "to": dst.name, "lock": str(dst.lock),
                   "lock_changed": changed, "model": model})
        return
    click.echo(f"promoted {model} {entry.model_version} to {dst.name}: {result.ref.name}@{result.ref.digest}; "
               f"sent {result.bytes_sent:,} bytes")
    click.echo(f"recorded in {_show(dst.lock)}" if changed else f"{_show(dst.lock)} already records it; unchanged")
    click.echo(f"next: commit {_show(dst.lock)}, then `cdk deploy -c mlpack:env={dst.name} "
               f"{ModelNames(model, dst.name).stack}`")


# --- rollback -------------------------------------------------------------------------------------------


@click.command()
@click.argument("model")
@ENV_OPTION
@LOCK_OPTION
@click.option("--to", "wanted", metavar="VERSION|DIGEST",
              help="Entry of the model's history to return to (model version or digest); default: the previous one.")
@click.option("--live", is_flag=True, help="Also point the function's live alias at the version running that image "
              "now, through the Lambda API (seconds; no deploy). Deploy the lock afterwards to make it permanent.")
@click.option("--dry-run", is_flag=True, help="Print what would change; change nothing.")
def rollback(model: str, env: str | None, lock: Path | None, wanted: str | None, live: bool, dry_run: bool) -> None:
    """Return MODEL's lock entry to an earlier image (the next deploy rolls back), or with --live also now."""
    lock_path, environment = _lock_of(env, lock)
    current = lock_mod.read_lock(lock_path)
    if model not in current.models:
        raise DeployError(f"{lock_path}: no current entry for {model!r}",
                          hint=f"models there: {', '.join(sorted(current.models)) or 'none'}")
    target = lock_mod.select(current, model, wanted, path=lock_path)
    records_mod.read(lock_path, model, target.digest)  # the deploy needs it: refuse before changing anything
    now = current.models[model]
    click.echo(f"{model}: {now.model_version} ({now.digest[:19]}) -> {target.model_version} ({target.digest[:19]}, "
               f"{target.how} {target.pushed_at})")
    version = None
    if live:
        version, function, region, serving = _live_version(model, environment, target)
        click.echo(f"  alias {LIVE_ALIAS} of {function}: version {serving} -> version {version}")
    if dry_run:
        click.echo("dry run: nothing changed")
        return
    if live:
        from packager import aws as aws_mod

        assert version is not None
        aws_mod.Aws(region=region).point_alias(function, LIVE_ALIAS, version, region)
        click.echo(f"{function}: {LIVE_ALIAS} now serves version {version}")
    entry = dataclasses.replace(target, pushed_at=push_mod.timestamp(), pushed_by=push_mod.actor(), how="rollback")
    lock_mod.record(lock_path, model, entry)
    deploy = f"cdk deploy {f'-c mlpack:env={environment.name} ' if environment else ''}" \
             f"{ModelNames(model, environment.name if environment else None).stack}"
    click.echo(f"recorded in {_show(lock_path)}; commit it and run `{deploy}`"
               + (" to make the alias change permanent" if live else " to roll back"))


def _live_version(model: str, environment: Environment | None,
                  target: lock_mod.LockEntry) -> tuple[str, str, str, str]:
    """The published version of the model's function that runs target's image: (version, function, region,
    the version the alias serves now)."""
    from packager import aws as aws_mod

    ecr = aws_mod.parse_ecr_host(target.repository.partition("/")[0])
    region = environment.region if environment else (ecr.region if ecr else None)
    if region is None:
        raise DeployError(f"{target.repository}: not an ECR repository, so mlpack cannot tell the function's region",
                          hint="run it in a team repository with --env")
    function = ModelNames(model, environment.name if environment else None).function
    aws = aws_mod.Aws(region=region)
    matches = [v for v, description in aws.function_versions(function, region) if target.digest in description]
    if not matches:
        raise DeployError(f"{function}: no published version runs {target.digest[:19]} (versions are kept from the "
                          "deploy that first ran an image on)", hint="roll back the lock without --live and deploy")
    return max(matches, key=int), function, region, aws.alias_version(function, LIVE_ALIAS, region)


# --- history --------------------------------------------------------------------------------------------


@click.command()
@click.argument("model")
@ENV_OPTION
@LOCK_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print the entries as JSON.")
def history(model: str, env: str | None, lock: Path | None, as_json: bool) -> None:
    """MODEL's lock entries, the current one first: what `mlpack rollback --to` can return to."""
    lock_path, _ = _lock_of(env, lock)
    entries = lock_mod.read_lock(lock_path).entries(model)
    if not entries:
        raise DeployError(f"{lock_path}: no entry for {model!r}")
    if as_json:
        echo_json([dataclasses.asdict(e) for e in entries])
        return
    click.echo(f"{'':2}{'version':<14} {'digest':<12}  {'arch':<7} {'recorded at':<20}  {'by':<12} how")
    for i, e in enumerate(entries):
        click.echo(f"{'*' if i == 0 else ' '} {_line(e)}")


# --- relock ---------------------------------------------------------------------------------------------


@click.command()
@click.argument("model")
@ENV_OPTION
@LOCK_OPTION
@click.option("--image", "image", metavar="REPOSITORY@DIGEST|REPOSITORY:TAG",
              help="The image to record (default: the one the entry names, when its repository and digest are intact).")
@click.option("--project", "project", type=click.Path(file_okay=False, path_type=Path),
              help="The model's project folder (default: the entry's, else the project naming MODEL).")
def relock(model: str, env: str | None, lock: Path | None, image: str | None, project: Path | None) -> None:
    """Rewrite MODEL's lock entry and deploy record from its image in the registry."""
    lock_path, _ = _lock_of(env, lock)
    held = lock_mod.read_lock(lock_path, lenient=model)  # a damaged entry of this model is what we replace
    old = held.models.get(model)
    if image is None and old is None:
        raise DeployError(f"{lock_path}: the entry of {model!r} is missing or damaged, so it cannot name its image",
                          hint="pass --image REPOSITORY@DIGEST (the digest is in the deploy log or the registry)")
    ref = ImageRef.parse(image or (old.image_uri if old else ""), default_tag=None)
    dest = dest_mod.connect(ref)
    with dest.client as client, tempfile.TemporaryDirectory(prefix="mlpack-relock-") as tmp:
        digest = ref.digest or client.head_manifest(ref.repository, ref.tag or "")
        if digest is None:
            raise RegistryError(f"{ref}: no such image in the registry")
        facts, arch, model_bytes = _image_facts(client, ref.repository, digest, Path(tmp))
    if facts.get("name") != model:
        raise DeployError(f"{ref.name}@{digest}: holds model {facts.get('name')!r}, not {model!r}")
    folder = project.resolve() if project else (lock_path.parent / old.project if old else _project_of(model))
    identity = push_mod.ModelInfo(name=model, version=str(facts.get("version")),
                                  model_sha256=str(facts.get("model_sha256")))
    pinned = ImageRef(ref.registry, ref.repository, None, digest)
    entry, changed = push_mod.record_lock(lock_path, model=identity, ref=pinned, arch=arch, project_dir=folder,
                                          facts=facts, how="relock", replace_damaged=True, model_bytes=model_bytes)
    verb = "rewrote" if changed else "already records"
    click.echo(f"{_show(lock_path)} {verb} {model} {entry.model_version} ({digest[:19]}) and its deploy record "
               f"{_show(records_mod.path_for(lock_path, model, digest))}")


def _image_facts(client: object, repository: str, digest: str,
                 tmp: Path) -> tuple[dict[str, object], str, int | None]:
    """The model.json inside the registry's image, the image's architecture and model.onnx's size, reading
    layers from the top (the model layer is the last) until model.json is found."""
    import json

    from packager.registry.client import RegistryClient

    assert isinstance(client, RegistryClient)
    data, _, _ = client.get_manifest(repository, digest)
    doc = json.loads(data)
    config_desc = oci.Descriptor.from_json(doc.get("config"), f"{repository}@{digest}: config")
    client.fetch_blob(repository, config_desc.digest, tmp / "config")
    config = json.loads((tmp / "config").read_bytes())
    arch = oci.LAMBDA_ARCH.get(str(config.get("architecture")), "")
    member = f"{contract.MODEL_DIR}/{contract.MODEL_JSON}"
    for i, layer in enumerate(reversed(doc.get("layers", []))):
        desc = oci.Descriptor.from_json(layer, f"{repository}@{digest}: layer")
        path = tmp / f"layer{i}"
        client.fetch_blob(repository, desc.digest, path)
        onnx = f"{contract.MODEL_DIR}/model.onnx"
        got = oci.find_members([(path, desc.media_type)], [member, onnx], read=frozenset({member}))  # one pass
        path.unlink()
        if member in got:
            facts = json.loads(got[member][1] or b"null")
            if isinstance(facts, dict) and arch:
                return facts, arch, got[onnx][0] if onnx in got else None
            break
    raise RegistryError(f"{repository}@{digest}: no {member} in the image, or no architecture in its config",
                        hint="relock only works for images mlpack built")


def _project_of(model: str) -> Path:
    repo = _repo()
    import glob

    for pattern in repo.projects:
        for hit in sorted(glob.glob(str(repo.root / pattern))):
            folder = Path(hit)
            if (folder / spec_mod.SPEC_FILE).is_file():
                try:
                    if spec_mod.load(folder, files=False).name == model:
                        return folder
                except MlpackError:
                    continue
    raise DeployError(f"no project in {repo.root} ({', '.join(repo.projects)}) names model {model!r}",
                      hint="pass --project DIR")


commands = [promote, rollback, history, relock]
