"""Lambda events in, Lambda responses out: API Gateway REST proxy (payload 1.0), HTTP API and
function URLs (payload 2.0), a direct invoke whose event is the /predict request body, and batch
events (handlers/batch.py: {"mlpack_batch": ...} or a Distributed Map's {"Items": [...]}).

Standard library only (plus inference and a metrics emitter passed in); never packager/ or stacks/.
"""

from __future__ import annotations

import binascii
import time
import traceback
from typing import Any

from handlers import batch
from handlers import contract as C
from handlers.inference import Model, Request, RequestError, Result, error_result, loads
from handlers.inference import handle as handle_request

perf = time.perf_counter

V1, V2, DIRECT = "1.0", "2.0", "direct"
_JSON_HEADERS = {"Content-Type": "application/json"}


def event_format(event: Any) -> str:
    if isinstance(event, dict):
        if event.get("version") == "2.0" and ("rawPath" in event or "routeKey" in event):
            return V2
        if "httpMethod" in event:
            return V1
    return DIRECT


_JSON_NAMES = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "a number",
               float: "a number"}


def _field(obj: Any, key: str, want: type | tuple[type, ...], path: str) -> Any:
    """obj[key] when it is absent, null or of the wanted JSON type; a 400 naming the field otherwise. Any
    invoker can hand the function an event: a field of the wrong type is its mistake, never a 500."""
    value = obj.get(key)
    if value is None or (isinstance(value, want) and not (isinstance(value, bool) and bool not in _types(want))):
        return value
    wanted = " or ".join(_JSON_NAMES.get(t, t.__name__) for t in _types(want))
    got = _JSON_NAMES.get(type(value), type(value).__name__)
    raise RequestError(400, C.BAD_REQUEST, f"the event's {path} must be {wanted}, got {got}", f"event.{path}")


def _types(want: type | tuple[type, ...]) -> tuple[type, ...]:
    return want if isinstance(want, tuple) else (want,)


def _body(event: dict[str, Any]) -> bytes | str | None:
    body: str | None = _field(event, "body", str, "body")
    b64 = _field(event, "isBase64Encoded", bool, "isBase64Encoded")
    if body is None or not b64:
        return body
    try:
        # binascii directly: base64.b64decode(validate=True) runs a regular expression over the body first.
        # Stray characters are skipped here; a body they damage fails its own parsing with a 400.
        return binascii.a2b_base64(body)
    except (binascii.Error, ValueError, TypeError):
        raise RequestError(400, C.BAD_REQUEST, "isBase64Encoded is set but the body is not valid base64",
                           "body") from None


def _content_type(headers: Any) -> str:
    if not headers:
        return ""
    ct = headers.get("content-type")
    if ct is None:
        for k, v in headers.items():
            if isinstance(k, str) and k.lower() == "content-type":
                return str(v)
        return ""
    return str(ct)


def parse(event: Any, request_id: str) -> tuple[str, Request]:
    """(format, Request). Raises RequestError for an undecodable body."""
    fmt = event_format(event)
    return fmt, parse_as(fmt, event, request_id)


def parse_as(fmt: str, event: Any, request_id: str) -> Request:
    if fmt == V2:
        context = _field(event, "requestContext", dict, "requestContext") or {}
        http = _field(context, "http", dict, "requestContext.http") or {}
        method = (_field(http, "method", str, "requestContext.http.method") or "GET").upper()
        path = (_field(event, "rawPath", str, "rawPath") or _field(http, "path", str, "requestContext.http.path")
                or "/")
        stage = _field(context, "stage", str, "requestContext.stage")
        if stage and stage != "$default" and path.startswith(f"/{stage}/"):
            path = path[len(stage) + 1:]  # HTTP API paths carry a named stage; routes do not
        headers = _field(event, "headers", dict, "headers")
        return Request(method, path, body=_body(event), content_type=_content_type(headers),
                       request_id=request_id, headers=headers)
    if fmt == V1:
        method = (_field(event, "httpMethod", str, "httpMethod") or "GET").upper()
        path = _field(event, "path", str, "path") or "/"
        headers = _field(event, "headers", dict, "headers")
        return Request(method, path, body=_body(event), content_type=_content_type(headers),
                       request_id=request_id, headers=headers)
    data = event
    if isinstance(event, str | bytes):  # a direct invoke with a JSON string as payload: decode once more
        try:
            data = loads(event)
        except ValueError:
            raise RequestError(400, C.BAD_JSON, "the event is a string that is not JSON", "event") from None
    if data is None:
        raise RequestError(400, C.BAD_REQUEST, "the event is empty; send {\"inputs\": [[...]]}", "event")
    return Request("POST", "/predict", data=data, request_id=request_id)


def respond(fmt: str, result: Result) -> Any:
    """The Lambda return value for this event format."""
    if fmt == DIRECT:
        # the runtime client serializes with the stdlib json, which knows no numpy: hand it builtins
        out = loads(result.body())
        if result.status >= 400 and isinstance(out, dict):
            out["status"] = result.status
        return out
    headers = _JSON_HEADERS if not result.headers else {**_JSON_HEADERS, **result.headers}
    if result.raw is not None:  # binary: API Gateway decodes it back for clients
        return {"statusCode": result.status, "headers": headers, "isBase64Encoded": True,
                "body": binascii.b2a_base64(result.raw, newline=False).decode()}
    return {"statusCode": result.status, "headers": headers, "body": result.body().decode(),
            "isBase64Encoded": False}


def handle(model: Model, emitter: Any, event: Any, request_id: str, cold: bool = False) -> Any:
    """Event in, Lambda response out, metrics and logs written: the whole request path, with the
    model and the metrics emitter passed in (the entry point, tests and benchmarks call this)."""
    if type(event) is dict and (C.BATCH_KEY in event or C.BATCH_ITEMS in event) and batch.is_batch(event):
        return batch.handle(model, emitter, event, request_id, cold)  # `mlpack batch`: rows scored one by one
    t0 = perf()
    fmt = event_format(event)
    try:
        req = parse_as(fmt, event, request_id)
        result = handle_request(model, req)
    except RequestError as e:
        result = error_result(e)  # the event itself was malformed: no route to speak for
    except Exception:  # a bug of ours must still answer like Lambda would, and say where to look
        result = Result(500, {"code": C.INTERNAL_ERROR, "message": f"internal error (request id "
                              f"{request_id})", "path": None, "request_id": request_id})
        result.error_trace = traceback.format_exc()
    response = respond(fmt, result)
    latency_ms = (perf() - t0) * 1000.0
    if result.error_trace is not None:
        emitter.log("error", "request failed", request_id, status=result.status, traceback=result.error_trace)
    elif result.kind is not None:
        emitter.log("info", "request refused", request_id, status=result.status, kind=result.kind,
                    path=result.payload.get("path"), detail=result.payload.get("message"))
    emitter.request(result, latency_ms=latency_ms, cold=cold)
    return response
