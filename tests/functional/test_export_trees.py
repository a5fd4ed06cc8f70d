"""Gradient-boosted trees export directly: scikit-learn's HistGradientBoosting, XGBoost and LightGBM
classifiers (binary and multi-class) and regressors, alone or as a Pipeline's last step, from a joblib
file or a factory; parity passes and the handler answers like the original on held-out rows. And a
converter's failure is summarised in a few lines, its full text in the build folder's log."""

from __future__ import annotations

import importlib.util
import json
import textwrap
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest

from handlers import inference
from handlers.inference import Request
from packager.cli import main
from packager.config import spec as spec_mod
from packager.errors import ExportError
from packager.export import convert
from packager.export.pipeline import export
from tests.support.projects import make_project


@pytest.fixture(autouse=True)
def _one_thread() -> Any:
    """HistGradientBoosting trains with every OpenMP thread; on a busy machine one is much faster."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="openmp"):
        yield


def _needs(library: str) -> pytest.MarkDecorator:
    missing = [m for m in (library, "onnxmltools") if importlib.util.find_spec(m) is None]
    return pytest.mark.skipif(bool(missing), reason=f"{' and '.join(missing)} not installed "
                                                    f"(pip install 'mlpack-lambda[{library}]')")


# library -> (import line, estimator expressions by task); small models on small data: seconds per export
LIBRARIES = {
    "sklearn": ("from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor",
                {"classifier": "HistGradientBoostingClassifier(max_iter=25, random_state=0)",
                 "regressor": "HistGradientBoostingRegressor(max_iter=25, random_state=0)"}),
    "xgboost": ("from xgboost import XGBClassifier, XGBRegressor",
                {"classifier": "XGBClassifier(n_estimators=25, max_depth=3, n_jobs=1, random_state=0)",
                 "regressor": "XGBRegressor(n_estimators=25, max_depth=3, n_jobs=1, random_state=0)"}),
    "lightgbm": ("from lightgbm import LGBMClassifier, LGBMRegressor",
                 {"classifier": "LGBMClassifier(n_estimators=25, num_leaves=15, n_jobs=1, random_state=0, "
                                "verbose=-1)",
                  "regressor": "LGBMRegressor(n_estimators=25, num_leaves=15, n_jobs=1, random_state=0, "
                               "verbose=-1)"}),
}
DATA = {"binary": "load_breast_cancer", "multiclass": "load_wine", "regression": "load_diabetes"}

# train.py of a project: the same text trains the model the test compares against and, as a factory,
# the one `mlpack export` converts (every estimator is seeded and single-threaded: same data, same model)
TRAIN = '''
import numpy as np
from sklearn.datasets import {loader}
from sklearn.impute import SimpleImputer
from sklearn.pipeline import make_pipeline
{imports}


def data():
    x, y = {loader}(return_X_y=True)
    x = x.astype(np.float32)
    x[::7, 1] = np.nan  # missing values: every one of these libraries routes them down the trees
    x[::5, 3] = np.nan
    held_out = np.zeros(len(x), dtype=bool)
    held_out[1::4] = True
    return x[~held_out], y[~held_out], x[held_out], y[held_out]


def build():
    x, y, _, _ = data()
    model = {estimator}
    return ({wrap}).fit(x, y)


def samples():
    return data()[0]
'''


def _cases() -> list[Any]:
    cases = []
    for library, (_, estimators) in LIBRARIES.items():
        marks = [] if library == "sklearn" else [_needs(library)]
        for kind in ("binary", "multiclass", "regression"):
            task = "regressor" if kind == "regression" else "classifier"
            cases.append(pytest.param(library, kind, estimators[task], False, marks=marks,
                                      id=f"{library}-{kind}"))
        pipe_kind = {"sklearn": "binary", "xgboost": "multiclass", "lightgbm": "regression"}[library]
        task = "regressor" if pipe_kind == "regression" else "classifier"
        cases.append(pytest.param(library, pipe_kind, estimators[task], True, marks=marks,
                                  id=f"{library}-{pipe_kind}-pipeline"))
    return cases


def _train_source(library: str, kind: str, estimator: str, pipeline: bool) -> str:
    return TRAIN.format(loader=DATA[kind], imports=LIBRARIES[library][0], estimator=estimator,
                        wrap="make_pipeline(SimpleImputer(), model)" if pipeline else "model")


def _project(root: Path, train: str, source: str) -> tuple[Path, dict[str, Any]]:
    """A project whose model comes from `train` through a joblib file or the train:build factory; also
    returns train.py's namespace with the model it builds (the original the export is compared with)."""
    root.mkdir(parents=True)
    (root / "train.py").write_text(train)
    namespace: dict[str, Any] = {}
    exec(compile(train, str(root / "train.py"), "exec"), namespace)  # the test's own train.py
    namespace["model"] = namespace["build"]()
    if source == "joblib":
        joblib.dump(namespace["model"], root / "model.joblib")
        np.save(root / "samples.npy", namespace["samples"]())
        model_ref, samples_ref = "model.joblib", "samples.npy"
    else:
        model_ref, samples_ref = "train:build", "train:samples"
    make_project(root, source=model_ref, samples=samples_ref, name="trees")
    return root, namespace


