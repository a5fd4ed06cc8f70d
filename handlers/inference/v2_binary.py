"""The Open Inference Protocol's binary tensor data extension: a v2 request or response body that is a
JSON header followed by raw tensor bytes.

In: a v2 infer request whose `Inference-Header-Content-Length` header gives the JSON header's length;
each input with `parameters.binary_data_size` takes that many bytes, in order, from what follows (little
endian, row major; BOOL one byte each, BYTES a 4-byte length before each element). Out: the JSON object
with each such input's "data" filled in as an array (split_request), or a RequestError naming the tensor;
and, for outputs asked as binary (`parameters.binary_data` on an output, or the request's
`parameters.binary_data_output`), the response: the JSON header without their data, their bytes after it,
and the header length to send (join_response).
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np

from handlers import contract as C
from handlers.inference import codec
from handlers.inference.body import _check_size
from handlers.inference.types import V2_TYPES, Request, RequestError

HEADER = "inference-header-content-length"
_DTYPES = {v2: np.dtype(name).newbyteorder("<") for name, v2 in V2_TYPES.items() if v2 not in ("BYTES", "BOOL")}


def _bad(path: str, message: str) -> RequestError:
    return RequestError(400, C.BAD_REQUEST, message, path)


def split_request(req: Request, length_text: str) -> Any:
    """The JSON header of a binary request, its binary inputs' "data" as arrays."""
    body = req.body
    if body is None:
        raise _bad("body", "the request has no body")
    raw = body.encode("latin-1", "strict") if isinstance(body, str) else body
    _check_size(raw)
    try:
        n = int(length_text)
    except ValueError:
        raise _bad("headers.inference-header-content-length", f"must be a number of bytes, got {length_text!r}") \
            from None
    if not 0 < n <= len(raw):
        raise _bad("headers.inference-header-content-length", f"is {n}, but the body has {len(raw)} bytes")
    try:
        obj = codec.loads(raw[:n])
    except codec.DECODE_ERRORS as e:
        raise RequestError(400, C.BAD_JSON, f"the JSON header (the first {n} bytes) is not valid JSON: {e}",
                           "body") from None
    if not isinstance(obj, dict) or not isinstance(obj.get("inputs"), list):
        return obj  # the v2 parser words what is wrong with it
    offset = n
    for i, t in enumerate(obj["inputs"]):
        params = t.get("parameters") if isinstance(t, dict) else None
        size = params.get("binary_data_size") if isinstance(params, dict) else None
        if size is None:
            continue
        p = f"inputs[{i}].parameters.binary_data_size"
        if not isinstance(size, int) or isinstance(size, bool) or size < 0 or offset + size > len(raw):
            raise _bad(p, f"must be a byte count within the body's {len(raw) - offset} remaining bytes, got {size!r}")
        t["data"] = _decode(raw[offset:offset + size], t.get("datatype"), f"inputs[{i}]")
        offset += size
    if offset != len(raw):
        raise _bad("body", f"{len(raw) - offset} bytes follow the last binary input; binary_data_size must "
                   "account for every byte after the JSON header")
    return obj


def _decode(data: bytes, datatype: Any, path: str) -> Any:
    if datatype == "BYTES":
        out, i = [], 0
        while i < len(data):
            if i + 4 > len(data):
                raise _bad(f"{path}.parameters.binary_data_size", "a BYTES element's 4-byte length is cut short")
            (k,) = struct.unpack_from("<I", data, i)
            i += 4
            if i + k > len(data):
                raise _bad(f"{path}.parameters.binary_data_size", "a BYTES element is longer than the data left")
            try:
                out.append(data[i:i + k].decode("utf-8"))
            except UnicodeDecodeError:
                raise _bad(f"{path}.data", f"element {len(out)} is not UTF-8 text") from None
            i += k
        return out
    if datatype == "BOOL":
        arr = np.frombuffer(data, dtype=np.uint8)
        if arr.size and arr.max() > 1:
            raise _bad(f"{path}.data", "BOOL elements must be bytes 0 or 1")
        return arr.astype(bool)
    dtype = _DTYPES.get(datatype) if isinstance(datatype, str) else None
    if dtype is None:
        raise _bad(f"{path}.datatype", f"unknown datatype {datatype!r}")
    if len(data) % dtype.itemsize:
        raise _bad(f"{path}.parameters.binary_data_size", f"{len(data)} bytes is not a whole number of "
                   f"{datatype} elements ({dtype.itemsize} bytes each)")
    arr = np.frombuffer(data, dtype=dtype).astype(dtype.newbyteorder("="))
    if datatype in ("FP16", "FP32"):  # the v2 parser reads numbers as doubles first, as JSON gives them
        arr = arr.astype(np.float64)
    return arr


def binary_outputs(obj: dict[str, Any], wanted: list[str]) -> set[str]:
    """The outputs the request asks for as binary data."""
    params = obj.get("parameters")
    if isinstance(params, dict) and params.get("binary_data_output") is True:
        return set(wanted)
    out = set()
    for o in obj.get("outputs") or []:
        p = o.get("parameters") if isinstance(o, dict) else None
        if isinstance(p, dict) and p.get("binary_data") is True and isinstance(o.get("name"), str):
            out.add(o["name"])
    return out


def encode(arr: np.ndarray, datatype: str) -> bytes:
    if datatype == "BYTES":
        parts = []
        for v in arr.reshape(-1).tolist():
            b = v if isinstance(v, bytes) else str(v).encode("utf-8")
            parts.append(struct.pack("<I", len(b)) + b)
        return b"".join(parts)
    if datatype == "BOOL":
        return np.ascontiguousarray(arr, dtype=np.uint8).tobytes()
    return np.ascontiguousarray(arr, dtype=_DTYPES[datatype]).tobytes()


def join_response(payload: dict[str, Any], binaries: list[bytes]) -> tuple[bytes, int]:
    """The response body (JSON header, then each binary output's bytes in order) and the header's length."""
    header = codec.dumps(payload)
    return header + b"".join(binaries), len(header)
