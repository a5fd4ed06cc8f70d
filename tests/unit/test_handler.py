"""The Lambda entry point with fixture events of every format and route, and its metrics/logs."""

from __future__ import annotations

import base64
import importlib
import io
import json
import sys

import numpy as np
import pytest

from handlers import contract as C
from handlers import metrics
from tests.support import events as ev
from tests.support import handler_models as hm


@pytest.fixture(scope="module")
def iris_dir(tmp_path_factory):
    return hm.iris(tmp_path_factory.mktemp("iris"))


@pytest.fixture(scope="module")
def predict(iris_dir):
    """handlers.predict imported the way Lambda imports it: configured by environment only."""
    folder = iris_dir[0]
    mp = pytest.MonkeyPatch()
    mp.setenv(C.ENV_MODEL_DIR, str(folder))
    mp.setenv(C.ENV_MAX_BATCH, "16")
    mp.setenv(C.LAMBDA_MEMORY_ENV, "3538")
    sys.modules.pop("handlers.predict", None)
    module = importlib.import_module("handlers.predict")
    yield module
    sys.modules.pop("handlers.predict", None)
    mp.undo()


class Ctx:
    aws_request_id = "req-42"


@pytest.fixture
def out(predict, monkeypatch):
    buf = io.StringIO()
    monkeypatch.setattr(predict.EMITTER, "stream", buf)
    return buf


def lines(buf):
    return [json.loads(line) for line in buf.getvalue().splitlines()]


@pytest.mark.parametrize("fmt", ["v1", "v2"])
def test_predict_over_api_gateway(predict, iris_dir, out, fmt):
    _, clf, X = iris_dir
    response = predict.handler(ev.FORMATS[fmt]("POST", "/predict", {"inputs": X[:4].tolist()}), Ctx())
    status, body = ev.response_json(fmt, response)
    assert status == 200 and response["headers"]["Content-Type"] == "application/json"
    names = np.array(["setosa", "versicolor", "virginica"])
    assert body["outputs"]["label"] == names[clf.predict(X[:4])].tolist()


@pytest.mark.parametrize("fmt", ["v1", "v2"])
def test_npy_body_base64_from_api_gateway(predict, iris_dir, out, fmt):
    _, _clf, X = iris_dir
    event = ev.FORMATS[fmt]("POST", "/predict", ev.npy_bytes(X[:3]), content_type=C.NPY_CONTENT_TYPE)
    assert event["isBase64Encoded"] is True
    status, body = ev.response_json(fmt, predict.handler(event, Ctx()))
    assert status == 200 and len(body["outputs"]["label"]) == 3


def test_direct_invoke_body_is_the_event(predict, iris_dir, out):
    _, _clf, X = iris_dir
    response = predict.handler(ev.direct({"inputs": X[:2].tolist()}), Ctx())
    assert response["outputs"]["label"] == ["setosa", "setosa"]
    json.dumps(response)  # what the runtime client does with it
    bad = predict.handler(ev.direct({"inputs": [[1, 2]]}), Ctx())
    assert bad["status"] == 422 and bad["path"] == "inputs[0]"
    assert predict.handler(ev.direct(None), Ctx())["status"] == 400


@pytest.mark.parametrize("fmt", ["v1", "v2"])
@pytest.mark.parametrize(("method", "path", "status"), [
    ("GET", "/health", 200), ("GET", "/openapi.json", 200), ("GET", "/v2/models/iris", 200),
    ("GET", "/v2/models/nope", 404), ("GET", "/elsewhere", 404), ("DELETE", "/predict", 405),
    ("GET", "/v2/models/iris/infer", 405),
])
def test_routes(predict, out, fmt, method, path, status):
    got, body = ev.response_json(fmt, predict.handler(ev.FORMATS[fmt](method, path), Ctx()))
    assert got == status
    if status >= 400:  # under /v2 also the protocol's own {"error": ...}
        assert set(body) == {"code", "message", "path"} | ({"error"} if path.startswith("/v2/") else set())


def test_v2_infer_over_http_api_with_named_stage(predict, iris_dir, out):
    _, _clf, X = iris_dir
    req = {"inputs": [{"name": "X", "shape": [2, 4], "datatype": "FP32", "data": X[:2].tolist()}]}
    event = ev.http_v2("POST", "/v2/models/iris/infer", req, stage="live")
    assert event["rawPath"] == "/live/v2/models/iris/infer"
    status, body = ev.response_json("v2", predict.handler(event, Ctx()))
    assert status == 200
    assert {o["name"] for o in body["outputs"]} == {"label", "probabilities"}


def test_bad_base64_is_a_400_not_a_crash(predict, out):
    event = ev.http_v2("POST", "/predict", "x", content_type=C.NPY_CONTENT_TYPE)
    event["isBase64Encoded"], event["body"] = True, "!!not base64!!"
    status, body = ev.response_json("v2", predict.handler(event, Ctx()))
    assert (status, body["code"]) == (400, "bad_request")


