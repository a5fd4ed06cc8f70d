"""The inference package as a specification: requests against a model's signature, called directly."""

from __future__ import annotations

import json

import numpy as np
import pytest

from handlers import contract as C
from handlers import inference
from handlers.inference import Request, predict_v1, types
from tests.support import events as ev
from tests.support import handler_models as hm

# values beyond float32 are meant to overflow in the cast (and be refused), and the finiteness checks' sums
# may overflow or meet inf - inf (and then look value by value); predict.py silences these at init
pytestmark = [pytest.mark.filterwarnings(f"ignore:{what}:RuntimeWarning") for what in (
    "overflow encountered in cast", "overflow encountered in reduce", "invalid value encountered in reduce")]


@pytest.fixture(scope="module")
def iris(tmp_path_factory):
    folder, clf, X = hm.iris(tmp_path_factory.mktemp("iris"))
    return inference.load_model(str(folder), max_batch=32), clf, X


@pytest.fixture(scope="module")
def reg(tmp_path_factory):
    folder, model, X = hm.regressor(tmp_path_factory.mktemp("reg"))
    return inference.load_model(str(folder)), model, X


@pytest.fixture(scope="module")
def two(tmp_path_factory):
    return inference.load_model(str(hm.two_inputs(tmp_path_factory.mktemp("two"))))


def post(model, path, body, content_type="application/json"):
    raw = body if isinstance(body, bytes | str) else json.dumps(body)
    res = inference.handle(model, Request("POST", path, body=raw, content_type=content_type, request_id="r-1"))
    return res.status, json.loads(res.body()), res


def test_predict_classifier_maps_labels_and_probabilities_like_sklearn(iris):
    model, clf, X = iris
    status, body, res = post(model, "/predict", {"inputs": X[:20].tolist()})
    assert status == 200
    expected = [str(n) for n in np.array(["setosa", "versicolor", "virginica"])[clf.predict(X[:20])]]
    assert body["outputs"]["label"] == expected
    probs = np.array([[row[n] for n in ("setosa", "versicolor", "virginica")]
                      for row in body["outputs"]["probabilities"]])
    np.testing.assert_allclose(probs, clf.predict_proba(X[:20]), rtol=1e-4, atol=1e-5)
    assert res.rows == 20 and sum(res.class_counts.values()) == 20


def test_predict_regressor_returns_one_number_per_row(reg):
    model, sk, X = reg
    status, body, res = post(model, "/predict", {"inputs": X[:5].tolist()})
    assert status == 200
    (values,) = body["outputs"].values()
    np.testing.assert_allclose(values, sk.predict(X[:5]), rtol=1e-4)
    assert res.prediction_sum == pytest.approx(float(sk.predict(X[:5]).sum()), rel=1e-4)


def test_npy_body_gives_the_same_answer_as_json(iris):
    model, _, X = iris
    _, from_json, _ = post(model, "/predict", {"inputs": X[:3].tolist()})
    status, from_npy, _ = post(model, "/predict", ev.npy_bytes(X[:3]), C.NPY_CONTENT_TYPE)
    assert status == 200 and from_npy == from_json


def test_float64_npy_is_cast(iris):
    model, _, X = iris
    status, _, _ = post(model, "/predict", ev.npy_bytes(X[:3].astype(np.float64)), C.NPY_CONTENT_TYPE)
    assert status == 200


