"""Running the exported model on the samples and checking it against the original.

Enters: the onnxruntime session (convert.py), the samples and the `Loaded` source (sources.py), the
original model object, and the output roles (describe.py). Leaves: the feeds (the samples cast and
shaped to the model's inputs) and the ONNX outputs on them; the parity report model.json records
(per output: exact for labels, within [export] rtol/atol for scores and values, finite for ONNX
sources, with the worst rows of any failure); and the message ParityError carries when it failed.
Or ExportError when the samples do not fit the model.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from packager.config.spec import ModelSpec
from packager.errors import ExportError
from packager.export import tabular
from packager.export.convert import ort_dtype
from packager.export.sources import Arrays, Loaded, Samples, import_torch


def sample_feeds(session: Any, samples: Samples) -> Arrays:
    """The samples by model input name, in each input's dtype (a 1-D array for a 2-D input becomes one
    column; a DataFrame's columns one input each, as tabular.py builds them)."""
    inputs = session.get_inputs()
    if isinstance(samples, tabular.Table):
        columns = tabular.feeds(samples.frame, samples.columns)
        names = [i.name for i in inputs]
        if sorted(columns) != sorted(names):
            raise ExportError(f"the exported model's inputs {names} are not the DataFrame's columns "
                              f"{sorted(columns)}", hint="report this: the converter renamed the columns")
        return {n: columns[n] for n in names}
    if isinstance(samples, dict):
        names = [i.name for i in inputs]
        if sorted(samples) != sorted(names):
            raise ExportError(f"samples.source: inputs {sorted(samples)} do not match the model's {names}",
                              hint="an .npz or factory must give one array per model input, by name")
        given = samples
    else:
        if len(inputs) != 1:
            raise ExportError(f"samples.source: the model takes {len(inputs)} inputs "
                              f"{[i.name for i in inputs]} but one array was given",
                              hint="give an .npz or a factory returning a dict with one array per input")
        given = {inputs[0].name: samples}
    feeds: Arrays = {}
    for meta in inputs:
        arr = np.asarray(given[meta.name])
        dtype = np.dtype(ort_dtype(meta.type))
        shape = meta.shape
        if arr.ndim != len(shape):
            if len(shape) == 2 and arr.ndim == 1:
                arr = arr.reshape(-1, 1)
            else:
                raise ExportError(f"samples.source: input {meta.name!r} has shape {arr.shape}, the model expects "
                                  f"{_shape_str(shape)}", hint="reshape the samples to match the model's input")
        for axis, (want, got) in enumerate(zip(shape, arr.shape, strict=True)):
            if isinstance(want, int) and want != got and axis > 0:
                raise ExportError(f"samples.source: input {meta.name!r} has shape {arr.shape}, the model expects "
                                  f"{_shape_str(shape)} (axis {axis}: {got} != {want})",
                                  hint="give samples with the model's feature count")
        fractional = arr.dtype.kind == "f" and (not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)))
        if dtype.kind in "iub" and fractional:
            raise ExportError(f"samples.source: input {meta.name!r} must hold integers ({dtype})")
        feeds[meta.name] = np.ascontiguousarray(arr.astype(dtype, copy=False))
    return feeds


def _shape_str(shape: list[Any]) -> str:
    return "(" + ", ".join(str(d) if isinstance(d, int) else "batch" if i == 0 else str(d)
                           for i, d in enumerate(shape)) + ")"


def run_onnx(session: Any, feeds: Arrays) -> Arrays:
    """The model's outputs on the feeds, by output name."""
    try:
        outs = session.run(None, feeds)
    except Exception as e:
        raise ExportError(f"onnxruntime failed on the samples: {e}",
                          hint="check that the samples match the model's inputs") from e
    return {o.name: np.asarray(v) for o, v in zip(session.get_outputs(), outs, strict=True)}


