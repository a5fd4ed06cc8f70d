"""The endpoint's OpenAPI 3 document, generated from the model's signature once at init.

In: a loaded inference.Model (its name, version, signature, label and feature names, batch limit; for
a tabular model its columns: types, categories, ranges, examples and training profile).
Out: the document as a dict, served by GET /openapi.json.

Standard library only (it reads attributes of inference.Model, and error codes from contract); never
packager/ or stacks/.
"""

from __future__ import annotations

import math
from typing import Any

from handlers import contract as C

_JSON_TYPES = {"f": "number", "i": "integer", "u": "integer", "b": "boolean", "O": "string", "U": "string"}


def _output_items(spec: Any) -> dict[str, Any]:
    """One row of an output: a value, or nested arrays of values for outputs wider than one column."""
    node: dict[str, Any] = {"type": _JSON_TYPES.get(spec.kind, "number")}
    for _ in range(spec.rank - 1):
        node = {"type": "array", "items": node}
    return node


def _nested(spec: Any, max_batch: int) -> dict[str, Any]:
    """A nested-array schema for one tensor: the batch dimension outermost."""
    schema: dict[str, Any] = {"type": _JSON_TYPES.get(spec.kind, "number")}
    for i in range(spec.rank - 1, -1, -1):
        d = spec.shape[i]
        arr: dict[str, Any] = {"type": "array", "items": schema}
        if isinstance(d, int):
            arr["minItems"] = arr["maxItems"] = d
        elif i == 0:
            arr["minItems"], arr["maxItems"] = 1, max_batch
        schema = arr
    return schema


_COLUMN_JSON = {"string": "string", "boolean": "boolean", "integer": "integer", "number": "number"}


def _column(model: Any, col: Any) -> dict[str, Any]:
    """One column's value: its type, categories, range and an example, with the training profile in words."""
    rules = (model.document.input_rules or {}).get(col.name)
    schema: dict[str, Any] = {"type": _COLUMN_JSON.get(col.kind, "number")}
    notes = []
    if col.missing:
        schema["nullable"] = True
        notes.append("null when missing")
    if col.categories is not None:
        cats = sorted(col.categories)
        if col.refuse_unseen:
            schema["enum"] = cats
        else:
            schema["x-categories"] = cats
            notes.append(f"categories seen in training: {', '.join(cats[:20])}{', ...' if len(cats) > 20 else ''}; "
                         "others are answered as the model's encoder does and counted as unseen")
    if col.lo != -math.inf:
        schema["minimum"] = col.lo
    if col.hi != math.inf:
        schema["maximum"] = col.hi
    profile = (model.document.profile.inputs or {}).get(col.name) if model.document.profile else None
    if profile and col.kind in ("number", "integer") and profile[0].q01 is not None:
        f = profile[0]
        notes.append(f"training range {f.min:g} to {f.max:g} (1%-99%: {f.q01:g} to {f.q99:g}); values outside "
                     "1%-99% are counted as out of range")
    if rules is not None and rules.example is not None:
        schema["example"] = rules.example
    if notes:
        schema["description"] = "; ".join(notes)
    return schema


