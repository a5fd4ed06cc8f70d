"""What model.json says about the exported model, besides parity: its signature, task and output
roles, classes and label names, feature names, opset, the versions that made it, and the profile of
the samples.

Enters: a ModelSpec, the `Loaded` source and the samples (sources.py), the ONNX model and its
onnxruntime session (convert.py), and the feeds and outputs on the samples (parity.py). Leaves: those
fields as plain JSON-shaped values (handlers/model_json.py reads them into the document), or
ExportError when the spec's feature or label names do not fit the model.
"""

from __future__ import annotations

import importlib.metadata
from typing import Any

import numpy as np
import onnx

from handlers import contract
from packager.config.spec import ModelSpec
from packager.errors import ExportError
from packager.export import tabular
from packager.export.convert import ort_dtype
from packager.export.sources import Arrays, Loaded, Samples, csv_header


def task_and_roles(spec: ModelSpec, loaded: Loaded, session: Any,
                   got: Arrays) -> tuple[str, dict[str, Any], list[Any], list[str]]:
    """task, roles, classes (values of the label output), label names (one per score column)."""
    outputs = session.get_outputs()
    names = [o.name for o in outputs]
    classes: list[Any] = []
    if loaded.kind == "sklearn":
        from sklearn.base import is_classifier

        if is_classifier(loaded.obj):
            classes = [c.item() if hasattr(c, "item") else c for c in loaded.obj.classes_]
            task = "classification"
        else:
            task = "regression"
    elif spec.model.task != "auto":
        task = spec.model.task
    else:
        floats = [n for n in names if got[n].dtype.kind == "f"]
        ints = [n for n in names if got[n].dtype.kind in "iuOU"]
        wide = len(floats) == 1 and got[floats[0]].ndim == 2 and got[floats[0]].shape[1] > 1
        task = "classification" if (wide and len(names) <= 2) or (ints and floats) else "regression"
    roles: dict[str, Any] = {"label": None, "scores": None, "scores_kind": None}
    if task == "classification":
        label = next((n for n in names if got[n].dtype.kind in "iuUO" and got[n].ndim == 1), None)
        scores = next((n for n in names if got[n].dtype.kind == "f" and got[n].ndim == 2), None)
        if scores is None:
            raise ExportError(f"model: task is classification but no output holds per-class scores "
                              f"(outputs: {names})", hint="set model.task = 'regression' if that is what it is")
        s = got[scores].astype(np.float64)
        is_prob = bool(np.all(s >= -1e-6) and np.all(s <= 1 + 1e-6) and np.allclose(s.sum(axis=1), 1, atol=1e-3))
        roles = {"label": label, "scores": scores, "scores_kind": "probabilities" if is_prob else "logits"}
        width = got[scores].shape[1]
        if not classes:
            classes = list(range(width))
        label_names = list(spec.model.label_names) or [str(c) for c in classes]
        if len(label_names) != width:
            raise ExportError(f"model.label_names: {len(label_names)} names for {width} classes",
                              hint=f"list exactly {width} names, in the order of the model's classes")
    else:
        label_names = []
        if spec.model.label_names:
            raise ExportError("model.label_names: given, but the model is a regressor",
                              hint="remove label_names, or set model.task = 'classification'")
    return task, roles, classes, label_names


def signature(session: Any) -> dict[str, Any]:
    """Inputs and outputs: name, numpy dtype name, shape (the first dimension "batch")."""
    def describe(items: Any) -> list[dict[str, Any]]:
        out = []
        for it in items:
            shape = [d if isinstance(d, int) else (contract.BATCH_DIM if i == 0 else str(d or f"d{i}"))
                     for i, d in enumerate(it.shape)]
            out.append({"name": it.name, "dtype": ort_dtype(it.type), "shape": shape})
        return out

    return {"inputs": describe(session.get_inputs()), "outputs": describe(session.get_outputs())}


def feature_names(spec: ModelSpec, session: Any, samples: Samples) -> dict[str, list[str]]:
    """Per rank-2 input of fixed width: for a single-input model, model.feature_names or else a CSV
    sample file's header; failing those (and for models with several inputs), f0, f1, ...; for a
    DataFrame model, each column's own name."""
    out: dict[str, list[str]] = {}
    inputs = session.get_inputs()
    if isinstance(samples, tabular.Table):
        if spec.model.feature_names:
            raise ExportError("model.feature_names: given, but the model was fitted on a DataFrame, whose "
                              "column names are the feature names", hint="remove model.feature_names")
        return {meta.name: [meta.name] for meta in inputs}
    for meta in inputs:
        if len(meta.shape) != 2 or not isinstance(meta.shape[1], int):
            continue
        width = meta.shape[1]
        names = list(spec.model.feature_names) if len(inputs) == 1 else []
        path = spec.samples_path()
        if not names and path is not None and path.suffix.lower() == ".csv" and len(inputs) == 1:
            names = csv_header(path)
        if names and len(names) != width:
            raise ExportError(f"model.feature_names: {len(names)} names for {width} input features",
                              hint=f"list exactly {width} names, in column order")
        out[meta.name] = names or [f"f{i}" for i in range(width)]
    return out


