"""Read what the stacks need from an exported model.json: the request schema for API Gateway's
validation (from the signature) and the training prediction profile for the drift alarm.

Enters: the path of PROJECT/build/<name>/model.json (or its parsed JSON) and the API's batch limit.
Leaves: a `ModelInfo` (name, version, task, request schema, drift profile), or DeployError naming the
file and what is wrong with it.

Pure data in, pure data out: no CDK, no AWS. The file is read through handlers/model_json.py (the one
reader of the format handlers/contract.py documents); never through packager's export code.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from handlers import contract, model_json
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
    categorical: bool = False  # a tabular model with string columns (the unseen-categories alarm)


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
    """The stacks' view of a parsed model.json. Besides what every reader needs, the stacks need a
    version, a task and at least one input."""
    try:
        document = model_json.from_dict(data, origin)
    except model_json.ModelJsonError as e:
        if e.field in ("", "format"):
            raise DeployError(
                f"{origin}: format: expected {contract.MODEL_FORMAT!r}",
                hint="re-export the model with this version of mlpack (`mlpack export PROJECT`)",
            ) from e
        # the kind of problem named as these messages always named it: KeyError missing, TypeError mistyped
        raise _malformed(origin, f"KeyError: {e.field!r}" if e.problem == "missing"
                         else f"TypeError: {e.field}: {e.problem}") from e
    task, version = document.task, document.version
    if task is None or version is None:
        raise _malformed(origin, f"KeyError: {'task' if task is None else 'version'!r}")
    if not document.signature.inputs:
        raise _malformed(origin, "TypeError: signature.inputs must be a non-empty list")
    schema = request_schema(document.signature.inputs, max_batch_size=max_batch_size,
                            columns=(document.input_rules or {}) if document.tabular else None)
    drift = _drift(document.profile, task, origin)
    categorical = bool(document.tabular) and any(r.kind == "string" for r in (document.input_rules or {}).values())
    return ModelInfo(name=document.name, version=version, task=task, request_schema=schema, drift=drift,
                     categorical=categorical)


def _malformed(origin: str, what: str) -> DeployError:
    return DeployError(f"{origin}: malformed model.json ({what})",
                       hint="re-export the model with `mlpack export PROJECT`")


def _value_schema(dtype: str) -> dict[str, Any]:
    if dtype in INTEGER_DTYPES:
        return {"type": "integer"}
    if dtype in FLOAT_DTYPES:
        return {"type": "number"}
    if dtype == "bool":
        return {"type": "boolean"}
    return {"type": "string"}


def _tensor_schema(spec: model_json.Tensor, *, max_batch_size: int) -> dict[str, Any]:
    """Nested arrays: the batch dimension capped at max_batch_size, fixed dimensions exact."""
    shape = list(spec.shape)
    node: dict[str, Any] = _value_schema(spec.dtype)
    for dim in reversed(shape[1:]):
        node = {"type": "array", "items": node}
        if isinstance(dim, int):
            node.update(minItems=dim, maxItems=dim)
    return {"type": "array", "minItems": 1, "maxItems": max_batch_size, "items": node}


_COLUMN_TYPES = {"string": "string", "boolean": "boolean", "integer": "integer", "number": "number"}


def _column_schema(rules: model_json.InputRules | None) -> dict[str, Any]:
    """One value of a tabular model's column: its JSON type (or null where it accepts missing values),
    its range, and its categories where an unseen one is refused."""
    rules = rules or model_json.InputRules()
    kind = _COLUMN_TYPES.get(rules.kind or "number", "number")
    node: dict[str, Any] = {"type": [kind, "null"] if rules.missing else kind}
    if rules.min is not None:
        node["minimum"] = rules.min
    if rules.max is not None:
        node["maximum"] = rules.max
    if rules.unseen == "refuse" and rules.categories:
        node["enum"] = [*rules.categories, *([None] if rules.missing else [])]
    return node


def _table_schema(inputs: Sequence[model_json.Tensor], columns: Mapping[str, model_json.InputRules], *,
                  max_batch_size: int) -> dict[str, Any]:
    """A tabular model's body: records {"instances": [{...}]} or columns {"inputs": {"<column>": [...]}}."""
    names = [i.name for i in inputs]
    value = {n: _column_schema(columns.get(n)) for n in names}
    required = sorted(n for n in names if not (columns.get(n) and columns[n].missing))
    record: dict[str, Any] = {"type": "object", "properties": value, "additionalProperties": False}
    if required:
        record["required"] = required
    batch = {"minItems": 1, "maxItems": max_batch_size}
    return {
        "$schema": "http://json-schema.org/draft-04/schema#",
        "title": "PredictRequest",
        "type": "object",
        "properties": {
            "instances": {"type": "array", **batch, "items": record},
            "inputs": {"type": "object", "additionalProperties": False, "required": sorted(names),
                       "properties": {n: {"type": "array", **batch, "items": v} for n, v in value.items()}},
        },
        "minProperties": 1,
        "maxProperties": 1,
        "additionalProperties": False,  # the handler refuses any other field too
    }


def request_schema(inputs: Sequence[model_json.Tensor], *, max_batch_size: int,
                   columns: Mapping[str, model_json.InputRules] | None = None) -> dict[str, Any]:
    """JSON schema (draft 4, what API Gateway models accept) for POST /predict:
    {"inputs": [[...], ...]} for single-input models, or {"inputs": {"<name>": ...}} for any model; for a
    tabular model (columns: its input_rules), records or columns."""
    if columns is not None:
        return _table_schema(inputs, columns, max_batch_size=max_batch_size)
    by_name = {i.name: _tensor_schema(i, max_batch_size=max_batch_size) for i in inputs}
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


def _drift(profile: model_json.Profile | None, task: str, origin: str) -> ClassShares | RegressionProfile | None:
    outputs = profile.outputs if profile is not None else None
    if outputs is None:
        return None
    if task == "classification" and outputs.classes:
        return ClassShares(shares=tuple((k, float(v)) for k, v in outputs.classes.items()))
    if task == "regression" and outputs.regression:
        first = outputs.regression[0]
        name, mean, std = first.name, first.mean, first.std
        if name is None or mean is None or std is None:
            missing = "name" if name is None else "mean" if mean is None else "std"
            raise _malformed(origin, f"KeyError: 'profile.outputs.regression[0].{missing}'")
        return RegressionProfile(name=name, mean=float(mean), std=float(std))
    return None