@pytest.mark.parametrize(("body", "status", "kind", "path"), [
    ("{not json", 400, "bad_json", "body"),
    ("", 400, "bad_request", "body"),
    ([1, 2], 400, "bad_request", "body"),
    ({"rows": [[1, 2, 3, 4]]}, 400, "bad_request", "inputs"),
    ({"inputs": [[1, 2, 3, 4]], "extra": 1}, 400, "bad_request", "extra"),
    ({"inputs": "abc"}, 400, "bad_request", "inputs"),
    ({"inputs": [[1, 2, 3, 4], [1, 2, 3]]}, 422, "bad_input", "inputs[1]"),
    ({"inputs": [[1, 2, 3, 4], [1, 2, "x", 4]]}, 422, "bad_input", "inputs[1][2]"),
    ({"inputs": [[1, 2, 3, 4], [1, 2, None, 4]]}, 422, "bad_input", "inputs[1][2]"),
    ({"inputs": [[1, 2, 3]]}, 422, "bad_input", "inputs[0]"),
    ({"inputs": [1, 2, 3, 4]}, 422, "bad_input", "inputs"),
    ({"inputs": [[[1, 2, 3, 4]]]}, 422, "bad_input", "inputs"),
    ({"inputs": []}, 422, "bad_input", "inputs"),
    ({"inputs": [[1, 2, 1e300, 4]]}, 422, "bad_input", "inputs[0][2]"),
    ({"inputs": {"nope": [[1, 2, 3, 4]]}}, 422, "bad_input", "inputs.nope"),
    ({"inputs": [[1.0, 2, 3, 4]] * 33}, 413, "too_large", "inputs"),
])
def test_bad_requests_get_a_4xx_naming_the_field(iris, body, status, kind, path):
    model, _, _ = iris
    got_status, got, res = post(model, "/predict", body)
    assert (got_status, got["code"], got["path"]) == (status, kind, path), got
    assert got["message"] and res.kind == kind


def test_json_booleans_among_numbers_are_cast_like_numpy_casts_them(iris):
    model, _, _ = iris
    assert post(model, "/predict", {"inputs": [[1, 2, True, 4]]})[0] == 200
    status, body, _ = post(model, "/predict", {"inputs": [[True, False, True, True]]})
    assert (status, body["path"]) == (422, "inputs[0][0]")  # all booleans: not numbers at all


def test_nan_from_stdlib_json_is_refused_with_its_index(iris):
    model, _, _ = iris
    status, body, _ = post(model, "/predict", '{"inputs": [[1, 2, 3, 4], [1, NaN, 3, 4]]}')
    assert status in (400, 422)  # orjson refuses NaN as JSON; the stdlib fallback reads it and we refuse it
    assert body["path"] in ("body", "inputs[1][1]")


def test_nonfinite_npy_value_is_refused_with_its_index(iris):
    model, _, X = iris
    x = X[:3].copy()
    x[2, 1] = np.inf
    status, body, _ = post(model, "/predict", ev.npy_bytes(x), C.NPY_CONTENT_TYPE)
    assert (status, body["path"]) == (422, "body[2][1]")


def test_broken_npy_and_wrong_media_type(iris):
    model, _, _ = iris
    assert post(model, "/predict", b"\x93NUMPY garbage", C.NPY_CONTENT_TYPE)[0] == 400
    status, body, _ = post(model, "/predict", "a=1", "application/x-www-form-urlencoded")
    assert (status, body["code"]) == (415, "unsupported_media_type")
    obj = np.array([{"a": 1}], dtype=object)
    assert post(model, "/predict", ev.npy_bytes(obj.astype(str)), C.NPY_CONTENT_TYPE)[0] == 422


def test_body_over_lambda_limit_is_413(iris):
    model, _, _ = iris
    big = json.dumps({"inputs": [[1.0, 2.0, 3.0, 4.0]] * 10}) + " " * C.MAX_BODY_BYTES
    status, body, _ = post(model, "/predict", big)
    assert (status, body["code"]) == (413, "too_large")


