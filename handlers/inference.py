"""One ONNX model behind HTTP-shaped requests: load it once, validate each request against its
signature, run it, shape the response. Pure functions over a `Model` and a `Request`; no event
formats (events.py), no stdout (metrics.py), no environment variables (predict.py).

Imports only the standard library, numpy, onnxruntime and (when the image ships them) orjson and
pysimdjson; never packager/ or stacks/.
"""

from __future__ import annotations

import io
import json
import math
import re
import time
import traceback
from typing import Any

import numpy as np

from handlers import contract as C

orjson: Any
try:  # chosen by measurement: orjson decodes a 32x784 float body about 7x faster than json
    import orjson
except ImportError:  # pragma: no cover - the image always ships it; this keeps handlers/ importable
    orjson = None

simdjson: Any
try:  # chosen by measurement: reads rows of numbers into one buffer, never a Python float per value
    import simdjson
except ImportError:  # pragma: no cover - as for orjson
    simdjson = None

perf = time.perf_counter

if orjson is not None:
    _DUMPS_OPT = orjson.OPT_SERIALIZE_NUMPY

    def dumps(obj: Any) -> bytes:
        out: bytes = orjson.dumps(obj, option=_DUMPS_OPT)
        return out

    def loads(data: bytes | str) -> Any:
        return orjson.loads(data)

    DECODE_ERRORS: tuple[type[Exception], ...] = (orjson.JSONDecodeError, RecursionError, ValueError)
else:  # pragma: no cover

    def _to_builtin(obj: Any) -> Any:
        if isinstance(obj, np.ndarray | np.generic):
            return obj.tolist()
        raise TypeError(f"not JSON serializable: {type(obj).__name__}")

    def dumps(obj: Any) -> bytes:
        return json.dumps(obj, default=_to_builtin, separators=(",", ":")).encode()

    def loads(data: bytes | str) -> Any:
        return json.loads(data)

    DECODE_ERRORS = (ValueError, RecursionError, UnicodeDecodeError)

_NUMPY_ERRORS = (ValueError, TypeError, OverflowError, RecursionError, MemoryError)

# numpy dtype name -> Open Inference Protocol datatype
V2_TYPES = {
    "bool": "BOOL", "uint8": "UINT8", "uint16": "UINT16", "uint32": "UINT32", "uint64": "UINT64",
    "int8": "INT8", "int16": "INT16", "int32": "INT32", "int64": "INT64", "float16": "FP16",
    "float32": "FP32", "float64": "FP64", "str": "BYTES", "object": "BYTES", "string": "BYTES",
}
# datatype kinds a JSON value may arrive as, per target kind: a float input takes ints, an int input
# takes integral floats (checked separately), strings and bools only go where they belong
_ACCEPT = {"f": "fiu", "i": "iuf", "u": "iuf", "b": "b", "U": "U", "O": "U"}
_V2_KIND = {"BOOL": "b", "BYTES": "U"}
_V2_DTYPES = {v2: np.dtype(name) for name, v2 in V2_TYPES.items() if v2 != "BYTES"}


