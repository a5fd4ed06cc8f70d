"""Which model stacks to create: match model projects (cdk.json "mlpack:projects" globs) against
mlpack.lock.json and their exported model.json. Plain data out; no CDK, no AWS, no network.

Rules (documented in app.py too):
- a project with no lock entry has not been pushed yet: skipped with a note;
- a lock entry whose project is gone (no mlpack.toml there, or outside the globs) is an error, as
  is a project whose mlpack.toml names another model than its lock entry;
- a pushed model without PROJECT/build/<name>/model.json, or with one from another model version
  than the lock's, is an error: the API's request schema and the drift alarm come from it;
- every model must live in one AWS account and region (the shared stack is per account and region).
"""

from __future__ import annotations

import glob
from dataclasses import dataclass, field
from pathlib import Path

from handlers import contract
from handlers.names import ModelNames
from packager.config import lock as lock_mod
from packager.config import spec as spec_mod
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
    models: tuple[ModelPlan, ...]
    notes: tuple[str, ...] = field(default=())

    @property
    def env(self) -> tuple[str, str] | None:
        """(account, region) shared by every model, or None when there is no model."""
        return (self.models[0].image.account, self.models[0].image.region) if self.models else None


def find_projects(root: Path, patterns: list[str]) -> dict[Path, spec_mod.ModelSpec]:
    """Project folders (containing mlpack.toml) matched by the globs, relative to root, loaded and validated.
    Every invalid project is reported at once."""
    found: dict[Path, spec_mod.ModelSpec] = {}
    problems: list[str] = []
    for pattern in patterns:
        for hit in sorted(glob.glob(str(root / pattern))):
            folder = Path(hit).resolve()
            if not (folder / spec_mod.SPEC_FILE).is_file() or folder in found:
                continue
            try:
                found[folder] = spec_mod.resolve(spec_mod.load(folder))
            except MlpackError as e:
                problems.append(str(e))
    if problems:
        raise DeployError(
            "invalid model project(s):\n" + "\n".join(problems),
            hint="fix them (`mlpack validate PROJECT`) or narrow cdk.json's mlpack:projects",
        )
    return found


def plan(root: Path, *, patterns: list[str], lock_path: Path) -> AppPlan:
    root = root.resolve()
    lock_path = (root / lock_path).resolve()
    projects = find_projects(root, patterns)
    by_name = {s.name: (folder, s) for folder, s in projects.items()}
    pushed = lock_mod.read(lock_path)
    notes: list[str] = []
    problems: list[str] = []
    models: list[ModelPlan] = []
    for name, entry in sorted(pushed.items()):
        folder = (lock_path.parent / entry.project).resolve()
        where = f"{lock_path.name}: models.{name}"
        if folder not in projects:
            if (folder / spec_mod.SPEC_FILE).is_file():
                problems.append(
                    f"{where}: project {entry.project} is not matched by cdk.json's mlpack:projects "
                    f"({', '.join(patterns)}); add it there"
                )
            else:
                problems.append(
                    f"{where}: project {entry.project} is gone (no {spec_mod.SPEC_FILE}); remove the "
                    f"entry from {lock_path.name} (and `cdk destroy {ModelNames(name).stack}` if it was deployed)"
                )
            continue
        spec = projects[folder]
        if spec.name != name:
            problems.append(
                f"{where}: {entry.project}/{spec_mod.SPEC_FILE} names model {spec.name!r}, not {name!r}; "
                f"push it again with `mlpack push {entry.project}`"
            )
            continue
        info_path = spec.default_build_dir() / contract.MODEL_JSON
        try:
            image = EcrImage.parse(entry.repository, entry.digest, origin=f"{where}.repository")
            info = model_json.load(info_path, max_batch_size=spec.api.max_batch_size)
        except MlpackError as e:
            problems.append(str(e))
            continue
        if spec.runtime.arch != entry.arch:
            problems.append(
                f"{where}.arch: the pushed image is {entry.arch} but {entry.project}/{spec_mod.SPEC_FILE} "
                f"asks for runtime.arch = {spec.runtime.arch!r}; build and push it again"
            )
            continue
        if info.version != entry.model_version:
            problems.append(
                f"{info_path}: model version {info.version} does not match "
                f"the pushed image's {entry.model_version} ({where}.model_version)\n  hint: run "
                f"`mlpack export {entry.project}` for the version you pushed, or push again"
            )
            continue
        models.append(ModelPlan(spec=spec, lock=entry, info=info, image=image))
    for name, (folder, _spec) in sorted(by_name.items()):
        if name not in pushed:
            notes.append(
                f"mlpack: skipping {name} ({_rel(folder, root)}): not in {lock_path.name} yet; "
                f"run `mlpack push {_rel(folder, root)}` to deploy it"
            )
    envs = sorted({(m.image.account, m.image.region) for m in models})
    if len(envs) > 1:
        problems.append(
            f"{lock_path.name}: models span several AWS accounts/regions ({envs}); one app deploys one "
            f"account and region: use one lock file per environment (cdk -c mlpack:lock=FILE)"
        )
    if problems:
        raise DeployError(
            "cannot describe the model stacks:\n" + "\n".join(f"- {p}" for p in problems),
            hint="fix the problems above, then run cdk synth again",
        )
    return AppPlan(models=tuple(models), notes=tuple(notes))


def _rel(folder: Path, root: Path) -> str:
    try:
        return str(folder.relative_to(root))
    except ValueError:
        return str(folder)
