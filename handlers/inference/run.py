"""Running the model on validated feeds, and what the metrics learn from those feeds.

In: a `Model` and its feeds ({input name: array}). Out: the session's outputs and the milliseconds
session.run took (run), or _ModelFailure carrying the traceback when onnxruntime fails (routes.handle
turns it into a 500); the rows whose float outputs hold NaN or infinity, and those outputs' names, or
None when every value is finite (_non_finite_rows: routes refuses such a batch with a 422); and, on a
`Result`, the count of input values outside the training profile's [q01, q99], per feature (_profile).
"""

from __future__ import annotations

import math
import time
import traceback
from typing import Any

import numpy as np

from handlers.inference.types import Model, Result

perf = time.perf_counter


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


def _non_finite_rows(model: Model, outs: list[Any], rows: int) -> tuple[list[int], list[str]] | None:
    """(indices of the rows whose float outputs hold NaN or infinity, the names of those outputs), or None
    when every value is finite. The common case costs one check per float output: a Python loop over a few
    values, else a sum (a NaN or infinity makes it non-finite; only then, or when it overflows, are the
    values looked at one by one), and rows are located only when that fails. A non-finite value in an
    output whose first dimension is not the batch counts against every row."""
    bad: np.ndarray | None = None
    names: list[str] = []
    isfinite = math.isfinite
    for i in model.float_outputs:  # the signature's float outputs: which they are is known at load
        out = outs[i]
        if type(out) is not np.ndarray or out.dtype.kind != "f":
            continue
        if (all(map(isfinite, out.ravel().tolist())) if out.size <= 32
                else isfinite(out.sum()) or bool(np.isfinite(out).all())):
            continue
        mask = np.ones(rows, dtype=bool)
        if out.ndim and out.shape[0] == rows:
            mask = np.asarray(~np.isfinite(out.reshape(rows, -1)).all(axis=1))
        bad = mask if bad is None else bad | mask
        names.append(model.output_names[i])
    return None if bad is None else (np.flatnonzero(bad).tolist(), names)


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

