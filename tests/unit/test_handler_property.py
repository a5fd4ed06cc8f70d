"""Property: whatever JSON or bytes arrive, the handler answers 2xx or 4xx, never 5xx, never raises; and
whatever finite values arrive, it never serves a null (a NaN or infinity the model produced) with a 200."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from handlers import contract as C
from handlers import inference, metrics
from handlers.events import handle as handle_event
from tests.support import events as ev
from tests.support import handler_models as hm

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=5), children, max_size=4),
    max_leaves=30,
)
numbers = st.one_of(st.integers(min_value=-(2**70), max_value=2**70), st.floats(), st.booleans(), st.none(),
                    st.text(max_size=3))
rows = st.lists(st.lists(numbers, min_size=0, max_size=6), min_size=0, max_size=5)
bodies = st.one_of(
    json_values.map(lambda v: json.dumps(v)),
    st.fixed_dictionaries({"inputs": rows}).map(json.dumps),
    st.fixed_dictionaries({"inputs": st.dictionaries(st.sampled_from(["X", "a", "b", "x"]), rows,
                                                     max_size=3)}).map(json.dumps),
    st.text(max_size=50),
    st.binary(max_size=200),
)
npy_arrays = hnp.arrays(
    dtype=st.one_of(hnp.floating_dtypes(), hnp.integer_dtypes(), hnp.boolean_dtypes(), hnp.complex_number_dtypes(),
                    hnp.unicode_string_dtypes(max_len=3), hnp.datetime64_dtypes()),
    shape=hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=6),
)
v2_tensors = st.fixed_dictionaries({
    "name": st.sampled_from(["X", "Y", 3]), "shape": st.lists(st.integers(-2, 6), max_size=3),
    "datatype": st.sampled_from(["FP32", "INT64", "BYTES", "BOOL", "FP99"]),
    "data": st.lists(numbers, max_size=12)})
# a valid tensor too, so that what is checked after the inputs ("outputs") is reached
v2_valid = st.just({"name": "X", "shape": [1, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2]})
v2_bodies = st.fixed_dictionaries(
    {"inputs": st.lists(v2_tensors | v2_valid, max_size=2)},
    optional={"outputs": st.lists(st.fixed_dictionaries({"name": st.sampled_from(["label"]) | json_values})
                                  | json_values, max_size=2)}).map(json.dumps)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    folder, _, _ = hm.iris(tmp_path_factory.mktemp("iris"))
    return inference.load_model(str(folder), max_batch=8)


@pytest.fixture(scope="module")
def two(tmp_path_factory):
    return inference.load_model(str(hm.two_inputs(tmp_path_factory.mktemp("two"))), max_batch=8)


def _answer(m, event):
    """(status, the response body as text)."""
    em = metrics.Emitter(m.name, stream=io.StringIO())
    response = handle_event(m, em, event, "prop")
    if isinstance(response, dict) and "statusCode" in response:
        json.loads(response["body"])
        return response["statusCode"], response["body"]
    text = json.dumps(response)
    return (response.get("status", 200) if isinstance(response, dict) else 200), text


def _status(m, event):
    return _answer(m, event)[0]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=bodies, fmt=st.sampled_from(["v1", "v2"]),
       ctype=st.sampled_from(["application/json", C.NPY_CONTENT_TYPE, None, "text/plain"]),
       path=st.sampled_from(["/predict", "/v2/models/iris/infer", "/health", "/x"]),
       method=st.sampled_from(["POST", "GET", "PUT"]))
def test_random_bodies_get_only_2xx_or_4xx(model, two, body, fmt, ctype, path, method):
    for m in (model, two):
        event = ev.FORMATS[fmt](method, path, body, content_type=ctype)
        assert _status(m, event) < 500


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(arr=npy_arrays, fmt=st.sampled_from(["v1", "v2"]), cut=st.integers(0, 40))
def test_random_npy_bodies_get_only_2xx_or_4xx(model, two, arr, fmt, cut):
    raw = ev.npy_bytes(arr)
    for body in (raw, raw[: len(raw) - cut]):
        for m in (model, two):
            event = ev.FORMATS[fmt]("POST", "/predict", body, content_type=C.NPY_CONTENT_TYPE)
            assert _status(m, event) < 500


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=json_values)
def test_random_direct_invokes_get_only_2xx_or_4xx(model, two, value):
    for m in (model, two):
        assert _status(m, value) < 500


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=v2_bodies)
def test_random_v2_requests_get_only_2xx_or_4xx(model, body):
    assert _status(model, ev.http_v2("POST", "/v2/models/iris/infer", body)) < 500


# every finite float32, with the extremes (where a model's arithmetic overflows) drawn often
float32s = st.floats(width=32, allow_nan=False, allow_infinity=False) | st.sampled_from(
    [3.4028235e38, -3.4028235e38, 3.4e38, -3.4e38, 1e38, -1e38, 1.5e-45, 0.0])


@pytest.fixture(scope="module")
def non_finite(tmp_path_factory):
    return inference.load_model(str(hm.non_finite(tmp_path_factory.mktemp("nf"))), max_batch=8)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), rows=st.integers(1, 8), body=st.sampled_from(["json", "npy", "v2"]))
def test_extreme_finite_inputs_never_give_a_5xx_or_a_200_with_null(model, non_finite, data, rows, body):
    for m in (model, non_finite):
        width = m.single.shape[1]
        x = data.draw(hnp.arrays(np.float32, (rows, width), elements=float32s))
        if body == "npy":
            event = ev.rest_v1("POST", "/predict", ev.npy_bytes(x), content_type=C.NPY_CONTENT_TYPE)
        elif body == "v2":
            event = ev.rest_v1("POST", f"/v2/models/{m.name}/infer", {"inputs": [
                {"name": m.single.name, "shape": [rows, width], "datatype": "FP32", "data": x.tolist()}]})
        else:
            event = ev.rest_v1("POST", "/predict", {"inputs": x.tolist()})
        status, text = _answer(m, event)
        assert status in (200, 422), text
        if status == 200:
            assert "null" not in text
        else:
            assert json.loads(text)["code"] == C.NON_FINITE_OUTPUT