def test_max_batch_and_threads_come_from_the_environment(predict, out):
    assert predict.MODEL.max_batch == 16
    status, body = ev.response_json("v1", predict.handler(ev.rest_v1("POST", "/predict",
                                                                     {"inputs": [[1, 2, 3, 4]] * 17}), Ctx()))
    assert (status, body["code"]) == (413, "too_large")
    assert predict._threads() == 2


def test_one_emf_line_for_a_single_row_request(predict, out):
    predict.handler(ev.rest_v1("POST", "/predict", {"inputs": [[5.1, 3.5, 1.4, 0.2]]}), Ctx())
    (doc,) = lines(out)
    directives = doc["_aws"]["CloudWatchMetrics"]
    assert all(d["Namespace"] == C.METRIC_NAMESPACE for d in directives)
    names = {m["Name"] for d in directives for m in d["Metrics"]}
    assert {C.M_LATENCY, C.M_BATCH_SIZE, C.M_PREDICTIONS, C.M_COLD_START, C.M_OUT_OF_RANGE} <= names
    for d in directives:  # every dimension and metric a directive names has a value in the document
        assert all(k in doc for dims in d["Dimensions"] for k in dims)
        assert all(m["Name"] in doc for m in d["Metrics"])
    assert doc[C.DIM_MODEL] == "iris" and doc[C.DIM_CLASS] == "setosa" and doc[C.M_BATCH_SIZE] == 1


def test_cold_start_is_counted_once(iris_dir, monkeypatch):
    monkeypatch.setenv(C.ENV_MODEL_DIR, str(iris_dir[0]))
    sys.modules.pop("handlers.predict", None)
    fresh = importlib.import_module("handlers.predict")
    buf = io.StringIO()
    monkeypatch.setattr(fresh.EMITTER, "stream", buf)
    fresh.handler(ev.direct({"inputs": [[5.1, 3.5, 1.4, 0.2]]}), Ctx())
    fresh.handler(ev.direct({"inputs": [[5.1, 3.5, 1.4, 0.2]]}), Ctx())
    assert [d[C.M_COLD_START] for d in lines(buf)] == [1, 0]
    sys.modules.pop("handlers.predict", None)


def test_validation_failure_logs_and_counts_by_kind(predict, out):
    predict.handler(ev.http_v2("POST", "/predict", {"inputs": [[1, 2, "x", 4]]}), Ctx())
    log, doc = lines(out)
    assert log["level"] == "INFO" and log["request_id"] == "req-42" and log["path"] == "inputs[0][2]"
    assert doc[C.DIM_KIND] == "bad_input" and doc[C.M_VALIDATION_FAILURES] == 1
    kinds = [d for d in doc["_aws"]["CloudWatchMetrics"] if [C.DIM_MODEL, C.DIM_KIND] in d["Dimensions"]]
    assert kinds and kinds[0]["Metrics"] == [{"Name": C.M_VALIDATION_FAILURES, "Unit": "Count"}]


def test_several_classes_and_out_of_range_features_add_lines(predict, iris_dir, out):
    _, _, X = iris_dir
    x = X[[0, 60, 120]].copy()
    x[1, 2] = 99.0
    predict.handler(ev.direct({"inputs": x.tolist()}), Ctx())
    docs = lines(out)
    classes = {d[C.DIM_CLASS]: d[C.M_PREDICTIONS] for d in docs if C.DIM_CLASS in d}
    assert sum(classes.values()) == 3 and len(classes) >= 2
    features = {d[C.DIM_FEATURE]: d[C.M_OUT_OF_RANGE] for d in docs if C.DIM_FEATURE in d}
    assert features.get("petal length (cm)", 0) >= 1
    assert docs[0][C.M_OUT_OF_RANGE] >= 1


def test_model_error_is_logged_with_traceback_and_counted(predict, out, monkeypatch):
    class Broken:
        def run(self, *a, **k):
            raise RuntimeError("onnxruntime exploded")

    monkeypatch.setattr(predict.MODEL, "session", Broken())
    status, body = ev.response_json("v1", predict.handler(ev.rest_v1("POST", "/predict",
                                                                     {"inputs": [[1, 2, 3, 4]]}), Ctx()))
    assert status == 500 and body["request_id"] == "req-42"
    log, doc = lines(out)
    assert log["level"] == "ERROR" and "onnxruntime exploded" in log["traceback"]
    assert doc[C.M_MODEL_ERRORS] == 1


def test_metrics_can_be_turned_off():
    buf = io.StringIO()
    em = metrics.Emitter("m", enabled=False, stream=buf)
    from handlers.inference import Result

    assert em.request(Result(200, {}), latency_ms=1.0, cold=False) == [] and buf.getvalue() == ""