def test_routes_methods_and_documents(iris):
    model, _, _ = iris
    get = lambda p: inference.handle(model, Request("GET", p))  # noqa: E731
    assert get("/health").status == 200
    assert get("/health").payload["signature"]["inputs"][0]["name"] == "X"
    doc = get("/openapi.json").payload
    assert doc["openapi"].startswith("3.") and "/predict" in doc["paths"]
    schema = doc["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert schema["properties"]["inputs"]["items"]["maxItems"] == 4
    meta = get("/v2/models/iris").payload
    assert meta["inputs"] == [{"name": "X", "datatype": "FP32", "shape": [-1, 4]}]
    assert get("/v2/models/other").status == 404
    assert get("/nope").status == 404
    res = get("/predict")
    assert res.status == 405 and res.headers == {"Allow": "POST"}
    assert inference.handle(model, Request("POST", "/predict/", body='{"inputs": [[1,2,3,4]]}')).status == 200


def test_v2_infer_round_trip(iris):
    model, clf, X = iris
    req = {"id": "abc", "inputs": [{"name": "X", "shape": [3, 4], "datatype": "FP32",
                                    "data": X[:3].reshape(-1).tolist()}],
           "outputs": [{"name": "label"}]}
    status, body, _ = post(model, "/v2/models/iris/infer", req)
    assert status == 200
    assert body["id"] == "abc" and body["model_name"] == "iris"
    assert body["outputs"] == [{"name": "label", "datatype": "INT64", "shape": [3],
                                "data": clf.predict(X[:3]).tolist()}]


@pytest.mark.parametrize(("tensor", "path"), [
    ({"name": "Y", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}, "inputs[0].name"),
    ({"name": "X", "shape": [1, 4], "datatype": "FP99", "data": [1, 2, 3, 4]}, "inputs[0].datatype"),
    ({"name": "X", "shape": [1, 4], "datatype": "BYTES", "data": ["a", "b", "c", "d"]}, "inputs[0].datatype"),
    ({"name": "X", "shape": [2, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}, "inputs[0].data"),
    ({"name": "X", "shape": [1, 5], "datatype": "FP32", "data": [1, 2, 3, 4, 5]}, "inputs[0].data[0]"),
    ({"name": "X", "shape": [4], "datatype": "FP32", "data": [1, 2, 3, 4]}, "inputs[0].shape"),
    ({"name": "X", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, "x", 4]}, "inputs[0].data[2]"),
])
def test_v2_bad_tensors_name_the_field(iris, tensor, path):
    model, _, _ = iris
    status, body, _ = post(model, "/v2/models/iris/infer", {"inputs": [tensor]})
    assert (status, body["path"]) == (422, path), body


def test_several_inputs_by_name_and_their_errors(two):
    status, body, _ = post(two, "/predict", {"inputs": {"a": [[1, 2, 3]], "b": [[4, 5]]}})
    assert status == 200 and body["outputs"]["y"] == [21.0]
    status, body, _ = post(two, "/predict", {"inputs": [[1, 2, 3]]})
    assert (status, body["path"]) == (422, "inputs")
    status, body, _ = post(two, "/predict", {"inputs": {"a": [[1, 2, 3]]}})
    assert (status, body["path"]) == (422, "inputs.b")
    status, body, _ = post(two, "/predict", {"inputs": {"a": [[1, 2, 3]], "b": [[4, 5.5]]}})
    assert (status, body["path"]) == (422, "inputs.b[0][1]")
    status, body, _ = post(two, "/predict", {"inputs": {"a": [[1, 2, 3]], "b": [[4, 5], [6, 7]]}})
    assert (status, body["path"]) == (422, "inputs")
    status, body, _ = post(two, "/predict", {"inputs": {"a": [[1, 2, 3]], "b": [[4, 2**70]]}})
    assert (status, body["path"]) == (422, "inputs.b[0][1]")
    assert post(two, "/predict", ev.npy_bytes(np.zeros((1, 3), np.float32)), C.NPY_CONTENT_TYPE)[0] == 415


def test_out_of_range_values_are_counted_per_feature(iris):
    model, _, X = iris
    x = X[:2].copy()
    x[0, 0] = 100.0  # far above sepal length's q99
    x[1, 3] = -5.0
    _, _, res = post(model, "/predict", {"inputs": x.tolist()})
    assert res.input_values == 8
    assert res.out_of_range >= 2
    assert res.oor_by_feature["sepal length (cm)"] >= 1 and res.oor_by_feature["petal width (cm)"] >= 1


def test_model_failure_is_a_500_with_the_request_id(iris):
    model, _, _ = iris

    class Broken:
        def run(self, *a, **k):
            raise RuntimeError("kaboom")

    real, model.session = model.session, Broken()
    try:
        status, body, res = post(model, "/predict", {"inputs": [[1, 2, 3, 4]]})
    finally:
        model.session = real
    assert status == 500 and body["request_id"] == "r-1" and "r-1" in body["message"]
    assert "kaboom" in res.error_trace


def test_threads_follow_lambda_memory():
    assert inference.threads_for_memory(None, 8) is None
    assert inference.threads_for_memory(128, 8) == 1
    assert inference.threads_for_memory(1769, 8) == 1
    assert inference.threads_for_memory(3538, 8) == 2
    assert inference.threads_for_memory(10240, 2) == 2


def test_load_model_rejects_a_signature_that_does_not_match(tmp_path):
    folder, _, _ = hm.iris(tmp_path / "m")
    meta = json.loads((folder / C.MODEL_JSON).read_text())
    meta["signature"]["inputs"][0]["name"] = "features"
    (folder / C.MODEL_JSON).write_text(json.dumps(meta))
    with pytest.raises(inference.ModelLoadError, match="do not match"):
        inference.load_model(str(folder))
    with pytest.raises(inference.ModelLoadError, match="cannot read"):
        inference.load_model(str(tmp_path / "missing"))


@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32])
def test_npy_bodies_of_any_layout_read_the_same(iris, order, dtype):
    model, _, X = iris
    x = np.asarray(np.round(X[:5]), dtype=dtype, order=order)
    status, body, _ = post(model, "/predict", ev.npy_bytes(x), C.NPY_CONTENT_TYPE)
    _, expected, _ = post(model, "/predict", {"inputs": x.tolist()})
    assert status == 200 and body == expected