def _table_body(model: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """A tabular model's /predict body schema (records or columns) and an example request."""
    value = {c.name: _column(model, c) for c in model.columns}
    batch = {"minItems": 1, "maxItems": model.max_batch}
    record: dict[str, Any] = {"type": "object", "additionalProperties": False, "properties": value}
    required = [c.name for c in model.columns if not c.missing]
    if required:  # OpenAPI 3.0 refuses an empty list here
        record["required"] = required
    records = {"type": "object", "required": ["instances"], "additionalProperties": False,
               "properties": {"instances": {"type": "array", **batch, "items": record,
                                            "description": "Records: one object per row"}}}
    columns = {"type": "object", "required": ["inputs"], "additionalProperties": False,
               "properties": {"inputs": {
                   "type": "object", "additionalProperties": False, "required": [c.name for c in model.columns],
                   "description": "Columns: one list per column, one value per row",
                   "properties": {n: {"type": "array", **batch, "items": v} for n, v in value.items()}}}}
    example = {n: v["example"] for n, v in value.items() if "example" in v}
    return {"oneOf": [records, columns]}, {"instances": [example]}


def document(model: Any) -> dict[str, Any]:
    name = model.name
    inputs = model.inputs
    body_example: dict[str, Any] | None = None
    if model.tabular:
        inputs_schema: dict[str, Any] = {}
        body, body_example = _table_body(model)
    elif len(inputs) == 1:
        inputs_schema = _nested(inputs[0], model.max_batch)
        feats = model.feature_names.get(inputs[0].name) or []
        if feats:
            inputs_schema["description"] = "Rows of features: " + ", ".join(feats)
    else:
        inputs_schema = {"type": "object", "additionalProperties": False,
                         "required": [t.name for t in inputs],
                         "properties": {t.name: _nested(t, model.max_batch) for t in inputs}}
    if not model.tabular:
        body = {"type": "object", "required": ["inputs"], "additionalProperties": False,
                "properties": {"inputs": inputs_schema}}
    json_body: dict[str, Any] = {"schema": body}
    if body_example is not None:
        json_body["example"] = body_example
    content: dict[str, Any] = {"application/json": json_body}
    if not model.tabular:
        content["application/x-npy"] = {"schema": {"type": "string", "format": "binary"}}
    if model.is_classifier:
        out_props: dict[str, Any] = {"label": {"type": "array", "items": {"type": "string",
                                                                          "enum": model.label_names}}}
        if model.scores_index is not None:
            out_props[model.output_names[model.scores_index]] = {
                "type": "array",
                "items": {"type": "object", "properties": {n: {"type": "number"} for n in model.label_names}},
            }
    else:
        out_props = {t.name: {"type": "array", "items": _output_items(t)} for t in model.outputs}
    error = {"$ref": "#/components/schemas/Error"}
    codes = ", ".join((*C.VALIDATION_KINDS, C.MODEL_ERROR, C.INTERNAL_ERROR))
    errors = {str(code): {"description": text, "content": {"application/json": {"schema": error}}}
              for code, text in ((400, "Malformed JSON or request structure"), (413, "Body or batch too large"),
                                 (415, "Unsupported Content-Type"),
                                 (422, f"Input does not match the signature ({C.BAD_INPUT}), or the model's "
                                       f"outputs for some rows hold NaN or infinity ({C.NON_FINITE_OUTPUT}): "
                                       "the message names those rows, and the batch is refused as a whole"),
                                 (500, "The model failed; the message carries the request id"))}
    v2_tensor = {"type": "object", "required": ["name", "shape", "datatype", "data"],
                 "properties": {"name": {"type": "string"}, "shape": {"type": "array",
                                                                      "items": {"type": "integer"}},
                                "datatype": {"type": "string"}, "data": {"type": "array"}}}
    return {
        "openapi": "3.0.3",
        "info": {"title": f"{name} model", "version": model.version or "0",
                 "description": model.document.description or f"Predictions from the {name} model."},
        "paths": {
            "/predict": {"post": {
                "summary": "Predict a batch of rows",
                "requestBody": {"required": True, "content": content},
                "responses": {"200": {"description": "Predictions", "content": {"application/json": {
                    "schema": {"type": "object", "properties": {
                        "model": {"type": "string"}, "version": {"type": "string"},
                        "outputs": {"type": "object", "properties": out_props}}}}}}, **errors}}},
            f"/v2/models/{name}/infer": {"post": {
                "summary": "Open Inference Protocol (v2) inference",
                "requestBody": {"required": True, "content": {"application/json": {"schema": {
                    "type": "object", "required": ["inputs"],
                    "properties": {"id": {"type": "string"}, "inputs": {"type": "array", "items": v2_tensor},
                                   "outputs": {"type": "array", "items": {
                                       "type": "object", "properties": {"name": {"type": "string"}}}}}}}}},
                "responses": {"200": {"description": "Output tensors", "content": {"application/json": {
                    "schema": {"type": "object", "properties": {
                        "model_name": {"type": "string"}, "model_version": {"type": "string"},
                        "id": {"type": "string"}, "outputs": {"type": "array", "items": v2_tensor}}}}}},
                    **errors}}},
            f"/v2/models/{name}": {"get": {"summary": "Open Inference Protocol (v2) model metadata",
                                           "responses": {"200": {"description": "Model metadata"}}}},
            "/health": {"get": {"summary": "Model name, version and signature",
                                "responses": {"200": {"description": "The model is loaded"}}}},
            "/openapi.json": {"get": {"summary": "This document",
                                      "responses": {"200": {"description": "OpenAPI 3 document"}}}},
        },
        "components": {"schemas": {"Error": {
            "type": "object", "required": ["code", "message", "path"],
            "properties": {"code": {"type": "string", "description": codes},
                           "message": {"type": "string"},
                           "path": {"type": "string", "nullable": True,
                                    "description": "The field at fault, e.g. inputs[3][1]"},
                           "request_id": {"type": "string"}}}}},
    }
