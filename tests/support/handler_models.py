"""Small model folders (model.onnx + model.json per handlers/contract.py) for handler tests and
benchmarks, made in seconds from data scikit-learn ships: iris logistic regression, a diabetes
ridge regressor, a 784-input MLP (PyTorch when asked, else built with onnx.helper), a
two-input model, a boolean one, and one that answers some rows with NaN or infinity. Never
downloads anything. model.json is written by handlers.model_json, as `mlpack export` writes it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from handlers import contract as C
from handlers import model_json as mj

NO_ROLES = mj.Roles(label=None, scores=None, scores_kind=None)


def _tensor(name: str, dtype: str, *dims: int) -> mj.Tensor:
    return mj.Tensor(name=name, dtype=dtype, shape=(C.BATCH_DIM, *dims))


def _signature(inputs: list[mj.Tensor], outputs: list[mj.Tensor]) -> mj.Signature:
    return mj.Signature(inputs=tuple(inputs), outputs=tuple(outputs))


def _profile_feature(name: str, col: np.ndarray) -> mj.FeatureProfile:
    q = np.quantile(col, [0.01, 0.5, 0.99])
    return mj.FeatureProfile(name=name, count=int(col.size), min=float(col.min()), max=float(col.max()),
                             mean=float(col.mean()), std=float(col.std()), q01=float(q[0]), q50=float(q[1]),
                             q99=float(q[2]), nan_share=0.0)


def _write(out: Path, onnx_bytes: bytes, meta: mj.ModelJson) -> Path:
    """model.onnx and model.json; the fields export derives from the run (digest, versions, parity) are
    filled in for a test model."""
    out.mkdir(parents=True, exist_ok=True)
    (out / C.MODEL_FILE).write_bytes(onnx_bytes)
    digest = hashlib.sha256(onnx_bytes).hexdigest()
    meta = mj.ModelJson(**{**vars(meta), "version": meta.version or digest[:12], "opset": 17,
                           "versions": mj.Versions(), "source": mj.Source(kind="test"), "model_sha256": digest,
                           "parity": mj.Parity(passed=True), "inputs_hash": "test"})
    (out / C.MODEL_JSON).write_bytes(mj.dumps(meta))
    return out


def iris(out: Path) -> tuple[Path, Any, np.ndarray]:
    """(folder, fitted sklearn model, X float32)."""
    from skl2onnx import to_onnx
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    data = load_iris()
    X = data.data.astype(np.float32)
    clf = LogisticRegression(max_iter=500).fit(X, data.target)
    onx = to_onnx(clf, X[:1], options={id(clf): {"zipmap": False}}, target_opset=17)
    names = list(data.feature_names)
    meta = mj.ModelJson(
        name="iris", description="iris test model", task="classification",
        signature=_signature([_tensor("X", "float32", 4)],
                             [_tensor("label", "int64"), _tensor("probabilities", "float32", 3)]),
        roles=mj.Roles(label="label", scores="probabilities", scores_kind="probabilities"),
        feature_names={"X": tuple(names)},
        label_names=tuple(str(n) for n in data.target_names),
        profile=mj.Profile(rows=len(X), inputs={"X": tuple(_profile_feature(n, X[:, i]) for i, n in enumerate(names))},
                           outputs=mj.ProfileOutputs(classes={str(n): 1 / 3 for n in data.target_names})),
    )
    assert [i.name for i in onx.graph.input] == ["X"], onx.graph.input
    return _write(out, onx.SerializeToString(), meta), clf, X


def regressor(out: Path) -> tuple[Path, Any, np.ndarray]:
    from skl2onnx import to_onnx
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import Ridge

    data = load_diabetes()
    X = data.data.astype(np.float32)
    reg = Ridge().fit(X, data.target)
    onx = to_onnx(reg, X[:1], target_opset=17)
    in_name = onx.graph.input[0].name
    out_name = onx.graph.output[0].name
    names = list(data.feature_names)
    meta = mj.ModelJson(
        name="diabetes", task="regression",
        signature=_signature([_tensor(in_name, "float32", 10)], [_tensor(out_name, "float32", 1)]),
        roles=NO_ROLES, feature_names={in_name: tuple(names)}, label_names=(),
        profile=mj.Profile(rows=len(X), inputs={in_name: tuple(_profile_feature(n, X[:, i])
                                                               for i, n in enumerate(names))},
                           outputs=mj.ProfileOutputs(regression=(mj.OutputProfile(name=out_name),))),
    )
    return _write(out, onx.SerializeToString(), meta), reg, X


def _serialized(graph: Any) -> bytes:
    """`graph` as a checked opset-17, IR-8 model, serialized."""
    import onnx
    from onnx import helper

    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def _mlp_onnx_helper(n_in: int, hidden: int, n_out: int, seed: int) -> bytes:
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    w1 = (rng.standard_normal((n_in, hidden)) / np.sqrt(n_in)).astype(np.float32)
    b1 = np.zeros(hidden, np.float32)
    w2 = (rng.standard_normal((hidden, n_out)) / np.sqrt(hidden)).astype(np.float32)
    b2 = np.zeros(n_out, np.float32)
    nodes = [helper.make_node("Gemm", ["input", "w1", "b1"], ["h"]), helper.make_node("Relu", ["h"], ["hr"]),
             helper.make_node("Gemm", ["hr", "w2", "b2"], ["logits"])]
    graph = helper.make_graph(
        nodes, "mlp",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", n_in])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", n_out])],
        [numpy_helper.from_array(a, n) for a, n in ((w1, "w1"), (b1, "b1"), (w2, "w2"), (b2, "b2"))])
    return _serialized(graph)


def _mlp_torch(n_in: int, hidden: int, n_out: int, seed: int, hidden2: int | None = None) -> bytes:
    import io
    import warnings

    import torch

    torch.manual_seed(seed)
    layers: list[Any] = [torch.nn.Linear(n_in, hidden), torch.nn.ReLU()]
    if hidden2:
        layers += [torch.nn.Linear(hidden, hidden2), torch.nn.ReLU()]
    layers.append(torch.nn.Linear(hidden2 or hidden, n_out))
    net = torch.nn.Sequential(*layers)
    net.eval()
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (torch.zeros(1, n_in),), buf, input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}}, opset_version=17,
                          dynamo=False)
    return buf.getvalue()


def mlp(out: Path, *, n_in: int = 784, hidden: int = 128, n_out: int = 10, use_torch: bool = False,
        seed: int = 0, hidden2: int | None = None) -> Path:
    """An MLP classifier; with use_torch, exported by torch.onnx from a torch.nn.Sequential (optionally
    with a second hidden layer), else written with onnx.helper (one hidden layer, no torch import)."""
    onnx_bytes = (_mlp_torch(n_in, hidden, n_out, seed, hidden2) if use_torch
                  else _mlp_onnx_helper(n_in, hidden, n_out, seed))
    labels = tuple(str(d) for d in range(n_out))
    meta = mj.ModelJson(
        name="mlp", task="classification",
        signature=_signature([_tensor("input", "float32", n_in)], [_tensor("logits", "float32", n_out)]),
        roles=mj.Roles(label=None, scores="logits", scores_kind="logits"),
        feature_names={"input": tuple(f"pixel{i}" for i in range(n_in))}, label_names=labels,
        profile=mj.Profile(rows=100, inputs={"input": tuple(mj.FeatureProfile(name=f"pixel{i}", q01=0.0, q99=1.0)
                                                            for i in range(n_in))},
                           outputs=mj.ProfileOutputs(classes={lbl: 1 / n_out for lbl in labels})),
    )
    return _write(out, onnx_bytes, meta)


def two_inputs(out: Path) -> Path:
    """y = sum(a * 2) + sum(b) per row: a float32 [batch, 3], b int64 [batch, 2] -> float32 [batch, 1]."""
    from onnx import TensorProto, helper, numpy_helper

    nodes = [
        helper.make_node("Mul", ["a", "two"], ["a2"]),
        helper.make_node("ReduceSum", ["a2", "axes"], ["sa"], keepdims=1),
        helper.make_node("Cast", ["b"], ["bf"], to=TensorProto.FLOAT),
        helper.make_node("ReduceSum", ["bf", "axes"], ["sb"], keepdims=1),
        helper.make_node("Add", ["sa", "sb"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes, "two",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, ["batch", 3]),
         helper.make_tensor_value_info("b", TensorProto.INT64, ["batch", 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 1])],
        [numpy_helper.from_array(np.array(2.0, np.float32), "two"),
         numpy_helper.from_array(np.array([1], np.int64), "axes")])
    meta = mj.ModelJson(
        name="two", task="regression",
        signature=_signature([_tensor("a", "float32", 3), _tensor("b", "int64", 2)], [_tensor("y", "float32", 1)]),
        roles=NO_ROLES, feature_names={"a": ("a0", "a1", "a2"), "b": ("b0", "b1")}, label_names=(),
        profile=mj.Profile(rows=0, inputs={}, outputs=mj.ProfileOutputs()),
    )
    return _write(out, _serialized(graph), meta)


def flags(out: Path) -> Path:
    """y = not x: a bool [batch, 2] -> bool [batch, 2]; a model whose input only takes true and false."""
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Not", ["x"], ["y"])], "flags",
        [helper.make_tensor_value_info("x", TensorProto.BOOL, ["batch", 2])],
        [helper.make_tensor_value_info("y", TensorProto.BOOL, ["batch", 2])])
    meta = mj.ModelJson(
        name="flags", task="regression",
        signature=_signature([_tensor("x", "bool", 2)], [_tensor("y", "bool", 2)]),
        roles=NO_ROLES, feature_names={"x": ("x0", "x1")}, label_names=(),
        profile=mj.Profile(rows=0, inputs={}, outputs=mj.ProfileOutputs()),
    )
    return _write(out, _serialized(graph), meta)


def non_finite(out: Path, *, task: str = "classification") -> Path:
    """A model that answers some rows with NaN or infinity, x float32 [batch, 2]:
    classification: probabilities = softmax(2 * x) over the labels ("low", "high"); a value beyond half of
    float32's range doubles to infinity, and softmax makes NaN of it.
    regression: y = log(x0) + log(x1) [batch, 1]; NaN for a negative value, -inf for 0."""
    from onnx import TensorProto, helper, numpy_helper

    x = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 2])]
    if task == "classification":
        graph = helper.make_graph(
            [helper.make_node("Mul", ["x", "two"], ["logits"]),
             helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1)], "non_finite", x,
            [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 2])],
            [numpy_helper.from_array(np.array(2.0, np.float32), "two")])
        labels = ("low", "high")
        outputs = [_tensor("probabilities", "float32", 2)]
        roles = mj.Roles(label=None, scores="probabilities", scores_kind="probabilities")
        profile_out = mj.ProfileOutputs(classes={lbl: 0.5 for lbl in labels})
    else:
        graph = helper.make_graph(
            [helper.make_node("Log", ["x"], ["logs"]),
             helper.make_node("ReduceSum", ["logs", "axes"], ["y"], keepdims=1)], "non_finite", x,
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 1])],
            [numpy_helper.from_array(np.array([1], np.int64), "axes")])
        labels, outputs, roles = (), [_tensor("y", "float32", 1)], NO_ROLES
        profile_out = mj.ProfileOutputs(regression=(mj.OutputProfile(name="y"),))
    meta = mj.ModelJson(
        name="nonfinite", task=task, signature=_signature([_tensor("x", "float32", 2)], outputs), roles=roles,
        feature_names={"x": ("x0", "x1")}, label_names=labels,
        profile=mj.Profile(rows=100, inputs={"x": (mj.FeatureProfile(name="x0", q01=0.0, q99=10.0),
                                                   mj.FeatureProfile(name="x1", q01=0.0, q99=10.0))},
                           outputs=profile_out),
    )
    return _write(out, _serialized(graph), meta)


def table(out: Path, *, numeric: int = 10, strings: int = 10, rows: int = 400) -> tuple[Path, Any, Any]:
    """A DataFrame pipeline exported by mlpack itself: `numeric` float columns (some missing, imputed and
    scaled) and `strings` categorical ones (some missing, one-hot encoded), then a logistic regression.
    Returns (the export folder, the pipeline, the DataFrame it was trained on). Data from a fixed seed."""
    import joblib
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    from packager.config import spec as spec_mod
    from packager.export.pipeline import export

    rng = np.random.default_rng(0)
    cols: dict[str, Any] = {}
    for i in range(numeric):
        x = rng.normal(i, 1 + i, rows)
        x[rng.random(rows) < 0.05] = np.nan
        cols[f"n{i}"] = x
    for i in range(strings):
        s = rng.choice(["a", "b", "c", "d"][: 2 + i % 3], rows).astype(object)
        s[rng.random(rows) < 0.05] = np.nan
        cols[f"s{i}"] = s
    frame = pd.DataFrame(cols)
    y = (np.nan_to_num(frame["n0"].to_numpy()) + (frame[f"s{0}"] == "a").to_numpy() > 0.5).astype(int) \
        if strings else (np.nan_to_num(frame["n0"].to_numpy()) > 0).astype(int)
    pre = ColumnTransformer([
        ("num", make_pipeline(SimpleImputer(), StandardScaler()), [f"n{i}" for i in range(numeric)]),
        ("cat", make_pipeline(SimpleImputer(strategy="constant", fill_value="none"),
                              OneHotEncoder(handle_unknown="ignore")), [f"s{i}" for i in range(strings)])])
    pipeline = make_pipeline(pre, LogisticRegression(max_iter=1000)).fit(frame, y)
    project = out / "project"
    project.mkdir(parents=True, exist_ok=True)
    joblib.dump(pipeline, project / "model.joblib")
    frame.iloc[:200].to_csv(project / "samples.csv", index=False)
    (project / "mlpack.toml").write_text('[model]\nname = "table"\nowners = ["ana@example.com"]\n'
                                         'source = "model.joblib"\n\n[samples]\nsource = "samples.csv"\n')
    artifact = export(spec_mod.load(project), out / "model").artifact
    return artifact.out_dir, pipeline, frame
