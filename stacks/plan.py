"""Which model stacks to create: match model projects (the globs of mlpack-repo.toml or cdk.json's
"mlpack:projects") against the environment's lock and each image's deploy record. Plain data out; no
CDK, no AWS, no network.

Only committed files are needed: mlpack.toml (the model's weights and samples are not required: they
are not committed), the lock, and mlpack.records/<model>/<digest>.json, which holds what the stacks need
from the image's export (packager/config/records.py). An image pushed without a record (by an older
mlpack) falls back to PROJECT/build/<name>/model.json of the same model version.

Rules (documented in app.py too). One model's problem never blocks the others: that model is skipped
with one line saying why and what to run, and only deploying it fails (its stack does not exist):
- a project with no lock entry has not been pushed yet (a note, not a problem);
- a project whose mlpack.toml is invalid;
- a lock entry whose project is gone (no mlpack.toml there: its stack, if deployed, is orphaned, and the
  line gives the command that deletes it), or outside the globs, or whose project's mlpack.toml names
  another model than its lock entry;
- a pushed model without its deploy record, or built for another architecture than mlpack.toml asks
  for, or (in a named environment) pushed to another account or region than the environment's, or whose
  runtime.memory_mb cannot hold its model and its largest request (memory_needed_mb, with the figures).
What concerns the whole app is an error: every model must live in one AWS account and region (the
shared stack is per account and region), and the lock file must be readable.
"""

from __future__ import annotations

import glob
from dataclasses import dataclass, field
from pathlib import Path

from handlers import contract
from handlers.names import ModelNames
from packager.config import lock as lock_mod
from packager.config import records as records_mod
from packager.config import spec as spec_mod
from packager.config.repo import Environment
from packager.errors import DeployError, MlpackError
from stacks import model_json
from stacks.function import EcrImage


@dataclass(frozen=True, kw_only=True)
class ModelPlan:
    spec: spec_mod.ModelSpec
    lock: lock_mod.LockEntry
    info: model_json.ModelInfo
    image: EcrImage


@dataclass(frozen=True, kw_only=True)
class AppPlan:
    """models: the stacks to create. notes: projects not pushed yet. skipped: models left out because
    of a problem, one line each (app.py prints both; with mlpack:strict, a skipped model fails synth)."""

    models: tuple[ModelPlan, ...]
    notes: tuple[str, ...] = field(default=())
    skipped: tuple[str, ...] = field(default=())
    environment: str | None = None  # the named environment, or None for a single-environment app

    @property
    def env(self) -> tuple[str, str] | None:
        """(account, region) shared by every model, or None when there is no model."""
        return (self.models[0].image.account, self.models[0].image.region) if self.models else None


def find_projects(root: Path, patterns: list[str]) -> tuple[dict[Path, spec_mod.ModelSpec], dict[Path, str]]:
    """Project folders (containing mlpack.toml) matched by the globs, relative to root, loaded and
    validated: (valid ones, invalid ones with every problem of each)."""
    found: dict[Path, spec_mod.ModelSpec] = {}
    broken: dict[Path, str] = {}
    for pattern in patterns:
        for hit in sorted(glob.glob(str(root / pattern))):
            folder = Path(hit).resolve()
            if not (folder / spec_mod.SPEC_FILE).is_file() or folder in found or folder in broken:
                continue
            try:  # files=False: weights and samples are not committed; the deploy record has what synth needs
                found[folder] = spec_mod.resolve(spec_mod.load(folder, files=False), files=False)
            except MlpackError as e:
                broken[folder] = str(e)
    return found, broken


def _one_line(text: str) -> str:
    return "; ".join(line.strip() for line in text.splitlines() if line.strip())


def plan(root: Path, *, patterns: list[str], lock_path: Path, environment: Environment | None = None) -> AppPlan:
    """environment: the named environment being synthesised (lock_path is its lock); every model's image
    must be in its account and region."""
    root = root.resolve()
    lock_path = (root / lock_path).resolve()
    projects, broken = find_projects(root, patterns)
    pushed = lock_mod.read(lock_path)
    models: list[ModelPlan] = []
    skipped: list[str] = []
    for name, entry in sorted(pushed.items()):
        planned = _model(name, entry, projects, broken, lock_path=lock_path, patterns=patterns,
                         environment=environment)
        if isinstance(planned, ModelPlan):
            models.append(planned)
        else:
            skipped.append(f"mlpack: skipping {name} ({entry.project}): {_one_line(planned)}")
    in_lock = {(lock_path.parent / e.project).resolve() for e in pushed.values()}
    for folder, problem in sorted(broken.items()):
        if folder not in in_lock:
            skipped.append(f"mlpack: skipping {_rel(folder, root)}: {_one_line(problem)}")
    env_flag = f" --env {environment.name}" if environment else ""
    notes = [
        f"mlpack: skipping {spec.name} ({_rel(folder, root)}): not in {lock_path.name} yet; "
        f"run `mlpack push {_rel(folder, root)}{env_flag}` to deploy it"
        for folder, spec in sorted(projects.items(), key=lambda kv: kv[1].name) if spec.name not in pushed
    ]
    envs = sorted({(m.image.account, m.image.region) for m in models})
    if len(envs) > 1:
        raise DeployError(
            f"{lock_path.name}: models span several AWS accounts/regions ({envs}); one app deploys one "
            f"account and region",
            hint="declare environments in mlpack-repo.toml (each has its own lock), or use one lock file per "
                 "account and region (cdk -c mlpack:lock=FILE)",
        )
    return AppPlan(models=tuple(models), notes=tuple(notes), skipped=tuple(skipped),
                   environment=environment.name if environment else None)