def test_truncated_npy_is_a_400(iris):
    model, _, X = iris
    raw = ev.npy_bytes(X[:5])
    status, body, _ = post(model, "/predict", raw[:-3], C.NPY_CONTENT_TYPE)
    assert (status, body["code"], body["path"]) == (400, "bad_request", "body")


def test_fast_and_checked_json_paths_agree(iris):
    """A body of plain numbers takes numpy's direct cast; one with a string anywhere takes the checked path."""
    model, _, X = iris
    rows = X[:32].tolist()
    plain = json.dumps({"inputs": rows})
    assert len(plain) > 2048  # big enough for the handler to take the direct path
    assert predict_v1._numbers_only(plain) and predict_v1._numbers_only(plain.encode())
    _, fast, _ = post(model, "/predict", plain)
    req = Request("POST", "/predict", data={"inputs": rows})
    checked = json.loads(inference.handle(model, req).body())
    assert fast == checked
    assert not predict_v1._numbers_only('{"inputs": [[1, 2, 3, "4"]]}')
    assert not predict_v1._numbers_only('{"inputs": [[1, 2, 3, null]]}')
    assert not predict_v1._numbers_only('{"input": [[1, 2, 3, 4]]}')
    rows[7][3] = None
    status, body, _ = post(model, "/predict", json.dumps({"inputs": rows}))
    assert (status, body["path"]) == (422, "inputs[7][3]") and "null" in body["message"]
    rows[7][3] = 1e300  # beyond float32: numpy's direct cast makes it inf, which is refused by index
    status, body, _ = post(model, "/predict", json.dumps({"inputs": rows}))
    assert (status, body["path"]) == (422, "inputs[7][3]")


def test_row_builder_keeps_label_names_verbatim():
    labels = ['a"b', "}{", "__import__('os').system('x')", "a"]
    build = types._row_builder(labels)
    assert build([1.0, 2.0, 3.0, 4.0]) == dict(zip(labels, [1.0, 2.0, 3.0, 4.0], strict=True))
    many = [f"c{i}" for i in range(100)]
    assert types._row_builder(many)(list(range(100))) == dict(zip(many, range(100), strict=True))


def test_npy_header_with_a_dtype_numpy_does_not_know_is_a_400(iris):
    model, _, _ = iris
    header = "{'descr': '<f3', 'fortran_order': False, 'shape': (1, 4), }"
    header = header.ljust(63) + "\n"
    body = b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode() + bytes(12)
    status, out, _ = post(model, "/predict", body, content_type=C.NPY_CONTENT_TYPE)
    assert (status, out["code"], out["path"]) == (400, "bad_request", "body")


