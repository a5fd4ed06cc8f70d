"""`mlpack logs`: a model function's log lines, read. Each CloudWatch Logs event becomes a `LogLine` of
one kind:

- handler: the handler's JSON log record (handlers/metrics.py Emitter.log): level, message, model,
  request_id, timestamp, then the fields of that message (a refused request: status, kind (the error's
  code), path, detail; a failed one: status, traceback);
- metrics: an Embedded Metric Format document (JSON with an "_aws" key), hidden unless asked for;
- platform: Lambda's own START / END / REPORT / INIT_START lines and its timeouts;
- text: anything else (a print, a runtime's "[ERROR] ..." line).

Also here: `since` ("15m", "1h", "2d", an ISO 8601 time) and the FilterLogEvents pattern for a request
id or for errors (the server narrows, `keep` decides exactly: CloudWatch's pattern syntax cannot say
"level is ERROR" of a line that may not be JSON).

Enters: `LogEvent`s (packager/fleet/facts.py), options. Leaves: `LogLine`s and a pattern string. Imports
the standard library and packager.fleet.facts and packager.errors; no AWS, no terminal.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from packager.errors import MlpackError
from packager.fleet.facts import LogEvent

HANDLER, METRICS, PLATFORM, TEXT = "handler", "metrics", "platform", "text"
_DURATION_RE = re.compile(r"^(\d+(?:\.\d+)?)\s*(s|m|h|d|w)$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_REQUEST_ID_RE = re.compile(r"RequestId: ([0-9A-Za-z-]+)")
_PLATFORM_RE = re.compile(r"^(START|END|REPORT|INIT_START|INIT_REPORT|EXTENSION|TELEMETRY)\b")
_TIMEOUT_RE = re.compile(r"^\S+\s+([0-9a-f-]{36})\s+(Task timed out after .*)$")
_REPORT_FIELD_RE = re.compile(r"(Duration|Billed Duration|Memory Size|Max Memory Used|Init Duration): ([\d.]+)")
_LEVEL_RANK = {"DEBUG": 10, "INFO": 20, "WARNING": 30, "ERROR": 40, "CRITICAL": 50}


def since(text: str, now: datetime | None = None) -> datetime:
    """A start time from `--since`: a duration back from now (30s, 15m, 1h, 2d, 1w) or an ISO 8601 time."""
    now = now or datetime.now(UTC)
    t = text.strip()
    m = _DURATION_RE.match(t)
    if m:
        return now - timedelta(seconds=float(m.group(1)) * _UNITS[m.group(2)])
    try:
        at = datetime.fromisoformat(t.replace("Z", "+00:00"))
    except ValueError:
        raise MlpackError(f"--since {text!r}: not a duration or a time",
                          hint="use a duration like 30s, 15m, 1h, 2d, or a time like 2026-11-27T05:00:00Z") from None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def pattern(request_id: str | None, errors: bool) -> str:
    """The FilterLogEvents filter pattern: the request id as a quoted term (it matches the handler's lines
    and Lambda's START/END/REPORT lines of that request), else for --errors any line with ERROR, a
    traceback or a timeout; "" for everything."""
    if request_id:
        if '"' in request_id or "\\" in request_id:
            raise MlpackError(f"--request-id {request_id!r}: a request id holds no quotes or backslashes")
        return f'"{request_id}"'
    if errors:
        return '?ERROR ?Traceback ?"Task timed out"'
    return ""


@dataclass(frozen=True, kw_only=True)
class LogLine:
    at: datetime
    kind: str  # HANDLER | METRICS | PLATFORM | TEXT
    text: str  # the event's message as it was, without the trailing newline
    level: str = ""  # INFO, ERROR, ... (handler lines; ERROR for timeouts and runtime errors)
    request_id: str = ""
    message: str = ""
    fields: dict[str, Any] = field(default_factory=dict)  # a handler line's other fields, a metrics document

    @property
    def error(self) -> bool:
        status = self.fields.get("status")
        return (_LEVEL_RANK.get(self.level, 0) >= 40) or (isinstance(status, int) and status >= 500)

    def to_json(self) -> dict[str, Any]:
        return {"at": self.at.isoformat().replace("+00:00", "Z"), "kind": self.kind, "level": self.level,
                "request_id": self.request_id, "message": self.message, "fields": self.fields, "text": self.text}


def parse(event: LogEvent) -> LogLine:
    at = datetime.fromtimestamp(event.timestamp / 1000, UTC)
    text = event.message.rstrip("\n")
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            doc = json.loads(stripped)
        except ValueError:
            doc = None
        if isinstance(doc, dict):
            if "_aws" in doc:
                return LogLine(at=at, kind=METRICS, text=text, fields={k: v for k, v in doc.items() if k != "_aws"})
            if "level" in doc or "message" in doc:
                rest = {k: v for k, v in doc.items() if k not in ("level", "message", "request_id", "timestamp",
                                                                   "model")}
                return LogLine(at=at, kind=HANDLER, text=text, level=str(doc.get("level") or "").upper(),
                               request_id=str(doc.get("request_id") or ""), message=str(doc.get("message") or ""),
                               fields=rest)
            if "errorMessage" in doc or "errorType" in doc:  # the runtime's report of an uncaught exception
                return LogLine(at=at, kind=TEXT, text=text, level="ERROR",
                               request_id=str(doc.get("requestId") or ""),
                               message=f"{doc.get('errorType', 'Error')}: {doc.get('errorMessage', '')}",
                               fields={"stackTrace": doc.get("stackTrace")} if doc.get("stackTrace") else {})
    m = _PLATFORM_RE.match(stripped)
    if m:
        rid = _REQUEST_ID_RE.search(stripped)
        fields: dict[str, Any] = {}
        if m.group(1) == "REPORT":
            fields = {k: float(v) for k, v in _REPORT_FIELD_RE.findall(stripped)}
        return LogLine(at=at, kind=PLATFORM, text=text, request_id=rid.group(1) if rid else "",
                       message=m.group(1), fields=fields)
    t = _TIMEOUT_RE.match(stripped)
    if t:
        return LogLine(at=at, kind=PLATFORM, text=text, level="ERROR", request_id=t.group(1), message=t.group(2))
    level = "ERROR" if stripped.startswith("[ERROR]") or stripped.startswith("Traceback") else ""
    return LogLine(at=at, kind=TEXT, text=text, level=level, message=stripped)


def keep(line: LogLine, *, request_id: str | None = None, errors: bool = False, metrics: bool = False) -> bool:
    """Whether `mlpack logs` shows the line: metrics documents only with --metrics (and never with
    --request-id or --errors, which they cannot match); START/END lines only for one request; with
    --request-id only that request's lines; with --errors only failures."""
    if line.kind == METRICS:
        return metrics and not request_id and not errors
    if request_id and line.request_id != request_id and request_id not in line.text:
        return False
    if errors:
        return line.error
    return not (line.kind == PLATFORM and line.message in ("START", "END") and not request_id)


def tail(fetch: Callable[[int], Iterable[LogEvent]], start_ms: int, *, follow: bool = False,
         sleep: Callable[[float], None] | None = None, every_s: float = 2.0,
         polls: int | None = None) -> Iterator[LogEvent]:
    """The events fetch(start_ms) returns, oldest first; with follow, fetch again every `every_s` seconds
    from the newest timestamp seen, never yielding an event twice (by id, or by time, stream and text when
    the service gives no id), until the caller stops (or after `polls` fetches, for tests). Only events at
    the newest timestamp can come back, so only their keys are kept."""
    seen: dict[str, int] = {}
    newest = start_ms
    n = 0
    while True:
        for ev in fetch(newest):
            key = ev.event_id or f"{ev.timestamp}:{ev.stream}:{ev.message}"
            if key in seen:
                continue
            seen[key] = ev.timestamp
            if ev.timestamp > newest:
                newest = ev.timestamp
                seen = {k: t for k, t in seen.items() if t >= newest}
            yield ev
        n += 1
        if not follow or (polls is not None and n >= polls):
            return
        (sleep or time.sleep)(every_s)
