"""The simdjson paths (predict_v1._rows_fast for /predict rows, v2._v2_fast for v2 tensors' data)
against the checked path.

The property: whichever path a body takes, the answer is the same, byte for byte. Each test runs a body
twice, with the fast path on (and its size thresholds lowered to 0, so that small bodies take it too) and
with it off, and compares status and response body."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from handlers import inference
from handlers.inference import Request, codec, predict_v1
from handlers.inference import v2 as inference_v2  # v2 is this file's helper for v2 requests
from tests.support import handler_models as hm

# predict.init silences these for the function (tests call inference directly)
pytestmark = [pytest.mark.filterwarnings(f"ignore:{w}:RuntimeWarning") for w in (
    "overflow encountered in cast", "overflow encountered in reduce", "invalid value encountered in reduce")]
WIDTH = 6


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return inference.load_model(str(hm.mlp(tmp_path_factory.mktemp("mlp"), n_in=WIDTH, hidden=8)), max_batch=8)


def answer(model, body, *, fast: bool, monkeypatch, path: str = "/predict") -> tuple[int, bytes]:
    with monkeypatch.context() as m:
        m.setattr(codec, "_ROWS_FAST_MIN", 0)
        m.setattr(inference_v2, "_V2_BUFFER_MIN", 0)
        if not fast:
            m.setattr(codec, "_PARSER", None)
        res = inference.handle(model, Request("POST", path, body=body, content_type="application/json"))
    return res.status, res.body()


def both_ways(model, body, monkeypatch, path: str = "/predict") -> tuple[int, bytes]:
    fast = answer(model, body, fast=True, monkeypatch=monkeypatch, path=path)
    checked = answer(model, body, fast=False, monkeypatch=monkeypatch, path=path)
    assert fast == checked, body[:300]
    return fast


def test_the_fast_path_is_there_and_reads_rows_exactly(model):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((5, WIDTH)).astype(np.float32)
    x[0, 0], x[0, 1], x[0, 2] = -0.0, 3.4e38, 1e-45  # signed zero, near float32's max, its smallest subnormal
    body = json.dumps({"inputs": x.tolist()})
    rows = predict_v1._rows_fast(body, WIDTH)
    assert rows is not None and rows.dtype == np.float64 and rows.shape == (5, WIDTH)
    assert np.array_equal(rows.astype(np.float32), x) and np.signbit(rows[0, 0])
    assert np.array_equal(predict_v1._rows_fast(body.encode(), WIDTH), rows)  # bytes (base64 events) too
    ints = '{"inputs": [[1, -2, 3, 4, 5, 18446744073709551615]]}'
    assert predict_v1._rows_fast(ints, WIDTH).tolist() == [[1, -2, 3, 4, 5, 2.0**64]]
    # the parser is reused; a second document parses after the first one's proxies are gone
    assert predict_v1._rows_fast(body, WIDTH) is not None


@pytest.mark.parametrize("body", [
    '{"inputs": [[1, 2, 3, 4, 5, 6], [1, 2, 3, 4, 5]]}',  # ragged
    '{"inputs": [[1, 2, 3, 4, 5, 6], [1, 2, 3, 4, 5, 6, 7]]}',
    '{"inputs": [[1, 2, 3, 4, 5, [6]]]}',  # nested one deeper: flattening would hide it
    '{"inputs": [[1, 2, 3, [], [4, 5], 6]]}',  # an empty list and a pair: the flat count still matches
    '{"inputs": [[1, 2, 3, 4, 5, 6], 7]}',
    '{"inputs": [[[1, 2, 3, 4, 5, 6]]]}',
    '{"inputs": [1, 2, 3, 4, 5, 6]}',
    '{"inputs": []}',
    '{"inputs": [[]]}',
    '{"inputs": [[1, 2, 3, 4, 5, "6"]]}',
    '{"inputs": [[1, 2, 3, 4, 5, null]]}',
    '{"inputs": [[1, 2, 3, 4, 5, true]]}',  # numpy casts a boolean among numbers; the checked path decides
    '{"inputs": [[true, false, true, true, false, true]]}',
    '{"inputs": [[1, 2, 3, 4, 5, 1e400]]}',  # beyond double
    '{"inputs": [[1, 2, 3, 4, 5, 1e39]]}',  # beyond float32: refused, naming the value as written
    '{"inputs": [[1, 2, 3, 4, 5, 100000000000000000000000000000000]]}',  # beyond 64-bit integers
    '{"inputs": [[1, 2, 3, 4, 5, NaN]]}',
    '{"inputs": [[1, 2, 3, 4, 5, Infinity]]}',
    '{"inputs": [[1, 2, 3, 4, 5, 06]]}',
    '{"inputs": [[1, 2, 3, 4, 5, 6,]]}',
    '{"inputs": [[1, 2, 3, 4, 5, 6]]} x',
    '{"inputs": [[1, 2, 3, 4, 5, 6]]',
    '\ufeff{"inputs": [[1, 2, 3, 4, 5, 6]]}',
    '{"inputs": [[1, 2, 3, 4, 5, 6]], "inputs": [[6, 5, 4, 3, 2, 1]]}',
    '{"inputs": [[1, 2, 3, 4, 5, 6]], "extra": 1}',
    '{"inputs": [[1, 2, 3, 4, 5, 6]], "x[": 1}',
    '{"input": [[1, 2, 3, 4, 5, 6]]}',
    '{"inputs": {"input": [[1, 2, 3, 4, 5, 6]]}}',
    '[[1, 2, 3, 4, 5, 6]]',
    '{"inputs": [[1, 2, 3, 4, 5, 6]] /* c */}',
    '{"inputs": [[1, 2, 3, 4, 5, 6]' + ", [1, 2, 3, 4, 5, 6]" * 8 + "]}",  # over max_batch: 413
])
def test_what_the_fast_path_declines_or_refuses_gets_the_checked_answer(model, body, monkeypatch):
    status, _ = both_ways(model, body, monkeypatch)
    # what the checked path accepts here: numpy casts booleans among numbers, orjson keeps the last of two
    # equal keys, and inputs may be named
    accepted = ("5, true]", "100000000000000000000000000000000", '"inputs": [[6, 5', '{"inputs": {"input"')
    assert status == 200 if any(a in body for a in accepted) else status in (400, 413, 422)


def test_a_good_body_in_any_layout_gets_the_same_answer(model, monkeypatch):
    rows = np.random.default_rng(2).random((3, WIDTH)).tolist()
    for body in (json.dumps({"inputs": rows}), json.dumps({"inputs": rows}, indent=4),
                 "\n\t " + json.dumps({"inputs": rows}, separators=(",", ":")) + " \r\n"):
        assert both_ways(model, body, monkeypatch)[0] == 200
        assert both_ways(model, body.encode(), monkeypatch)[0] == 200


numbers = st.one_of(st.floats(width=64), st.floats(width=32), st.integers(-(2**70), 2**70))
odd = st.one_of(st.none(), st.booleans(), st.text(max_size=2), st.lists(numbers, max_size=2), st.just([]))


@st.composite
def bodies(draw):
    """Mostly well-formed rows, then at most a few of the mistakes clients make."""
    n = draw(st.integers(1, 10))
    rows = draw(st.lists(st.lists(numbers, min_size=WIDTH, max_size=WIDTH), min_size=n, max_size=n))
    for _ in range(draw(st.integers(0, 2))):
        i = draw(st.integers(0, n - 1))
        change = draw(st.sampled_from(["value", "drop", "add", "row"]))
        if not isinstance(rows[i], list) or not rows[i]:
            rows[i] = draw(odd)
        elif change == "value":
            rows[i][draw(st.integers(0, len(rows[i]) - 1))] = draw(odd)
        elif change == "drop":
            rows[i].pop()
        elif change == "add":
            rows[i].append(draw(numbers))
        else:
            rows[i] = draw(odd)
    doc = {"inputs": rows}
    if draw(st.booleans()):
        doc[draw(st.sampled_from(["inputs2", "outputs", "["]))] = draw(odd)
    text = json.dumps(doc, indent=draw(st.sampled_from([None, 1])))  # NaN and Infinity as Python writes them
    return text.encode() if draw(st.booleans()) else text


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=bodies())
def test_random_bodies_get_the_same_answer_either_way(model, body, monkeypatch):
    both_ways(model, body, monkeypatch)


def test_integers_beyond_2_53_round_the_same_way_on_every_path(model, monkeypatch):
    """A JSON number is a double first on every path, integers too: 2**60 + 2**36 + 1 rounds to float32
    through its double (2**60), whatever else the body holds and whichever path reads it."""
    row = [1152921573326323713, 1, 2, 3, 4, 5]
    text = json.dumps(row)
    bodies = ['{"inputs": [' + text + "]}", '{"\\u0069nputs": [' + text + "]}",
              '{"inputs": [' + text + ", [1.5, 1, 2, 3, 4, 5]]}"]
    answers = set()
    for body in bodies:
        for min_numbers_only in (0, 10**9):  # the checked path's direct cast, and its general one
            monkeypatch.setattr(predict_v1, "_NUMBERS_ONLY_MIN", min_numbers_only)
            status, out = both_ways(model, body, monkeypatch)
            assert status == 200
            answers.add(json.dumps(json.loads(out)["outputs"]["logits"][0]))
    assert len(answers) == 1


# --- v2 --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def two(tmp_path_factory):
    """Inputs a (float32 [batch, 3]) and b (int64 [batch, 2]): both kinds of buffer."""
    return inference.load_model(str(hm.two_inputs(tmp_path_factory.mktemp("two"))), max_batch=8)


def v2(model, body, monkeypatch):
    return both_ways(model, body, monkeypatch, path=f"/v2/models/{model.name}/infer")


def test_v2_data_is_read_into_arrays_of_the_inputs_kind(two, monkeypatch):
    body = json.dumps({"id": "r1", "inputs": [
        {"name": "a", "shape": [2, 3], "datatype": "FP32", "data": [1.5, 2, 3, 4, 5, 6]},
        {"name": "b", "shape": [2, 2], "datatype": "INT64", "data": [2**62 + 1, 1, 2, 3]}]})
    monkeypatch.setattr(inference_v2, "_V2_BUFFER_MIN", 0)
    obj = inference_v2._v2_fast(two, body)
    a, b = (t["data"] for t in obj["inputs"])
    assert a.dtype == np.float64 and a.tolist() == [1.5, 2, 3, 4, 5, 6]
    assert b.dtype == np.int64 and b.tolist() == [2**62 + 1, 1, 2, 3]  # exact: no trip through a double
    assert obj == {**json.loads(body), "inputs": obj["inputs"]} and list(obj) == ["id", "inputs"]
    assert [list(t) for t in obj["inputs"]] == [["name", "shape", "datatype", "data"]] * 2
    assert v2(two, body, monkeypatch)[0] == 200


A = {"name": "a", "shape": [2, 3], "datatype": "FP32", "data": [1, 2, 3, 4, 5, 6]}
B = {"name": "b", "shape": [2, 2], "datatype": "INT64", "data": [1, 2, 3, 4]}


@pytest.mark.parametrize("body", [
    json.dumps({"inputs": [A, B]}),
    json.dumps({"inputs": [{**A, "data": [[1, 2, 3], [4, 5, 6]]}, B]}),  # nested as the shape: allowed
    json.dumps({"inputs": [{**A, "data": [1, 2, [3], 4, 5, 6]}, B]}),  # deeper: as_buffer would flatten it
    json.dumps({"inputs": [{**A, "data": [1, 2, [], [3, 4], 5, 6]}, B]}),
    json.dumps({"inputs": [{**A, "data": [1, 2, "3", 4, 5, 6]}, B]}),
    json.dumps({"inputs": [{**A, "data": [1, 2, None, 4, 5, 6]}, B]}),
    json.dumps({"inputs": [{**A, "data": [1, 2, True, 4, 5, 6]}, B]}),
    json.dumps({"inputs": [A, {**B, "data": [1, 2, 3, 4.5]}]}),  # not an integer for int64
    json.dumps({"inputs": [A, {**B, "data": [1, 2, 3, 2**63]}]}),  # beyond int64
    json.dumps({"inputs": [A, {**B, "data": [1, 2, 3, 2**64]}]}),  # beyond uint64: simdjson cannot read it
    json.dumps({"inputs": [{**A, "data": [1, 2, 3, 4, 5, 1e39]}, B]}),  # beyond float32
    json.dumps({"inputs": [{**A, "datatype": "INT8", "data": [1, 2, 3, 4, 5, 300]}, B]}),
    json.dumps({"inputs": [{**A, "shape": [3, 3]}, B]}),
    json.dumps({"inputs": [A, B], "id": "[x]"}),  # a "[" in a string: the checked path takes it
    json.dumps({"inputs": [A, B], "outputs": [{"name": "y"}], "parameters": {"k": [1, 2]}}),
    json.dumps({"inputs": [A, B], "outputs": [{"name": "nope"}]}),
    json.dumps({"inputs": [A, A, B]}),
    json.dumps({"inputs": [A]}),
    json.dumps({"inputs": []}),
    json.dumps({"inputs": [A, B, 7]}),
    json.dumps({"inputs": {"a": A}}),
    '{"inputs": [' + json.dumps(A) + ", " + json.dumps(B) + '], "inputs": []}',  # orjson keeps the last
    '{"inputs": [' + json.dumps(A)[:-1] + ', "data": [6, 5, 4, 3, 2, 1]}, ' + json.dumps(B) + "]}",
    '{"inputs": [' + json.dumps(A)[:-1] + ', "name": "zz"}, ' + json.dumps(B) + "]}",  # the last name counts
    '{"id": "1", "inputs": [' + json.dumps(A) + ", " + json.dumps(B) + '], "id": 2}',
    '\ufeff' + json.dumps({"inputs": [A, B]}),
    json.dumps({"inputs": [A, B]}) + " x",
])
def test_v2_bodies_get_the_checked_answer(two, body, monkeypatch):
    v2(two, body, monkeypatch)
    v2(two, body.encode(), monkeypatch)


numbers_or_not = st.one_of(numbers, numbers, numbers, odd)


@st.composite
def v2_bodies(draw):
    tensors = []
    for name, width, datatype in draw(st.permutations([("a", 3, "FP32"), ("b", 2, "INT64")])):
        rows = draw(st.integers(1, 3))
        data = draw(st.lists(numbers_or_not, min_size=rows * width, max_size=rows * width))
        if draw(st.booleans()):
            data = [data[i:i + width] for i in range(0, len(data), width)]
        tensor = {"name": draw(st.sampled_from([name, name, "zz"])),
                  "shape": draw(st.sampled_from([[rows, width], [rows, width], [width, rows]])),
                  "datatype": draw(st.sampled_from([datatype, datatype, "FP64", "INT32", "UINT8", "BOOL"])),
                  "data": data}
        tensors.append(tensor)
    doc = {"inputs": tensors[:draw(st.integers(1, 2))]}
    if draw(st.booleans()):
        doc["outputs"] = [{"name": draw(st.sampled_from(["y", "zz"]))}]
    if draw(st.booleans()):
        doc["id"] = draw(st.text(max_size=3))
    text = json.dumps(doc)
    return text.encode() if draw(st.booleans()) else text


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=v2_bodies())
def test_random_v2_bodies_get_the_same_answer_either_way(two, body, monkeypatch):
    v2(two, body, monkeypatch)
