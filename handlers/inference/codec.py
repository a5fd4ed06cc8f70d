"""The JSON codec: which library reads request bodies and writes responses, chosen once at import.

In: whatever JSON libraries the image ships. Out: `dumps` (object -> bytes, numpy arrays included),
`loads` (bytes or str -> object) and DECODE_ERRORS (what `loads` raises on a body that is not JSON), from
orjson when it is installed and from the standard library's json otherwise; and, for the two simdjson
fast paths (predict_v1._rows_fast, v2._v2_fast), the one parser they share (_PARSER, None without
pysimdjson), the body size below which they are not worth taking (_ROWS_FAST_MIN) and the checks both
need (_BOMS, _brackets_at_most).

The only module that imports orjson and simdjson. The package's other modules look `codec.loads`,
`codec.dumps`, `codec._PARSER` and `codec._ROWS_FAST_MIN` up at call time, so replacing them here (as
tests and benchmarks do) reaches every reader in the package; events.py and metrics.py bind their own
`loads` and `dumps` at import.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

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


# --- what the simdjson fast paths share ------------------------------------------------------------

# Below this, orjson and np.array are as fast or faster (measured: one row of 100 numbers, 2 KB, took the same
# time either way; 32 rows of 4, 2.5 KB, took longer with simdjson, which pays per row)
_ROWS_FAST_MIN = 4096
_PARSER = simdjson.Parser() if simdjson is not None else None
_BOMS = ("\ufeff", b"\xef")


def _brackets_at_most(body: bytes | str, n: int) -> bool:
    """Whether the text holds at most n "[" characters: one memchr scan, in at most n + 1 steps."""
    bracket: Any = "[" if isinstance(body, str) else b"["
    at = -1
    for _ in range(n + 1):
        at = body.find(bracket, at + 1)
        if at < 0:
            return True
    return False
