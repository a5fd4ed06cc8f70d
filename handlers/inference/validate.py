"""Validation: one input's value, as the client sent it, against that input's TensorSpec.

In: a decoded JSON value (nested lists) or an array (a .npy body, or a buffer a simdjson fast path read),
with the path of the field it came from. Out: a C-contiguous array of the input's dtype, ready for
session.run (to_array), or a RequestError naming the first element at fault by its path in the request
(inputs[7][3]) and its value as the client wrote it. Also the helpers the parsers share to word their
own faults: _bad (a 422) and _jtype (what a JSON value is, in words).
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

from handlers import contract as C
from handlers.inference.types import V2_TYPES, Model, RequestError, TensorSpec

_NUMPY_ERRORS = (ValueError, TypeError, OverflowError, RecursionError, MemoryError)

# datatype kinds a JSON value may arrive as, per target kind: a float input takes ints, an int input
# takes integral floats (checked separately), strings and bools only go where they belong
_ACCEPT = {"f": "fiu", "i": "iuf", "u": "iuf", "b": "b", "U": "U", "O": "U"}
_V2_DTYPES = {v2: np.dtype(name) for name, v2 in V2_TYPES.items() if v2 != "BYTES"}


def _bad(path: str, message: str) -> RequestError:
    return RequestError(422, C.BAD_INPUT, message, path)


def _index_path(path: str, idx: Any) -> str:
    return path + "".join(f"[{int(i)}]" for i in idx)


def to_array(model: Model, spec: TensorSpec, value: Any, path: str, *, shape: list[int] | None = None,
             declared: str | None = None, numbers_only: bool = False) -> np.ndarray:
    """A JSON value (nested lists) or a decoded array -> a validated array of the input's dtype.

    declared: a v2 tensor's datatype; its values must fit it as well as the input's dtype.
    numbers_only: the caller has checked that the JSON text holds nothing but numbers here, so numpy
    may convert straight to the input's dtype (one pass over the values instead of two)."""
    arr, kind = _as_array(spec, value, path, shape, numbers_only)
    if kind not in _ACCEPT[spec.kind]:  # tested here: a call per request costs more than the test
        _check_kind(spec, arr, kind, value, path, shape)
    _check_shape(model, spec, arr, path)
    if declared is not None:
        _check_declared(arr, declared, value, path)
    arr = _cast(spec, arr, value, path)
    if not arr.flags.c_contiguous:
        arr = np.ascontiguousarray(arr)
    bounds = model.ranges.get(spec.name) if model.ranges else None
    if bounds is not None:
        _check_range(spec, arr, bounds, value, path)
    return arr


def _check_range(spec: TensorSpec, arr: np.ndarray, bounds: tuple[float, float], value: Any, path: str) -> None:
    """An input with a declared range (an embedding's indices): a value outside it is the client's mistake,
    never a 500 from onnxruntime nor (a negative index, which ONNX's Gather wraps) a wrong answer."""
    lo, hi = bounds
    out = (arr < lo) | (arr > hi)
    if out.any():
        where, orig = _at(path, value, arr, np.argwhere(out)[0])
        limits = " and ".join(f"{w} {int(b) if float(b).is_integer() else b}"
                              for w, b in (("at least", lo), ("at most", hi)) if math.isfinite(b))
        raise _bad(where, f"must be {limits} for input {spec.name!r} (got {orig})")


def _as_array(spec: TensorSpec, value: Any, path: str, shape: list[int] | None,
              numbers_only: bool) -> tuple[np.ndarray, str]:
    """The value as an array (in a v2 tensor's shape when one is given), and the kind its values arrived
    as: the input's own kind when numpy converted straight to its dtype."""
    if numbers_only and isinstance(value, list):
        try:
            arr = np.array(value, dtype=spec.dtype)
        except _NUMPY_ERRORS:
            raise _diagnose(spec, value, path, shape) from None
        return arr, spec.kind
    if isinstance(value, np.ndarray):
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
    return arr, arr.dtype.kind


def _check_kind(spec: TensorSpec, arr: np.ndarray, kind: str, value: Any, path: str,
                shape: list[int] | None) -> None:
    """Values of a kind the input cannot take (strings for a float input, say) are refused."""
    if kind in _ACCEPT[spec.kind]:
        return
    if arr.size == 0 and kind == "f":
        return  # an empty list has no values to be wrong; _check_shape, next, names it
    if isinstance(value, list):
        raise _diagnose(spec, value, path, shape)
    raise _bad(path, f"has dtype {arr.dtype}, which cannot be cast to {spec.dtype} without changing values")


def _check_shape(model: Model, spec: TensorSpec, arr: np.ndarray, path: str) -> None:
    """The input's rank and fixed dimensions, at least one row, and no more rows than the batch limit."""
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
        raise RequestError(413, C.TOO_LARGE, f"batch of {n} rows is over the maximum of {model.max_batch}; "
                           "split it into smaller requests", path)


def _cast(spec: TensorSpec, arr: np.ndarray, value: Any, path: str) -> np.ndarray:
    """The array in the input's dtype, refusing what the cast would change: non-finite numbers for a float
    input, fractions and out-of-range numbers for an integer one."""
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