def _joblib_project(root: Path, model: Any, x: np.ndarray, *, name: str) -> Path:
    """A project holding `model` as model.joblib and `x` as its samples."""
    root.mkdir(parents=True)
    joblib.dump(model, root / "model.joblib")
    np.save(root / "samples.npy", x)
    return make_project(root, source="model.joblib", samples="samples.npy", name=name)


def _predict(out_dir: Path, rows: np.ndarray) -> dict[str, Any]:
    model = inference.load_model(str(out_dir))
    res = inference.handle(model, Request("POST", "/predict", body=json.dumps({"inputs": rows.tolist()}),
                                          content_type="application/json", request_id="r-1"))
    body = json.loads(res.body())
    assert res.status == 200, body
    outputs: dict[str, Any] = body["outputs"]
    return outputs


@pytest.mark.parametrize("source", ["joblib", "factory"])
@pytest.mark.parametrize(("library", "kind", "estimator", "pipeline"), _cases())
def test_tree_model_exports_and_serves_like_the_original(tmp_path: Path, library: str, kind: str,
                                                         estimator: str, pipeline: bool, source: str) -> None:
    root, ns = _project(tmp_path / "p", _train_source(library, kind, estimator, pipeline), source)
    original = ns["model"]
    x_train, _, x_held, _ = ns["data"]()
    artifact = export(spec_mod.load(root)).artifact
    meta = artifact.metadata

    assert meta["parity"]["passed"] and meta["parity"]["rows"] == len(x_train)
    assert meta["parity"]["rtol"] == 1e-4 and meta["parity"]["atol"] == 1e-5  # the project's defaults
    assert meta["versions"]["framework"] == {"sklearn": "scikit-learn"}.get(library, library)
    assert ("onnxmltools" in meta["versions"]["converter"]) == (library != "sklearn")
    rows = x_held[np.isfinite(x_held).all(axis=1)]  # the handler refuses NaN; the samples had them
    assert len(rows) >= 20
    outputs = _predict(artifact.out_dir, rows)
    if kind == "regression":
        assert meta["task"] == "regression"
        assert [c["kind"] for c in meta["parity"]["checks"]] == ["close"]
        (values,) = outputs.values()
        np.testing.assert_allclose(values, original.predict(rows), rtol=1e-4, atol=1e-4)
        return
    classes = sorted(set(ns["data"]()[1].tolist()))
    assert meta["task"] == "classification" and meta["classes"] == classes
    assert meta["roles"] == {"label": "label", "scores": "probabilities", "scores_kind": "probabilities"}
    assert sorted(c["kind"] for c in meta["parity"]["checks"]) == ["close", "exact"]
    assert len(classes) == (2 if kind == "binary" else 3)
    assert outputs["label"] == [str(c) for c in original.predict(rows)]
    probs = np.array([[row[str(c)] for c in classes] for row in outputs["probabilities"]])
    np.testing.assert_allclose(probs, original.predict_proba(rows), rtol=1e-4, atol=1e-5)


