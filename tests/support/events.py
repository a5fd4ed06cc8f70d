"""Fixture Lambda events as API Gateway and direct invokes deliver them: REST proxy (payload 1.0),
HTTP API (payload 2.0, also Lambda function URLs) and a direct invoke. Shapes follow AWS's documented
examples, trimmed to the fields a handler may read.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import numpy as np


def _body(body: Any, content_type: str | None) -> tuple[str | None, bool, dict[str, str]]:
    headers = {"accept": "*/*", "user-agent": "curl/8.5.0"}
    if content_type:
        headers["content-type"] = content_type
    if body is None:
        return None, False, headers
    if isinstance(body, bytes):
        return base64.b64encode(body).decode(), True, headers
    if isinstance(body, str):
        return body, False, headers
    return json.dumps(body), False, headers


def rest_v1(method: str, path: str, body: Any = None, *, content_type: str | None = "application/json",
            headers: dict[str, str] | None = None, stage: str = "prod") -> dict[str, Any]:
    """API Gateway REST API proxy integration (payload 1.0). bytes bodies are base64-encoded."""
    text, b64, hdrs = _body(body, content_type if body is not None else None)
    hdrs = {k.title(): v for k, v in hdrs.items()}  # REST APIs pass header names as the client sent them
    hdrs.update(headers or {})
    return {
        "resource": "/{proxy+}", "path": path, "httpMethod": method, "headers": hdrs,
        "multiValueHeaders": {k: [v] for k, v in hdrs.items()},
        "queryStringParameters": None, "multiValueQueryStringParameters": None,
        "pathParameters": {"proxy": path.lstrip("/")}, "stageVariables": None,
        "requestContext": {"resourcePath": "/{proxy+}", "httpMethod": method, "path": f"/{stage}{path}",
                           "stage": stage, "requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
                           "identity": {"sourceIp": "127.0.0.1"}},
        "body": text, "isBase64Encoded": b64,
    }


def http_v2(method: str, path: str, body: Any = None, *, content_type: str | None = "application/json",
            headers: dict[str, str] | None = None, stage: str = "$default") -> dict[str, Any]:
    """API Gateway HTTP API (payload 2.0). A named stage is part of rawPath, as AWS sends it."""
    text, b64, hdrs = _body(body, content_type if body is not None else None)
    hdrs.update({k.lower(): v for k, v in (headers or {}).items()})
    raw_path = path if stage == "$default" else f"/{stage}{path}"
    return {
        "version": "2.0", "routeKey": "$default", "rawPath": raw_path, "rawQueryString": "",
        "headers": hdrs,
        "requestContext": {"accountId": "123456789012", "apiId": "api-id",
                           "domainName": "id.execute-api.us-east-1.amazonaws.com",
                           "http": {"method": method, "path": raw_path, "protocol": "HTTP/1.1",
                                    "sourceIp": "127.0.0.1", "userAgent": "curl/8.5.0"},
                           "requestId": "JKJaXmPLvHcESHA=", "routeKey": "$default", "stage": stage,
                           "time": "10/Mar/2026:00:00:00 +0000", "timeEpoch": 1773100800000},
        "body": text, "isBase64Encoded": b64,
    }


def direct(body: Any) -> Any:
    """A direct Lambda invoke: the event is the /predict request body itself."""
    return body


def npy_bytes(arr: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


FORMATS = {"v1": rest_v1, "v2": http_v2}


def response_json(fmt: str, response: Any) -> tuple[int, Any]:
    """(status, decoded body) from whatever the handler returned for that event format."""
    if fmt == "direct":
        status = response.get("status", 200) if isinstance(response, dict) else 200
        return status, response
    assert set(response) >= {"statusCode", "headers", "body"}, response
    assert response["isBase64Encoded"] is False
    return response["statusCode"], json.loads(response["body"])
