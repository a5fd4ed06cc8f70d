"""Fixture model projects for the stack tests: an mlpack.toml, an exported model.json (built with
handlers/model_json.py, as `mlpack export` builds it) and an mlpack.lock.json entry pointing at ECR,
all written into a temporary folder. No training, no images: the stacks only read these files.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from handlers import model_json as mj

ACCOUNT = "123456789012"
REGION = "us-east-1"
TRAIN_PY = "def build_model():\n    raise NotImplementedError\n\n\ndef samples():\n    raise NotImplementedError\n"


def digest_for(name: str) -> str:
    return "sha256:" + hashlib.sha256(f"image of {name}".encode()).hexdigest()


def classifier_json(name: str, version: str, classes: list[str], width: int = 4) -> dict[str, Any]:
    share = round(1 / len(classes), 6)
    return mj.as_dict(mj.ModelJson(
        name=name,
        version=version,
        description="",
        task="classification",
        signature=mj.Signature(
            inputs=(mj.Tensor(name="input", dtype="float32", shape=("batch", width)),),
            outputs=(
                mj.Tensor(name="label", dtype="int64", shape=("batch",)),
                mj.Tensor(name="probabilities", dtype="float32", shape=("batch", len(classes))),
            ),
        ),
        roles=mj.Roles(label="label", scores="probabilities", scores_kind="probabilities"),
        feature_names={"input": tuple(f"f{i}" for i in range(width))},
        label_names=tuple(classes),
        profile=mj.Profile(rows=150, inputs={"input": ()},
                           outputs=mj.ProfileOutputs(classes={c: share for c in classes})),
    ))


def regressor_json(name: str, version: str, mean: float = 150.0, std: float = 75.0) -> dict[str, Any]:
    return mj.as_dict(mj.ModelJson(
        name=name,
        version=version,
        description="",
        task="regression",
        signature=mj.Signature(
            inputs=(
                mj.Tensor(name="x", dtype="float64", shape=("batch", 10)),
                mj.Tensor(name="mask", dtype="int64", shape=("batch", 2)),
            ),
            outputs=(mj.Tensor(name="variable", dtype="float32", shape=("batch", 1)),),
        ),
        roles=mj.Roles(),
        feature_names={},
        label_names=(),
        profile=mj.Profile(rows=100, inputs={}, outputs=mj.ProfileOutputs(regression=(
            mj.OutputProfile(name="variable", mean=mean, std=std, q01=0.0, q50=mean, q99=300.0),
        ))),
    ))


def write_project(
    root: Path, name: str, *, toml_extra: str = "", model_json: dict[str, Any] | None = None, version: str = "v1"
) -> Path:
    """root/models/<name> with mlpack.toml, train.py and build/<name>/model.json (unless model_json == {})."""
    project = root / "models" / name
    project.mkdir(parents=True, exist_ok=True)
    (project / "train.py").write_text(TRAIN_PY)
    (project / "mlpack.toml").write_text(
        f'[model]\nname = "{name}"\nowners = ["ana@example.com", "bo@example.com"]\nsource = "train:build_model"\n'
        f'[samples]\nsource = "train:samples"\n{toml_extra}\n'
    )
    # through handlers.model_json like export, unless a test hands in a deliberately broken document
    data = classifier_json(name, version, ["setosa", "versicolor", "virginica"]) if model_json is None else model_json
    if data:
        build = project / "build" / name
        build.mkdir(parents=True, exist_ok=True)
        (build / "model.json").write_text(json.dumps(data))
    return project


def write_lock(
    root: Path,
    names: list[str],
    *,
    version: str = "v1",
    arch: str | dict[str, str] = "x86_64",
    repository: str | None = None,
    projects: dict[str, str] | None = None,
) -> Path:
    models = {}
    for n in names:
        models[n] = {
            "repository": repository or f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/mlpack/{n}",
            "digest": digest_for(n),
            "arch": arch if isinstance(arch, str) else arch.get(n, "x86_64"),
            "model_version": version,
            "model_sha256": "0" * 64,
            "project": (projects or {}).get(n, f"models/{n}"),
            "pushed_at": "2026-11-27T05:00:00Z",
        }
    path = root / "mlpack.lock.json"
    path.write_text(json.dumps({"format": "mlpack.lock/1", "models": models}, indent=2))
    return path


def write_cdk_json(root: Path, repo: Path, *, bootstrapless: bool = False) -> Path:
    """A cdk.json in root that runs the repository's app.py on root's projects and lock."""
    ctx: dict[str, Any] = {"mlpack:projects": ["models/*"], "mlpack:lock": "mlpack.lock.json"}
    if bootstrapless:
        ctx["mlpack:bootstrapless"] = True
    path = root / "cdk.json"
    path.write_text(json.dumps({"app": f"{repo / '.venv/bin/python'} {repo / 'app.py'}", "context": ctx}))
    return path