@pytest.mark.parametrize("name", [[1], {"a": 1}])
def test_v2_requested_output_name_of_the_wrong_type_is_a_422(iris, name):
    model, _, _ = iris
    body = {"inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}],
            "outputs": [{"name": name}]}
    status, out, _ = post(model, "/v2/models/iris/infer", body)
    assert (status, out["path"]) == (422, "outputs[0].name")


@pytest.mark.parametrize("edit, words", [
    (lambda m: m["signature"]["inputs"][0].update(dtype="float33"), "'float33' is not one numpy knows"),
    (lambda m: m.pop("signature"), "missing 'signature'"),
    (lambda m: m["signature"]["outputs"][0].pop("shape"), "missing 'shape'"),
])
def test_a_model_json_the_handler_cannot_read_is_a_load_error_naming_it(tmp_path, edit, words):
    folder, _, _ = hm.iris(tmp_path / "m")
    meta = json.loads((folder / C.MODEL_JSON).read_text())
    edit(meta)
    (folder / C.MODEL_JSON).write_text(json.dumps(meta))
    with pytest.raises(inference.ModelLoadError) as info:
        inference.load_model(str(folder))
    assert words in str(info.value) and C.MODEL_JSON in str(info.value)


def _v2(model, tensor):
    return post(model, f"/v2/models/{model.name}/infer", {"inputs": [tensor]})


@pytest.mark.parametrize(("datatype", "data", "path", "words"), [
    ("INT64", [1, 2, 1.5, 4], "inputs[0].data[2]", "must be an integer: the tensor's datatype is INT64 (got 1.5)"),
    ("UINT8", [1, 2, 300, 4], "inputs[0].data[2]", "out of range for UINT8, the tensor's datatype (got 300)"),
    ("INT8", [1, -129, 3, 4], "inputs[0].data[1]", "out of range for INT8"),
    ("FP16", [1, 2, 3, 70000], "inputs[0].data[3]", "out of range for FP16"),
    ("FP32", [1, 2, 3, 1e39], "inputs[0].data[3]", "out of range for FP32"),
])
def test_v2_values_must_fit_the_declared_datatype(iris, datatype, data, path, words):
    """Triton and KServe refuse data that does not fit the tensor's datatype; so does mlpack, even where
    the model's own input (float32 here) would take the value."""
    model, _, _ = iris
    status, body, _ = _v2(model, {"name": "X", "shape": [1, 4], "datatype": datatype, "data": data})
    assert (status, body["path"]) == (422, path) and words in body["message"], body


def test_v2_integral_values_of_an_integer_datatype_pass(iris):
    model, clf, X = iris
    status, body, _ = _v2(model, {"name": "X", "shape": [1, 4], "datatype": "INT64", "data": [5.0, 3, 1, 0]})
    assert status == 200, body
    status, body, _ = _v2(model, {"name": "X", "shape": [1, 4], "datatype": "FP64", "data": [5.1, 3.5, 1.4, 0.2]})
    assert status == 200 and body["outputs"][0]["data"] == clf.predict(X[:1]).tolist()


def test_v2_errors_point_into_the_data_as_it_was_sent(iris):
    """data may be flat or nested in another shape than the tensor's: the index names the value sent."""
    model, _, _ = iris
    flat = [1, 2, 3, 4, 5, 6, 1e39, 8]
    status, body, _ = _v2(model, {"name": "X", "shape": [2, 4], "datatype": "FP64", "data": flat})
    assert (status, body["path"]) == (422, "inputs[0].data[6]") and "1e+39" in body["message"], body
    nested = [[1, 2], [3, 4], [5, 6], [1e39, 8]]
    status, body, _ = _v2(model, {"name": "X", "shape": [2, 4], "datatype": "FP64", "data": nested})
    assert (status, body["path"]) == (422, "inputs[0].data[3][0]"), body
    status, body, _ = _v2(model, {"name": "X", "shape": [2, 4], "datatype": "INT64",
                                  "data": [1, 2, 3, 4, 5, 6, 7.5, 8]})
    assert (status, body["path"]) == (422, "inputs[0].data[6]") and "7.5" in body["message"], body


