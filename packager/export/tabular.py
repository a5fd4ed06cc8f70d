"""DataFrame models: a scikit-learn model or pipeline fitted on a pandas DataFrame, exported with one ONNX
input per column.

Enters: the `Loaded` model (sources.py) and its samples as a DataFrame (a factory's, or a CSV read by
pandas). Leaves: a `Table` (the samples, one `Column` per feature the model was fitted on, in its
order); what skl2onnx needs to convert the model (initial types, and a copy of the model whose string
imputers look for the empty string, which is how a missing string reaches the ONNX graph); the feeds
for onnxruntime; the probe rows parity also checks (each column missing, each string column holding a
category never seen); and, per column, the rules requests are held to (model.json's input_rules): its
kind, whether it accepts missing values, the categories seen in training and what an unseen one does.
Or ExportError naming the column at fault.

How columns reach the graph (the handler does the same with a request): strings as tensor(string) with
"" for missing; integers, floats and booleans as tensor(float) with NaN for missing (booleans as 0/1).
skl2onnx's converters mix integer and float inputs badly (an imputer refuses an int64 column next to
float ones), and scikit-learn works in floats itself; an integer column keeps its kind in the API.

pandas is imported only when a model or its samples are DataFrames: whoever made them has it installed.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from packager.config.spec import ModelSpec
from packager.errors import ExportError

MISSING_STRING = ""  # what a missing string is in the graph (and in the handler's feeds)
UNSEEN_PROBE = "__mlpack_unseen__"  # a category no model was trained on
PROBE_ROWS = 8  # sample rows per probe (a column missing, a category unseen)
MAX_CATEGORIES = 1000  # more distinct strings than this: an identifier, not a category; no unseen check

Kind = str  # "number" | "integer" | "boolean" | "string"


@dataclass(frozen=True, kw_only=True)
class Column:
    name: str
    kind: Kind
    categories: tuple[str, ...] | None = None  # string columns: the values seen in the samples, sorted


@dataclass(frozen=True, kw_only=True)
class Table:
    """Samples for a DataFrame model: the frame (the model's columns, in its order) and its columns."""

    frame: Any  # pandas.DataFrame
    columns: tuple[Column, ...]

    @property
    def rows(self) -> int:
        return len(self.frame)


def is_dataframe(value: Any) -> bool:
    return type(value).__module__.startswith("pandas") and hasattr(value, "columns") and hasattr(value, "iloc")


def fitted_columns(model: Any) -> list[str] | None:
    """The column names a scikit-learn model was fitted on (feature_names_in_), or None when it was
    fitted on an array."""
    names = getattr(model, "feature_names_in_", None)
    if names is None:
        steps = getattr(model, "steps", None)
        names = getattr(steps[0][1], "feature_names_in_", None) if steps else None
    return None if names is None else [str(n) for n in names]


def read_csv(path: Path) -> Any:
    """A CSV sample file as a DataFrame (pandas infers each column's type; empty cells are missing)."""
    try:
        import pandas as pd
    except ImportError as e:
        raise ExportError(f"samples.source: {path}: a model fitted on a DataFrame needs pandas to read CSV "
                          "samples", hint="pip install pandas") from e
    try:
        return pd.read_csv(path)
    except Exception as e:
        raise ExportError(f"samples.source: {path} could not be read as a table: {type(e).__name__}: {e}") from e


def table(spec: ModelSpec, model: Any, frame: Any, where: str) -> Table:
    """The samples frame checked against the columns the model was fitted on, at most samples.max_rows."""
    wanted = fitted_columns(model)
    if wanted is None:
        raise ExportError(f"{where}: the samples are a DataFrame but the model was fitted on an array",
                          hint="give the samples as an array (.npy/.csv of numbers), or fit the model on a "
                               "DataFrame")
    have = [str(c) for c in frame.columns]
    missing = [c for c in wanted if c not in have]
    if missing:
        raise ExportError(f"{where}: the samples lack column(s) {', '.join(map(repr, missing))} the model "
                          f"was fitted on", hint=f"give every column of {wanted}")
    if len(frame) == 0:
        raise ExportError(f"{where}: the samples have no rows", hint="give at least 1 row, ideally 100+")
    frame = frame[wanted].iloc[: spec.samples.max_rows].reset_index(drop=True)
    columns = tuple(_column(name, frame[name], where) for name in wanted)
    for name in spec.inputs:
        if name not in wanted:
            raise ExportError(f"inputs.{name}: the model has no column {name!r}",
                              hint=f"its columns are {', '.join(wanted)}")
    return Table(frame=frame, columns=columns)


def _column(name: str, series: Any, where: str) -> Column:
    import pandas as pd

    dtype = series.dtype
    if pd.api.types.is_bool_dtype(dtype):
        return Column(name=name, kind="boolean")
    if pd.api.types.is_integer_dtype(dtype):
        return Column(name=name, kind="integer")
    if pd.api.types.is_float_dtype(dtype):
        values = series.dropna().to_numpy()
        integral = values.size > 0 and bool(np.all(np.isfinite(values)) and np.all(values == np.round(values)))
        # an integer column with missing values is float in pandas; its values say what it is
        return Column(name=name, kind="integer" if integral and _was_int(series) else "number")
    if isinstance(dtype, pd.CategoricalDtype) or pd.api.types.is_object_dtype(dtype) or \
            pd.api.types.is_string_dtype(dtype):
        values = series.dropna().tolist()
        bad = next((v for v in values if not isinstance(v, str)), None)
        if bad is not None:
            raise ExportError(f"{where}: column {name!r} mixes strings with {type(bad).__name__} values "
                              f"({bad!r})", hint="make every value of a categorical column a string")
        seen = sorted(set(values))
        return Column(name=name, kind="string", categories=tuple(seen) if len(seen) <= MAX_CATEGORIES else None)
    raise ExportError(f"{where}: column {name!r} has dtype {dtype}, which mlpack cannot serve",
                      hint="use numbers, booleans or strings (categories)")


def _was_int(series: Any) -> bool:
    # pandas' nullable Int64 dtype keeps the kind; a plain float column with whole numbers stays a number
    return str(series.dtype).startswith(("Int", "UInt"))


def initial_types(columns: tuple[Column, ...]) -> list[tuple[str, Any]]:
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType

    return [(c.name, StringTensorType([None, 1]) if c.kind == "string" else FloatTensorType([None, 1]))
            for c in columns]


def for_conversion(model: Any, columns: tuple[Column, ...], frame: Any = None) -> Any:
    """What skl2onnx converts in the model's place: a copy whose SimpleImputers on string columns look for
    MISSING_STRING instead of NaN/None (in the graph a missing string is "", and skl2onnx converts string
    imputers only with a string missing_values), and a bare estimator behind a ColumnTransformer that
    joins the columns (fitted on `frame`, the samples).
    The original model is never changed."""
    from sklearn.pipeline import Pipeline

    if not isinstance(model, Pipeline) and frame is not None:
        # a bare estimator takes one input in skl2onnx: a ColumnTransformer passing every column through,
        # in the model's order, joins them first (fitted on the samples: passthrough learns nothing)
        from sklearn.compose import ColumnTransformer

        join = ColumnTransformer([("columns", "passthrough", [c.name for c in columns])]).fit(frame)
        model = Pipeline([("columns", join), ("model", model)])
    strings = {c.name for c in columns if c.kind == "string"}
    if not strings:
        return model
    clone = copy.deepcopy(model)
    for transformer in _column_transformers(clone):
        for _, est, cols in getattr(transformer, "transformers_", []):
            names = _names(cols, transformer)
            if names and set(names) <= strings:
                for imputer in _imputers(est):
                    mv = imputer.missing_values
                    if mv is None or (isinstance(mv, float) and math.isnan(mv)):
                        imputer.missing_values = MISSING_STRING
    return clone


def _column_transformers(model: Any) -> list[Any]:
    from sklearn.compose import ColumnTransformer

    from packager.export.converters import estimators

    return [e for e in estimators(model) if isinstance(e, ColumnTransformer)]


def _names(cols: Any, transformer: Any) -> list[str]:
    fitted = [str(n) for n in getattr(transformer, "feature_names_in_", [])]
    if isinstance(cols, str):
        return [cols]
    out = []
    for c in cols if isinstance(cols, list | tuple | np.ndarray) else []:
        if isinstance(c, str):
            out.append(c)
        elif isinstance(c, int | np.integer) and int(c) < len(fitted):
            out.append(fitted[int(c)])
    return out


def _imputers(est: Any) -> list[Any]:
    from sklearn.impute import SimpleImputer

    from packager.export.converters import estimators

    return [e for e in estimators(est) if isinstance(e, SimpleImputer)]


def feeds(frame: Any, columns: tuple[Column, ...]) -> dict[str, np.ndarray]:
    """The frame as onnxruntime feeds: one (rows, 1) array per column, as the handler builds them."""
    out: dict[str, np.ndarray] = {}
    for c in columns:
        series = frame[c.name]
        if c.kind == "string":
            values = [v if isinstance(v, str) else MISSING_STRING for v in series.astype(object).tolist()]
            out[c.name] = np.array(values, dtype=object).reshape(-1, 1)
        else:
            out[c.name] = series.astype("float64").to_numpy(dtype=np.float64, na_value=np.nan) \
                .astype(np.float32).reshape(-1, 1)
    return out


@dataclass(frozen=True, kw_only=True)
class Probe:
    """What the probes found: per column, whether it accepts missing values and (string columns) whether
    an unseen category is answered; and the probe rows the model answered, which parity checks too."""

    missing: dict[str, bool]
    unseen: dict[str, str]  # "accept" | "refuse"
    frame: Any  # the samples followed by every answered probe row


def probe(spec: ModelSpec, model: Any, t: Table) -> Probe:
    """Ask the original model, column by column, whether it answers rows with that column missing and
    (string columns) with a category it never saw. A column whose samples already hold missing values
    accepts them; [inputs.<column>] missing = true/false decides over the probe, but true for a column the
    model cannot answer is an error."""
    import pandas as pd

    base = t.frame.iloc[: min(PROBE_ROWS, t.rows)]
    answered = [t.frame]
    missing: dict[str, bool] = {}
    unseen: dict[str, str] = {}
    for c in t.columns:
        rows = base.copy()
        if c.kind in ("integer", "boolean"):
            rows[c.name] = rows[c.name].astype("float64" if c.kind == "integer" else object)
        rows[c.name] = np.nan  # pandas' own missing marker, in object columns too (read_csv writes it)
        ok, why = _answers(model, rows)
        declared = spec.inputs[c.name].missing if c.name in spec.inputs else None
        in_samples = bool(t.frame[c.name].isna().any())
        if declared is True and not ok:
            raise ExportError(f"inputs.{c.name}.missing: true, but the model cannot answer rows where {c.name!r} is "
                              f"missing ({why})", hint="impute the column in the pipeline (SimpleImputer), or "
                                                       "set missing = false")
        missing[c.name] = declared if declared is not None else (ok or in_samples)
        if ok and missing[c.name]:
            answered.append(rows)
        if c.kind == "string":
            rows = base.copy()
            rows[c.name] = UNSEEN_PROBE
            ok, _ = _answers(model, rows)
            unseen[c.name] = "accept" if ok else "refuse"
            if ok:
                answered.append(rows)
    frame = pd.concat(answered, ignore_index=True)
    return Probe(missing=missing, unseen=unseen, frame=frame)


def _answers(model: Any, rows: Any) -> tuple[bool, str]:
    """Whether the model predicts on these rows with finite outputs (and why not)."""
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = model.predict_proba(rows) if hasattr(model, "predict_proba") else model.predict(rows)
    except Exception as e:
        return False, f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    arr = np.asarray(out)
    if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
        return False, "its outputs are not finite"
    return True, ""


def rules(spec: ModelSpec, t: Table, found: Probe) -> dict[str, dict[str, Any]]:
    """model.json's input_rules for each column."""
    out: dict[str, dict[str, Any]] = {}
    for c in t.columns:
        rule: dict[str, Any] = {"kind": c.kind, "missing": found.missing[c.name]}
        if c.kind == "string":
            rule["unseen"] = found.unseen[c.name]
            if c.categories is not None:
                rule["categories"] = list(c.categories)
        declared = spec.inputs.get(c.name)
        if declared is not None and (declared.min is not None or declared.max is not None):
            if c.kind == "string":
                raise ExportError(f"inputs.{c.name}: min/max given for a string column",
                                  hint="ranges apply to numeric columns")
            rule.update(min=declared.min, max=declared.max, range_from="mlpack.toml")
        example = _example(t.frame[c.name], c.kind)
        if example is not None:
            rule["example"] = example
        out[c.name] = rule
    return out


def _example(series: Any, kind: Kind) -> Any:
    values = series.dropna()
    if len(values) == 0:
        return None
    v = values.iloc[0]
    if kind == "string":
        return str(v)
    if kind == "boolean":
        return bool(v)
    if kind == "integer":
        return int(v)
    f = float(v)
    return float(f"{f:.6g}") if math.isfinite(f) else None


def category_shares(series_values: np.ndarray) -> dict[str, float]:
    """A string column's feed (missing as "") -> the share of each category among the present values."""
    values = [v for v in series_values.reshape(-1).tolist() if v != MISSING_STRING]
    if not values:
        return {}
    counts: dict[str, int] = {}
    for v in values:
        counts[v] = counts.get(v, 0) + 1
    top = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:MAX_CATEGORIES]
    return {k: float(f"{n / len(values):.9g}") for k, n in sorted(top)}
