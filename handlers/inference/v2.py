"""The Open Inference Protocol (v2) infer request: {"inputs": [{"name", "shape", "datatype", "data"}, ...]}
-> the feeds for session.run, the outputs asked for, and the request's id.

In: a `Model` and a `Request`. Out: (feeds, output names, id or None) from parse_v2, or a RequestError
naming the fault. Two ways through, which must always give the same answer: the checked path (orjson
decodes the body, _parse_v2_obj checks each tensor) and the simdjson fast path (_v2_fast), which reads
each long run of numbers in a tensor's "data" straight into an array, hands the same object to
_parse_v2_obj and falls back to the checked path for anything it cannot vouch for, or refuses. Both live
here so that they change together; tests/unit/test_rows_fast.py holds them to the same answer.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from handlers import contract as C
from handlers.inference import codec, table, v2_binary
from handlers.inference.body import _media_type, check_values, decode_json
from handlers.inference.codec import _brackets_at_most, simdjson
from handlers.inference.types import V2_TYPES, Model, Request, RequestError, TensorSpec
from handlers.inference.validate import _ACCEPT, _bad, _jtype, to_array

_V2_KIND = {"BOOL": "b", "BYTES": "U"}
# A v2 tensor's data shorter than this is read as a list: a buffer pays off on long runs of numbers
_V2_BUFFER_MIN = 64


def parse_v2(model: Model, req: Request, counts: table.TableCounts | None = None,
             ) -> tuple[dict[str, np.ndarray], list[str], Any, set[str]]:
    """(feeds, the outputs asked for, the request's id, those of them asked as binary data)."""
    header_length = req.header(v2_binary.HEADER) if req.data is None else None
    if header_length is not None:  # the binary tensor data extension: JSON header, then raw tensors
        obj = v2_binary.split_request(req, header_length)
        return _with_binary(obj, _parse_v2_obj(model, obj, counts))
    if req.data is None and _media_type(req) != "json":
        raise RequestError(415, C.UNSUPPORTED_MEDIA_TYPE, "the v2 protocol takes a JSON body",
                           "headers.content-type")
    check_values(req, model.json_bounds)  # before any parser builds anything
    body = req.body
    if req.data is None and body is not None and codec._ROWS_FAST_MIN < len(body) <= C.MAX_BODY_BYTES:
        fast = _v2_fast(model, body)
        if fast is not None:
            try:
                return _with_binary(fast, _parse_v2_obj(model, fast, counts))
            except RequestError:
                pass  # refused: the checked path below refuses it too, naming the value as the client wrote it
    obj = decode_json(req)
    return _with_binary(obj, _parse_v2_obj(model, obj, counts))


def _with_binary(obj: Any, parsed: tuple[dict[str, np.ndarray], list[str], Any],
                 ) -> tuple[dict[str, np.ndarray], list[str], Any, set[str]]:
    feeds, wanted, rid = parsed
    return feeds, wanted, rid, v2_binary.binary_outputs(obj, wanted)


def _parse_v2_obj(model: Model, obj: Any, counts: table.TableCounts | None = None,
                  ) -> tuple[dict[str, np.ndarray], list[str], Any]:
    if not isinstance(obj, dict):
        raise RequestError(400, C.BAD_REQUEST, f"expected a JSON object, got {_jtype(obj)}", "body")
    inputs = obj.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise RequestError(400, C.BAD_REQUEST, '"inputs" must be a non-empty list of tensors '
                           '({"name", "shape", "datatype", "data"})', "inputs")
    feeds: dict[str, np.ndarray] = {}
    for i, t in enumerate(inputs):
        p = f"inputs[{i}]"
        if not isinstance(t, dict):
            raise RequestError(400, C.BAD_REQUEST, f"must be an object, got {_jtype(t)}", p)
        for key in ("name", "shape", "datatype", "data"):
            if key not in t:
                raise RequestError(400, C.BAD_REQUEST, f"missing {key!r}", f"{p}.{key}")
        name = t["name"]
        spec = model.input_by_name.get(name) if isinstance(name, str) else None
        if spec is None:
            raise _bad(f"{p}.name", f"unknown input {name!r}; the model's inputs are {model.input_names_text}")
        if name in feeds:
            raise _bad(f"{p}.name", f"input {name!r} given twice")
        dt = t["datatype"]
        if model.tabular:
            feeds[name] = _v2_column(model, model.columns[model.input_index[name]], t, p, counts)
            continue
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
            raise RequestError(400, C.BAD_REQUEST, '"outputs" must be a list of {"name": ...}', "outputs")
        wanted = []
        for i, o in enumerate(req_out):
            oname = o.get("name") if isinstance(o, dict) else None
            if not isinstance(oname, str) or oname not in model.output_by_name:
                raise _bad(f"outputs[{i}].name", f"unknown output {oname!r}; the model's outputs are "
                           f"{', '.join(model.output_names)}")
            wanted.append(oname)
    rid = obj.get("id")
    return feeds, wanted, rid if isinstance(rid, str) else None


# a tabular column's kind -> the v2 datatypes a tensor of its values may declare
_COLUMN_DATATYPES = {
    "string": ("BYTES",), "boolean": ("BOOL",),
    "integer": ("INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64"),
    "number": ("FP16", "FP32", "FP64", "INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64"),
}


def _v2_column(model: Model, col: table.Column, t: dict[str, Any], p: str,
               counts: table.TableCounts | None) -> np.ndarray:
    """One column of a tabular model as a v2 tensor: its datatype must fit the column's kind (metadata
    names the kind's own: BYTES, BOOL, INT64, FP32), its values the column's rules."""
    dt = t["datatype"]
    if dt not in _COLUMN_DATATYPES[col.kind]:
        raise _bad(f"{p}.datatype", f"datatype {dt!r} does not fit column {col.name!r}, which takes "
                   f"{col.describe()} ({col.v2_type})")
    shape = t["shape"]
    if (not isinstance(shape, list) or not shape or not all(isinstance(d, int) and not isinstance(d, bool)
                                                            and d >= 0 for d in shape)):
        raise _bad(f"{p}.shape", f"must be a list of non-negative integers, got {shape!r}")
    if shape[0] > model.max_batch:
        raise RequestError(413, C.TOO_LARGE, f"batch of {shape[0]} rows is over the maximum of "
                           f"{model.max_batch}; split it into smaller requests", f"{p}.shape")
    if shape[0] == 0:
        raise _bad(f"{p}.shape", "is an empty batch; send at least one row")
    return table.v2_column(col, t["data"], shape, p, counts if counts is not None else table.TableCounts())


def _v2_fast(model: Model, body: bytes | str) -> dict[str, Any] | None:
    """A v2 request as orjson would decode it, except that each tensor's "data" of numbers for a numeric
    input is an array read by simdjson straight from the text (float64 for a float input, int64 for an
    integer one, so no value changes on the way). None when simdjson cannot read the body or the body
    is not one this can vouch for; parse_v2 then decodes it with orjson.

    Nested data would be flattened by as_buffer, so the text must hold no "[" beyond the arrays counted
    here: a string holding one only sends the body to the checked path. Duplicate keys (orjson keeps the
    last, simdjson's lookup finds the first) send it there too."""
    parser = codec._PARSER
    if parser is None or body[:1] in codec._BOMS:
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
        doc = parser.parse(body)
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