def opset(proto: onnx.ModelProto) -> int:
    """The model's default-domain opset (0 if it imports none)."""
    return next((int(o.version) for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0)


def versions(loaded: Loaded) -> dict[str, str]:
    """mlpack, onnx, onnxruntime, the source's framework and, when one was used, the converter."""
    import onnxruntime

    versions = {"mlpack": dist_version("mlpack-lambda"), "onnx": onnx.__version__,
                "onnxruntime": onnxruntime.__version__, "framework": loaded.framework,
                "framework_version": loaded.framework_version}
    if loaded.kind == "sklearn":
        versions["converter"] = f"skl2onnx {dist_version('skl2onnx')}"
        if loaded.framework in ("xgboost", "lightgbm"):  # their trees go through onnxmltools' converters
            versions["converter"] += f" + onnxmltools {dist_version('onnxmltools')}"
    elif loaded.kind == "torch":
        versions["converter"] = f"torch.onnx (onnxscript {dist_version('onnxscript')})"
    return versions


def dist_version(name: str) -> str:
    """An installed distribution's version, or "unknown"."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _stats(values: np.ndarray) -> dict[str, float]:
    v = values.astype(np.float64)
    finite = v[np.isfinite(v)]
    if finite.size == 0:
        return {"min": 0.0, "max": 0.0, "mean": 0.0, "std": 0.0, "q01": 0.0, "q50": 0.0, "q99": 0.0}
    q01, q50, q99 = np.quantile(finite, [0.01, 0.5, 0.99])
    return {"min": _r(finite.min()), "max": _r(finite.max()), "mean": _r(finite.mean()),
            "std": _r(finite.std()), "q01": _r(q01), "q50": _r(q50), "q99": _r(q99)}


def _r(x: Any) -> float:
    # 9 significant digits: stable across platforms' last-bit differences in summation order
    return float(f"{float(x):.9g}")


def profile(feeds: Arrays, got: Arrays, metadata: dict[str, Any]) -> dict[str, Any]:
    """The samples' profile: per input feature its count, NaN share and statistics; per output the
    class shares (classifiers, from the scores' argmax) or statistics (regressors). metadata: the
    document so far (feature_names, roles, task and label_names are read)."""
    rows = next(iter(feeds.values())).shape[0]
    inputs: dict[str, list[dict[str, Any]]] = {}
    for name, arr in feeds.items():
        flat = arr.reshape(rows, -1)
        names = metadata["feature_names"].get(name) or [f"f{i}" for i in range(flat.shape[1])]
        feats = []
        for i in range(flat.shape[1]):
            col = flat[:, i]
            if col.dtype.kind == "O":  # a DataFrame's string column: category shares, no statistics
                present = int(sum(1 for v in col.tolist() if v != tabular.MISSING_STRING))
                feats.append({"name": names[i], "count": present,
                              "nan_share": _r((col.size - present) / max(col.size, 1)),
                              "categories": tabular.category_shares(col)})
                continue
            nan = int(np.sum(~np.isfinite(col))) if col.dtype.kind == "f" else 0
            feats.append({"name": names[i], "count": int(col.size - nan), "nan_share": _r(nan / max(col.size, 1)),
                          **_stats(col)})
        inputs[name] = feats
    outputs: dict[str, Any]
    roles = metadata["roles"]
    if metadata["task"] == "classification":
        scores = got[roles["scores"]]
        idx = np.argmax(scores.reshape(rows, -1), axis=1)
        counts = np.bincount(idx, minlength=len(metadata["label_names"]))
        outputs = {"classes": {n: _r(c / rows) for n, c in zip(metadata["label_names"], counts, strict=True)}}
    else:
        regression = []
        for name, value in got.items():
            if value.dtype.kind != "f":
                continue
            flat = value.reshape(rows, -1)
            for i in range(flat.shape[1]):
                col_name = name if flat.shape[1] == 1 else f"{name}[{i}]"
                regression.append({"name": col_name, **_stats(flat[:, i])})
        outputs = {"regression": regression}
    return {"rows": int(rows), "inputs": inputs, "outputs": outputs}


def input_rules(spec: ModelSpec, proto: onnx.ModelProto, session: Any, table: tabular.Table | None,
                probe: tabular.Probe | None) -> dict[str, dict[str, Any]] | None:
    """model.json's input_rules: per DataFrame column (tabular.rules), and for other models the ranges
    [inputs.<name>] declares or an embedding table implies (convert.embedding_ranges); None when there
    are none. ExportError for an [inputs.<name>] that names no input or does not fit it."""
    if table is not None and probe is not None:
        return tabular.rules(spec, table, probe)
    from packager.export.convert import embedding_ranges

    kinds = {i.name: ort_dtype(i.type) for i in session.get_inputs()}
    out: dict[str, dict[str, Any]] = {}
    for name, (first, last) in sorted(embedding_ranges(proto).items()):
        out[name] = {"min": first, "max": last, "range_from": "embedding"}
    for name, rule in spec.inputs.items():
        if name not in kinds:
            raise ExportError(f"inputs.{name}: the model has no input {name!r}",
                              hint=f"its inputs are {', '.join(kinds)}")
        if rule.missing is not None:
            raise ExportError(f"inputs.{name}.missing: applies to the columns of a model fitted on a DataFrame",
                              hint="remove it")
        if rule.min is None and rule.max is None:
            continue
        if kinds[name] in ("str", "bool"):
            raise ExportError(f"inputs.{name}: min/max given for a {kinds[name]} input",
                              hint="ranges apply to numeric inputs")
        lo: float | None = rule.min
        hi: float | None = rule.max
        if name in out:  # an embedding's table bounds what any declaration may allow
            lo = out[name]["min"] if lo is None else max(lo, out[name]["min"])
            hi = out[name]["max"] if hi is None else min(hi, out[name]["max"])
        out[name] = {"min": lo, "max": hi, "range_from": "mlpack.toml"}
    return out or None


REFERENCE_BINS = 10  # quantile bins per numeric feature (deciles): PSI's usual resolution
PREDICTION = "prediction"  # a classifier's predicted label, as the reference and the capture name it


def _numeric_reference(col: np.ndarray) -> dict[str, Any]:
    from handlers import drift

    v = col.astype(np.float64)
    finite = v[np.isfinite(v)]
    edges: list[float] = []
    if finite.size:
        cuts = np.quantile(finite, np.linspace(0, 1, REFERENCE_BINS + 1)[1:-1])
        edges = sorted({_r(c) for c in cuts})
    counts, _ = drift.bin_counts(edges, finite.tolist())
    return {"kind": "numeric", "edges": edges, "counts": counts}


def reference(feeds: Arrays, got: Arrays, metadata: dict[str, Any]) -> dict[str, Any]:
    """The drift reference (handlers/drift.py): per input feature, quantile bin edges (deciles of the samples,
    repeated cut points merged) with the samples' count per bin, or for a string column its count per
    category; the same for the outputs (a classifier's predicted label as `prediction`, a regressor's output
    columns by their profile names). metadata: the document so far (feature_names, roles, task, label_names)."""
    rows = next(iter(feeds.values())).shape[0]
    features: list[dict[str, Any]] = []
    for name, arr in feeds.items():
        flat = arr.reshape(rows, -1)
        names = metadata["feature_names"].get(name) or [f"{name}[{i}]" for i in range(flat.shape[1])]
        for i in range(flat.shape[1]):
            col = flat[:, i]
            entry: dict[str, Any] = {"name": names[i], "input": name, "index": i}
            if col.dtype.kind in "OUS":
                values = [str(v) for v in col.tolist() if v != tabular.MISSING_STRING]
                cats: dict[str, int] = {}
                for v in values:
                    cats[v] = cats.get(v, 0) + 1
                entry.update({"kind": "categorical", "categories": dict(sorted(cats.items()))})
            else:
                entry.update(_numeric_reference(col))
            features.append(entry)
    outputs: list[dict[str, Any]] = []
    if metadata["task"] == "classification":
        idx = np.argmax(got[metadata["roles"]["scores"]].reshape(rows, -1), axis=1)
        labels = metadata["label_names"]
        counts = np.bincount(idx, minlength=len(labels))
        outputs.append({"name": PREDICTION, "kind": "categorical",
                        "categories": {str(n): int(c) for n, c in sorted(zip(labels, counts, strict=True))}})
    else:
        for name, value in got.items():
            if value.dtype.kind != "f":
                continue
            flat = value.reshape(rows, -1)
            for i in range(flat.shape[1]):
                outputs.append({"name": name if flat.shape[1] == 1 else f"{name}[{i}]", "output": name, "index": i,
                                **_numeric_reference(flat[:, i])})
    return {"rows": int(rows), "bins": REFERENCE_BINS, "features": features, "outputs": outputs}
