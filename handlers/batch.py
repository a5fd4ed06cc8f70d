"""Batch events: many rows scored in one invocation, each row answered on its own (`mlpack batch`).

In: a `Model`, and an event of either shape: {"mlpack_batch": {"instances": [...]} | {"inputs": ...},
"key_columns": [...], "source": "json" | "csv"}, or what a Step Functions Distributed Map's ItemBatcher
sends, {"Items": [row, ...], "BatchInput": {"key_columns": [...], "source": "csv" | "json"}}. A row is a
record ({"column": value, ...}) for a DataFrame model, or a row of numbers (a list, or a record whose
values follow the model's feature names) for a model with one input of rows; rows read from CSV carry
every value as text (source "csv"): "" is missing, numbers and booleans are read from the text here.
Key columns are passed through to the answer and never fed to the model.

Out: {"model", "version", "rows", "errors": count, "outputs": {name: [one value per row, null where
the row failed]}, "keys": {column: [...]}, "row_errors": [{"row", "code", "message", "path"}]}. Every
row is validated as the API validates a request; a bad row gets its own error (and null outputs) and
never fails the others: the batch is validated whole first (the common case costs what a request
costs), and only when that refuses it is each row checked alone. Metrics (metrics.Emitter.batch) count
BatchRows and BatchRowErrors, never the API's Requests.

Imports only the standard library, numpy, onnxruntime (through inference) and handlers; never
packager/ or stacks/.
"""

from __future__ import annotations

import copy
import time
import traceback
from operator import itemgetter
from typing import Any

import numpy as np

from handlers import contract as C
from handlers.inference import Model, RequestError, table
from handlers.inference.outputs import shape_outputs
from handlers.inference.run import _ModelFailure, _non_finite_rows, run
from handlers.inference.types import Result
from handlers.inference.validate import _bad, _jtype, to_array

perf = time.perf_counter
_TRUE, _FALSE = frozenset(("true", "True", "TRUE", "1")), frozenset(("false", "False", "FALSE", "0"))


def is_batch(event: Any) -> bool:
    return isinstance(event, dict) and (C.BATCH_KEY in event or (
        isinstance(event.get(C.BATCH_ITEMS), list) and ("BatchInput" in event or len(event) == 1)))


class Batch:
    """A batch event read: its rows, the key columns' values per row and where the rows came from."""

    __slots__ = ("key_columns", "keys", "rows", "source")

    def __init__(self, rows: list[Any], key_columns: list[str], source: str) -> None:
        self.rows, self.key_columns, self.source = rows, key_columns, source
        self.keys: dict[str, list[Any]] = {k: [] for k in key_columns}


def read_event(model: Model, event: dict[str, Any]) -> Batch:
    """The rows of a batch event, key columns split off; a RequestError when the event itself is malformed."""
    if C.BATCH_KEY in event:
        body = event[C.BATCH_KEY]
        if not isinstance(body, dict):
            raise RequestError(400, C.BAD_REQUEST, f'"{C.BATCH_KEY}" must be an object like {{"instances": '
                               f"[...]}}, got {_jtype(body)}", C.BATCH_KEY)
        options, where = body, C.BATCH_KEY
        if "instances" in body:
            rows = body["instances"]
        elif "inputs" in body:
            rows = _columns_to_rows(model, body["inputs"])
        else:
            raise RequestError(400, C.BAD_REQUEST, f'"{C.BATCH_KEY}" needs "instances" (rows) or "inputs" '
                               "(columns), as a /predict request", C.BATCH_KEY)
    else:
        rows, where = event[C.BATCH_ITEMS], C.BATCH_INPUT
        options = event.get(C.BATCH_INPUT) or {}
        if not isinstance(options, dict):
            raise RequestError(400, C.BAD_REQUEST, f'"{C.BATCH_INPUT}" must be an object, got {_jtype(options)}',
                               C.BATCH_INPUT)
    if not isinstance(rows, list):
        raise RequestError(400, C.BAD_REQUEST, f"the batch's rows must be a list, got {_jtype(rows)}", where)
    if len(rows) > C.BATCH_MAX_ROWS:
        raise RequestError(413, C.TOO_LARGE, f"batch of {len(rows)} rows is over the maximum of "
                           f"{C.BATCH_MAX_ROWS}; use more invocations", where)
    keys = options.get("key_columns") or []
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise RequestError(400, C.BAD_REQUEST, "key_columns must be a list of column names", f"{where}.key_columns")
    source = options.get("source") or "json"
    if source not in ("json", "csv"):
        raise RequestError(400, C.BAD_REQUEST, f"source must be 'json' or 'csv', got {source!r}", f"{where}.source")
    batch = Batch(rows, keys, source)
    if keys:
        for row in rows:
            for k in keys:
                batch.keys[k].append(row.pop(k, None) if type(row) is dict else None)
    return batch


