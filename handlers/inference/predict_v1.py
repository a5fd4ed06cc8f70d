"""The /predict request: {"inputs": [[...], ...]} (or {"inputs": {"<name>": [...]}}, or a .npy body) ->
the feeds for session.run.

In: a `Model` and a `Request`. Out: {input name: validated array} (parse_predict), or a RequestError
naming the fault. Two ways through, which must always give the same answer: the checked path (orjson
decodes the body, to_array validates it) and, for a single float input of rows of a fixed width, the
simdjson fast path (_rows_fast), which reads the rows straight into one array and falls back to the
checked path for anything it cannot vouch for, or refuses. Both live here so that they change together;
tests/unit/test_rows_fast.py holds them to the same answer.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from handlers import contract as C
from handlers.inference import codec, table
from handlers.inference.body import _decode_npy, _media_type, check_values, decode_json
from handlers.inference.codec import _brackets_at_most, simdjson
from handlers.inference.types import Model, Request, RequestError
from handlers.inference.validate import _bad, _jtype, to_array

# The checked path scans a body this big for strings and literals first: with none, numpy reads the
# rows straight into the input's dtype (one pass over the values instead of two)
_NUMBERS_ONLY_MIN = 2048


def parse_predict(model: Model, req: Request, counts: table.TableCounts | None = None) -> dict[str, np.ndarray]:
    """The feeds for session.run from a /predict request, or a RequestError naming the fault. A tabular
    model's request (records or columns) goes to table.parse, which fills `counts`."""
    if model.tabular:
        if req.data is None and _media_type(req) == "npy":
            raise RequestError(415, C.UNSUPPORTED_MEDIA_TYPE, "this model takes named columns: send JSON records "
                               '{"instances": [{...}]} or columns {"inputs": {"<column>": [...]}}',
                               "headers.content-type")
        obj = decode_json(req, model.json_bounds)
        if not isinstance(obj, dict):
            raise RequestError(400, C.BAD_REQUEST, 'expected a JSON object like {"instances": [{...}]}, got '
                               f"{_jtype(obj)}", "body")
        return table.parse(model, obj, counts if counts is not None else table.TableCounts())
    if req.data is None and _media_type(req) == "npy":
        if model.single is None:
            raise RequestError(415, C.UNSUPPORTED_MEDIA_TYPE,
                               f"a .npy body works only for single-input models; this one has inputs "
                               f"{model.input_names_text}: send JSON", "headers.content-type")
        return {model.single.name: to_array(model, model.single, _decode_npy(req), "body")}
    check_values(req, model.json_bounds)  # before any parser builds anything
    spec, body = model.single, req.body
    if (spec is not None and spec.row_width is not None and body is not None
            and codec._ROWS_FAST_MIN < len(body) <= C.MAX_BODY_BYTES):
        read = _rows_fast(body, spec.row_width)
        if read is not None:
            try:
                return {spec.name: to_array(model, spec, read, "inputs")}
            except RequestError:
                pass  # refused: the checked path below refuses it too, naming the value as the client wrote it
    obj = decode_json(req)
    if not isinstance(obj, dict):
        raise RequestError(400, C.BAD_REQUEST, f'expected a JSON object like {{"inputs": [[...]]}}, got '
                           f"{_jtype(obj)}", "body")
    if "inputs" not in obj:
        raise RequestError(400, C.BAD_REQUEST, 'missing "inputs": send {"inputs": [[...], ...]}', "inputs")
    extra = [k for k in obj if k != "inputs"]
    if extra:
        raise RequestError(400, C.BAD_REQUEST, f"unknown field {extra[0]!r}; a request has only \"inputs\"",
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
        raise RequestError(400, C.BAD_REQUEST, f'"inputs" must be a list of rows or an object of named '
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


def _rows_fast(body: bytes | str, width: int) -> np.ndarray | None:
    """{"inputs": [[n, ...], ...]} with rows of `width` numbers, as a float64 array read by simdjson straight
    from the text: about half the time of making a Python float of each value and then an array of those.

    None for anything else (other keys, strings, booleans, null, ragged or deeper rows, numbers simdjson
    cannot read, invalid JSON, no simdjson): the checked path decides those. Every path reads a JSON
    number as a double first and then casts it to the input's dtype, so an answer never depends on which
    path a body took."""
    parser = codec._PARSER
    if parser is None or body[:1] in codec._BOMS:  # simdjson skips a byte order mark; orjson refuses it
        return None
    doc = rows = row = None
    try:
        doc = parser.parse(body)
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