def check_nan(loaded: Loaded, samples: Samples) -> None:
    """Samples with NaN are fine only for a model that takes NaN (some scikit-learn estimators do);
    the model itself is the judge. (A DataFrame's missing values are tabular.probe's to judge.)"""
    if isinstance(samples, tabular.Table):
        return
    arrays = samples if isinstance(samples, dict) else {"": samples}
    for name, arr in arrays.items():
        if arr.dtype.kind != "f" or np.all(np.isfinite(arr)):
            continue
        flat = arr.reshape(arr.shape[0], -1)
        bad = np.argwhere(~np.isfinite(flat))
        where = ", ".join(f"row {r} column {c}" for r, c in bad[:5]) + (" ..." if len(bad) > 5 else "")
        label = f"input {name!r}" if name else "the samples"
        if loaded.kind == "sklearn":
            rows = np.unique(bad[:, 0])
            try:
                loaded.obj.predict(flat[rows].astype(np.float32))
                continue
            except Exception as e:
                reason = f"{type(loaded.obj).__name__} refuses them: {str(e).splitlines()[0]}"
        else:
            reason = f"a {loaded.kind} model gives no defined output for them"
        verb = "contains" if name else "contain"
        raise ExportError(f"samples.source: {label} {verb} NaN or infinite values ({where}); {reason}",
                          hint="drop or impute those rows, or use a model that handles missing values")


def _original_outputs(loaded: Loaded, original: Any, feeds: Arrays, frame: Any = None) -> dict[str, np.ndarray]:
    """The original model's outputs keyed by role: 'label' and 'scores' or 'values'. frame: the
    DataFrame a tabular model is given instead of the feeds."""
    if loaded.kind == "sklearn":
        from sklearn.base import is_classifier

        if frame is not None:
            x2 = frame
        else:
            (x,) = feeds.values()
            x2 = x.reshape(x.shape[0], -1)
        if is_classifier(original):
            out = {"label": np.asarray(original.predict(x2))}
            if hasattr(original, "predict_proba"):
                out["scores"] = np.asarray(original.predict_proba(x2))
            return out
        return {"values": np.asarray(original.predict(x2))}
    torch = import_torch()
    with torch.no_grad():
        result = original(*[torch.from_numpy(a) for a in feeds.values()])
    if isinstance(result, tuple | list):
        return {f"out{i}": r.detach().numpy() for i, r in enumerate(result)}
    return {"out0": result.detach().numpy()}


def _compare(name: str, expected: np.ndarray, got: np.ndarray, *, exact: bool, rtol: float, atol: float,
             ) -> dict[str, Any]:
    rows = expected.shape[0]
    e = expected.reshape(rows, -1)
    g = got.reshape(rows, -1)
    if e.shape != g.shape:
        return {"output": name, "kind": "exact" if exact else "close", "rows": rows, "passed": False,
                "mismatches": rows, "summary": f"shape differs: expected {expected.shape}, got {got.shape}",
                "worst": []}
    if exact:
        bad = np.any(e.astype(str) != g.astype(str), axis=1)
        worst = [{"row": int(r), "expected": _py(e[r]), "got": _py(g[r])} for r in np.flatnonzero(bad)[:5]]
        n_bad = int(bad.sum())
        summary = f"{rows - n_bad}/{rows} labels equal" if n_bad else f"all {rows} labels equal"
        return {"output": name, "kind": "exact", "rows": rows, "passed": n_bad == 0, "mismatches": n_bad,
                "summary": summary, "worst": worst}
    e64, g64 = e.astype(np.float64), g.astype(np.float64)
    err = np.abs(e64 - g64)
    allowed = atol + rtol * np.abs(np.nan_to_num(e64))
    # NaN on one side only is a mismatch; NaN on both sides agrees (comparisons with NaN are False)
    nan_e, nan_g = np.isnan(e64), np.isnan(g64)
    err = np.where(nan_e & nan_g, 0.0, np.where(nan_e | nan_g, np.inf, err))
    bad_cells = err > allowed
    bad_rows = np.any(bad_cells, axis=1)
    excess = np.max(np.where(bad_cells, err - allowed, -np.inf), axis=1)
    order = np.argsort(-excess, kind="stable")[: min(5, int(bad_rows.sum()))]
    cols = [int(np.argmax(err[r] - allowed[r])) for r in order]  # each row's worst column
    worst = [{"row": int(r), "column": c, "expected": float(e64[r, c]), "got": float(g64[r, c])}
             for r, c in zip(order, cols, strict=True)]
    finite_err = err[np.isfinite(err)]
    max_abs = float(finite_err.max()) if finite_err.size else 0.0
    n_bad = int(bad_rows.sum())
    summary = (f"max abs error {max_abs:.3g} within rtol={rtol:g} atol={atol:g} over {rows} rows" if not n_bad
               else f"{n_bad}/{rows} rows out of tolerance (max abs error {max_abs:.3g})")
    return {"output": name, "kind": "close", "rows": rows, "passed": n_bad == 0, "mismatches": n_bad,
            "max_abs_err": max_abs, "summary": summary, "worst": worst}