@_needs("lightgbm")
def test_string_class_labels_come_through(tmp_path: Path) -> None:
    train = _train_source("lightgbm", "multiclass", LIBRARIES["lightgbm"][1]["classifier"], False).replace(
        "    return x[~held_out], y[~held_out]",
        "    y = np.array(['barolo', 'grignolino', 'barbera'])[y]\n    return x[~held_out], y[~held_out]")
    root, ns = _project(tmp_path / "p", train, "factory")
    meta = export(spec_mod.load(root)).artifact.metadata
    assert meta["classes"] == ["barbera", "barolo", "grignolino"] and meta["parity"]["passed"]
    rows = ns["data"]()[2][:10]
    rows = rows[np.isfinite(rows).all(axis=1)]
    assert _predict(root / "build" / "trees", rows)["label"] == ns["model"].predict(rows).tolist()


def test_a_model_without_a_converter_is_named_and_logged(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                                         ) -> None:
    root = tmp_path / "p"
    root.mkdir()
    (root / "train.py").write_text(textwrap.dedent("""
        import numpy as np
        from sklearn.base import BaseEstimator, RegressorMixin


        class Doubler(RegressorMixin, BaseEstimator):
            def fit(self, x, y):
                self.n_features_in_ = x.shape[1]
                return self

            def predict(self, x):
                return 2 * np.asarray(x).sum(axis=1)


        def build():
            return Doubler().fit(np.ones((3, 2)), np.ones(3))


        def samples():
            return np.ones((4, 2), dtype=np.float32)
    """))
    make_project(root, source="train:build", samples="train:samples", name="custom")
    assert main(["export", str(root)]) != 0
    err = capsys.readouterr().err
    log = root / "build" / "custom" / convert.ERROR_LOG
    assert "cannot convert Doubler to ONNX (train.Doubler)" in err
    assert str(log) in err and log.is_file()
    full = log.read_text()
    assert "Traceback" in full and "Doubler" in full
    assert not (root / "build" / "custom" / "model.onnx").exists()