def test_v2_bool_tensors_take_only_true_and_false(tmp_path):
    model = inference.load_model(str(hm.flags(tmp_path / "flags")))
    ok = {"name": "x", "shape": [2, 2], "datatype": "BOOL", "data": [True, False, False, False]}
    status, body, _ = _v2(model, ok)
    assert status == 200 and body["outputs"][0]["data"] == [False, True, True, True]
    status, body, _ = _v2(model, {**ok, "data": [True, False, 1, False]})
    assert (status, body["path"]) == (422, "inputs[0].data[2]") and "true or false" in body["message"], body
    status, body, _ = _v2(model, {**ok, "data": [[True, False], [False, "yes"]]})
    assert (status, body["path"]) == (422, "inputs[0].data[1][1]"), body
    status, body, _ = _v2(model, {**ok, "datatype": "FP32", "data": [1, 0, 1, 0]})
    assert (status, body["path"]) == (422, "inputs[0].datatype"), body


def test_integers_just_beyond_int64_are_refused_not_wrapped(two, iris):
    """2**63 fits a float64 exactly but not an int64: comparing it with int64's maximum as a float (which
    rounds up to 2**63) would let it through and wrap it to -2**63."""
    for big in (2**63, float(2**63)):
        status, body, _ = post(two, "/predict", {"inputs": {"a": [[1, 2, 3]], "b": [[big, 1]]}})
        assert (status, body["path"]) == (422, "inputs.b[0][0]") and "out of range for int64" in body["message"]
    status, body, _ = post(two, "/predict", {"inputs": {"a": [[1, 2, 3]], "b": [[-(2**63), 2**63 - 1]]}})
    assert status == 200, body
    model, _, _ = iris
    status, body, _ = _v2(model, {"name": "X", "shape": [1, 4], "datatype": "INT64", "data": [2**63, 1, 2, 3]})
    assert (status, body["path"]) == (422, "inputs[0].data[0]") and "out of range for INT64" in body["message"]
    status, body, _ = _v2(model, {"name": "X", "shape": [1, 4], "datatype": "UINT64",
                                  "data": [float(2**64), 1, 2, 3]})
    assert (status, body["path"]) == (422, "inputs[0].data[0]") and "out of range for UINT64" in body["message"]


def test_fp16_range_is_what_rounds_to_a_finite_fp16(iris):
    model, _, _ = iris
    ok = {"name": "X", "shape": [1, 4], "datatype": "FP16", "data": [65519, 1, 2, -65519]}
    assert _v2(model, ok)[0] == 200
    status, body, _ = _v2(model, {**ok, "data": [65519, 1, 2, -65520]})
    assert (status, body["path"]) == (422, "inputs[0].data[3]")


@pytest.fixture(scope="module", params=["classification", "regression"])
def non_finite(request, tmp_path_factory):
    """(model, rows of which 1 and 3 make the model answer NaN or infinity, the others finite)."""
    folder = hm.non_finite(tmp_path_factory.mktemp(request.param), task=request.param)
    bad = [3e38, 1.0] if request.param == "classification" else [-1.0, 1.0]  # softmax(inf), log(-1)
    bad2 = [-3e38, 3e38] if request.param == "classification" else [0.0, 2.0]  # softmax(-inf, inf), log(0)
    x = np.array([[1.0, 2.0], bad, [2.0, 1.0], bad2, [3.0, 3.0]], np.float32)
    return inference.load_model(str(folder), max_batch=64), x


def _v2_rows(x):
    return {"inputs": [{"name": "x", "shape": list(x.shape), "datatype": "FP32", "data": x.reshape(-1).tolist()}]}


