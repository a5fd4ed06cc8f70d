"""Drift capture in the handler: off by default, a sampled request writes one capture line with its
features and prediction (excluded columns left out), to stdout or MLPACK_CAPTURE_FILE; drift computed
from the lines moves on exactly the shifted features."""

from __future__ import annotations

import importlib
import io
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from handlers import capture, drift
from handlers import contract as C
from tests.support import events as ev
from tests.support import handler_models as hm


class Ctx:
    aws_request_id = "req-7"


@pytest.fixture(scope="module")
def iris_dir(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return hm.iris(tmp_path_factory.mktemp("iris"))


def _load(folder: Path, monkeypatch: pytest.MonkeyPatch, **env: str) -> Any:
    monkeypatch.setenv(C.ENV_MODEL_DIR, str(folder))
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    sys.modules.pop("handlers.predict", None)
    module = importlib.import_module("handlers.predict")
    sys.modules.pop("handlers.predict", None)
    return module


def test_capture_is_off_by_default(iris_dir: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(C.ENV_CAPTURE_RATE, raising=False)
    assert _load(iris_dir[0], monkeypatch).MODEL.capture is None


def test_a_sampled_request_writes_its_features_and_prediction(iris_dir: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    folder, clf, X = iris_dir
    predict = _load(folder, monkeypatch, **{C.ENV_CAPTURE_RATE: "1", C.ENV_CAPTURE_EXCLUDE: "petal width (cm)"})
    buf = io.StringIO()
    predict.MODEL.capture.stream = buf
    monkeypatch.setattr(predict.EMITTER, "stream", io.StringIO())
    predict.handler(ev.rest_v1("POST", "/predict", {"inputs": X[:3].tolist()}), Ctx())
    [line] = buf.getvalue().splitlines()
    doc = json.loads(line)
    assert doc[drift.CAPTURE_KEY] == 1 and doc["request_id"] == "req-7" and doc["model"] == "iris"
    cols = doc["columns"]
    assert "petal width (cm)" not in cols
    assert cols["sepal length (cm)"] == pytest.approx(X[:3, 0].tolist())
    assert cols["prediction"] == np.array(["setosa", "versicolor", "virginica"])[clf.predict(X[:3])].tolist()
    # v2 infer is captured too; a refused request is not
    predict.handler(ev.rest_v1("POST", "/v2/models/iris/infer", {"inputs": [
        {"name": "X", "datatype": "FP32", "shape": [1, 4], "data": X[0].tolist()}]}), Ctx())
    predict.handler(ev.rest_v1("POST", "/predict", {"inputs": [[1, 2]]}), Ctx())
    assert len(buf.getvalue().splitlines()) == 2


def test_the_rate_samples_and_the_file_collects(iris_dir: Any, monkeypatch: pytest.MonkeyPatch,
                                                tmp_path: Path) -> None:
    folder, _clf, X = iris_dir
    path = tmp_path / "capture.jsonl"
    predict = _load(folder, monkeypatch, **{C.ENV_CAPTURE_RATE: "0.5", C.ENV_CAPTURE_FILE: str(path)})
    cap = predict.MODEL.capture
    cap.draw = lambda: 0.5  # a gap of floor(ln 0.5 / ln 0.5) + 1 = 2: every second request
    cap.left = cap.gap()
    monkeypatch.setattr(predict.EMITTER, "stream", io.StringIO())
    for _ in range(4):
        predict.handler(ev.direct({"inputs": X[:1].tolist()}), Ctx())
    assert len(path.read_text().splitlines()) == 2
    # the gaps are geometric: at 1%, a mean of 100 requests (within 4 standard errors over 20,000 gaps)
    cap = capture.Capture(predict.MODEL, 0.01, frozenset())
    gaps = [cap.gap() for _ in range(20_000)]
    assert abs(sum(gaps) / len(gaps) - 100) < 4 * (0.99 ** 0.5 / 0.01) / len(gaps) ** 0.5
    assert min(gaps) >= 1


def test_drift_from_captured_requests_moves_on_the_shifted_feature(iris_dir: Any, tmp_path: Path) -> None:
    folder, _clf, X = iris_dir
    from handlers import inference

    model = inference.load_model(str(folder))
    # the reference as export computes it: deciles of the training samples
    from packager.export import describe

    feats = {"X": X}
    got = dict(zip(model.output_names, model.session.run(None, feats), strict=True))
    meta = {"feature_names": {"X": model.feature_names["X"]}, "task": "classification",
            "roles": {"scores": "probabilities"}, "label_names": model.label_names}
    reference = describe.reference(feats, got, meta)
    buf = io.StringIO()
    cap = capture.Capture(model, 1.0, frozenset(), stream=buf)
    shifted = X.copy()
    shifted[:, 1] += 1.0  # sepal width moves; nothing else
    for i in range(0, 150, 5):
        cap.offer(f"r{i}", {"X": shifted[i:i + 5]}, model.session.run(None, {"X": shifted[i:i + 5]}))
    columns, _ = drift.read_capture(buf.getvalue().splitlines())
    scores = {d.name: d for d in drift.report(reference, columns)}
    assert {n for n, d in scores.items() if d.status == "drift"} >= {"sepal width (cm)"}
    for name in ("sepal length (cm)", "petal length (cm)", "petal width (cm)"):
        assert scores[name].psi == pytest.approx(0.0, abs=1e-9) and scores[name].status == "ok"


def test_feedback_is_logged_and_joins_the_captured_prediction(iris_dir: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    folder, clf, X = iris_dir
    predict = _load(folder, monkeypatch, **{C.ENV_CAPTURE_RATE: "1"})
    buf = io.StringIO()
    predict.MODEL.capture.stream = buf
    monkeypatch.setattr(predict.EMITTER, "stream", io.StringIO())
    predict.handler(ev.rest_v1("POST", "/predict", {"inputs": X[[0, 60, 120]].tolist()}), Ctx())
    truth = ["setosa", "versicolor", "setosa"]
    response = predict.handler(ev.rest_v1("POST", "/feedback", {"request_id": "req-7", "truth": truth}), Ctx())
    status, body = ev.response_json("v1", response)
    assert status == 202 and body["accepted"] == 3
    for bad in ({"truth": ["a"]}, {"request_id": "x", "truth": []}, {"request_id": "x", "truth": [{"a": 1}]}):
        status, body = ev.response_json("v1", predict.handler(ev.rest_v1("POST", "/feedback", bad), Ctx()))
        assert status == 400 and body["code"] == C.BAD_REQUEST
    lines = buf.getvalue().splitlines()
    _, by_request = drift.read_capture(lines)
    n, accuracy, _ = drift.realised(by_request, drift.read_feedback(lines), "prediction")
    labels = np.array(["setosa", "versicolor", "virginica"])[clf.predict(X[[0, 60, 120]])]
    assert n == 3 and accuracy == pytest.approx(float(np.mean(labels == np.array(truth))))