def _py(v: np.ndarray) -> Any:
    items = v.tolist()
    return items[0] if len(items) == 1 else items


def check(spec: ModelSpec, loaded: Loaded, original: Any, feeds: Arrays, got: Arrays,
          roles: dict[str, Any], frame: Any = None) -> dict[str, Any]:
    """The parity report: the ONNX outputs `got` against the original model's on the same feeds (for a
    tabular model, on `frame`, the DataFrame the feeds were built from)."""
    rtol, atol = spec.export.rtol, spec.export.atol
    rows = next(iter(feeds.values())).shape[0]
    checks: list[dict[str, Any]] = []
    if loaded.kind == "onnx":
        for name, value in got.items():
            finite = bool(np.all(np.isfinite(value))) if value.dtype.kind == "f" else True
            checks.append({"output": name, "kind": "finite", "rows": rows, "passed": finite,
                           "mismatches": 0 if finite else int(np.sum(~np.isfinite(value))),
                           "summary": f"ran on {rows} rows, all values finite" if finite
                           else "non-finite values in the output", "worst": []})
    else:
        expected = _original_outputs(loaded, original, feeds, frame)
        names = list(got)
        if loaded.kind == "sklearn":
            if "label" in expected and roles["label"]:
                checks.append(_compare(roles["label"], expected["label"], got[roles["label"]], exact=True,
                                       rtol=rtol, atol=atol))
            if "scores" in expected and roles["scores"]:
                checks.append(_compare(roles["scores"], expected["scores"], got[roles["scores"]], exact=False,
                                       rtol=rtol, atol=atol))
            if "values" in expected:
                checks.append(_compare(names[0], expected["values"], got[names[0]], exact=False,
                                       rtol=rtol, atol=atol))
        else:
            if len(expected) != len(names):
                raise ExportError(f"the ONNX model has {len(names)} outputs, the torch model {len(expected)}")
            for (_, exp), name in zip(expected.items(), names, strict=True):
                checks.append(_compare(name, exp, got[name], exact=exp.dtype.kind in "iub", rtol=rtol, atol=atol))
    return {"passed": all(c["passed"] for c in checks), "rows": rows, "rtol": rtol, "atol": atol,
            "checks": checks}


def failure_message(spec: ModelSpec, parity: dict[str, Any]) -> str:
    """What ParityError says: each failed output and its worst rows."""
    lines = [f"{spec.name}: the ONNX model does not match the original on the samples "
             f"(rtol={parity['rtol']:g}, atol={parity['atol']:g}); nothing was written"]
    for c in parity["checks"]:
        if c["passed"]:
            continue
        lines.append(f"  {c['output']}: {c['summary']}")
        for w in c["worst"]:
            col = f", column {w['column']}" if "column" in w else ""
            lines.append(f"    row {w['row']}{col}: expected {w['expected']!r}, got {w['got']!r}")
    return "\n".join(lines)
