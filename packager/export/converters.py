"""Converters skl2onnx needs for gradient-boosted trees, registered once per process when a model uses them.

Enters: a scikit-learn-compatible model (an estimator, or a Pipeline or other meta-estimator holding
some) about to go through skl2onnx. Leaves: skl2onnx's converter registry ready for every estimator in
it, and the target opset the conversion must use (None: the converter's choice); or ExportError when
the model needs onnxmltools and it is not installed.

- XGBClassifier/XGBRegressor (xgboost) and LGBMClassifier/LGBMRegressor (lightgbm), and their
  subclasses, get onnxmltools' converters with skl2onnx's shape calculators (the pattern skl2onnx
  documents for third-party estimators), registered only when the model holds one: the library is then
  imported already, since the model was built with it. Their trees need the ai.onnx.ml opset pinned to
  3, which skl2onnx can assemble (onnxmltools would otherwise pick 5).
- HistGradientBoostingClassifier/Regressor keep skl2onnx's own converter, wrapped to hand its node
  attributes to onnx as integers: skl2onnx (1.20) passes Python booleans for the missing-value flags,
  which protobuf 7 refuses ("Expected an int, got a boolean"). ONNX has no boolean attribute, so the
  values are 0/1 either way.

Thresholds: scikit-learn and LightGBM compare float64(x) <= t with float64 thresholds; ONNX compares the
float32 input with float32 thresholds. Rounding t to the nearest float32 sends an input equal to that
rounded value down the other branch (it happens on real data wherever adjacent float32 values occur), so
the wrapped converters round each threshold towards the side that keeps every float32 input on its
branch. XGBoost's thresholds are float32 already. With that, these trees match with the project's
default parity tolerances: only the float32 sums of leaf values differ, well within them. A step
before the trees that rounds differently in float32 (a StandardScaler) can still push an input across
a split; that is a real difference in the exported model, which parity reports rather than a looser
tolerance hiding it.
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from packager.errors import ExportError

ML_OPSET = 3  # ai.onnx.ml version skl2onnx assembles; onnxmltools' tree converters need it pinned

# library -> (class name, skl2onnx alias, classifier?) for each estimator onnxmltools converts
_ONNXMLTOOLS: dict[str, list[tuple[str, str, bool]]] = {
    "xgboost": [("XGBClassifier", "XGBoostXGBClassifier", True),
                ("XGBRegressor", "XGBoostXGBRegressor", False)],
    "lightgbm": [("LGBMClassifier", "LightGbmLGBMClassifier", True),
                 ("LGBMRegressor", "LightGbmLGBMRegressor", False)],
}
_HIST_CLASSES = ("HistGradientBoostingClassifier", "HistGradientBoostingRegressor")
_registered: set[type] = set()  # classes whose converter this module registered (or wrapped)
# how the next conversion rounds tree thresholds: "float32" (inputs are float32 values, as array samples
# are) or "decimal" (inputs are decimal numbers a request sends, as a DataFrame's columns are); set by
# prepare, read by the wrapped converters while that conversion runs
_rounding = {"inputs": "float32"}


def prepare(model: Any, opset: int | None, *, inputs: str = "float32") -> dict[str, int] | None:
    """Register what `model` needs and return the target opset for skl2onnx: None (its choice) unless
    `opset` is set or an onnxmltools converter is in play, which pin ai.onnx.ml to ML_OPSET.

    inputs: "float32" when the model's inputs are float32 values (array samples), "decimal" when they are
    decimal numbers rounded to float32 on the way in (a DataFrame's columns, sent as JSON). With decimal
    inputs a threshold equal to a data value (HistGradientBoosting's bins are midpoints of equal values
    where a value repeats: prices with two decimals) must keep that value on its branch, which the
    nearest float32 does: rounding is monotonic, so only an input within half a float32 step of a
    threshold can change sides."""
    _rounding["inputs"] = inputs
    classes = {type(est) for est in estimators(model)}
    needs_ml = False
    for library, entries in _ONNXMLTOOLS.items():
        module = sys.modules.get(library)
        if module is None:
            continue
        bases = {getattr(module, name): (alias, is_clf) for name, alias, is_clf in entries if hasattr(module, name)}
        used = [(cls, *bases[base]) for cls in classes for base in cls.__mro__ if base in bases]
        if used:
            _register_onnxmltools(library, used)
            needs_ml = True
    if any(c.__module__.startswith("sklearn.") and c.__name__ in _HIST_CLASSES for c in classes):
        _wrap_hist_gradient_boosting()
    if opset is None and not needs_ml:
        return None
    from skl2onnx import get_latest_tested_opset_version

    return {"": opset or get_latest_tested_opset_version(), "ai.onnx.ml": ML_OPSET}


def estimators(model: Any) -> Iterator[Any]:
    """The model and every estimator inside it (Pipeline steps, ColumnTransformer and ensemble members),
    as scikit-learn's get_params(deep=True) lists them."""
    yield model
    get_params = getattr(model, "get_params", None)
    if get_params is None:
        return
    try:
        params = get_params(deep=True)
    except Exception:  # a third-party estimator's get_params may fail; its members are then unknown
        return
    for value in params.values():
        if hasattr(value, "get_params") and not isinstance(value, type):
            yield value
        elif isinstance(value, list | tuple):  # Pipeline.steps, VotingClassifier.estimators: (name, est)
            for item in value:
                est = item[1] if isinstance(item, tuple) and len(item) >= 2 else item
                if hasattr(est, "get_params") and not isinstance(est, type):
                    yield est


def _register_onnxmltools(library: str, used: list[tuple[type, str, bool]]) -> None:
    try:
        from skl2onnx import update_registered_converter
        from skl2onnx.common.shape_calculator import (
            calculate_linear_classifier_output_shapes,
            calculate_linear_regressor_output_shapes,
        )

        if library == "xgboost":  # its thresholds are float32 already, compared as float32
            from onnxmltools.convert.xgboost.operator_converters.XGBoost import convert_xgboost as convert
        else:  # LightGBM compares float64(x) <= t, like scikit-learn
            from onnxmltools.convert.lightgbm.operator_converters.LightGbm import convert_lightgbm

            convert = _exact_in_float32(convert_lightgbm)
    except ImportError as e:
        shown = {"xgboost": "XGBoost", "lightgbm": "LightGBM"}[library]
        raise ExportError(f"model.source: converting {shown} models to ONNX needs onnxmltools, which is not "
                          f"installed ({e})",
                          hint=f"pip install 'mlpack-lambda[{library}]' (or pip install onnxmltools)") from e
    for cls, alias, is_classifier in used:
        if cls in _registered:
            continue
        if is_classifier:
            update_registered_converter(cls, alias, calculate_linear_classifier_output_shapes, convert,
                                        options={"nocl": [True, False], "zipmap": [True, False, "columns"]})
        else:
            options = {"split": None} if library == "lightgbm" else None
            update_registered_converter(cls, alias, calculate_linear_regressor_output_shapes, convert,
                                        options=options)
        _registered.add(cls)


def _wrap_hist_gradient_boosting() -> None:
    import sklearn.ensemble
    from skl2onnx import update_registered_converter
    from skl2onnx.common._registration import get_converter, get_shape_calculator

    for name in _HIST_CLASSES:
        cls = getattr(sklearn.ensemble, name)
        alias = f"Sklearn{name}"
        if cls in _registered:
            continue
        original = get_converter(alias)
        update_registered_converter(cls, alias, get_shape_calculator(alias), _exact_in_float32(original, hist=True),
                                    options=original.get_allowed_options())
        _registered.add(cls)


def _exact_in_float32(convert: Callable[..., Any], *, hist: bool = False) -> Callable[..., Any]:
    """`convert` with its tree nodes made to decide as the original does on float32 inputs: booleans in
    attributes passed as 0/1, and float64 thresholds rounded to the float32 on the same side of every
    float32 input (`float32_thresholds`) instead of the nearest one. hist: the model's HistGradientBoosting
    predictors are rounded before the converter reads them (it makes float32 arrays of them itself)."""
    def converter(scope: Any, operator: Any, container: Any) -> Any:
        add_node = container.add_node

        def add_node_exact(op_type: str, *args: Any, **attrs: Any) -> Any:
            attrs = {k: _no_bools(v) for k, v in attrs.items()}
            if op_type in _TREE_OPS and "nodes_values" in attrs and "nodes_modes" in attrs:
                attrs["nodes_values"] = float32_thresholds(attrs["nodes_values"], attrs["nodes_modes"])
            return add_node(op_type, *args, **attrs)

        container.add_node = add_node_exact
        model = operator.raw_operator
        saved = getattr(model, "_predictors", None) if hist else None
        if saved is not None:
            model._predictors = [[_rounded_predictor(p) for p in row] for row in saved]
        try:
            return convert(scope, operator, container)
        finally:
            del container.add_node  # the instance attribute: the class's method shows through again
            if saved is not None:
                model._predictors = saved
    return converter


_TREE_OPS = ("TreeEnsembleClassifier", "TreeEnsembleRegressor")


def float32_thresholds(values: Any, modes: Any) -> Any:
    """Float64 thresholds as the float32 values that split every float32 input the same way: for x <= t
    (and x > t) the largest float32 not above t, for x < t (and x >= t) the smallest not below. Rounding
    to the nearest float32 instead sends an input lying between t and that value the other way; which
    happens to samples only when adjacent float32 values both occur in the data."""
    v = np.asarray(values, dtype=np.float64)
    f = v.astype(np.float32)
    if _rounding["inputs"] == "decimal":
        return f
    with np.errstate(invalid="ignore"):
        down = np.where(f.astype(np.float64) > v, np.nextafter(f, np.float32(-np.inf)), f)
        up = np.where(f.astype(np.float64) < v, np.nextafter(f, np.float32(np.inf)), f)
    m = np.asarray([x.decode() if isinstance(x, bytes) else str(x) for x in modes])
    return np.where(np.isin(m, ("BRANCH_LEQ", "BRANCH_GT")), down,
                    np.where(np.isin(m, ("BRANCH_LT", "BRANCH_GTE")), up, f)).astype(np.float32)


def _rounded_predictor(predictor: Any) -> Any:
    """A copy of a HistGradientBoosting TreePredictor whose numeric split thresholds are float32_thresholds
    (scikit-learn compares float64(x) <= t; they are branch-less-or-equal nodes)."""
    nodes = predictor.nodes.copy()
    field = "num_threshold" if "num_threshold" in nodes.dtype.names else "threshold"
    split = ~nodes["is_leaf"].astype(bool)
    if "is_categorical" in nodes.dtype.names:
        split &= ~nodes["is_categorical"].astype(bool)
    nodes[field][split] = float32_thresholds(nodes[field][split], ["BRANCH_LEQ"] * int(split.sum()))
    rounded = copy.copy(predictor)
    rounded.nodes = nodes
    return rounded


def _no_bools(value: Any) -> Any:
    if isinstance(value, bool | np.bool_):
        return int(value)
    if isinstance(value, list) and any(isinstance(v, bool | np.bool_) for v in value):
        return [int(v) if isinstance(v, bool | np.bool_) else v for v in value]
    return value
