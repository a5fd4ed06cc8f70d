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
from handlers.inference import v2_binary
from handlers.inference.body import _media_type
from handlers.inference.outputs import shape_outputs
from handlers.inference.predict_v1 import parse_predict
from handlers.inference.run import _ModelFailure, _non_finite_rows, _profile, run
from handlers.inference.table import TableCounts
from handlers.inference.types import Model, NonFiniteOutputError, Request, RequestError, Result
from handlers.inference.v2 import parse_v2


def handle(model: Model, req: Request) -> Result:
    """Answer one request. Never raises: client mistakes are 4xx, model failures 500. Under /v2 errors
    also carry the Open Inference Protocol's {"error": message}."""
    v2 = req.path == "/v2" or req.path.startswith("/v2/")
    try:
        route = _route(model, req.method, req.path)
        result: Result = route(model, req)
        return result
    except RequestError as e:
        return error_result(e, v2=v2)
    except _ModelFailure as e:
        message = f"the model failed on this request (request id {req.request_id})"
        payload = {"code": C.MODEL_ERROR, "message": message, "path": None, "request_id": req.request_id}
        res = Result(500, {"error": message, **payload} if v2 else payload)
        res.error_trace = e.trace
        res.rows = e.rows
        return res


def error_result(e: RequestError, *, v2: bool = False) -> Result:
    payload: dict[str, Any] = {"code": e.kind, "message": e.message, "path": e.path}
    if v2:  # what tritonclient and KServe clients read; the rest stays for everyone else
        where = e.path if e.path not in (None, "path", "method", "body") else None
        payload = {"error": f"{where}: {e.message}" if where else e.message, **payload}
    res = Result(e.status, payload, e.headers or None)
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
    elif path == "/feedback":
        allowed = {"POST": _feedback_route}
    elif path == "/v2":
        allowed = {"GET": _v2_server_route}
    elif path in ("/v2/health/live", "/v2/health/ready"):
        allowed = {"GET": _v2_live_route if path.endswith("live") else _v2_ready_route}
    elif path.startswith("/v2/models/"):
        allowed = _v2_model_routes(model, path)
    else:
        raise _not_found(path)
    fn = allowed.get(method)
    if fn is None:
        allow = ", ".join(allowed)
        raise RequestError(405, C.METHOD_NOT_ALLOWED, f"{method} is not allowed on {path}; use {allow}",
                           "method", {"Allow": allow})
    return fn


def _v2_model_routes(model: Model, path: str) -> dict[str, Any]:
    """/v2/models/<name>[/versions/<version>][/infer | /ready]."""
    parts = path[len("/v2/models/"):].split("/")
    name, rest = parts[0], parts[1:]
    if len(rest) >= 2 and rest[0] == "versions":
        version, rest = rest[1], rest[2:]
        if name == model.name and version != model.version:
            raise RequestError(404, C.UNKNOWN_ROUTE, f"model {name!r} has no version {version!r} here; it serves "
                               f"version {model.version!r}", "path")
    if rest not in ([], ["infer"], ["ready"]):
        raise _not_found(path)
    if name != model.name:
        raise RequestError(404, C.UNKNOWN_ROUTE, f"no model named {name!r} here; this endpoint serves "
                           f"{model.name!r}", "path")
    if rest == ["infer"]:
        return {"POST": _v2_infer_route}
    return {"GET": _v2_ready_route if rest == ["ready"] else _v2_metadata_route}


def _not_found(path: str) -> RequestError:
    routes = ", ".join(f"{m} {p}" for m, p in C.ROUTES)
    return RequestError(404, C.UNKNOWN_ROUTE, f"no route {path!r}; routes: {routes}", "path")


def _document(payload: Any) -> Result:
    """A document or health answer: not an inference, so not in the request metrics."""
    res = Result(200, payload)
    res.metered = False
    return res


def _health_route(model: Model, req: Request) -> Result:
    return _document(model.health_doc)


def _openapi_route(model: Model, req: Request) -> Result:
    return _document(model.openapi_doc)


def _feedback_route(model: Model, req: Request) -> Result:
    """Ground truth for an earlier request: logged for the monitor's join (handlers/capture.feedback)."""
    from handlers import capture  # only feedback calls pay for it
    from handlers.inference.body import decode_json

    data = decode_json(req, model.json_bounds)
    try:
        answer = capture.feedback(model, data, req.request_id)
    except ValueError as e:
        raise RequestError(400, C.BAD_REQUEST, str(e), "body") from None
    res = Result(202, answer)
    res.metered = False  # not an inference
    return res


def _v2_metadata_route(model: Model, req: Request) -> Result:
    return _document(model.v2_metadata)


def _v2_server_route(model: Model, req: Request) -> Result:
    return _document(V2_SERVER)


def _v2_live_route(model: Model, req: Request) -> Result:
    return _document({"live": True})


def _v2_ready_route(model: Model, req: Request) -> Result:
    # the model is loaded before the first request reaches the handler: live is ready
    return _document({"ready": True})


# GET /v2: the Open Inference Protocol's server metadata
V2_SERVER = {"name": "mlpack", "version": "1", "extensions": ["binary_tensor_data"]}


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
    if model.capture is not None:  # one draw; a sampled request writes its capture line
        model.capture.offer(req.request_id, feeds, outs)
    res = Result(200, None)
    res.rows, res.infer_ms = rows, infer_ms
    _profile(model, feeds, res)
    _count_table(res, counts)
    res.payload = {"model": model.name, "version": model.version, "outputs": shape_outputs(model, outs, res)}
    return res


def _v2_infer_route(model: Model, req: Request) -> Result:
    counts = _table_counts(model)
    feeds, wanted, rid, binary = parse_v2(model, req, counts)
    rows = next(iter(feeds.values())).shape[0]
    outs, infer_ms = run(model, feeds, rows)
    bad = _non_finite_rows(model, outs, rows)
    if bad is not None:
        raise NonFiniteOutputError(bad[0], rows, bad[1], "inputs")
    if model.capture is not None:  # one draw; a sampled request writes its capture line
        model.capture.offer(req.request_id, feeds, outs)
    res = Result(200, None)
    res.rows, res.infer_ms = rows, infer_ms
    _profile(model, feeds, res)
    _count_table(res, counts)
    shape_outputs(model, outs, res)  # for the prediction metrics only; v2 answers raw tensors
    by_name = dict(zip(model.output_names, outs, strict=True))
    tensors = []
    blobs: list[bytes] = []
    for name in wanted:
        arr = np.asarray(by_name[name])
        datatype = model.output_by_name[name].v2_type
        tensor: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(arr.shape)}
        if name in binary:
            blob = v2_binary.encode(arr, datatype)
            tensor["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            tensor["data"] = arr.astype(str).reshape(-1).tolist() if arr.dtype.kind in "OUS" else arr.reshape(-1)
        tensors.append(tensor)
    payload: dict[str, Any] = {"model_name": model.name, "model_version": model.version, "outputs": tensors}
    if rid is not None:
        payload["id"] = rid
    res.payload = payload
    if binary:
        res.raw, header_length = v2_binary.join_response(payload, blobs)
        res.headers = {"Content-Type": C.V2_BINARY_CONTENT_TYPE,
                       "Inference-Header-Content-Length": str(header_length)}
    return res