def test_init_fails_loudly_without_a_model(tmp_path, monkeypatch):
    from handlers import inference

    monkeypatch.setenv(C.ENV_MODEL_DIR, str(tmp_path))
    sys.modules.pop("handlers.predict", None)
    with pytest.raises(inference.ModelLoadError, match=r"model\.json"):
        importlib.import_module("handlers.predict")
    sys.modules.pop("handlers.predict", None)


def test_base64_encoded_json_body(predict, out):
    event = ev.http_v2("POST", "/predict", {"inputs": [[1, 2, 3, 4]]})
    event["body"] = base64.b64encode(event["body"].encode()).decode()
    event["isBase64Encoded"] = True
    assert ev.response_json("v2", predict.handler(event, Ctx()))[0] == 200


EXTREME = [3.4e38] * 4  # finite float32 values that make the iris model's probabilities NaN


@pytest.mark.parametrize("body", ["json", "npy", "v2"])
def test_non_finite_outputs_are_a_422_counted_apart_from_predictions(predict, iris_dir, out, body):
    _, _, X = iris_dir
    x = np.vstack([X[:2], [EXTREME], X[2:3]]).astype(np.float32)
    if body == "npy":
        event = ev.rest_v1("POST", "/predict", ev.npy_bytes(x), content_type=C.NPY_CONTENT_TYPE)
    elif body == "v2":
        event = ev.rest_v1("POST", "/v2/models/iris/infer", {"inputs": [
            {"name": "X", "shape": [4, 4], "datatype": "FP32", "data": x.tolist()}]})
    else:
        event = ev.rest_v1("POST", "/predict", {"inputs": x.tolist()})
    status, answer = ev.response_json("v1", predict.handler(event, Ctx()))
    assert (status, answer["code"]) == (422, C.NON_FINITE_OUTPUT)
    assert answer["message"].startswith("row 2 (1 of 4) produced non-finite outputs")
    log, doc = lines(out)
    assert (log["kind"], log["detail"]) == (C.NON_FINITE_OUTPUT, answer["message"])
    assert doc[C.M_NON_FINITE_OUTPUTS] == 1 and doc[C.M_VALIDATION_FAILURES] == 1
    assert doc[C.DIM_KIND] == C.NON_FINITE_OUTPUT and doc[C.M_REQUESTS] == 1 and doc[C.M_MODEL_ERRORS] == 0
    # a refused request, like any other 4xx: no rows, no predictions, no class, no inputs checked
    for name in (C.M_ROWS, C.M_PREDICTIONS, C.DIM_CLASS, C.M_PREDICTION_SUM, C.M_BATCH_SIZE, C.M_INPUT_VALUES):
        assert name not in doc
    directives = doc["_aws"]["CloudWatchMetrics"]
    assert {"Name": C.M_NON_FINITE_OUTPUTS, "Unit": "Count"} in [m for d in directives for m in d["Metrics"]]
    for d in directives:
        assert all(k in doc for dims in d["Dimensions"] for k in dims)
        assert all(m["Name"] in doc for m in d["Metrics"])


def test_a_finite_batch_is_still_served_and_counted_as_predictions(predict, iris_dir, out):
    _, _, X = iris_dir
    status, _ = ev.response_json("v1", predict.handler(ev.rest_v1("POST", "/predict",
                                                                  {"inputs": X[:2].tolist()}), Ctx()))
    (doc,) = lines(out)
    assert status == 200 and doc[C.M_ROWS] == 2 and doc[C.M_PREDICTIONS] == 2
    assert C.M_NON_FINITE_OUTPUTS not in doc and all(C.M_NON_FINITE_OUTPUTS not in m["Name"]
                                                    for d in doc["_aws"]["CloudWatchMetrics"] for m in d["Metrics"])


def test_a_regressor_refusing_non_finite_rows_adds_nothing_to_its_prediction_sum(tmp_path):
    from handlers import events, inference

    model = inference.load_model(str(hm.non_finite(tmp_path, task="regression")))
    buf = io.StringIO()
    em = metrics.Emitter(model.name, stream=buf)
    rows = [[1.0, 2.0], [-1.0, 1.0], [0.0, 1.0], [0.5, 2.0], [-2.0, -2.0]]  # log: 1, 2 and 4 are not finite
    events.handle(model, em, ev.rest_v1("POST", "/predict", {"inputs": rows}), "r-1")
    events.handle(model, em, ev.rest_v1("POST", "/predict", {"inputs": rows[::3]}), "r-2")
    _log, refused, served = lines(buf)
    assert refused[C.M_NON_FINITE_OUTPUTS] == 3 and C.M_PREDICTION_SUM not in refused and C.M_ROWS not in refused
    assert served[C.M_ROWS] == 2 and served[C.M_PREDICTION_SUM] == pytest.approx(np.log(2) + 0.0, rel=1e-6)
    assert C.M_NON_FINITE_OUTPUTS not in served