def _columns_to_rows(model: Model, given: Any) -> list[Any]:
    if isinstance(given, list):  # rows of numbers, as /predict's {"inputs": [[...]]}
        return given
    if not isinstance(given, dict) or not all(isinstance(v, list) for v in given.values()):
        raise RequestError(400, C.BAD_REQUEST, '"inputs" must be rows [[...]] or columns {"<column>": [...]}',
                           f"{C.BATCH_KEY}.inputs")
    n = {len(v) for v in given.values()}
    if len(n) > 1:
        raise RequestError(422, C.BAD_INPUT, f"columns have different lengths: {sorted(n)}", f"{C.BATCH_KEY}.inputs")
    names = list(given)
    return [dict(zip(names, vals, strict=True)) for vals in zip(*given.values(), strict=True)]


# --- text from CSV -> JSON values --------------------------------------------------------------------


def _number(text: Any) -> Any:
    if type(text) is not str:
        return text
    if text == "":
        return None
    try:
        return float(text)
    except ValueError:
        return text  # validation refuses it, naming the value as the file had it


def _boolean(text: Any) -> Any:
    if type(text) is not str:
        return text
    if text == "":
        return None
    return True if text in _TRUE else False if text in _FALSE else text


def _from_csv(model: Model, rows: list[Any]) -> list[Any]:
    if model.tabular:
        conv = {c.name: (_boolean if c.kind == "boolean" else (lambda v: None if v == "" else v)
                         if c.kind == "string" else _number) for c in model.columns}
        return [{k: conv[k](v) if k in conv else v for k, v in row.items()} if type(row) is dict else row
                for row in rows]
    return [[_number(v) for v in row] if type(row) is list else row for row in rows]


def _array_rows(model: Model, rows: list[Any]) -> list[Any]:
    """Records for a model of rows of numbers -> rows, by the model's feature names (else the record's order)."""
    spec = model.single
    names = model.feature_names.get(spec.name) if spec is not None else None
    out = []
    for row in rows:
        if type(row) is dict:
            out.append([row.get(n) for n in names] if names and all(n in row for n in names) else list(row.values()))
        else:
            out.append(row)
    return out


# --- scoring ----------------------------------------------------------------------------------------

_UNLIMITED: dict[int, Model] = {}


def _unlimited(model: Model) -> Model:
    """The model with the batch limit of batch events (api.max_batch_size is the API's limit per request)."""
    m = _UNLIMITED.get(id(model))
    if m is None or m.session is not model.session:
        m = copy.copy(model)
        m.max_batch = C.BATCH_MAX_ROWS
        _UNLIMITED[id(model)] = m
    return m


def _text_column(kind: str, values: list[Any]) -> list[Any]:
    """One column of CSV text as JSON values, in one pass when every value reads (else value by value)."""
    if kind == "string":
        return [v if v != "" else None for v in values]
    if kind == "boolean":
        return [_boolean(v) for v in values]
    try:
        return [float(v) if v != "" else None for v in values]
    except (ValueError, TypeError):
        return [_number(v) for v in values]


def _table_feeds(model: Model, rows: list[Any], csv: bool) -> dict[str, np.ndarray] | None:
    """The common case of a DataFrame model's batch, column by column (no record rebuilt per row): every
    row a record of known columns. None when some row is not: the caller validates row by row."""
    if set(map(type, rows)) != {dict}:
        return None
    names = [c.name for c in model.columns]
    try:  # every row holds exactly the model's columns (a CSV file's rows do): one pass in C
        if set(map(len, rows)) != {len(names)}:
            raise KeyError
        got = list(map(itemgetter(*names), rows))
        by_column: list[list[Any]] = [list(c) for c in zip(*got, strict=True)] if len(names) > 1 else [got]
    except KeyError:  # some row leaves a column out (a null) or names another (refused)
        known = model.column_set
        if not all(r.keys() <= known for r in rows):
            return None
        by_column = [[r.get(name) for r in rows] for name in names]
    given = {col.name: _text_column(col.kind, values) if csv else values
             for col, values in zip(model.columns, by_column, strict=True)}
    return table.columns(model, given, table.TableCounts())


def _feeds(model: Model, rows: list[Any]) -> dict[str, np.ndarray]:
    if model.tabular:
        return table.records(model, rows, table.TableCounts())
    if model.single is None:
        raise _bad("Items", f"batch events score models of one input; this one has {model.input_names_text}")
    return {model.single.name: to_array(model, model.single, rows, "instances")}


def _row_path(path: str | None, i: int) -> str | None:
    """instances[0].age -> rows[i].age: the row's own path in the batch."""
    if path and path.startswith("instances[0]"):
        return f"rows[{i}]" + path[len("instances[0]"):]
    return f"rows[{i}]" if path in (None, "instances", "body") else path


