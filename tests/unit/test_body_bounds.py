"""A large JSON body is held to what a request to the model can hold before anything parses it: more
values, lists or objects than the batch limit of rows allows is a 413 naming the count, while the
largest valid requests of every format still pass (bench/bench_memory.py measures the memory)."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from handlers import events, inference, metrics
from handlers.inference import types
from tests.support import events as ev
from tests.support import handler_models as hm

SIX_MB = 6 * 1024 * 1024 - 512


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    work = tmp_path_factory.mktemp("bounds")
    load = lambda folder: inference.load_model(str(folder), max_batch=256, intra_op_threads=1)  # noqa: E731
    return {"iris": load(hm.iris(work / "iris")[0]), "mlp": load(hm.mlp(work / "mlp")),
            "table": load(hm.table(work / "table")[0])}


def call(model, body, path="/predict"):
    out = events.handle(model, metrics.Emitter(model.name, stream=io.StringIO()), ev.rest_v1("POST", path, body), "t")
    return out["statusCode"], json.loads(out["body"])


@pytest.mark.parametrize(("shape", "what"), [
    ('{"inputs": [[' + ",".join(["0"] * (SIX_MB // 2)) + "]]}", "JSON values"),
    ('{"inputs": [' + ",".join(["[0,0,0,0]"] * (SIX_MB // 10)) + "]}", "lists"),
    ('{"inputs": [' + ",".join(["[]"] * (SIX_MB // 3)) + "]}", "lists"),
    ('{"instances": [' + ",".join(["{}"] * (SIX_MB // 3)) + "]}", "objects"),
    ('{"inputs": [' + ",".join(['"a"'] * (SIX_MB // 4)) + "]}", "JSON values"),
])
def test_a_body_holding_more_than_the_model_takes_is_refused_unparsed(models, shape, what):
    status, body = call(models["iris"], shape)
    assert status == 413 and body["code"] == "too_large" and body["path"] == "body"
    assert f" {what}; a request to this model holds at most" in body["message"]


def test_the_same_bodies_on_the_v2_route_and_for_a_dataframe_model(models):
    lists = '{"inputs": [' + ",".join(["[]"] * (SIX_MB // 3)) + "]}"
    status, body = call(models["iris"], lists, f"/v2/models/{models['iris'].name}/infer")
    assert status == 413 and "lists" in body["error"]
    objects = '{"instances": [' + ",".join(["{}"] * (SIX_MB // 3)) + "]}"
    status, body = call(models["table"], objects)
    assert status == 413 and "objects" in body["message"]


def test_the_largest_valid_requests_of_every_format_still_pass(models):
    mlp = models["mlp"]
    rows = np.random.default_rng(0).random((256, 784))
    assert len(json.dumps({"inputs": rows.tolist()})) > 64 * 1024  # big enough to be counted
    assert call(mlp, json.dumps({"inputs": rows.tolist()}))[0] == 200
    assert call(mlp, json.dumps({"inputs": {mlp.inputs[0].name: rows.tolist()}}))[0] == 200
    tensor = {"name": mlp.inputs[0].name, "shape": [256, 784], "datatype": "FP64", "data": rows.reshape(-1).tolist()}
    v2 = json.dumps({"inputs": [tensor], "id": "x", "parameters": {}})
    assert call(mlp, v2, f"/v2/models/{mlp.name}/infer")[0] == 200
    table = models["table"]
    record = {c.name: ("a" * 300 if c.kind == "string" else 1.5) for c in table.columns}  # long strings: > 64 KB
    columns = {c.name: [record[c.name]] * 256 for c in table.columns}
    for request in ({"instances": [record] * 256}, {"inputs": columns}):
        text = json.dumps(request)
        assert len(text) > 64 * 1024
        status, body = call(table, text)
        # counted and let through: answered, or refused for its values (an unseen category), never too large
        assert status == 200 or (status == 422 and body["code"] != "too_large"), body


def test_the_bounds_follow_the_signature(models):
    iris = models["iris"].json_bounds
    assert iris.lists == 2 * (2 + 256) + types.JSON_OVERHEAD
    assert iris.values >= 2 * 256 * 4
    dynamic = types.json_bounds([types.TensorSpec(hm._tensor("x", "float32", "batch", "n"))], 256, tabular=False)
    assert dynamic.values == types.DYNAMIC_MAX_JSON_VALUES
