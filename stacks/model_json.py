"""Read what the stacks need from an exported model.json: the request schema for API Gateway's
validation (from the signature) and the training prediction profile for the drift alarm.

Pure data in, pure data out: no CDK, no AWS. Imports handlers.contract for names only; never
packager's export code (the file format in handlers/contract.py is the only agreement).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from handlers import contract
from packager.errors import DeployError

INTEGER_DTYPES = ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64")
FLOAT_DTYPES = ("float16", "float32", "float64")


@dataclass(frozen=True, kw_only=True)
class ClassShares:
    """Training share of each class (keys are the Class dimension values the handler emits)."""

    shares: tuple[tuple[str, float], ...]


@dataclass(frozen=True, kw_only=True)
class RegressionProfile:
    """Training mean and standard deviation of the (first) regression output."""

    name: str
    mean: float
    std: float


@dataclass(frozen=True, kw_only=True)
class ModelInfo:
    """The parts of model.json the stacks use."""

    name: str
    version: str
    task: str
    request_schema: dict[str, Any]
    drift: ClassShares | RegressionProfile | None


def load(path: Path, *, max_batch_size: int) -> ModelInfo:
    """Parse PROJECT/build/<name>/model.json. Raises DeployError naming the file and the field."""
    project = path.parent.parent.parent
    if not path.is_file():
        raise DeployError(
            f"{path}: not found; the stack needs the exported model's signature and profile",
            hint=f"run `mlpack export {project}` (or `mlpack build {project}`) first",
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise DeployError(f"{path}: cannot read: {e}", hint=f"run `mlpack export {project}` again") from e
    return parse(data, origin=str(path), max_batch_size=max_batch_size)


def parse(data: Any, *, origin: str, max_batch_size: int) -> ModelInfo:
    if not isinstance(data, dict) or data.get("format") != contract.MODEL_FORMAT:
        raise DeployError(
            f"{origin}: format: expected {contract.MODEL_FORMAT!r}",
            hint="re-export the model with this version of mlpack (`mlpack export PROJECT`)",
        )
    try:
        inputs = data["signature"]["inputs"]
        task = str(data["task"])
        name, version = str(data["name"]), str(data["version"])
        if not isinstance(inputs, list) or not inputs:
            raise TypeError("signature.inputs must be a non-empty list")
        schema = request_schema(inputs, max_batch_size=max_batch_size)
        drift = _drift(data.get("profile") or {}, task)
    except (KeyError, TypeError, ValueError) as e:
        raise DeployError(
            f"{origin}: malformed model.json ({type(e).__name__}: {e})",
            hint="re-export the model with `mlpack export PROJECT`",
        ) from e
    return ModelInfo(name=name, version=version, task=task, request_schema=schema, drift=drift)


def _value_schema(dtype: str) -> dict[str, Any]:
    if dtype in INTEGER_DTYPES:
        return {"type": "integer"}
    if dtype in FLOAT_DTYPES:
        return {"type": "number"}
    if dtype == "bool":
        return {"type": "boolean"}
    return {"type": "string"}


def _tensor_schema(spec: dict[str, Any], *, max_batch_size: int) -> dict[str, Any]:
    """Nested arrays: the batch dimension capped at max_batch_size, fixed dimensions exact."""
    shape = list(spec["shape"])
    node: dict[str, Any] = _value_schema(str(spec["dtype"]))
    for dim in reversed(shape[1:]):
        node = {"type": "array", "items": node}
        if isinstance(dim, int):
            node.update(minItems=dim, maxItems=dim)
    return {"type": "array", "minItems": 1, "maxItems": max_batch_size, "items": node}


def request_schema(inputs: list[dict[str, Any]], *, max_batch_size: int) -> dict[str, Any]:
    """JSON schema (draft 4, what API Gateway models accept) for POST /predict:
    {"inputs": [[...], ...]} for single-input models, or {"inputs": {"<name>": ...}} for any model."""
    by_name = {str(i["name"]): _tensor_schema(i, max_batch_size=max_batch_size) for i in inputs}
    named = {"type": "object", "properties": by_name, "required": sorted(by_name), "additionalProperties": False}
    inputs_schema: dict[str, Any] = named if len(by_name) > 1 else {"oneOf": [*by_name.values(), named]}
    return {
        "$schema": "http://json-schema.org/draft-04/schema#",
        "title": "PredictRequest",
        "type": "object",
        "properties": {"inputs": inputs_schema},
        "required": ["inputs"],
        "additionalProperties": False,  # the handler refuses any other field too
    }


def _drift(profile: dict[str, Any], task: str) -> ClassShares | RegressionProfile | None:
    outputs = profile.get("outputs") or {}
    if task == "classification" and isinstance(outputs.get("classes"), dict) and outputs["classes"]:
        return ClassShares(shares=tuple((str(k), float(v)) for k, v in outputs["classes"].items()))
    if task == "regression" and isinstance(outputs.get("regression"), list) and outputs["regression"]:
        first = outputs["regression"][0]
        return RegressionProfile(name=str(first["name"]), mean=float(first["mean"]), std=float(first["std"]))
    return None