def _model(name: str, entry: lock_mod.LockEntry, projects: dict[Path, spec_mod.ModelSpec], broken: dict[Path, str],
           *, lock_path: Path, patterns: list[str], environment: Environment | None) -> ModelPlan | str:
    """The plan of one pushed model, or why it cannot be deployed (with what to run)."""
    folder = (lock_path.parent / entry.project).resolve()
    where = f"{lock_path.name}: models.{name}"
    if folder in broken:
        return f"{entry.project}/{spec_mod.SPEC_FILE} is invalid: {broken[folder]} (check with `mlpack validate " \
               f"{entry.project}`)"
    if folder not in projects:
        if (folder / spec_mod.SPEC_FILE).is_file():
            return (f"{where}: project {entry.project} is not matched by the project globs "
                    f"({', '.join(patterns)}); add it to `projects` in mlpack-repo.toml (or to cdk.json's "
                    "mlpack:projects without one)")
        # the app has no stack for it any more, so `cdk destroy` cannot find it: CloudFormation can
        stack = ModelNames(name, environment.name if environment else None).stack
        region = environment.region if environment else _region_of(entry.repository)
        at = f" --region {region}" if region else ""
        return (f"{where}: project {entry.project} is gone (no {spec_mod.SPEC_FILE}) but the lock still names "
                f"it; its stack {stack}, if deployed, is orphaned: delete it with `aws cloudformation delete-stack "
                f"--stack-name {stack}{at}` and delete models.{name} from {lock_path.name}")
    spec = projects[folder]
    if spec.name != name:
        return (f"{where}: {entry.project}/{spec_mod.SPEC_FILE} names model {spec.name!r}, not {name!r}; "
                f"push it again with `mlpack push {entry.project}`")
    try:
        image = EcrImage.parse(entry.repository, entry.digest, origin=f"{where}.repository")
        info, model_bytes = _info(name, entry, spec, lock_path)
    except MlpackError as e:
        return str(e)
    need = memory_needed_mb(model_bytes)
    if need is not None and model_bytes is not None and spec.runtime.memory_mb < need:
        return (f"{entry.project}/{spec_mod.SPEC_FILE}: runtime.memory_mb = {spec.runtime.memory_mb} cannot hold the "
                f"model and its largest request: about {need} MB (the runtime and its libraries {RUNTIME_MB} MB, "
                f"model.onnx's {model_bytes / 2**20:.0f} MB twice, as onnxruntime holds it, a 6 MB request while "
                f"parsed {REQUEST_MB} MB); set runtime.memory_mb to {need} or more")
    if spec.runtime.arch != entry.arch:
        return (f"{where}.arch: the pushed image is {entry.arch} but {entry.project}/{spec_mod.SPEC_FILE} "
                f"asks for runtime.arch = {spec.runtime.arch!r}; build and push it again")
    if environment and (image.account, image.region) != (environment.account, environment.region):
        return (f"{where}.repository: the image is in account {image.account}, region {image.region}, but "
                f"environment {environment.name} is account {environment.account}, region {environment.region}; "
                f"push it with `mlpack push {entry.project} --env {environment.name}` or promote it there")
    return ModelPlan(spec=spec, lock=entry, info=info, image=image)


# What a model function's memory must hold besides the model (measured in bench/bench_memory.py: the runtime
# client, numpy, onnxruntime and the handler with a small model loaded take 62-68 MB; the runtime client's
# parse of a 6 MB event about 12 MB, and the largest valid JSON request about three times its size)
RUNTIME_MB = 70
REQUEST_MB = 30


def memory_needed_mb(model_bytes: int | None) -> int | None:
    """The memory a function needs for its model and largest request, rounded up to 64 MB; None when the
    model's size is unknown (a deploy record written before it was recorded)."""
    if model_bytes is None:
        return None
    need = RUNTIME_MB + REQUEST_MB + 2 * model_bytes / 2**20
    return int(-(-need // 64) * 64)


def _info(name: str, entry: lock_mod.LockEntry, spec: spec_mod.ModelSpec,
          lock_path: Path) -> tuple[model_json.ModelInfo, int | None]:
    """What the stack needs from the image's export: its deploy record; for an image pushed without one
    (an older mlpack), PROJECT/build/<name>/model.json of the same model version. DeployError names the fix."""
    record = records_mod.path_for(lock_path, name, entry.digest)
    where = f"{lock_path.name}: models.{name}"
    built = spec.default_build_dir() / contract.MODEL_JSON
    if record.is_file() or not built.is_file():
        data, model_bytes = records_mod.read_record(lock_path, name, entry.digest)
        info = model_json.parse(data, origin=str(record), max_batch_size=spec.api.max_batch_size)
        if info.version != entry.model_version:
            raise DeployError(f"{record}: model version {info.version} does not match the lock's "
                              f"{entry.model_version} ({where}.model_version)",
                              hint=f"rewrite both from the registry with `mlpack relock {name}`")
        return info, model_bytes
    info = model_json.load(built, max_batch_size=spec.api.max_batch_size)
    if info.version != entry.model_version:
        raise DeployError(
            f"{built}: model version {info.version} does not match the pushed image's {entry.model_version} "
            f"({where}.model_version), and the image has no deploy record ({record})",
            hint=f"run `mlpack relock {name}` to write the record from the image in the registry, or push again")
    return info, None


def _region_of(repository: str) -> str | None:
    """The region of an ECR repository (host.dkr.ecr.<region>.amazonaws.com/...); None for other registries."""
    parts = repository.partition("/")[0].split(".")
    return parts[3] if len(parts) > 4 and parts[1:3] == ["dkr", "ecr"] else None


def _rel(folder: Path, root: Path) -> str:
    try:
        return str(folder.relative_to(root))
    except ValueError:
        return str(folder)
