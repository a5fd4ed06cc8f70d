"""Decoding a request's body: its media type, its size, and its bytes as JSON or as a .npy array.

In: a `Request` (its content type and raw body, or the already-decoded data of a direct invoke). Out:
"json" or "npy" (_media_type), the decoded JSON value (decode_json), or a numpy array (_decode_npy);
a RequestError (400, 413 or 415) for a body that cannot be read at all. Whether the value fits the
model is validate.py's business.
"""

from __future__ import annotations

import io
import math
import re
from typing import Any

import numpy as np

from handlers import contract as C
from handlers.inference import codec
from handlers.inference.types import JsonBounds, Request, RequestError


def _media_type(req: Request) -> str:
    ct = req.content_type
    if not ct:
        return "json"
    ct = ct.partition(";")[0].strip().lower()
    if ct == C.JSON_CONTENT_TYPE or ct.endswith("+json") or ct in ("text/json", "*/*"):
        return "json"
    if ct == C.NPY_CONTENT_TYPE:
        return "npy"
    raise RequestError(415, C.UNSUPPORTED_MEDIA_TYPE,
                       f"unsupported Content-Type {ct!r}; send {C.JSON_CONTENT_TYPE} or {C.NPY_CONTENT_TYPE}",
                       "headers.content-type")


def _check_size(body: bytes | str) -> None:
    if len(body) > C.MAX_BODY_BYTES:
        raise RequestError(413, C.TOO_LARGE, f"body is {len(body):,} bytes; the limit is "
                           f"{C.MAX_BODY_BYTES:,} (Lambda's payload limit): send smaller batches", "body")


# Bodies smaller than this are parsed without counting their values: whatever their shape, their Python
# objects stay within a few MB, and counting would only slow the small requests of the warm path.
VALUE_GUARD_MIN = 64 * 1024


def check_values(req: Request, bounds: JsonBounds) -> None:
    """Refuse a large JSON body holding more values, lists or objects than a request to the model can, before
    anything parses it (the simdjson fast paths included): every value but the first of a list or object
    follows a comma and every container opens with a bracket, so the counts (each one pass at memchr speed)
    bound them from above. Bodies up to VALUE_GUARD_MIN are not counted."""
    body = req.body
    if req.data is not None or body is None or len(body) <= VALUE_GUARD_MIN:
        return
    if isinstance(body, str):
        lists, objects, commas = body.count("["), body.count("{"), body.count(",")
    else:
        lists, objects, commas = body.count(b"["), body.count(b"{"), body.count(b",")
    for what, n, most in (("lists", lists, bounds.lists), ("objects", objects, bounds.objects),
                          ("JSON values", commas + lists + objects, bounds.values)):
        if n > most:
            raise RequestError(413, C.TOO_LARGE, f"body holds up to {n:,} {what}; a request to this model holds at "
                               f"most {most:,} (its batch limit of rows of its inputs): send smaller batches", "body")


def decode_json(req: Request, bounds: JsonBounds | None = None) -> Any:
    """The body's JSON value. bounds: what a valid request can hold (Model.json_bounds); a large body holding
    more is a 413 before anything is parsed (check_values; callers that try a fast path first call
    check_values themselves, before it)."""
    if req.data is not None:
        return req.data
    body = req.body
    if body is None or len(body) == 0:
        raise RequestError(400, C.BAD_REQUEST, "the request has no body; send a JSON object", "body")
    _check_size(body)
    if bounds is not None:
        check_values(req, bounds)
    try:
        return codec.loads(body)
    except codec.DECODE_ERRORS as e:
        raise RequestError(400, C.BAD_JSON, f"body is not valid JSON: {e}", "body") from None


def _decode_npy(req: Request) -> np.ndarray:
    body = req.body
    if body is None or len(body) == 0:
        raise RequestError(400, C.BAD_REQUEST, "the request has no body; send a .npy array", "body")
    if isinstance(body, str):
        raise RequestError(400, C.BAD_REQUEST, "a .npy body must be binary (base64-encoded in the event)",
                           "body")
    _check_size(body)
    arr = _npy_fast(body)
    if arr is not None:
        return arr
    try:
        arr = np.load(io.BytesIO(body), allow_pickle=False)
    except Exception as e:  # numpy raises ValueError, EOFError, OSError... for broken files
        raise RequestError(400, C.BAD_REQUEST, f"body is not a valid .npy array: {e}", "body") from None
    if not isinstance(arr, np.ndarray):
        raise RequestError(400, C.BAD_REQUEST, "body is an .npz archive; send a single .npy array", "body")
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