class RequestError(Exception):
    """A client mistake: becomes a 4xx with {code, message, path}."""

    def __init__(self, status: int, kind: str, message: str, path: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.kind, self.message, self.path = status, kind, message, path
        self.headers = headers or {}


class ModelLoadError(Exception):
    """model.json or model.onnx is missing or does not match: the function cannot start."""


class TensorSpec:
    __slots__ = ("dims", "dtype", "kind", "name", "rank", "row_width", "shape", "v2_type")

    def __init__(self, raw: dict[str, Any]) -> None:
        self.name: str = raw["name"]
        dtype = str(raw["dtype"])
        try:
            self.dtype = np.dtype(object) if dtype in ("str", "string", "object") else np.dtype(dtype)
        except TypeError:
            raise ValueError(f"tensor {self.name!r}: dtype {dtype!r} is not one numpy knows "
                             f"(re-export the model with this mlpack)") from None
        self.kind: str = "O" if self.dtype.kind == "O" else self.dtype.kind
        self.shape: list[int | str] = list(raw["shape"])
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

    __slots__ = ("body", "content_type", "data", "method", "path", "request_id")

    def __init__(self, method: str, path: str, *, body: bytes | str | None = None, data: Any = None,
                 content_type: str = "", request_id: str = "local") -> None:
        self.method, self.path, self.body, self.data = method, path, body, data
        self.content_type, self.request_id = content_type, request_id


class Result:
    """A response plus what the metrics need to know about it."""

    __slots__ = ("class_counts", "error_trace", "headers", "infer_ms", "input_values", "kind",
                 "oor_by_feature", "out_of_range", "payload", "prediction_sum", "rows", "status")

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

    def body(self) -> bytes:
        return dumps(self.payload)


class Model:
    """A loaded model and everything about it that can be worked out before the first request."""

    def __init__(self, meta: dict[str, Any], session: Any, *, max_batch: int) -> None:
        self.meta = meta
        self.session = session
        self.name: str = meta["name"]
        self.version: str = str(meta.get("version", ""))
        self.max_batch = max_batch
        sig = meta["signature"]
        self.inputs = [TensorSpec(t) for t in sig["inputs"]]
        self.outputs = [TensorSpec(t) for t in sig["outputs"]]
        self.input_by_name = {t.name: t for t in self.inputs}
        self.output_names = [t.name for t in self.outputs]
        self.output_by_name = {t.name: t for t in self.outputs}
        self.single = self.inputs[0] if len(self.inputs) == 1 else None
        roles = meta.get("roles") or {}
        self.task: str = meta.get("task", "regression")
        self.label_names: list[str] = [str(n) for n in meta.get("label_names") or []]
        self.scores_index = (self.output_names.index(roles["scores"])
                             if roles.get("scores") in self.output_names else None)
        self.label_index = (self.output_names.index(roles["label"])
                            if roles.get("label") in self.output_names else None)
        self.is_classifier = self.task == "classification" and bool(self.label_names)
        self.row_dict = _row_builder(self.label_names)
        self.input_names_text = ", ".join(t.name for t in self.inputs)
        self.feature_names: dict[str, list[str]] = {}
        self.bounds: dict[str, tuple[np.ndarray, np.ndarray, list[float], list[float]]] = {}
        profile = (meta.get("profile") or {}).get("inputs") or {}
        for spec in self.inputs:
            feats = profile.get(spec.name) or []
            names = (meta.get("feature_names") or {}).get(spec.name) or [f.get("name") for f in feats]
            self.feature_names[spec.name] = [str(n) if n is not None else str(i) for i, n in enumerate(names)]
            if feats and spec.kind in "fiu":
                # in the input's own dtype: comparing float32 rows to float64 bounds would cast every value
                bdt = spec.dtype if spec.kind == "f" else np.dtype(np.float64)
                lo = np.array([_num(f.get("q01"), -math.inf) for f in feats], dtype=bdt)
                hi = np.array([_num(f.get("q99"), math.inf) for f in feats], dtype=bdt)
                self.bounds[spec.name] = (lo, hi, lo.tolist(), hi.tolist())
        # documents that never change: built once
        self.health_doc = {"status": "ok", "model": self.name, "version": self.version,
                           "task": self.task, "signature": sig, "label_names": self.label_names,
                           "max_batch_size": max_batch}
        self.v2_metadata = {
            "name": self.name, "versions": [self.version], "platform": "onnxruntime_onnx",
            "inputs": [{"name": t.name, "datatype": t.v2_type, "shape": t.v2_shape()} for t in self.inputs],
            "outputs": [{"name": t.name, "datatype": t.v2_type, "shape": t.v2_shape()} for t in self.outputs],
        }
        from handlers import openapi  # only needed here, at init

        self.openapi_doc = openapi.document(self)


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


def session_options(intra_op_threads: int | None) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if intra_op_threads:
        opts.intra_op_num_threads = intra_op_threads
    opts.inter_op_num_threads = 1  # sequential execution: one request at a time per environment
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return opts


def threads_for_memory(memory_mb: int | None, cpus: int | None) -> int | None:
    """Lambda gives one vCPU per 1769 MB; more threads than vCPUs only adds contention."""
    if not memory_mb:
        return None
    n = max(1, round(memory_mb / C.MB_PER_VCPU))
    return min(n, cpus) if cpus else n


def load_model(model_dir: str, *, max_batch: int = C.DEFAULT_MAX_BATCH,
               intra_op_threads: int | None = None) -> Model:
    import os

    import onnxruntime as ort

    meta_path = os.path.join(model_dir, C.MODEL_JSON)
    onnx_path = os.path.join(model_dir, C.MODEL_FILE)
    try:
        with open(meta_path, "rb") as f:
            meta = loads(f.read())
    except OSError as e:
        raise ModelLoadError(f"cannot read {meta_path}: {e}") from e
    except DECODE_ERRORS as e:
        raise ModelLoadError(f"{meta_path} is not valid JSON: {e}") from e
    if not isinstance(meta, dict) or meta.get("format") != C.MODEL_FORMAT:
        raise ModelLoadError(f"{meta_path}: format must be {C.MODEL_FORMAT!r}")
    try:
        session = ort.InferenceSession(onnx_path, sess_options=session_options(intra_op_threads),
                                       providers=["CPUExecutionProvider"])
    except Exception as e:
        raise ModelLoadError(f"cannot load {onnx_path}: {e}") from e
    try:
        model = Model(meta, session, max_batch=max_batch)
    except (KeyError, TypeError, ValueError, AttributeError) as e:  # a hand-edited or foreign model.json
        what = f"missing {e}" if isinstance(e, KeyError) else str(e)
        raise ModelLoadError(f"{meta_path} does not describe the model ({what}); export it again with "
                             "`mlpack export`") from e
    actual = sorted(i.name for i in session.get_inputs())
    declared = sorted(t.name for t in model.inputs)
    if actual != declared:
        raise ModelLoadError(f"{meta_path}: signature inputs {declared} do not match model.onnx's {actual}")
    return model


# --- routing -------------------------------------------------------------------------------------


def handle(model: Model, req: Request) -> Result:
    """Answer one request. Never raises: client mistakes are 4xx, model failures 500."""
    try:
        route = _route(model, req.method, req.path)
        result: Result = route(model, req)
        return result
    except RequestError as e:
        return error_result(e)
    except _ModelFailure as e:
        res = Result(500, {"code": "model_error",
                           "message": f"the model failed on this request (request id {req.request_id})",
                           "path": None, "request_id": req.request_id})
        res.error_trace = e.trace
        res.rows = e.rows
        return res


def error_result(e: RequestError) -> Result:
    res = Result(e.status, {"code": e.kind, "message": e.message, "path": e.path}, e.headers or None)
    res.kind = e.kind
    return res


def _route(model: Model, method: str, path: str) -> Any:
    if len(path) > 1 and path.endswith("/"):
        path = path.rstrip("/")
    if path == "/predict":
        allowed = {"POST": _predict_route}
    elif path == "/health":
        allowed = {"GET": _health_route}
    elif path == "/openapi.json":
        allowed = {"GET": _openapi_route}
    elif path.startswith("/v2/models/"):
        rest = path[len("/v2/models/"):]
        name, _, tail = rest.partition("/")
        if tail not in ("", "infer"):
            raise _not_found(path)
        if name != model.name:
            raise RequestError(404, "unknown_route", f"no model named {name!r} here; this endpoint serves "
                               f"{model.name!r}", "path")
        allowed = {"POST": _v2_infer_route} if tail == "infer" else {"GET": _v2_metadata_route}
    else:
        raise _not_found(path)
    fn = allowed.get(method)
    if fn is None:
        allow = ", ".join(allowed)
        raise RequestError(405, "method_not_allowed", f"{method} is not allowed on {path}; use {allow}",
                           "method", {"Allow": allow})
    return fn


def _not_found(path: str) -> RequestError:
    routes = ", ".join(f"{m} {p}" for m, p in C.ROUTES)
    return RequestError(404, "unknown_route", f"no route {path!r}; routes: {routes}", "path")


def _health_route(model: Model, req: Request) -> Result:
    return Result(200, model.health_doc)


def _openapi_route(model: Model, req: Request) -> Result:
    return Result(200, model.openapi_doc)


def _v2_metadata_route(model: Model, req: Request) -> Result:
    return Result(200, model.v2_metadata)


# --- decoding ------------------------------------------------------------------------------------


def _media_type(req: Request) -> str:
    ct = req.content_type
    if not ct:
        return "json"
    ct = ct.partition(";")[0].strip().lower()
    if ct == C.JSON_CONTENT_TYPE or ct.endswith("+json") or ct in ("text/json", "*/*"):
        return "json"
    if ct == C.NPY_CONTENT_TYPE:
        return "npy"
    raise RequestError(415, "unsupported_media_type",
                       f"unsupported Content-Type {ct!r}; send {C.JSON_CONTENT_TYPE} or {C.NPY_CONTENT_TYPE}",
                       "headers.content-type")


def _check_size(body: bytes | str) -> None:
    if len(body) > C.MAX_BODY_BYTES:
        raise RequestError(413, "too_large", f"body is {len(body):,} bytes; the limit is "
                           f"{C.MAX_BODY_BYTES:,} (Lambda's payload limit): send smaller batches", "body")


def decode_json(req: Request) -> Any:
    if req.data is not None:
        return req.data
    body = req.body
    if body is None or len(body) == 0:
        raise RequestError(400, "bad_request", "the request has no body; send a JSON object", "body")
    _check_size(body)
    try:
        return loads(body)
    except DECODE_ERRORS as e:
        raise RequestError(400, "bad_json", f"body is not valid JSON: {e}", "body") from None


def _decode_npy(req: Request) -> np.ndarray:
    body = req.body
    if body is None or len(body) == 0:
        raise RequestError(400, "bad_request", "the request has no body; send a .npy array", "body")
    if isinstance(body, str):
        raise RequestError(400, "bad_request", "a .npy body must be binary (base64-encoded in the event)",
                           "body")
    _check_size(body)
    arr = _npy_fast(body)
    if arr is not None:
        return arr
    try:
        arr = np.load(io.BytesIO(body), allow_pickle=False)
    except Exception as e:  # numpy raises ValueError, EOFError, OSError... for broken files
        raise RequestError(400, "bad_request", f"body is not a valid .npy array: {e}", "body") from None
    if not isinstance(arr, np.ndarray):
        raise RequestError(400, "bad_request", "body is an .npz archive; send a single .npy array", "body")
    return arr


_NPY_HEADER = re.compile(r"\{'descr': '([<>|=][a-z]\d{1,2})', 'fortran_order': (True|False), "
                         r"'shape': \(((?:\d+, ?)*\d*)\),? ?\} *\n?")


def _npy_fast(body: bytes) -> np.ndarray | None:
    """A version-1 .npy of a plain numeric dtype, read without copying; None sends it to np.load, which
    handles every other case (and costs a literal_eval of the header)."""
    if len(body) < 10 or body[:8] != b"\x93NUMPY\x01\x00":
        return None
    hlen = int.from_bytes(body[8:10], "little")
    m = _NPY_HEADER.fullmatch(body[10:10 + hlen].decode("latin-1"))
    if m is None:
        return None
    try:
        dtype = np.dtype(m.group(1))
    except TypeError:  # e.g. '<f3': a descr the pattern admits but numpy does not know
        return None
    if dtype.kind not in "biuf":
        return None
    shape = tuple(int(d) for d in m.group(3).replace(" ", "").split(",") if d)
    count = math.prod(shape)
    if len(body) - 10 - hlen != count * dtype.itemsize:
        return None  # np.load names the problem
    arr = np.frombuffer(body, dtype=dtype, count=count, offset=10 + hlen)
    return arr.reshape(shape[::-1]).T if m.group(2) == "True" else arr.reshape(shape)


# --- validation ----------------------------------------------------------------------------------


def _bad(path: str, message: str) -> RequestError:
    return RequestError(422, "bad_input", message, path)


def _index_path(path: str, idx: Any) -> str:
    return path + "".join(f"[{int(i)}]" for i in idx)


def to_array(model: Model, spec: TensorSpec, value: Any, path: str, *, shape: list[int] | None = None,
             declared: str | None = None, numbers_only: bool = False) -> np.ndarray:
    """A JSON value (nested lists) or a decoded array -> a validated array of the input's dtype.

    declared: a v2 tensor's datatype; its values must fit it as well as the input's dtype.
    numbers_only: the caller has checked that the JSON text holds nothing but numbers here, so numpy
    may convert straight to the input's dtype (one pass over the values instead of two)."""
    if numbers_only and isinstance(value, list):
        try:
            arr = np.array(value, dtype=spec.dtype)
        except _NUMPY_ERRORS:
            raise _diagnose(spec, value, path, shape) from None
        kind = spec.kind
    elif isinstance(value, np.ndarray):
        arr = value
        if shape is not None:  # a v2 tensor's flat data, read by _v2_fast
            if arr.size != math.prod(shape):
                raise _bad(path, f"has {arr.size} values but shape {shape} needs {math.prod(shape)}")
            arr = arr.reshape(shape)
    else:
        if not isinstance(value, list):
            raise _bad(path, f"must be a list (a batch of shape {spec.shape_text()}), got {_jtype(value)}")
        try:
            arr = np.array(value)
        except _NUMPY_ERRORS:
            raise _diagnose(spec, value, path, shape) from None
        if shape is not None:
            if arr.size != math.prod(shape):
                raise _bad(path, f"has {arr.size} values but shape {shape} needs "
                           f"{math.prod(shape)}")
            arr = arr.reshape(shape)
    if not numbers_only:
        kind = arr.dtype.kind
    if kind not in _ACCEPT[spec.kind]:
        if arr.size == 0 and kind == "f":
            pass  # an empty list has no values to be wrong; the shape check below names it
        elif isinstance(value, list):
            raise _diagnose(spec, value, path, shape)
        else:
            raise _bad(path, f"has dtype {arr.dtype}, which cannot be cast to {spec.dtype} without changing "
                       "values")
    if arr.ndim != spec.rank:
        hint = ""
        if arr.ndim == spec.rank - 1 and spec.rank == 2:
            hint = "; wrap a single row in a list: [[...]]"
        raise _bad(path, f"has {arr.ndim} dimension(s) {list(arr.shape)}, expected {spec.rank} "
                   f"{spec.shape_text()}{hint}")
    n = arr.shape[0]
    if n == 0:
        raise _bad(path, "is an empty batch; send at least one row")
    for i, d in spec.dims:
        if arr.shape[i] != d:
            feats = model.feature_names.get(spec.name) or []
            what = f" ({', '.join(feats)})" if i == 1 and feats and len(feats) == d else ""
            raise _bad(_index_path(path, [0] * i), f"has length {arr.shape[i]}, expected {d}{what}")
    if n > model.max_batch:
        raise RequestError(413, "too_large", f"batch of {n} rows is over the maximum of {model.max_batch}; "
                           "split it into smaller requests", path)
    if declared is not None:
        _check_declared(arr, declared, value, path)
    if spec.kind in "fc":
        if arr.dtype.kind in "iu" and spec.dtype.itemsize < 8:
            # JSON numbers become doubles first on every other path (orjson's floats, numpy reading Python
            # ints, simdjson): the same here, so that an integer above 2**53 rounds the same way whatever
            # else the body holds
            arr = arr.astype(np.float64)
        if arr.dtype != spec.dtype:
            # a value beyond float32's range becomes inf here and is refused just below; numpy's
            # overflow warning is silenced by predict.py (a context manager would cost more than the cast)
            arr = arr.astype(spec.dtype)
        # on a few values Python's isfinite beats numpy's reductions (as in _profile); on many, a sum is one
        # pass, and only a non-finite sum needs the element-wise look
        finite = (all(map(math.isfinite, arr.ravel().tolist())) if arr.size <= 32
                  else math.isfinite(arr.sum()) or bool(np.isfinite(arr).all()))
        if not finite:
            where, orig = _at(path, value, arr, np.argwhere(~np.isfinite(arr))[0])
            raise _bad(where, f"must be a finite {spec.dtype} number (got {orig})")
    elif spec.kind in "iu":
        fault = _int_fault(arr, spec.dtype)
        if fault is not None:
            where, orig = _at(path, value, arr, fault[0])
            raise _bad(where, f"must be an integer for {spec.dtype} (got {orig})" if fault[1] == "integer"
                       else f"is out of range for {spec.dtype} (got {orig})")
        arr = arr.astype(spec.dtype, copy=False)
    elif spec.kind == "O":
        arr = arr.astype(object)
    else:
        arr = arr.astype(spec.dtype, copy=False)
    if not arr.flags.c_contiguous:
        arr = np.ascontiguousarray(arr)
    return arr


def _at(path: str, value: Any, arr: np.ndarray, idx: Any) -> tuple[str, str]:
    """Where element `idx` of `arr` is in the request, and its value as the client wrote it. A v2
    tensor's data may be flat, or nested in another shape, while `arr` already has the tensor's shape."""
    aidx = tuple(int(i) for i in idx)
    vidx = aidx
    if isinstance(value, list):
        vshape, v = [], value
        while isinstance(v, list) and v:
            vshape.append(len(v))
            v = v[0]
        if tuple(vshape) != arr.shape and math.prod(vshape) == arr.size:
            vidx = tuple(int(i) for i in np.unravel_index(np.ravel_multi_index(aidx, arr.shape), vshape))
        try:
            v = value
            for i in vidx:
                v = v[i]
            return _index_path(path, vidx), json.dumps(v)
        except (IndexError, TypeError, ValueError):
            pass
    return _index_path(path, vidx), str(arr[aidx])


def _int_fault(arr: np.ndarray, dtype: np.dtype[Any]) -> tuple[Any, str] | None:
    """The index of the first value of a numeric array that the integer `dtype` cannot hold, and why
    ("integer": not a whole number; "range": outside the dtype's range), or None."""
    if arr.size == 0 or np.can_cast(arr.dtype, dtype):
        return None
    info = np.iinfo(dtype)
    if arr.dtype.kind == "f":
        bad = ~np.isfinite(arr) | (arr != np.floor(arr))
        if bad.any():
            return np.argwhere(bad)[0], "integer"
        # float(info.max) rounds up (int64's 2**63 - 1 becomes 2**63): compare with max + 1, which a float
        # holds exactly
        out = (arr < info.min) | (arr >= float(info.max + 1))
    else:
        out = (arr < info.min) | (arr > info.max)
    return (np.argwhere(out)[0], "range") if out.any() else None


def _check_declared(arr: np.ndarray, declared: str, value: Any, path: str) -> None:
    """A v2 tensor's values must fit the datatype it declares, as Triton and KServe require: integers for
    INT*/UINT* and within their range, numbers within FP16/FP32's range. BOOL and BYTES tensors reach only
    bool and string inputs (parse_v2), whose own checks apply. A boolean among numbers is read as a number,
    as /predict reads it."""
    want = _V2_DTYPES[declared]
    if arr.size == 0 or want.kind not in "iuf" or arr.dtype.kind not in "iuf" or want == np.float64:
        return  # (every JSON number is a finite double)
    if want.kind in "iu":
        fault = _int_fault(arr, want)
    else:  # out of range = becomes inf in the datatype (65519 still rounds to FP16's 65504; 65520 does not)
        out = np.isinf(arr.astype(want)) & np.isfinite(arr)
        fault = (np.argwhere(out)[0], "range") if out.any() else None
    if fault is not None:
        where, orig = _at(path, value, arr, fault[0])
        if fault[1] == "integer":
            raise _bad(where, f"must be an integer: the tensor's datatype is {declared} (got {orig})")
        raise _bad(where, f"is out of range for {declared}, the tensor's datatype (got {orig})")


def _jtype(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, int | float):
        return f"a number ({v!r})"
    if isinstance(v, str):
        return f"a string ({v[:40]!r})"
    if isinstance(v, dict):
        return "an object"
    if isinstance(v, list):
        return "a list"
    return type(v).__name__


def _diagnose(spec: TensorSpec, value: Any, path: str, shape: list[int] | None) -> RequestError:
    """numpy refused or mistyped the value: walk it to name the first element at fault."""
    want = {"f": "a number", "i": "an integer", "u": "an integer", "b": "true or false",
            "U": "a string", "O": "a string"}[spec.kind]
    depth = spec.rank if shape is None else len(shape)

    def scalar_ok(v: Any) -> bool:
        if spec.kind in "fiu":
            return isinstance(v, int | float) and not isinstance(v, bool)
        if spec.kind == "b":
            return isinstance(v, bool)
        return isinstance(v, str)

    def walk(v: Any, p: str, level: int, expect_len: list[int | None]) -> RequestError | None:
        if isinstance(v, list):
            if level >= depth and shape is None:
                return _bad(p, f"is nested too deeply: expected {want} at this level "
                            f"(shape {spec.shape_text()})")
            if level < len(expect_len) and expect_len[level] is not None and len(v) != expect_len[level]:
                return _bad(p, f"has length {len(v)}, but its siblings have length {expect_len[level]}")
            if level < len(expect_len) and expect_len[level] is None:
                expect_len[level] = len(v)
            for i, item in enumerate(v):
                err = walk(item, f"{p}[{i}]", level + 1, expect_len)
                if err:
                    return err
            return None
        if shape is None and level < depth:
            return _bad(p, f"must be a list (shape {spec.shape_text()}), got {_jtype(v)}")
        if not scalar_ok(v):
            return _bad(p, f"must be {want} for {spec.dtype}, got {_jtype(v)}")
        if spec.kind in "iu" and isinstance(v, int) and not np.can_cast(np.min_scalar_type(v), spec.dtype):
            return _bad(p, f"is out of range for {spec.dtype}")
        return None

    try:
        found = walk(value, path, 0, [None] * 64)
    except RecursionError:
        found = _bad(path, "is nested too deeply")
    return found or _bad(path, f"cannot be read as {spec.dtype} with shape {spec.shape_text()}")


# --- /predict ------------------------------------------------------------------------------------


def parse_predict(model: Model, req: Request) -> dict[str, np.ndarray]:
    """The feeds for session.run from a /predict request, or a RequestError naming the fault."""
    if req.data is None and _media_type(req) == "npy":
        if model.single is None:
            raise RequestError(415, "unsupported_media_type",
                               f"a .npy body works only for single-input models; this one has inputs "
                               f"{model.input_names_text}: send JSON", "headers.content-type")
        return {model.single.name: to_array(model, model.single, _decode_npy(req), "body")}
    spec, body = model.single, req.body
    if (spec is not None and spec.row_width is not None and body is not None
            and _ROWS_FAST_MIN < len(body) <= C.MAX_BODY_BYTES):
        read = _rows_fast(body, spec.row_width)
        if read is not None:
            try:
                return {spec.name: to_array(model, spec, read, "inputs")}
            except RequestError:
                pass  # refused: the checked path below refuses it too, naming the value as the client wrote it
    obj = decode_json(req)
    if not isinstance(obj, dict):
        raise RequestError(400, "bad_request", f'expected a JSON object like {{"inputs": [[...]]}}, got '
                           f"{_jtype(obj)}", "body")
    if "inputs" not in obj:
        raise RequestError(400, "bad_request", 'missing "inputs": send {"inputs": [[...], ...]}', "inputs")
    extra = [k for k in obj if k != "inputs"]
    if extra:
        raise RequestError(400, "bad_request", f"unknown field {extra[0]!r}; a request has only \"inputs\"",
                           str(extra[0]))
    inputs = obj["inputs"]
    if isinstance(inputs, list):
        if model.single is None:
            raise _bad("inputs", f"this model has {len(model.inputs)} inputs ({model.input_names_text}): "
                       'send {"inputs": {"<name>": [...], ...}}')
        # worth its scans only on bodies big enough for the saved pass over the values to matter
        fast = (model.single.kind == "f" and req.data is None and body is not None
                and len(body) > _NUMBERS_ONLY_MIN and _numbers_only(body))
        return {model.single.name: to_array(model, model.single, inputs, "inputs", numbers_only=fast)}
    if not isinstance(inputs, dict):
        raise RequestError(400, "bad_request", f'"inputs" must be a list of rows or an object of named '
                           f"inputs, got {_jtype(inputs)}", "inputs")
    for name in inputs:
        if name not in model.input_by_name:
            raise _bad(f"inputs.{name}", f"unknown input {name!r}; the model's inputs are "
                       f"{model.input_names_text}")
    feeds = {}
    for spec in model.inputs:
        if spec.name not in inputs:
            raise _bad(f"inputs.{spec.name}", f"missing input {spec.name!r} (shape {spec.shape_text()})")
        feeds[spec.name] = to_array(model, spec, inputs[spec.name], f"inputs.{spec.name}")
    rows = {a.shape[0] for a in feeds.values()}
    if len(rows) > 1:
        raise _bad("inputs", f"inputs have different batch sizes: {sorted(rows)}")
    return feeds


# The checked path scans a body this big for strings and literals first: with none, numpy reads the
# rows straight into the input's dtype (one pass over the values instead of two)
_NUMBERS_ONLY_MIN = 2048
# Below this, orjson and np.array are as fast or faster (measured: one row of 100 numbers, 2 KB, took the same
# time either way; 32 rows of 4, 2.5 KB, took longer with simdjson, which pays per row)
_ROWS_FAST_MIN = 4096
_PARSER = simdjson.Parser() if simdjson is not None else None
_BOMS = ("\ufeff", b"\xef")


def _rows_fast(body: bytes | str, width: int) -> np.ndarray | None:
    """{"inputs": [[n, ...], ...]} with rows of `width` numbers, as a float64 array read by simdjson straight
    from the text: about half the time of making a Python float of each value and then an array of those.

    None for anything else (other keys, strings, booleans, null, ragged or deeper rows, numbers simdjson
    cannot read, invalid JSON, no simdjson): the checked path decides those. Every path reads a JSON
    number as a double first and then casts it to the input's dtype, so an answer never depends on which
    path a body took."""
    if _PARSER is None or body[:1] in _BOMS:  # simdjson skips a byte order mark; orjson refuses it
        return None
    doc = rows = row = None
    try:
        doc = _PARSER.parse(body)
        if type(doc) is not simdjson.Object or len(doc) != 1:
            return None
        rows = doc["inputs"]  # KeyError when the one key is another
        if type(rows) is not simdjson.Array:
            return None
        n = len(rows)
        if n == 0:
            return None
        for row in rows:
            if type(row) is not simdjson.Array or len(row) != width:
                return None
        # n rows of `width` elements, but an element may itself be a list: as_buffer would flatten it. No
        # strings can hold a "[" (as_buffer takes numbers only, the one key is "inputs"), so the text has
        # exactly n + 1 of them unless something is nested deeper.
        if not _brackets_at_most(body, n + 1):
            return None
        flat = rows.as_buffer(of_type="d")  # TypeError for a string, boolean or null among the numbers
    except (ValueError, TypeError, KeyError, RuntimeError):  # RuntimeError: the parser is still in use
        return None
    finally:
        doc = rows = row = None  # proxies into the parser's document: the next parse needs them gone
    return np.frombuffer(flat, dtype=np.float64).reshape(n, width)


def _brackets_at_most(body: bytes | str, n: int) -> bool:
    """Whether the text holds at most n "[" characters: one memchr scan, in at most n + 1 steps."""
    bracket: Any = "[" if isinstance(body, str) else b"["
    at = -1
    for _ in range(n + 1):
        at = body.find(bracket, at + 1)
        if at < 0:
            return True
    return False


# A v2 tensor's data shorter than this is read as a list: a buffer pays off on long runs of numbers
_V2_BUFFER_MIN = 64


def _v2_fast(model: Model, body: bytes | str) -> dict[str, Any] | None:
    """A v2 request as orjson would decode it, except that each tensor's "data" of numbers for a numeric
    input is an array read by simdjson straight from the text (float64 for a float input, int64 for an
    integer one, so no value changes on the way). None when simdjson cannot read the body or the body
    is not one this can vouch for; parse_v2 then decodes it with orjson.

    Nested data would be flattened by as_buffer, so the text must hold no "[" beyond the arrays counted
    here: a string holding one only sends the body to the checked path. Duplicate keys (orjson keeps the
    last, simdjson's lookup finds the first) send it there too."""
    if _PARSER is None or body[:1] in _BOMS:
        return None
    doc: Any = None
    raw_inputs: Any = None
    tensor: Any = None
    data: Any = None
    arrays = 0

    def plain(v: Any) -> Any:  # what orjson would give; every list counted
        nonlocal arrays
        if type(v) is simdjson.Object:
            v = v.as_dict()
        elif type(v) is simdjson.Array:
            v = v.as_list()
        stack = [v]
        while stack:
            x = stack.pop()
            if isinstance(x, list):
                arrays += 1
                stack.extend(x)
            elif isinstance(x, dict):
                stack.extend(x.values())
        return v

    def keys(o: Any) -> list[str] | None:
        ks = list(o.keys())
        return ks if len(set(ks)) == len(ks) else None

    try:
        doc = _PARSER.parse(body)
        top = keys(doc) if type(doc) is simdjson.Object else None
        if top is None or "inputs" not in top:
            return None
        raw_inputs = doc["inputs"]
        if type(raw_inputs) is not simdjson.Array:
            return None  # nothing to gain; and the checked path words the fault
        obj = {k: plain(doc[k]) for k in top if k != "inputs"}
        arrays += 1
        tensors: list[Any] = []
        for tensor in raw_inputs:
            if type(tensor) is not simdjson.Object:
                tensors.append(plain(tensor))
                continue
            names = keys(tensor)
            if names is None:
                return None
            t = {k: plain(tensor[k]) for k in names if k != "data"}
            if "data" in names:
                data = tensor["data"]
                name = t.get("name")
                array = _data_array(data, model.input_by_name.get(name) if isinstance(name, str) else None)
                if array is None:
                    t["data"] = plain(data)
                else:
                    t["data"] = array
                    arrays += 1
            tensors.append({k: t[k] for k in names})  # the client's key order, as orjson keeps it
        obj["inputs"] = tensors
        if not _brackets_at_most(body, arrays):
            return None
    except (ValueError, TypeError, KeyError, RuntimeError, RecursionError):
        return None
    finally:
        doc = raw_inputs = tensor = data = None  # proxies into the parser's document: the next parse needs them gone
    return {k: obj[k] for k in top}


def _data_array(data: Any, spec: TensorSpec | None) -> np.ndarray | None:
    """A v2 tensor's data (a simdjson proxy) as a flat array for a numeric input: float64 for a float
    input, int64 for an integer one, so no value changes on the way; None when it is short, not a list
    or not all numbers (TypeError) or holds an integer beyond int64 (ValueError)."""
    if type(data) is not simdjson.Array or spec is None or spec.kind not in "fiu" or len(data) < _V2_BUFFER_MIN:
        return None
    float_input = spec.kind == "f"
    try:
        buf = data.as_buffer(of_type="d" if float_input else "i")
    except (TypeError, ValueError):
        return None
    return np.frombuffer(buf, dtype=np.float64 if float_input else np.int64)


def _numbers_only(body: Any) -> bool:
    """True when the body is {"inputs": ...} with no other string, true, false or null in it: then
    numpy can read the rows straight into the input's dtype. A few memchr scans, no copy."""
    quote: Any
    key: Any
    letters: Any
    if isinstance(body, str):
        quote, key, letters = '"', "inputs", "tfn"
    elif isinstance(body, bytes):
        quote, key, letters = b'"', b"inputs", (b"t", b"f", b"n")
    else:
        return False
    i = body.find(quote)
    j = body.find(quote, i + 1) if i >= 0 else -1
    if j < 0 or body[i + 1:j] != key or body.find(quote, j + 1) >= 0:
        return False
    return all(body.find(c, j) < 0 for c in letters)


class _ModelFailure(Exception):
    def __init__(self, trace: str, rows: int) -> None:
        super().__init__(trace)
        self.trace, self.rows = trace, rows


def run(model: Model, feeds: dict[str, np.ndarray], res_rows: int) -> tuple[list[Any], float]:
    t = perf()
    try:
        outs = model.session.run(model.output_names, feeds)
    except Exception:
        raise _ModelFailure(traceback.format_exc(), res_rows) from None
    return outs, (perf() - t) * 1000.0


def _profile(model: Model, feeds: dict[str, np.ndarray], res: Result) -> None:
    """Count values outside the training profile's [q01, q99], per feature."""
    for name, (lo, hi, lo_list, hi_list) in model.bounds.items():
        x = feeds[name]
        x = x.reshape(x.shape[0], -1)
        if x.shape[1] != len(lo_list):
            continue
        res.input_values += x.size
        hits: dict[int, int] = {}
        if x.size <= 32:  # a few values: a Python loop costs a fraction of four numpy calls
            for row in x.tolist():
                for j, v in enumerate(row):
                    if v < lo_list[j] or v > hi_list[j]:
                        hits[j] = hits.get(j, 0) + 1
        else:
            below = x < lo
            above = x > hi
            if np.count_nonzero(below) or np.count_nonzero(above):
                counts = below.sum(axis=0) + above.sum(axis=0)
                hits = {int(j): int(counts[j]) for j in np.flatnonzero(counts)}
        if hits:
            names = model.feature_names[name]
            by = res.oor_by_feature if res.oor_by_feature is not None else {}
            for j, n in hits.items():
                key = names[j] if j < len(names) else f"{name}[{j}]"
                by[key] = by.get(key, 0) + n
                res.out_of_range += n
            res.oor_by_feature = by


def _predict_route(model: Model, req: Request) -> Result:
    feeds = parse_predict(model, req)
    rows = next(iter(feeds.values())).shape[0]
    outs, infer_ms = run(model, feeds, rows)
    res = Result(200, None)
    res.rows, res.infer_ms = rows, infer_ms
    _profile(model, feeds, res)
    res.payload = {"model": model.name, "version": model.version, "outputs": shape_outputs(model, outs, res)}
    return res


def shape_outputs(model: Model, outs: list[Any], res: Result) -> dict[str, Any]:
    """Classifier outputs become label names and per-label scores; other outputs pass through."""
    result: dict[str, Any] = {}
    names = model.output_names
    if model.is_classifier and (model.scores_index is not None or model.label_index is not None):
        labels = model.label_names
        idx: list[int] | None = None
        if model.scores_index is not None:
            scores = np.asarray(outs[model.scores_index])
            if scores.ndim != 2:
                scores = scores.reshape(scores.shape[0], -1)
            rows = scores.tolist()
            # label names follow the score columns, so the arg-max names the class whatever values the
            # model's own label output uses; on a few rows Python's max beats numpy's call overhead
            idx = [r.index(max(r)) for r in rows] if len(rows) <= 16 else scores.argmax(axis=1).tolist()
            if scores.shape[1] == len(labels):
                result[names[model.scores_index]] = list(map(model.row_dict, rows))
            else:
                result[names[model.scores_index]] = scores
        elif model.label_index is not None:
            raw = np.asarray(outs[model.label_index]).reshape(-1)
            if raw.dtype.kind in "iu" and raw.size and raw.min() >= 0 and raw.max() < len(labels):
                idx = raw.tolist()
            else:
                result["label"] = raw.astype(str).tolist()
        if idx is not None:
            names_out = [labels[i] for i in idx]
            counts: dict[str, int] = {}
            for n in names_out:
                counts[n] = counts.get(n, 0) + 1
            result["label"] = names_out
            res.class_counts = counts
        for i, out in enumerate(outs):
            if i not in (model.scores_index, model.label_index):
                result[names[i]] = out
        return result
    for i, out in enumerate(outs):
        arr = np.asarray(out)
        if arr.ndim == 2 and arr.shape[1] == 1:
            arr = arr.reshape(-1)  # one target per row: a list of numbers, not of 1-lists
        result[names[i]] = arr
    if outs:
        first = np.asarray(outs[0])
        if first.dtype.kind == "f" and first.size:
            res.prediction_sum = float(first.reshape(first.shape[0], -1)[:, 0].sum())
    return result


# --- Open Inference Protocol v2 -----------------------------------------------------------------


def parse_v2(model: Model, req: Request) -> tuple[dict[str, np.ndarray], list[str], Any]:
    if req.data is None and _media_type(req) != "json":
        raise RequestError(415, "unsupported_media_type", "the v2 protocol takes a JSON body",
                           "headers.content-type")
    body = req.body
    if req.data is None and body is not None and _ROWS_FAST_MIN < len(body) <= C.MAX_BODY_BYTES:
        fast = _v2_fast(model, body)
        if fast is not None:
            try:
                return _parse_v2_obj(model, fast)
            except RequestError:
                pass  # refused: the checked path below refuses it too, naming the value as the client wrote it
    return _parse_v2_obj(model, decode_json(req))


def _parse_v2_obj(model: Model, obj: Any) -> tuple[dict[str, np.ndarray], list[str], Any]:
    if not isinstance(obj, dict):
        raise RequestError(400, "bad_request", f"expected a JSON object, got {_jtype(obj)}", "body")
    inputs = obj.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise RequestError(400, "bad_request", '"inputs" must be a non-empty list of tensors '
                           '({"name", "shape", "datatype", "data"})', "inputs")
    feeds: dict[str, np.ndarray] = {}
    for i, t in enumerate(inputs):
        p = f"inputs[{i}]"
        if not isinstance(t, dict):
            raise RequestError(400, "bad_request", f"must be an object, got {_jtype(t)}", p)
        for key in ("name", "shape", "datatype", "data"):
            if key not in t:
                raise RequestError(400, "bad_request", f"missing {key!r}", f"{p}.{key}")
        name = t["name"]
        spec = model.input_by_name.get(name) if isinstance(name, str) else None
        if spec is None:
            raise _bad(f"{p}.name", f"unknown input {name!r}; the model's inputs are {model.input_names_text}")
        if name in feeds:
            raise _bad(f"{p}.name", f"input {name!r} given twice")
        dt = t["datatype"]
        if not isinstance(dt, str) or dt not in set(V2_TYPES.values()):
            raise _bad(f"{p}.datatype", f"unknown datatype {dt!r}; this input is {spec.v2_type}")
        dt_kind = _V2_KIND.get(dt, "f" if dt.startswith("FP") else "i")
        if dt_kind not in _ACCEPT[spec.kind]:
            raise _bad(f"{p}.datatype", f"datatype {dt} cannot be cast to this input's {spec.v2_type}")
        shape = t["shape"]
        if (not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                                                   for d in shape)):
            raise _bad(f"{p}.shape", f"must be a list of non-negative integers, got {shape!r}")
        if len(shape) != spec.rank:
            raise _bad(f"{p}.shape", f"has {len(shape)} dimension(s), expected {spec.rank} "
                       f"{spec.shape_text()}")
        data = t["data"]
        if not isinstance(data, list | np.ndarray):  # an array: read by _v2_fast
            raise _bad(f"{p}.data", f"must be a list, got {_jtype(data)}")
        feeds[name] = to_array(model, spec, data, f"{p}.data", shape=shape, declared=dt)
    for spec in model.inputs:
        if spec.name not in feeds:
            raise _bad("inputs", f"missing input {spec.name!r} ({spec.v2_type} {spec.shape_text()})")
    rows = {a.shape[0] for a in feeds.values()}
    if len(rows) > 1:
        raise _bad("inputs", f"inputs have different batch sizes: {sorted(rows)}")
    wanted = model.output_names
    req_out = obj.get("outputs")
    if req_out is not None:
        if not isinstance(req_out, list):
            raise RequestError(400, "bad_request", '"outputs" must be a list of {"name": ...}', "outputs")
        wanted = []
        for i, o in enumerate(req_out):
            oname = o.get("name") if isinstance(o, dict) else None
            if not isinstance(oname, str) or oname not in model.output_by_name:
                raise _bad(f"outputs[{i}].name", f"unknown output {oname!r}; the model's outputs are "
                           f"{', '.join(model.output_names)}")
            wanted.append(oname)
    rid = obj.get("id")
    return feeds, wanted, rid if isinstance(rid, str) else None


def _v2_infer_route(model: Model, req: Request) -> Result:
    feeds, wanted, rid = parse_v2(model, req)
    rows = next(iter(feeds.values())).shape[0]
    outs, infer_ms = run(model, feeds, rows)
    res = Result(200, None)
    res.rows, res.infer_ms = rows, infer_ms
    _profile(model, feeds, res)
    shape_outputs(model, outs, res)  # for the prediction metrics only; v2 answers raw tensors
    by_name = dict(zip(model.output_names, outs, strict=True))
    tensors = []
    for name in wanted:
        arr = np.asarray(by_name[name])
        data = arr.astype(str).reshape(-1).tolist() if arr.dtype.kind in "OUS" else arr.reshape(-1)
        tensors.append({"name": name, "datatype": model.output_by_name[name].v2_type,
                        "shape": list(arr.shape), "data": data})
    payload: dict[str, Any] = {"model_name": model.name, "model_version": model.version, "outputs": tensors}
    if rid is not None:
        payload["id"] = rid
    res.payload = payload
    return res
