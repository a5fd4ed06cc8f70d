"""Hostile Lambda events: any invoker can hand the function any JSON, so every field of the three event
formats with a value of the wrong type is a 400 naming that field, never a 500, never a model error in
the metrics. Property-based: hypothesis picks the field and the value."""

from __future__ import annotations

import copy
import io
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from handlers import contract as C
from handlers import events, metrics
from handlers.inference import load_model
from tests.support import events as ev
from tests.support import handler_models as hm


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    folder, _, _ = hm.iris(tmp_path_factory.mktemp("iris"))
    return load_model(str(folder))


BODY = {"inputs": [[5.1, 3.5, 1.4, 0.2]]}
EVENTS = {
    "rest": lambda: ev.rest_v1("POST", "/predict", BODY),
    "http": lambda: ev.http_v2("POST", "/predict", BODY),
}
# the fields a handler reads, by format: (path into the event)
FIELDS = {
    "rest": [("httpMethod",), ("path",), ("body",), ("headers",), ("isBase64Encoded",)],
    "http": [("rawPath",), ("body",), ("headers",), ("isBase64Encoded",), ("requestContext",),
             ("requestContext", "http"), ("requestContext", "http", "method"), ("requestContext", "http", "path"),
             ("requestContext", "stage")],
}
WRONG = st.one_of(st.integers(), st.floats(allow_nan=False), st.booleans(), st.lists(st.integers(), max_size=2),
                  st.dictionaries(st.text(max_size=3), st.integers(), max_size=2), st.text(max_size=5))


def _set(event: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    node = event
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value


def _call(model: Any, event: Any) -> tuple[Any, list[dict[str, Any]]]:
    out = io.StringIO()
    emitter = metrics.Emitter(model.name, stream=out)
    response = events.handle(model, emitter, event, "req-1")
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    return response, [line for line in lines if "_aws" in line]  # the metrics, not the log lines


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(fmt=st.sampled_from(sorted(EVENTS)), data=st.data(), value=WRONG)
def test_a_field_of_the_wrong_type_is_a_400_naming_it(model, fmt, data, value):
    path = data.draw(st.sampled_from(FIELDS[fmt]))
    event = copy.deepcopy(EVENTS[fmt]())
    _set(event, path, value)
    response, lines = _call(model, event)
    status = response["statusCode"] if isinstance(response, dict) and "statusCode" in response else \
        response.get("status", 200)
    assert status < 500, response
    for line in lines:
        assert line.get(C.M_MODEL_ERRORS, 0) == 0, line


@pytest.mark.parametrize("path, value", [
    (("path",), 123), (("path",), ["/predict"]), (("body",), 123), (("body",), True), (("headers",), ["x"]),
    (("headers",), "content-type: json"), (("httpMethod",), 5),
])
def test_rest_fields_name_themselves(model, path, value):
    event = ev.rest_v1("POST", "/predict", BODY)
    _set(event, path, value)
    response, lines = _call(model, event)
    body = json.loads(response["body"])
    assert response["statusCode"] == 400 and body["path"] == "event." + ".".join(path), body
    assert lines and lines[0][C.M_VALIDATION_FAILURES] == 1 and lines[0][C.M_MODEL_ERRORS] == 0


@pytest.mark.parametrize("path, value", [
    (("requestContext",), "ctx"), (("requestContext", "http"), "http"), (("rawPath",), 7),
    (("requestContext", "http", "method"), ["POST"]),
])
def test_http_api_fields_name_themselves(model, path, value):
    event = ev.http_v2("POST", "/predict", BODY)
    _set(event, path, value)
    response, _ = _call(model, event)
    body = json.loads(response["body"])
    assert response["statusCode"] == 400 and body["path"] == "event." + ".".join(path), body


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(event=st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=4),
                          lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=6), kids,
                                                                                   max_size=4), max_leaves=12))
def test_any_direct_event_gets_an_answer_not_a_crash(model, event):
    response, lines = _call(model, event)
    assert isinstance(response, dict)
    if "status" in response:
        assert response["status"] < 500, response
    for line in lines:
        assert line.get(C.M_MODEL_ERRORS, 0) == 0, line


def test_health_and_documents_are_not_counted_as_requests(model):
    for path in ("/health", "/openapi.json", "/v2", "/v2/health/live", "/v2/models/iris", "/v2/models/iris/ready"):
        response, lines = _call(model, ev.rest_v1("GET", path))
        assert response["statusCode"] == 200 and lines == [], (path, lines)
    _, lines = _call(model, ev.rest_v1("POST", "/predict", BODY))
    assert lines and lines[0][C.M_REQUESTS] == 1