def score(model: Model, batch: Batch, request_id: str = "local") -> dict[str, Any]:
    """Every row of the batch scored or refused on its own; the answer's document (see the module)."""
    m = _unlimited(model)
    rows = batch.rows
    csv = batch.source == "csv"
    if not m.tabular:
        if not all(type(r) is list for r in rows):
            rows = _array_rows(m, rows)
        if csv:
            rows = _from_csv(m, rows)
    n = len(rows)
    errors: dict[int, dict[str, Any]] = {}
    good = list(range(n))
    feeds: dict[str, np.ndarray] | None = None
    if n:
        try:
            feeds = _table_feeds(m, rows, csv) if m.tabular else _feeds(m, rows)
            if feeds is None:
                raise RequestError(422, C.BAD_INPUT, "a row is not a record of the model's columns", None)
        except RequestError:
            if m.tabular and csv:
                rows = _from_csv(m, rows)
            good = []
            for i, row in enumerate(rows):
                try:
                    _feeds(m, [row])
                    good.append(i)
                except RequestError as e:
                    errors[i] = {"row": i, "code": e.kind, "message": e.message, "path": _row_path(e.path, i)}
            feeds = _feeds(m, [rows[i] for i in good]) if good else None
    outputs: dict[str, list[Any]] = {}
    if feeds is not None:
        good, outs = _run(m, feeds, good, errors, request_id)
        if good:
            res = Result(200, None)
            shaped = shape_outputs(m, outs, res)
            for name, values in shaped.items():
                col = values.tolist() if isinstance(values, np.ndarray) else list(values)
                if len(good) == n:
                    outputs[name] = col
                else:
                    full: list[Any] = [None] * n
                    for j, i in enumerate(good):
                        full[i] = col[j]
                    outputs[name] = full
    if not outputs:
        outputs = {name: [None] * n for name in _served_names(m)}
    doc: dict[str, Any] = {"model": m.name, "version": m.version, "rows": n, "errors": len(errors),
                           "outputs": outputs}
    if batch.key_columns:
        doc["keys"] = batch.keys
    doc["row_errors"] = [errors[i] for i in sorted(errors)]
    return doc


def _served_names(model: Model) -> list[str]:
    if model.is_classifier:
        return ["label", *(n for i, n in enumerate(model.output_names) if i != model.label_index)]
    return list(model.output_names)


def _run(model: Model, feeds: dict[str, np.ndarray], good: list[int], errors: dict[int, dict[str, Any]],
         request_id: str) -> tuple[list[int], list[Any]]:
    """session.run on the good rows; a row whose outputs are not finite, or on which the model fails alone,
    becomes that row's error. Returns the rows answered and their outputs."""
    try:
        outs, _ms = run(model, feeds, len(good))
    except _ModelFailure:
        # one row may break the model for all: run each alone to find it
        kept, parts = [], []
        for j, i in enumerate(good):
            one = {k: v[j:j + 1] for k, v in feeds.items()}
            try:
                parts.append(run(model, one, 1)[0])
                kept.append(j)
            except _ModelFailure:
                errors[i] = {"row": i, "code": C.MODEL_ERROR, "message": f"the model failed on this row (request "
                             f"id {request_id})", "path": f"rows[{i}]", "trace": traceback.format_exc(limit=1)}
        if not kept:
            return [], []
        outs = [np.concatenate([p[k] for p in parts]) for k in range(len(parts[0]))]
        good = [good[j] for j in kept]
        feeds = {k: v[kept] for k, v in feeds.items()}
    bad = _non_finite_rows(model, outs, len(good))
    if bad is not None:
        drop = set(bad[0])
        for j in bad[0]:
            i = good[j]
            errors[i] = {"row": i, "code": C.NON_FINITE_OUTPUT, "message": f"the model's outputs {', '.join(bad[1])} "
                         "hold NaN or infinity for this row", "path": f"rows[{i}]"}
        keep = [j for j in range(len(good)) if j not in drop]
        outs = [np.asarray(o)[keep] if np.asarray(o).ndim and np.asarray(o).shape[0] == len(good) else o for o in outs]
        good = [good[j] for j in keep]
    return good, outs


def handle(model: Model, emitter: Any, event: Any, request_id: str, cold: bool = False) -> Any:
    """A batch event in, its answer out (a refused event: {"status", "code", "message", "path"}), one metrics
    line written."""
    t0 = perf()
    try:
        doc = score(model, read_event(model, event), request_id)
    except RequestError as e:
        emitter.log("info", "batch refused", request_id, status=e.status, kind=e.kind, path=e.path,
                    detail=e.message)
        emitter.batch(rows=0, errors=0, latency_ms=(perf() - t0) * 1000.0, cold=cold)
        return {"status": e.status, "code": e.kind, "message": e.message, "path": e.path}
    for err in doc["row_errors"]:
        trace = err.pop("trace", None)
        if trace is not None:
            emitter.log("error", "batch row failed", request_id, row=err["row"], traceback=trace)
    emitter.batch(rows=doc["rows"], errors=doc["errors"], latency_ms=(perf() - t0) * 1000.0, cold=cold)
    return doc
