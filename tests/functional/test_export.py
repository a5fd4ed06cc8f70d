"""`mlpack export`: every source kind, parity, determinism, the skip, and each bad-input case."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import textwrap
from pathlib import Path

import joblib
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from sklearn.datasets import load_diabetes, load_iris
from sklearn.ensemble import (
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from packager.cli import main
from packager.config import spec as spec_mod
from packager.errors import ExportError, ParityError
from packager.export.pipeline import export
from tests.support.projects import make_project

IRIS = load_iris()
X_IRIS = IRIS.data.astype(np.float32)
DIAB = load_diabetes()
X_DIAB = DIAB.data.astype(np.float32)


def sklearn_project(root: Path, model: object, x: np.ndarray, extra: str = "") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    joblib.dump(model, root / "model.joblib")
    np.save(root / "samples.npy", x)
    return make_project(root, source="model.joblib", samples="samples.npy", extra=extra)


def run_onnx(out: Path, x: np.ndarray) -> list[np.ndarray]:
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})


def load_json(out: Path) -> dict:
    return json.loads((out / "model.json").read_text())


CLASSIFIERS = [
    LogisticRegression(max_iter=500, random_state=0),
    RandomForestClassifier(n_estimators=20, random_state=0),
    GradientBoostingClassifier(n_estimators=20, random_state=0),
    make_pipeline(StandardScaler(), LogisticRegression(max_iter=500, random_state=0)),
]
REGRESSORS = [
    LinearRegression(),
    RandomForestRegressor(n_estimators=20, random_state=0),
    GradientBoostingRegressor(n_estimators=20, random_state=0),
    make_pipeline(StandardScaler(), GradientBoostingRegressor(n_estimators=20, random_state=0)),
]


@pytest.mark.parametrize("model", CLASSIFIERS, ids=lambda m: type(m).__name__ if not hasattr(m, "steps")
                         else "Pipeline")
def test_sklearn_classifiers_export_without_zipmap_and_match(tmp_path: Path, model: object) -> None:
    model.fit(X_IRIS, IRIS.target)  # type: ignore[attr-defined]
    spec = spec_mod.load(sklearn_project(tmp_path / "p", model, X_IRIS,
                                         'label_names = ["setosa", "versicolor", "virginica"]'))
    art = export(spec).artifact
    meta = load_json(art.out_dir)
    assert meta["task"] == "classification"
    assert meta["roles"] == {"label": "label", "scores": "probabilities", "scores_kind": "probabilities"}
    assert meta["signature"]["inputs"] == [{"name": "input", "dtype": "float32", "shape": ["batch", 4]}]
    assert [o["name"] for o in meta["signature"]["outputs"]] == ["label", "probabilities"]
    assert meta["parity"]["passed"] and meta["parity"]["rows"] == 150
    labels, probs = run_onnx(art.out_dir, X_IRIS)  # plain tensors: no ZipMap
    assert isinstance(probs, np.ndarray) and probs.shape == (150, 3)
    assert (labels == model.predict(X_IRIS)).all()  # type: ignore[attr-defined]
    assert meta["classes"] == [0, 1, 2]
    assert meta["versions"]["framework"] == "scikit-learn"
    assert meta["source"]["sha256"] == hashlib.sha256((tmp_path / "p" / "model.joblib").read_bytes()).hexdigest()


@pytest.mark.parametrize("model", REGRESSORS, ids=lambda m: type(m).__name__ if not hasattr(m, "steps")
                         else "Pipeline")
def test_sklearn_regressors_export_and_match(tmp_path: Path, model: object) -> None:
    model.fit(X_DIAB, DIAB.target)  # type: ignore[attr-defined]
    spec = spec_mod.load(sklearn_project(tmp_path / "p", model, X_DIAB, ""))
    art = export(spec).artifact
    meta = load_json(art.out_dir)
    assert meta["task"] == "regression" and meta["label_names"] == []
    assert meta["parity"]["passed"]
    (pred,) = run_onnx(art.out_dir, X_DIAB)
    np.testing.assert_allclose(pred.ravel(), model.predict(X_DIAB), rtol=1e-4, atol=1e-3)  # type: ignore
    (reg,) = meta["profile"]["outputs"]["regression"]
    assert reg["min"] <= reg["q50"] <= reg["max"]


def test_profile_describes_each_feature_and_the_class_shares(tmp_path: Path) -> None:
    model = LogisticRegression(max_iter=500, random_state=0).fit(X_IRIS, IRIS.target)
    root = tmp_path / "p"
    root.mkdir()
    joblib.dump(model, root / "model.joblib")
    np.savetxt(root / "samples.csv", X_IRIS, delimiter=",", header="a,b,c,d", comments="", fmt="%.1f")
    spec = spec_mod.load(make_project(root, source="model.joblib", samples="samples.csv"))
    meta = export(spec).artifact.metadata
    feats = meta["profile"]["inputs"]["input"]
    assert [f["name"] for f in feats] == ["a", "b", "c", "d"]
    assert meta["feature_names"] == {"input": ["a", "b", "c", "d"]}
    first = feats[0]
    col = X_IRIS[:, 0].astype(np.float64)
    assert first["count"] == 150 and first["nan_share"] == 0
    assert first["min"] == pytest.approx(col.min()) and first["max"] == pytest.approx(col.max())
    assert first["mean"] == pytest.approx(col.mean(), rel=1e-6)
    assert first["q01"] <= first["q50"] <= first["q99"]
    shares = meta["profile"]["outputs"]["classes"]
    assert set(shares) == {"0", "1", "2"} and sum(shares.values()) == pytest.approx(1.0)
    predicted = np.bincount(model.predict(X_IRIS), minlength=3) / 150
    assert [shares[k] for k in "012"] == pytest.approx(list(predicted))
    # the drift reference: decile edges of each feature (numpy's quantiles) and the samples' count per bin
    ref = meta["reference"]
    assert ref["rows"] == 150 and [f["name"] for f in ref["features"]] == ["a", "b", "c", "d"]
    for i, feat in enumerate(ref["features"]):
        col = np.round(X_IRIS[:, i].astype(np.float32), 1).astype(np.float64)
        edges = sorted({float(f"{q:.9g}") for q in np.quantile(col, np.linspace(0, 1, 11)[1:-1])})
        assert feat["kind"] == "numeric" and feat["edges"] == pytest.approx(edges)
        assert feat["counts"] == np.bincount(np.digitize(col, feat["edges"]), minlength=len(edges) + 1).tolist()
    assert ref["outputs"][0]["name"] == "prediction"
    assert [ref["outputs"][0]["categories"][k] for k in "012"] == np.bincount(model.predict(X_IRIS)).tolist()


def test_onnx_source_is_checked_and_run(tmp_path: Path) -> None:
    from skl2onnx import to_onnx

    model = LogisticRegression(max_iter=500).fit(X_IRIS, IRIS.target)
    root = tmp_path / "p"
    root.mkdir()
    proto = to_onnx(model, X_IRIS[:1], options={id(model): {"zipmap": False}})
    (root / "model.onnx").write_bytes(proto.SerializeToString())
    np.save(root / "samples.npy", X_IRIS)
    spec = spec_mod.load(make_project(root, source="model.onnx", samples="samples.npy"))
    meta = export(spec).artifact.metadata
    assert meta["source"]["kind"] == "onnx"
    assert {c["kind"] for c in meta["parity"]["checks"]} == {"finite"}
    assert meta["task"] == "classification"

    (root / "model.onnx").write_bytes(b"definitely not protobuf")
    with pytest.raises(ExportError, match=r"model.source: .*model.onnx is not a readable ONNX model"):
        export(spec, force=True)


def test_onnx_source_with_nonfinite_output_fails(tmp_path: Path) -> None:
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 2])
    graph = helper.make_graph([helper.make_node("Log", ["x"], ["y"])], "g", [x], [y])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    root = tmp_path / "p"
    root.mkdir()
    onnx.save(proto, root / "model.onnx")
    np.save(root / "samples.npy", np.array([[1.0, 2.0], [0.0, 3.0]], dtype=np.float32))  # log(0) = -inf
    spec = spec_mod.load(make_project(root, source="model.onnx", samples="samples.npy", extra='task = "regression"'))
    with pytest.raises(ParityError, match="non-finite"):
        export(spec)
    assert not (root / "build").exists()


TORCH_PROJECT = '''
import numpy as np
import torch


class TwoInputs(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.a = torch.nn.Linear(4, 8)
        self.b = torch.nn.Linear(3, 8)
        self.head = torch.nn.Linear(8, 1)

    def forward(self, numeric, extra):
        return self.head(torch.relu(self.a(numeric) + self.b(extra)))


def build():
    return TwoInputs().eval()


def samples():
    rng = np.random.default_rng(0)
    return {"numeric": rng.normal(size=(120, 4)).astype(np.float32),
            "extra": rng.normal(size=(120, 3)).astype(np.float32)}


def save_pt2(path):
    model = build()
    s = samples()
    args = (torch.from_numpy(s["numeric"][:2]), torch.from_numpy(s["extra"][:2]))
    batch = torch.export.Dim("batch")
    program = torch.export.export(model, args, dynamic_shapes={"numeric": {0: batch}, "extra": {0: batch}})
    torch.export.save(program, path)
'''


def test_torch_factory_with_several_inputs_and_dynamic_batch(tmp_path: Path) -> None:
    root = tmp_path / "p"
    root.mkdir()
    (root / "net.py").write_text(TORCH_PROJECT)
    spec = spec_mod.load(make_project(root, source="net:build", samples="net:samples"))
    art = export(spec).artifact
    meta = art.metadata
    assert [i["name"] for i in meta["signature"]["inputs"]] == ["numeric", "extra"]
    assert all(i["shape"][0] == "batch" for i in meta["signature"]["inputs"] + meta["signature"]["outputs"])
    assert meta["task"] == "regression" and meta["parity"]["passed"] and meta["parity"]["rows"] == 120
    session = ort.InferenceSession(str(art.model_path), providers=["CPUExecutionProvider"])
    for batch in (1, 7):  # the batch dimension really is dynamic
        (out,) = session.run(None, {"numeric": np.zeros((batch, 4), np.float32),
                                    "extra": np.zeros((batch, 3), np.float32)})
        assert out.shape == (batch, 1)
    assert set(meta["profile"]["inputs"]) == {"numeric", "extra"}


UNTRACEABLE = """
import numpy as np
import torch


