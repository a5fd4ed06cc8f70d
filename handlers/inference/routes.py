"""Routing: one request in, one `Result` out, whatever happens.

In: a `Model` and a `Request` (method, path, body). Out: a `Result` (handle): the route's answer; a 4xx
built from the RequestError any stage raised (error_result), among them a 422 refusing a batch whose
outputs hold NaN or infinity for some rows (counted in the Result's non_finite_rows, not as predictions);
or a 500 carrying the traceback when the model itself failed. The two infer routes chain the other
modules in request order: parse (predict_v1 or v2, which decode with body and validate with validate),
run, _non_finite_rows and _profile (run), shape_outputs (outputs); /health, /openapi.json and the v2
metadata answer documents the `Model` built at load.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from handlers import contract as C
from handlers.inference.body import _media_type
from handlers.inference.outputs import shape_outputs
from handlers.inference.predict_v1 import parse_predict
from handlers.inference.run import _ModelFailure, _non_finite_rows, _profile, run
from handlers.inference.table import TableCounts
from handlers.inference.types import Model, NonFiniteOutputError, Request, RequestError, Result
from handlers.inference.v2 import parse_v2


def handle(model: Model, req: Request) -> Result:
    """Answer one request. Never raises: client mistakes are 4xx, model failures 500."""
    try:
        route = _route(model, req.method, req.path)
        result: Result = route(model, req)
        return result
    except RequestError as e:
        return error_result(e)
    except _ModelFailure as e:
        res = Result(500, {"code": C.MODEL_ERROR,
                           "message": f"the model failed on this request (request id {req.request_id})",
                           "path": None, "request_id": req.request_id})
        res.error_trace = e.trace
        res.rows = e.rows
        return res


def error_result(e: RequestError) -> Result:
    res = Result(e.status, {"code": e.kind, "message": e.message, "path": e.path}, e.headers or None)
    res.kind = e.kind
    if isinstance(e, NonFiniteOutputError):
        res.non_finite_rows = e.rows
    return res


def _route(model: Model, method: str, path: str) -> Any:
    if len(path) > 1 and path.endswith("/"):
        path = path.rstrip("/")
    if path == "/predict":
        allowed = {"POST": _predict_route}
    elif path == "/health":
        allowed = {"GET": _health_route}
    elif path == "/openapi.json":
        allowed = {"GET": _openapi_route}
    elif path.startswith("/v2/models/"):
        rest = path[len("/v2/models/"):]
        name, _, tail = rest.partition("/")
        if tail not in ("", "infer"):
            raise _not_found(path)
        if name != model.name:
            raise RequestError(404, C.UNKNOWN_ROUTE, f"no model named {name!r} here; this endpoint serves "
                               f"{model.name!r}", "path")
        allowed = {"POST": _v2_infer_route} if tail == "infer" else {"GET": _v2_metadata_route}
    else:
        raise _not_found(path)
    fn = allowed.get(method)
    if fn is None:
        allow = ", ".join(allowed)
        raise RequestError(405, C.METHOD_NOT_ALLOWED, f"{method} is not allowed on {path}; use {allow}",
                           "method", {"Allow": allow})
    return fn


def _not_found(path: str) -> RequestError:
    routes = ", ".join(f"{m} {p}" for m, p in C.ROUTES)
    return RequestError(404, C.UNKNOWN_ROUTE, f"no route {path!r}; routes: {routes}", "path")


def _health_route(model: Model, req: Request) -> Result:
    return Result(200, model.health_doc)


def _openapi_route(model: Model, req: Request) -> Result:
    return Result(200, model.openapi_doc)


def _v2_metadata_route(model: Model, req: Request) -> Result:
    return Result(200, model.v2_metadata)


def _table_counts(model: Model) -> TableCounts | None:
    return TableCounts() if model.tabular else None


def _count_table(res: Result, counts: TableCounts | None) -> None:
    if counts is not None:
        res.category_values = counts.categorical
        res.unseen_by_feature = counts.unseen or None
        res.missing_by_feature = counts.missing or None


def _predict_route(model: Model, req: Request) -> Result:
    counts = _table_counts(model)
    feeds = parse_predict(model, req, counts)
    rows = next(iter(feeds.values())).shape[0]
    outs, infer_ms = run(model, feeds, rows)
    bad = _non_finite_rows(model, outs, rows)
    if bad is not None:
        where = "body" if req.data is None and _media_type(req) == "npy" else "inputs"
        raise NonFiniteOutputError(bad[0], rows, bad[1], where)
    res = Result(200, None)
    res.rows, res.infer_ms = rows, infer_ms
    _profile(model, feeds, res)
    _count_table(res, counts)
    res.payload = {"model": model.name, "version": model.version, "outputs": shape_outputs(model, outs, res)}
    return res


def _v2_infer_route(model: Model, req: Request) -> Result:
    counts = _table_counts(model)
    feeds, wanted, rid = parse_v2(model, req, counts)
    rows = next(iter(feeds.values())).shape[0]
    outs, infer_ms = run(model, feeds, rows)
    bad = _non_finite_rows(model, outs, rows)
    if bad is not None:
        raise NonFiniteOutputError(bad[0], rows, bad[1], "inputs")
    res = Result(200, None)
    res.rows, res.infer_ms = rows, infer_ms
    _profile(model, feeds, res)
    _count_table(res, counts)
    shape_outputs(model, outs, res)  # for the prediction metrics only; v2 answers raw tensors
    by_name = dict(zip(model.output_names, outs, strict=True))
    tensors = []
    for name in wanted:
        arr = np.asarray(by_name[name])
        data = arr.astype(str).reshape(-1).tolist() if arr.dtype.kind in "OUS" else arr.reshape(-1)
        tensors.append({"name": name, "datatype": model.output_by_name[name].v2_type,
                        "shape": list(arr.shape), "data": data})
    payload: dict[str, Any] = {"model_name": model.name, "model_version": model.version, "outputs": tensors}
    if rid is not None:
        payload["id"] = rid
    res.payload = payload
    return res