@pytest.mark.parametrize(("route", "body", "where"), [
    ("/predict", lambda x: {"inputs": x.tolist()}, "inputs"),
    ("/predict", lambda x: {"inputs": {"x": x.tolist()}}, "inputs"),
    ("/predict", ev.npy_bytes, "body"),
    ("/v2/models/nonfinite/infer", _v2_rows, "inputs"),
])
def test_rows_with_non_finite_outputs_refuse_the_batch_naming_them(non_finite, route, body, where):
    model, x = non_finite
    ctype = C.NPY_CONTENT_TYPE if body is ev.npy_bytes else "application/json"
    status, got, res = post(model, route, body(x), ctype)
    assert (status, got["code"], got["path"]) == (422, C.NON_FINITE_OUTPUT, where), got
    assert got["message"].startswith("rows 1, 3 (2 of 5) produced non-finite outputs (NaN or infinity in '")
    assert "outside what the model was trained on" in got["message"]
    assert res.kind == C.NON_FINITE_OUTPUT and res.non_finite_rows == 2
    # nothing about the refused rows counts as a prediction
    assert (res.rows, res.class_counts, res.prediction_sum, res.input_values) == (0, None, None, 0)
    status, got, res = post(model, route, body(x[[0, 2, 4]]), ctype)
    assert status == 200 and res.rows == 3 and res.non_finite_rows == 0
    assert "null" not in json.dumps(got)


def test_non_finite_rows_of_a_large_batch_are_found_past_the_quick_check(non_finite):
    model, x = non_finite
    big = np.repeat(x[[0, 2, 4]], 20, axis=0)  # 60 rows: more values than the per-value loop takes
    assert post(model, "/predict", {"inputs": big.tolist()})[0] == 200
    rows = [3, 17, 20, 21, 22, 23, 59]
    big[rows] = x[1]
    status, got, res = post(model, "/predict", {"inputs": big.tolist()})
    assert (status, got["code"], res.non_finite_rows) == (422, C.NON_FINITE_OUTPUT, 7)
    assert got["message"].startswith("rows 3, 17, 20, 21, 22, ... (7 of 60) produced")
    status, got, _ = post(model, "/predict", {"inputs": big[:1].tolist() + big[3:4].tolist()})
    assert got["message"].startswith("row 1 (1 of 2) produced")
    status, got, _ = post(model, "/predict", {"inputs": big[3:4].tolist()})
    assert got["message"].startswith("row 0 (1 of 1) produced") and "refused as a whole" not in got["message"]


def test_finite_outputs_whose_sum_overflows_are_served(two):
    # every y is 2 * 3 * 5e37 = 3e38, within float32; 40 of them sum beyond it
    status, body, res = post(two, "/predict", {"inputs": {"a": [[5e37] * 3] * 40, "b": [[0, 0]] * 40}})
    assert status == 200 and res.rows == 40 and body["outputs"]["y"] == [pytest.approx(3e38, rel=1e-6)] * 40


def test_the_non_finite_check_reads_every_float_output_and_only_those(iris):
    from handlers.inference.run import _non_finite_rows

    model, _, _ = iris
    label = np.array([0, 1, 2], np.int64)
    probs = np.full((3, 3), 0.5, np.float32)
    assert _non_finite_rows(model, [label, probs], 3) is None
    probs[2, 1] = np.nan
    assert _non_finite_rows(model, [label, probs], 3) == ([2], ["probabilities"])
    # a value without the batch dimension first belongs to no one row: it counts against all of them
    assert _non_finite_rows(model, [label, np.array([np.inf], np.float32)], 3) == ([0, 1, 2], ["probabilities"])
    # which outputs are float is the signature's business (the label output is int64): only those are read
    assert _non_finite_rows(model, [np.array([np.inf], np.float32), probs[:2] * 0], 3) is None
    wide = np.zeros((40, 3), np.float64)
    wide[[5, 39], 0] = [-np.inf, np.nan]
    assert _non_finite_rows(model, [np.zeros(40, np.int64), wide], 40) == ([5, 39], ["probabilities"])


def test_openapi_documents_the_non_finite_output_refusal(iris):
    model, _, _ = iris
    doc = inference.handle(model, Request("GET", "/openapi.json")).payload
    for route in ("/predict", "/v2/models/iris/infer"):
        assert C.NON_FINITE_OUTPUT in doc["paths"][route]["post"]["responses"]["422"]["description"]
    assert C.NON_FINITE_OUTPUT in doc["components"]["schemas"]["Error"]["properties"]["code"]["description"]