class Net(torch.nn.Module):
    def forward(self, x):
        if x.sum() > 0:  # data-dependent control flow: torch.export cannot trace it
            return x * 2
        return x


def build():
    return Net()


def samples():
    return np.ones((4, 3), np.float32)
"""


def test_a_torch_export_failure_is_summarised_and_logged(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "p"
    root.mkdir()
    (root / "net.py").write_text(UNTRACEABLE)
    make_project(root, source="net:build", samples="net:samples")
    assert main(["export", str(root)]) != 0
    err = capsys.readouterr().err
    assert "model.source: torch could not export the model to ONNX:" in err
    log = root / "build" / "m" / "export-error.log"
    assert f"the full error is in {log}" in err and "Traceback" in log.read_text()
    summary = err[err.index("torch could not export"):err.index("the full error is in")]
    assert len(summary.splitlines()) <= 16, summary


def test_torch_exported_program_file(tmp_path: Path) -> None:
    root = tmp_path / "p"
    root.mkdir()
    (root / "net.py").write_text(TORCH_PROJECT)
    import importlib.util

    module_spec = importlib.util.spec_from_file_location("net_for_pt2", root / "net.py")
    module = importlib.util.module_from_spec(module_spec)  # type: ignore[arg-type]
    module_spec.loader.exec_module(module)  # type: ignore[union-attr]
    module.save_pt2(root / "model.pt2")
    np.savez(root / "samples.npz", **module.samples())
    spec = spec_mod.load(make_project(root, source="model.pt2", samples="samples.npz"))
    meta = export(spec).artifact.metadata
    assert meta["source"]["kind"] == "torch"
    assert [i["name"] for i in meta["signature"]["inputs"]] == ["numeric", "extra"]
    assert meta["parity"]["passed"]


def test_factory_returning_an_onnx_model(tmp_path: Path) -> None:
    root = tmp_path / "p"
    root.mkdir()
    (root / "make.py").write_text(textwrap.dedent("""
        import numpy as np
        from sklearn.datasets import load_iris
        from sklearn.linear_model import LogisticRegression
        from skl2onnx import to_onnx

        X = load_iris().data.astype(np.float32)

        def model():
            clf = LogisticRegression(max_iter=500).fit(X, load_iris().target)
            return to_onnx(clf, X[:1], options={id(clf): {"zipmap": False}})

        def samples():
            return X
    """))
    meta = export(spec_mod.load(make_project(root, source="make:model", samples="make:samples"))).artifact.metadata
    assert meta["source"]["kind"] == "onnx" and meta["parity"]["passed"]


def test_parity_failure_prints_worst_mismatches_and_writes_nothing(tmp_path: Path) -> None:
    model = GradientBoostingRegressor(n_estimators=30, random_state=0).fit(X_DIAB, DIAB.target)
    # float32 ONNX vs float64 scikit-learn differ in the last bits; zero tolerance must catch it
    root = sklearn_project(tmp_path / "p", model, X_DIAB, "")
    (root / "mlpack.toml").write_text((root / "mlpack.toml").read_text() + "\n[export]\nrtol = 0.0\natol = 0.0\n")
    with pytest.raises(ParityError) as info:
        export(spec_mod.load(root))
    text = str(info.value)
    assert "does not match the original" in text and "nothing was written" in text
    assert "rows out of tolerance" in text and "row " in text and "expected " in text and "got " in text
    assert not (root / "build").exists()


def test_export_is_byte_identical_and_skipped_when_unchanged(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    model = RandomForestClassifier(n_estimators=10, random_state=0).fit(X_IRIS, IRIS.target)
    root = sklearn_project(tmp_path / "p", model, X_IRIS)
    spec = spec_mod.load(root)
    first = export(spec, tmp_path / "a").artifact
    second = export(spec, tmp_path / "b").artifact
    for f in ("model.onnx", "model.json"):
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes()
    assert first.model_sha256 == second.model_sha256

    assert main(["export", str(root)]) == 0
    assert "exported" in capsys.readouterr().out
    built = (root / "build" / "m" / "model.json").stat().st_mtime_ns
    assert main(["export", str(root)]) == 0
    assert "up to date, export skipped" in capsys.readouterr().out
    assert (root / "build" / "m" / "model.json").stat().st_mtime_ns == built

    np.save(root / "samples.npy", X_IRIS[:100])  # changed samples: exported again
    assert main(["export", str(root)]) == 0
    assert "exported" in capsys.readouterr().out
    assert load_json(root / "build" / "m")["profile"]["rows"] == 100


def test_export_does_not_depend_on_the_hash_seed(tmp_path: Path) -> None:
    """skl2onnx fills some unordered parts (opset imports) from dicts and sets, whose string order follows
    PYTHONHASHSEED; export puts them in one order, so one model has one version in every process."""
    import subprocess
    import sys

    from sklearn.compose import ColumnTransformer
    from sklearn.preprocessing import OneHotEncoder

    x = np.column_stack([X_DIAB[:, :3], (np.arange(len(X_DIAB)) % 4)]).astype(np.float32)  # last: a code
    y = (DIAB.target > 140).astype(int)
    columns = ColumnTransformer([("num", StandardScaler(), [0, 1, 2]),
                                 ("cat", OneHotEncoder(handle_unknown="ignore"), [3])])
    root = sklearn_project(tmp_path / "p", make_pipeline(columns, LogisticRegression(max_iter=500)).fit(x, y), x)
    runs = [subprocess.Popen([sys.executable, "-m", "packager", "export", str(root), "-o", str(tmp_path / str(seed)),
                              "--json"], env={**os.environ, "PYTHONHASHSEED": str(seed)},
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for seed in range(1, 6)]
    outputs = [run.communicate() for run in runs]
    assert [run.returncode for run in runs] == [0] * 5, [err for _, err in outputs]
    assert len({json.loads(out)["version"] for out, _ in outputs}) == 1
    assert len({(tmp_path / str(seed) / "model.onnx").read_bytes() for seed in range(1, 6)}) == 1


def test_unordered_parts_of_the_model_are_put_in_one_order() -> None:
    from onnx import helper

    from packager.export.convert import strip_unstable

    def model(flip: bool) -> onnx.ModelProto:
        def order(items: list) -> list:
            return items[::-1] if flip else items

        inner = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "inner", [], [])
        nodes = [helper.make_node("Relu", ["x"], ["r"]),
                 helper.make_node("If", ["c"], ["y"], then_branch=inner, else_branch=inner)]
        nodes[1].attribute.sort(key=lambda a: a.name, reverse=flip)
        graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
                                  [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])])
        helper.set_metadata_props(graph, dict(order([("b", "2"), ("a", "1")])))
        functions = [helper.make_function(d, n, ["x"], ["y"], [helper.make_node("Identity", ["x"], ["y"])],
                                          order([helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 3)]))
                     for d, n in order([("custom", "f"), ("custom", "g"), ("another", "f")])]
        proto = helper.make_model(graph, functions=functions, opset_imports=order(
            [helper.make_opsetid("ai.onnx.ml", 3), helper.make_opsetid("", 17), helper.make_opsetid("custom", 1)]))
        helper.set_model_props(proto, dict(order([("z", "1"), ("m", "2")])))
        return proto

    a, b = model(False), model(True)
    assert a.SerializeToString(deterministic=True) != b.SerializeToString(deterministic=True)
    strip_unstable(a)
    strip_unstable(b)
    assert a.SerializeToString(deterministic=True) == b.SerializeToString(deterministic=True)
    assert [o.domain for o in a.opset_import] == ["", "ai.onnx.ml", "custom"]
    assert [p.key for p in a.metadata_props] == ["m", "z"] and [p.key for p in a.graph.metadata_props] == ["a", "b"]
    assert [(f.domain, f.name) for f in a.functions] == [("another", "f"), ("custom", "f"), ("custom", "g")]
    assert [o.domain for o in a.functions[0].opset_import] == ["", "ai.onnx.ml"]
    assert [n.op_type for n in a.graph.node] == ["Relu", "If"]  # the computation's order is kept
    assert [attr.name for attr in a.graph.node[1].attribute] == ["else_branch", "then_branch"]


def test_examples_export_with_parity(example_copy) -> None:
    import subprocess
    import sys

    iris = example_copy("iris")
    subprocess.run([sys.executable, "train.py"], cwd=iris, check=True, capture_output=True)
    meta = export(spec_mod.load(iris)).artifact.metadata
    assert meta["parity"]["passed"] and meta["label_names"] == ["setosa", "versicolor", "virginica"]
    assert meta["feature_names"]["input"][0] == "sepal_length_cm"

    digits = export(spec_mod.load(example_copy("digits-mlp"))).artifact.metadata
    assert digits["parity"]["passed"] and digits["task"] == "classification"
    assert digits["roles"]["scores_kind"] == "probabilities"
    assert digits["signature"]["inputs"][0]["shape"] == ["batch", 64]


# ---------------------------------------------------------------------------------------------------
# bad input: one clear line naming the file or field, a non-zero exit, nothing written


def cli_error(root: Path, capsys: pytest.CaptureFixture[str]) -> str:
    code = main(["export", str(root)])
    err = capsys.readouterr().err
    assert code != 0, err
    left = sorted(p.name for p in (root / "build").rglob("*") if p.is_file()) if (root / "build").exists() else []
    assert left in ([], ["export-error.log"]), f"a failed export must leave nothing behind but its error log: {left}"
    return err


def test_missing_model_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = make_project(tmp_path / "p", source="model.joblib", samples="samples.npy")
    err = cli_error(root, capsys)
    assert "model.source: file not found" in err and "model.joblib" in err


def test_pickle_that_fails_to_load(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = make_project(tmp_path / "p", source="model.pkl", samples="samples.npy")
    (root / "model.pkl").write_bytes(b"\x80\x04not a pickle at all")
    np.save(root / "samples.npy", X_IRIS)
    err = cli_error(root, capsys)
    assert "model.source:" in err and "model.pkl failed to load" in err


def test_unsupported_estimator_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from sklearn.semi_supervised import LabelSpreading

    root = sklearn_project(tmp_path / "p", LabelSpreading().fit(X_IRIS, IRIS.target), X_IRIS)
    err = cli_error(root, capsys)
    assert "cannot convert LabelSpreading to ONNX" in err

    root2 = make_project(tmp_path / "q", source="model.pkl", samples="samples.npy")
    (root2 / "model.pkl").write_bytes(pickle.dumps({"weights": [1, 2, 3]}))
    np.save(root2 / "samples.npy", X_IRIS)
    err = cli_error(root2, capsys)
    assert "unsupported model type builtins.dict" in err


def test_samples_with_the_wrong_shape(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = LogisticRegression(max_iter=500).fit(X_IRIS, IRIS.target)
    root = sklearn_project(tmp_path / "p", model, X_IRIS[:, :3])
    err = cli_error(root, capsys)
    assert "samples.source: samples have 3 feature(s) per row but the model expects 4" in err


def test_samples_with_nan_for_a_model_that_cannot_take_it(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    model = LogisticRegression(max_iter=500).fit(X_IRIS, IRIS.target)
    x = X_IRIS.copy()
    x[7, 2] = np.nan
    root = sklearn_project(tmp_path / "p", model, x)
    err = cli_error(root, capsys)
    assert "samples.source: the samples contain NaN or infinite values (row 7 column 2)" in err
    assert "LogisticRegression refuses them" in err


def test_samples_with_nan_for_a_model_that_handles_it(tmp_path: Path) -> None:
    from sklearn.ensemble import HistGradientBoostingClassifier

    x = X_IRIS.copy()
    x[::10, 1] = np.nan
    model = HistGradientBoostingClassifier(max_iter=20, random_state=0).fit(x, IRIS.target)
    root = sklearn_project(tmp_path / "p", model, x)
    try:
        meta = export(spec_mod.load(root)).artifact.metadata
    except ExportError as e:  # only acceptable failure: the converter itself lacks support
        assert "cannot convert" in str(e)
        return
    assert meta["parity"]["passed"]
    assert meta["profile"]["inputs"]["input"][1]["nan_share"] == pytest.approx(15 / 150)


def test_unreadable_csv_names_the_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = LogisticRegression(max_iter=500).fit(X_IRIS, IRIS.target)
    root = sklearn_project(tmp_path / "p", model, X_IRIS)
    (root / "samples.csv").write_text("a,b,c,d\n1,2,3,4\n1,2,three,4\n")
    (root / "mlpack.toml").write_text((root / "mlpack.toml").read_text().replace("samples.npy", "samples.csv"))
    err = cli_error(root, capsys)
    assert "samples.csv:3: not a number" in err


def test_factory_that_raises(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "p"
    root.mkdir()
    (root / "train.py").write_text("def build():\n    raise RuntimeError('no data')\ndef samples():\n    return 1\n")
    make_project(root, source="train:build", samples="train:samples")
    err = cli_error(root, capsys)
    assert "model.source: train:build() raised RuntimeError: no data" in err


def test_failed_reexport_keeps_the_previous_files(tmp_path: Path) -> None:
    model = LogisticRegression(max_iter=500).fit(X_IRIS, IRIS.target)
    root = sklearn_project(tmp_path / "p", model, X_IRIS)
    out = export(spec_mod.load(root)).artifact.out_dir
    before = {f: (out / f).read_bytes() for f in ("model.onnx", "model.json")}
    np.save(root / "samples.npy", X_IRIS[:, :2])
    with pytest.raises(ExportError):
        export(spec_mod.load(root))
    assert {f: (out / f).read_bytes() for f in before} == before


def test_nan_on_one_side_is_a_parity_mismatch_and_on_both_agrees() -> None:
    from packager.export.parity import _compare

    expected = np.array([[1.0, np.nan], [2.0, 3.0]])
    one_side = _compare("y", expected, np.array([[1.0, 5.0], [2.0, 3.0]]), exact=False, rtol=1e-4, atol=1e-5)
    assert not one_side["passed"] and one_side["mismatches"] == 1 and one_side["worst"][0]["row"] == 0
    both = _compare("y", expected, expected.copy(), exact=False, rtol=1e-4, atol=1e-5)
    assert both["passed"] and both["max_abs_err"] == 0.0
    json.dumps(both, allow_nan=False)  # what model.json holds stays valid JSON


def test_an_unknown_aws_profile_is_one_clear_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from packager.aws import Aws
    from packager.errors import RegistryError

    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_PROFILE", "no-such-profile")
    with pytest.raises(RegistryError, match="no-such-profile"):
        Aws()


def test_an_unwritable_output_folder_is_a_message_not_a_traceback(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    model = LogisticRegression(max_iter=500).fit(X_IRIS, IRIS.target)
    root = sklearn_project(tmp_path / "p", model, X_IRIS)
    (tmp_path / "file").write_text("not a folder")
    assert main(["export", str(root), "-o", str(tmp_path / "file" / "out")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error:") and "Traceback" not in err and "file" in err
