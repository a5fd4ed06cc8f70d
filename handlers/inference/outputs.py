"""Shaping a /predict response from the session's outputs.

In: a `Model`, the session's outputs (in the signature's order) and the request's `Result`. Out: the
"outputs" object of the response: for a classifier, label names and per-label scores; otherwise each
output by name (one target per row as a flat list). On the `Result`, the prediction metrics: the count
of each predicted class, or a regressor's sum of predictions.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from handlers.inference.types import Model, Result


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
