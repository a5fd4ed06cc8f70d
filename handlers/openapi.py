"""The endpoint's OpenAPI 3 document, generated from the model's signature once at init.

In: a loaded inference.Model (its name, version, signature, label and feature names, batch limit).
Out: the document as a dict, served by GET /openapi.json.

Standard library only (it reads attributes of inference.Model, and error codes from contract); never
packager/ or stacks/.
"""

from __future__ import annotations

from typing import Any

from handlers import contract as C

_JSON_TYPES = {"f": "number", "i": "integer", "u": "integer", "b": "boolean", "O": "string", "U": "string"}


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


def document(model: Any) -> dict[str, Any]:
    name = model.name
    inputs = model.inputs
    if len(inputs) == 1:
        inputs_schema = _nested(inputs[0], model.max_batch)
        feats = model.feature_names.get(inputs[0].name) or []
        if feats:
            inputs_schema["description"] = "Rows of features: " + ", ".join(feats)
    else:
        inputs_schema = {"type": "object", "additionalProperties": False,
                         "required": [t.name for t in inputs],
                         "properties": {t.name: _nested(t, model.max_batch) for t in inputs}}
    if model.is_classifier:
        out_props: dict[str, Any] = {"label": {"type": "array", "items": {"type": "string",
                                                                          "enum": model.label_names}}}
        if model.scores_index is not None:
            out_props[model.output_names[model.scores_index]] = {
                "type": "array",
                "items": {"type": "object", "properties": {n: {"type": "number"} for n in model.label_names}},
            }
    else:
        out_props = {t.name: {"type": "array"} for t in model.outputs}
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
                "requestBody": {"required": True, "content": {
                    "application/json": {"schema": {"type": "object", "required": ["inputs"],
                                                    "additionalProperties": False,
                                                    "properties": {"inputs": inputs_schema}}},
                    "application/x-npy": {"schema": {"type": "string", "format": "binary"}}}},
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
