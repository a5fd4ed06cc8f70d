"""The values every stage passes along: what a request is, what an answer is, and the model they meet.

In: a decoded model.json (a dict) and an onnxruntime session, for `Model`; an event format's method,
path, body and content type, for `Request`. Out: `Model` (the signature as TensorSpecs and everything
else that can be worked out before the first request: label names, profile bounds, the /health, v2
metadata and OpenAPI documents), `Request`, `Result` (status, payload, and what the metrics need), and
the errors: RequestError (a client mistake, a 4xx), its NonFiniteOutputError (rows the model answered
with NaN or infinity, a 422 naming them) and ModelLoadError (the function cannot start).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from handlers import contract as C
from handlers import model_json
from handlers.inference import codec

# numpy dtype name -> Open Inference Protocol datatype
V2_TYPES = {
    "bool": "BOOL", "uint8": "UINT8", "uint16": "UINT16", "uint32": "UINT32", "uint64": "UINT64",
    "int8": "INT8", "int16": "INT16", "int32": "INT32", "int64": "INT64", "float16": "FP16",
    "float32": "FP32", "float64": "FP64", "str": "BYTES", "object": "BYTES", "string": "BYTES",
}


class RequestError(Exception):
    """A client mistake: becomes a 4xx with {code, message, path}."""

    def __init__(self, status: int, kind: str, message: str, path: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.kind, self.message, self.path = status, kind, message, path
        self.headers = headers or {}


class NonFiniteOutputError(RequestError):
    """The model's outputs for some rows hold NaN or infinity: the batch is refused with a 422 naming the
    first few rows and how many; `rows` is that count (the NonFiniteOutputs metric)."""

    SHOWN = 5  # row indices named in the message

    def __init__(self, bad_rows: list[int], batch: int, outputs: list[str], path: str) -> None:
        n = len(bad_rows)
        shown = ", ".join(map(str, bad_rows[:self.SHOWN])) + (", ..." if n > self.SHOWN else "")
        where = ", ".join(repr(name) for name in outputs)
        rest = "" if n == batch else "; the batch is refused as a whole: send the other rows without them"
        super().__init__(422, C.NON_FINITE_OUTPUT,
                         f"{'row' if n == 1 else 'rows'} {shown} ({n} of {batch}) produced non-finite outputs "
                         f"(NaN or infinity in {where}); their inputs are probably outside what the model was "
                         f"trained on{rest}", path)
        self.rows = n


class ModelLoadError(Exception):
    """model.json or model.onnx is missing or does not match: the function cannot start."""


class TensorSpec:
    __slots__ = ("dims", "dtype", "kind", "name", "rank", "row_width", "shape", "v2_type")

    def __init__(self, tensor: model_json.Tensor) -> None:
        self.name: str = tensor.name
        dtype = tensor.dtype
        try:
            self.dtype = np.dtype(object) if dtype in ("str", "string", "object") else np.dtype(dtype)
        except TypeError:
            raise ValueError(f"tensor {self.name!r}: dtype {dtype!r} is not one numpy knows "
                             f"(re-export the model with this mlpack)") from None
        self.kind: str = "O" if self.dtype.kind == "O" else self.dtype.kind
        self.shape: list[int | str] = list(tensor.shape)
        self.rank = len(self.shape)
        self.dims = [(i, d) for i, d in enumerate(self.shape) if isinstance(d, int) and i > 0]
        self.v2_type = V2_TYPES.get(dtype, dtype.upper())
        # a float input of rows of a fixed width: JSON bodies of such rows can take _rows_fast
        self.row_width: int | None = (self.shape[1] if self.kind == "f" and self.rank == 2
                                      and isinstance(self.shape[1], int) else None)

    def shape_text(self) -> str:
        return "[" + ", ".join(str(d) for d in self.shape) + "]"

    def v2_shape(self) -> list[int]:
        return [d if isinstance(d, int) else -1 for d in self.shape]


class Request:
    """What the handler needs from any event format. `data` is an already-decoded JSON body
    (direct invoke); otherwise `body` holds the raw bytes/str."""

    __slots__ = ("body", "content_type", "data", "headers", "method", "path", "request_id")

    def __init__(self, method: str, path: str, *, body: bytes | str | None = None, data: Any = None,
                 content_type: str = "", request_id: str = "local", headers: dict[str, Any] | None = None) -> None:
        self.method, self.path, self.body, self.data = method, path, body, data
        self.content_type, self.request_id = content_type, request_id
        self.headers = headers  # as the event had them (the v2 binary extension reads one)

    def header(self, name: str) -> str | None:
        """A request header by its lower-case name, whatever case the event spelled it in."""
        h = self.headers
        if not h:
            return None
        v = h.get(name)
        if v is None:
            v = next((val for k, val in h.items() if isinstance(k, str) and k.lower() == name), None)
        return None if v is None else str(v)


class Result:
    """A response plus what the metrics need to know about it."""

    __slots__ = ("category_values", "class_counts", "error_trace", "headers", "infer_ms", "input_values", "kind",
                 "metered", "missing_by_feature", "non_finite_rows", "oor_by_feature", "out_of_range", "payload",
                 "prediction_sum", "raw", "rows", "status", "unseen_by_feature")

    def __init__(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        self.status, self.payload, self.headers = status, payload, headers
        self.kind: str | None = None
        self.rows = 0
        self.infer_ms = 0.0
        self.class_counts: dict[str, int] | None = None
        self.prediction_sum: float | None = None
        self.input_values = 0
        self.out_of_range = 0
        self.oor_by_feature: dict[str, int] | None = None
        self.error_trace: str | None = None
        self.non_finite_rows = 0  # rows refused because their outputs held NaN or infinity
        self.metered = True  # counted in the metrics: inference requests and refusals, not health or documents
        self.raw: bytes | None = None  # a binary body (v2's binary tensor data), sent instead of the payload
        # tabular models: string values checked against the training categories, those unseen, per column,
        # and null values accepted, per column
        self.category_values = 0
        self.unseen_by_feature: dict[str, int] | None = None
        self.missing_by_feature: dict[str, int] | None = None

    def body(self) -> bytes:
        return self.raw if self.raw is not None else codec.dumps(self.payload)


class Model:
    """A loaded model and everything about it that can be worked out before the first request."""

    def __init__(self, document: model_json.ModelJson, session: Any, *, max_batch: int) -> None:
        self.document = document
        self.session = session
        self.name: str = document.name
        self.version: str = document.version or ""
        self.max_batch = max_batch
        self.capture: Any = None  # a handlers.capture.Capture when requests are sampled for drift
        sig = document.signature
        self.inputs = [TensorSpec(t) for t in sig.inputs]
        self.outputs = [TensorSpec(t) for t in sig.outputs]
        self.input_by_name = {t.name: t for t in self.inputs}
        self.input_index = {t.name: i for i, t in enumerate(self.inputs)}
        self.output_names = [t.name for t in self.outputs]
        self.output_by_name = {t.name: t for t in self.outputs}
        self.float_outputs = tuple(i for i, t in enumerate(self.outputs) if t.kind == "f")  # checked finite
        self.single = self.inputs[0] if len(self.inputs) == 1 else None
        roles = document.roles or model_json.Roles()
        self.task: str = document.task or "regression"
        self.label_names: list[str] = [str(n) for n in document.label_names or ()]
        self.scores_index = self.output_names.index(roles.scores) if roles.scores in self.output_names else None
        self.label_index = self.output_names.index(roles.label) if roles.label in self.output_names else None
        self.is_classifier = self.task == "classification" and bool(self.label_names)
        self.row_dict = _row_builder(self.label_names)
        self.input_names_text = ", ".join(t.name for t in self.inputs)
        self.feature_names: dict[str, list[str]] = {}
        self.bounds: dict[str, tuple[np.ndarray, np.ndarray, list[float], list[float]]] = {}
        profile = (document.profile.inputs if document.profile else None) or {}
        declared_names = document.feature_names or {}
        for spec in self.inputs:
            feats = profile.get(spec.name) or ()
            names = declared_names.get(spec.name) or [f.name for f in feats]
            self.feature_names[spec.name] = [str(n) if n is not None else str(i) for i, n in enumerate(names)]
            if feats and spec.kind in "fiu":
                # in the input's own dtype: comparing float32 rows to float64 bounds would cast every value
                bdt = spec.dtype if spec.kind == "f" else np.dtype(np.float64)
                lo = np.array([_num(f.q01, -math.inf) for f in feats], dtype=bdt)
                hi = np.array([_num(f.q99, math.inf) for f in feats], dtype=bdt)
                self.bounds[spec.name] = (lo, hi, lo.tolist(), hi.tolist())
        # tabular models (trained on a DataFrame): requests name columns, each held to its rules
        self.tabular = bool(document.tabular)
        rules = document.input_rules or {}
        self.columns: list[Any] = []
        if self.tabular:
            from handlers.inference.table import Column  # table imports this module

            self.columns = [Column(t.name, rules.get(t.name), t.kind) for t in self.inputs]
        self.column_set = frozenset(c.name for c in self.columns)
        self.json_bounds = json_bounds(self.inputs, max_batch, tabular=self.tabular)
        # declared (or embedding) ranges of other models' numeric inputs: outside is a 422
        self.ranges: dict[str, tuple[float, float]] = {
            name: (_num(r.min, -math.inf), _num(r.max, math.inf)) for name, r in rules.items()
            if not self.tabular and name in self.input_by_name and (r.min is not None or r.max is not None)}
        # documents that never change: built once
        self.health_doc = {"status": "ok", "model": self.name, "version": self.version,
                           "task": self.task, "signature": model_json.plain(sig),
                           "label_names": self.label_names, "max_batch_size": max_batch}
        if rules:
            self.health_doc["input_rules"] = {k: model_json.plain(v) for k, v in rules.items()}
        v2_types = {c.name: c.v2_type for c in self.columns}
        self.v2_metadata = {
            "name": self.name, "versions": [self.version], "platform": "onnxruntime_onnx",
            "inputs": [{"name": t.name, "datatype": v2_types.get(t.name, t.v2_type), "shape": t.v2_shape()}
                       for t in self.inputs],
            "outputs": [{"name": t.name, "datatype": t.v2_type, "shape": t.v2_shape()} for t in self.outputs],
        }
        self._openapi_doc: dict[str, Any] | None = None

    @property
    def openapi_doc(self) -> dict[str, Any]:
        """The endpoint's OpenAPI document, built on first use: GET /openapi.json is rare, and building it
        (with handlers.openapi's import) would lengthen every cold start."""
        if self._openapi_doc is None:
            from handlers import openapi

            self._openapi_doc = openapi.document(self)
        return self._openapi_doc


# A JSON body of a model whose rows have no fixed size (a dimension after the batch is dynamic) may hold
# this many values; parsed, a million numbers take about 30 MB of Python objects.
DYNAMIC_MAX_JSON_VALUES = 1_000_000
# What a request holds besides its rows: keys, a v2 request's name/shape/datatype/parameters, an id.
JSON_OVERHEAD = 64


@dataclass(frozen=True)
class JsonBounds:
    """The most values, lists and objects a valid JSON request of a model can hold, with room to spare
    (twice what max_batch rows of every input need, plus JSON_OVERHEAD each). A body holding more is
    refused before it is parsed (body.check_values), since parsing is what turns a few MB of text into
    hundreds of MB of Python objects; the three bounds apart, so a body of a million empty lists or
    objects (each a Python object of 56-64 bytes for 2-3 bytes of text) is refused too."""

    values: int
    lists: int
    objects: int


def json_bounds(inputs: list[TensorSpec], max_batch: int, *, tabular: bool) -> JsonBounds:
    if tabular:  # records: an object per row; columns: a list per column
        n = len(inputs)
        return JsonBounds(values=2 * max_batch * (2 * n + 1) + JSON_OVERHEAD, lists=2 * n + JSON_OVERHEAD,
                          objects=2 * max_batch + JSON_OVERHEAD)
    values = lists = 0
    for t in inputs:
        inner = t.shape[1:]
        if any(not isinstance(d, int) for d in inner):
            return JsonBounds(values=DYNAMIC_MAX_JSON_VALUES, lists=DYNAMIC_MAX_JSON_VALUES,
                              objects=JSON_OVERHEAD + 4 * len(inputs))
        dims = [int(d) for d in inner]
        values += max_batch * math.prod(dims)
        lists += 2 + max_batch * math.prod(dims[:-1])  # the batch's list, a list per row and inner row; v2's shape
    return JsonBounds(values=2 * (values + lists) + JSON_OVERHEAD, lists=2 * lists + JSON_OVERHEAD,
                      objects=JSON_OVERHEAD + 4 * len(inputs))


def _row_builder(labels: list[str]) -> Any:
    """row -> {label: score}. A dict display compiled once for these labels builds each row in less than
    half the time of dict(zip(...)); the label names are bound as values, never put into the source."""
    if not labels or len(labels) > 64:
        return lambda r: dict(zip(labels, r, strict=False))
    names = {f"k{i}": label for i, label in enumerate(labels)}
    src = "lambda r: {" + ", ".join(f"k{i}: r[{i}]" for i in range(len(labels))) + "}"
    return eval(src, {"__builtins__": {}, **names})  # the source holds only indexes and k0, k1...


def _num(value: Any, default: float) -> float:
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else default
