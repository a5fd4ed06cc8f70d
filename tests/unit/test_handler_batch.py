"""Batch events (handlers/batch.py) through events.handle, as the entry point meets them: both event
shapes, DataFrame and array models, rows read from CSV text, key columns passed through, and bad rows
answered one by one while the good ones are scored as the API would score them; the batch metrics."""

from __future__ import annotations

import io
import json
import math

import numpy as np
import pytest

from handlers import batch, events, metrics
from handlers import contract as C
from handlers.inference import Request, handle, load_model
from tests.support import handler_models as hm


@pytest.fixture(scope="module")
def iris(tmp_path_factory):
    folder, clf, X = hm.iris(tmp_path_factory.mktemp("iris"))
    return load_model(str(folder), max_batch=16), clf, X


@pytest.fixture(scope="module")
def tab(tmp_path_factory):
    folder, pipeline, frame = hm.table(tmp_path_factory.mktemp("table"), numeric=3, strings=2)
    return load_model(str(folder), max_batch=16), pipeline, frame


def _emitter():
    out = io.StringIO()
    return metrics.Emitter("m", stream=out), out


def _records(frame, n):
    return [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
            for row in frame.iloc[:n].to_dict("records")]


def test_items_of_an_array_model_past_the_api_limit_agree_with_predict(iris):
    model, _clf, X = iris
    em, out = _emitter()
    doc = events.handle(model, em, {"Items": X[:40].tolist(), "BatchInput": {}}, "r1")
    assert doc["rows"] == 40 and doc["errors"] == 0 and doc["row_errors"] == []
    api = handle(model, Request("POST", "/predict", data={"inputs": X[:10].tolist()}))
    assert doc["outputs"]["label"][:10] == api.payload["outputs"]["label"]
    line = json.loads(out.getvalue().splitlines()[-1])
    assert line[C.M_BATCH_ROWS] == 40 and line[C.M_BATCH_ROW_ERRORS] == 0 and C.M_REQUESTS not in line


def test_bad_rows_get_their_own_errors_and_the_rest_is_scored(iris):
    model, clf, X = iris
    rows = X[:6].tolist()
    rows[1] = [1, 2]
    rows[4] = ["a", 2, 3, 4]
    em, out = _emitter()
    doc = events.handle(model, em, {C.BATCH_KEY: {"instances": rows}}, "r2")
    assert doc["errors"] == 2 and [e["row"] for e in doc["row_errors"]] == [1, 4]
    assert all(e["code"] == C.BAD_INPUT and e["path"].startswith(f"rows[{e['row']}]") for e in doc["row_errors"])
    labels = doc["outputs"]["label"]
    assert labels[1] is None and labels[4] is None
    names = ["setosa", "versicolor", "virginica"]
    assert [labels[i] for i in (0, 2, 3, 5)] == [names[k] for k in clf.predict(X[[0, 2, 3, 5]])]
    assert json.loads(out.getvalue().splitlines()[-1])[C.M_BATCH_ROW_ERRORS] == 2


def test_csv_text_with_keys_for_an_array_model(iris):
    model, _clf, X = iris
    feats = model.feature_names[model.single.name]
    items = [{"id": f"c{i}", **{f: str(v) for f, v in zip(feats, X[i], strict=True)}} for i in range(5)]
    items[2][feats[0]] = "not a number"
    doc = events.handle(model, _emitter()[0], {"Items": items, "BatchInput": {"source": "csv", "key_columns": ["id"]}},
                        "r3")
    assert doc["keys"] == {"id": ["c0", "c1", "c2", "c3", "c4"]}
    assert [e["row"] for e in doc["row_errors"]] == [2] and "not a number" in doc["row_errors"][0]["message"]


def test_dataframe_records_csv_and_columns_agree_with_the_pipeline(tab):
    model, pipeline, frame = tab
    recs = _records(frame, 30)
    expected = pipeline.predict_proba(frame.iloc[:30])[:, 1]
    doc = events.handle(model, _emitter()[0], {C.BATCH_KEY: {"instances": recs}}, "r4")
    got = [p[model.label_names[1]] for p in doc["outputs"][model.output_names[model.scores_index]]]
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    text = [{k: "" if v is None else str(v) for k, v in r.items()} for r in recs]
    csv_doc = events.handle(model, _emitter()[0], {"Items": text, "BatchInput": {"source": "csv"}}, "r5")
    assert csv_doc["errors"] == 0 and csv_doc["outputs"]["label"] == doc["outputs"]["label"]
    cols = {k: [r[k] for r in recs] for k in recs[0]}
    col_doc = events.handle(model, _emitter()[0], {C.BATCH_KEY: {"inputs": cols}}, "r6")
    assert col_doc["outputs"]["label"] == doc["outputs"]["label"]


def test_dataframe_bad_rows_one_by_one(tab):
    model, _pipeline, frame = tab
    recs = _records(frame, 8)
    recs[3]["n0"] = "high"
    recs[5]["bogus"] = 1
    recs[6] = "not a record"
    doc = events.handle(model, _emitter()[0], {"Items": recs}, "r7")
    assert [e["row"] for e in doc["row_errors"]] == [3, 5, 6]
    assert doc["row_errors"][0]["path"] == "rows[3].n0" and doc["row_errors"][1]["path"] == "rows[5].bogus"
    assert sum(v is not None for v in doc["outputs"]["label"]) == 5


@pytest.mark.parametrize("event, code", [
    ({C.BATCH_KEY: []}, C.BAD_REQUEST),
    ({C.BATCH_KEY: {"rows": []}}, C.BAD_REQUEST),
    ({"Items": [], "BatchInput": "x"}, C.BAD_REQUEST),
    ({"Items": [[1, 2, 3, 4]], "BatchInput": {"source": "xml"}}, C.BAD_REQUEST),
    ({"Items": [[1, 2, 3, 4]], "BatchInput": {"key_columns": "id"}}, C.BAD_REQUEST),
])
def test_a_malformed_batch_event_is_refused_whole(iris, event, code):
    out = events.handle(iris[0], _emitter()[0], event, "r8")
    assert out["code"] == code and out["status"] == 400


def test_an_empty_batch_answers_no_rows(iris):
    doc = events.handle(iris[0], _emitter()[0], {"Items": [], "BatchInput": {}}, "r9")
    assert doc["rows"] == 0 and doc["outputs"]["label"] == []


def test_a_direct_predict_event_is_not_a_batch():
    assert not batch.is_batch({"inputs": [[1]]}) and not batch.is_batch({"Items": 3})