def test_a_huge_converter_error_is_summarised_and_logged_in_full(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from sklearn.linear_model import LinearRegression

    x = np.arange(20, dtype=np.float32).reshape(10, 2)
    model = LinearRegression().fit(x, x.sum(axis=1))
    dump = "ValueError: Unable to create node 'TreeEnsembleClassifier' with attributes={\n" + "\n".join(
        f" 'class_ids': [{i}, " + "0, " * 400 + "]," for i in range(5000))

    def fail(*args: Any, **kwargs: Any) -> Any:
        raise ValueError(dump)

    monkeypatch.setattr("skl2onnx.to_onnx", fail)  # the converter fails the way skl2onnx's tree converters did
    root = _joblib_project(tmp_path / "p", model, x, name="huge")
    with pytest.raises(ExportError) as caught:
        export(spec_mod.load(root))
    text = str(caught.value)
    lines = text.splitlines()
    assert len(dump) > 500_000 and len(lines) <= 20
    assert all(len(line) <= 170 for line in lines if line.startswith("  |"))
    assert "cannot convert LinearRegression to ONNX (sklearn.linear_model._base.LinearRegression): ValueError" in text
    assert "Unable to create node 'TreeEnsembleClassifier'" in lines[1]
    assert "4,989 more lines" in text
    log = root / "build" / "huge" / convert.ERROR_LOG
    assert f"the full error is in {log}" in text
    assert dump in log.read_text()


ADJACENT = '''
import numpy as np
{imports}


def data():
    # feature 0 takes two adjacent float32 values; the split between them is a float64 midpoint whose
    # nearest float32 is the upper one (its last mantissa bit is even), so rounding it to the nearest
    # float32 would send the upper value's rows down the lower value's branch
    a = np.nextafter(np.float32(1), np.float32(2))
    b = np.nextafter(a, np.float32(2))
    rng = np.random.default_rng(0)
    upper = np.arange(200) % 2 == 1
    x = np.column_stack([np.where(upper, b, a), rng.normal(size=200)]).astype(np.float32)
    return x, upper.astype(int)


def build():
    x, y = data()
    return {estimator}.fit(x, y)


def samples():
    return data()[0]
'''


@pytest.mark.parametrize("library", [pytest.param("sklearn"), pytest.param("lightgbm", marks=_needs("lightgbm"))])
def test_float64_thresholds_split_adjacent_float32_values_like_the_original(tmp_path: Path, library: str) -> None:
    imports, estimators = LIBRARIES[library]
    root, ns = _project(tmp_path / "p", ADJACENT.format(imports=imports, estimator=estimators["classifier"]),
                        "factory")
    x, y = ns["data"]()
    assert (ns["model"].predict(x) == y).all()  # the original separates the two values
    meta = export(spec_mod.load(root)).artifact.metadata
    assert meta["parity"]["passed"], meta["parity"]
    assert _predict(root / "build" / "trees", x[:20])["label"] == [str(v) for v in y[:20]]


def test_float32_thresholds_keep_every_float32_input_on_its_side() -> None:
    from packager.export.converters import float32_thresholds

    a = np.float32(1.0)
    b = np.nextafter(a, np.float32(2))
    t = (np.float64(a) + np.float64(b)) / 2  # not a float32: nearest rounding gives a or b
    modes = ["BRANCH_LEQ", "BRANCH_LT", "BRANCH_GTE", "BRANCH_GT", "LEAF"]
    got = float32_thresholds([t] * 5, modes)
    assert got.dtype == np.float32 and list(got[:4]) == [a, b, b, a]
    for x in (a, b):
        assert (x <= got[0]) == (x <= t) and (x < got[1]) == (x < t)
        assert (x >= got[2]) == (x >= t) and (x > got[3]) == (x > t)
    exact = float32_thresholds([0.5, 2.0], ["BRANCH_LEQ", "BRANCH_LT"])
    assert list(exact) == [0.5, 2.0]  # float32 values already: unchanged


@_needs("xgboost")
@_needs("lightgbm")
def test_trees_inside_an_ensemble_are_found_and_converted(tmp_path: Path) -> None:
    from lightgbm import LGBMClassifier
    from sklearn.datasets import load_wine
    from sklearn.ensemble import HistGradientBoostingClassifier, VotingClassifier
    from xgboost import XGBClassifier

    x, y = load_wine(return_X_y=True)
    x = x.astype(np.float32)
    model = VotingClassifier([("xgb", XGBClassifier(n_estimators=10, n_jobs=1, random_state=0)),
                              ("lgbm", LGBMClassifier(n_estimators=10, n_jobs=1, random_state=0, verbose=-1)),
                              ("hist", HistGradientBoostingClassifier(max_iter=10, random_state=0))],
                             voting="soft", flatten_transform=False).fit(x, y)
    root = _joblib_project(tmp_path / "p", model, x, name="trees")
    meta = export(spec_mod.load(root)).artifact.metadata
    assert meta["parity"]["passed"] and meta["classes"] == [0, 1, 2]
    assert meta["roles"] == {"label": "label", "scores": "probabilities", "scores_kind": "probabilities"}


@_needs("xgboost")
def test_a_missing_onnxmltools_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    train = _train_source("xgboost", "regression", LIBRARIES["xgboost"][1]["regressor"], False)
    root, _ = _project(tmp_path / "p", train, "joblib")
    for name in [m for m in sys.modules if m == "onnxmltools" or m.startswith("onnxmltools.")] + ["onnxmltools"]:
        monkeypatch.setitem(sys.modules, name, None)  # as if not installed: importing it fails
    with pytest.raises(ExportError, match="converting XGBoost models to ONNX needs onnxmltools, which is not") as e:
        export(spec_mod.load(root))
    assert e.value.hint is not None and "mlpack-lambda[xgboost]" in e.value.hint


def test_an_unwritable_error_log_still_gives_the_summary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sklearn.linear_model import LinearRegression

    def fail(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("converter broke\nsecond line")

    monkeypatch.setattr("skl2onnx.to_onnx", fail)
    x = np.arange(20, dtype=np.float32).reshape(10, 2)
    root = _joblib_project(tmp_path / "p", LinearRegression().fit(x, x.sum(axis=1)), x, name="m")
    (root / "build").write_text("a file where the build folder would go")
    with pytest.raises(ExportError) as caught:
        export(spec_mod.load(root))
    text = str(caught.value)
    assert "RuntimeError:\n  | converter broke\n  | second line\n" in text
    assert f"the full error could not be written to {root / 'build' / 'm' / convert.ERROR_LOG}" in text
    assert "mlpack --debug" in text
