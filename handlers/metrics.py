"""CloudWatch Embedded Metric Format lines and JSON log lines, written to stdout.

A request costs one EMF line in the common case: every [Model] metric, plus the one class a batch of
one predicts, plus the validation failure kind. EMF takes one value per dimension per document, so a
batch that predicts several classes, or has out-of-range values in several features, adds one short
line per extra class or feature. A refused request (a 4xx) counts as a request and a validation failure
of its kind, never as rows or predictions; one refused because the model's outputs held NaN or infinity
also counts those rows in NonFiniteOutputs. A batch event (handlers/batch.py) writes one line of its own
(Emitter.batch: BatchInvocations, BatchRows, BatchRowErrors, BatchLatency), never Requests or Rows.

In: the model's name and metric namespace (once), then a `Result` per request with its latency and
whether it was a cold start (Emitter.request), or a log record (Emitter.log). Out: lines on stdout
(or the stream given), which Lambda sends to CloudWatch Logs; request() also returns them.

Standard library only (plus inference's codec); never packager/ or stacks/.
"""

from __future__ import annotations

import math
import sys
import time
from typing import Any, TextIO

from handlers import contract as C
from handlers.inference import Result, dumps

_LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40}
_MS = "Milliseconds"


class Emitter:
    def __init__(self, model: str, *, namespace: str = C.METRIC_NAMESPACE, enabled: bool = True,
                 log_level: str = "info", stream: TextIO | None = None) -> None:
        self.model, self.namespace, self.enabled = model, namespace, enabled
        self.stream = stream
        self.level = _LEVELS.get(log_level.lower(), 20)
        base = [{"Name": C.M_REQUESTS, "Unit": "Count"}, {"Name": C.M_LATENCY, "Unit": _MS},
                {"Name": C.M_COLD_START, "Unit": "Count"}, {"Name": C.M_MODEL_ERRORS, "Unit": "Count"}]
        ok = [*base, {"Name": C.M_INFERENCE_LATENCY, "Unit": _MS}, {"Name": C.M_BATCH_SIZE, "Unit": "Count"},
              {"Name": C.M_ROWS, "Unit": "Count"}, {"Name": C.M_INPUT_VALUES, "Unit": "Count"},
              {"Name": C.M_OUT_OF_RANGE, "Unit": "Count"}, {"Name": C.M_VALIDATION_FAILURES, "Unit": "Count"}]
        model_dim = [[C.DIM_MODEL]]
        # directives are built once; only values and the timestamp change per request
        ok_doc = {"Namespace": namespace, "Dimensions": model_dim, "Metrics": ok}
        ok_sum_doc = {"Namespace": namespace, "Dimensions": model_dim,
                        "Metrics": [*ok, {"Name": C.M_PREDICTION_SUM, "Unit": "None"}]}
        self._class = {"Namespace": namespace, "Dimensions": [[C.DIM_MODEL, C.DIM_CLASS]],
                       "Metrics": [{"Name": C.M_PREDICTIONS, "Unit": "Count"}]}
        self._fail = {"Namespace": namespace, "Dimensions": model_dim, "Metrics": base}
        self._fail_non_finite = {"Namespace": namespace, "Dimensions": model_dim,
                                 "Metrics": [*base, {"Name": C.M_NON_FINITE_OUTPUTS, "Unit": "Count"}]}
        self._kind = {"Namespace": namespace, "Dimensions": [[C.DIM_MODEL], [C.DIM_MODEL, C.DIM_KIND]],
                      "Metrics": [{"Name": C.M_VALIDATION_FAILURES, "Unit": "Count"}]}
        self._feature = {"Namespace": namespace, "Dimensions": [[C.DIM_MODEL, C.DIM_FEATURE]],
                         "Metrics": [{"Name": C.M_OUT_OF_RANGE, "Unit": "Count"}]}
        # tabular models: one more [Model] line (category values checked, unseen, missing) and one per column
        # with unseen categories or missing values
        self._table = {"Namespace": namespace, "Dimensions": model_dim,
                       "Metrics": [{"Name": C.M_CATEGORY_VALUES, "Unit": "Count"},
                                   {"Name": C.M_UNSEEN_CATEGORIES, "Unit": "Count"},
                                   {"Name": C.M_MISSING_VALUES, "Unit": "Count"}]}
        self._table_feature = {
            C.M_UNSEEN_CATEGORIES: {"Namespace": namespace, "Dimensions": [[C.DIM_MODEL, C.DIM_FEATURE]],
                                    "Metrics": [{"Name": C.M_UNSEEN_CATEGORIES, "Unit": "Count"}]},
            C.M_MISSING_VALUES: {"Namespace": namespace, "Dimensions": [[C.DIM_MODEL, C.DIM_FEATURE]],
                                 "Metrics": [{"Name": C.M_MISSING_VALUES, "Unit": "Count"}]}}
        self._batch = {"Namespace": namespace, "Dimensions": model_dim, "Metrics": [
            {"Name": C.M_BATCH_INVOCATIONS, "Unit": "Count"}, {"Name": C.M_BATCH_ROWS, "Unit": "Count"},
            {"Name": C.M_BATCH_ROW_ERRORS, "Unit": "Count"}, {"Name": C.M_BATCH_LATENCY, "Unit": _MS},
            {"Name": C.M_COLD_START, "Unit": "Count"}]}
        # the common case (a 2xx) as text with holes: formatting a few numbers into it costs half of
        # building a dict and serializing it on every request
        model_json = dumps(model).decode()

        def directives(*ds: dict[str, Any]) -> str:
            return dumps(list(ds)).decode()

        self._ok_text = {
            (False, False): directives(ok_doc), (False, True): directives(ok_doc, self._class),
            (True, False): directives(ok_sum_doc), (True, True): directives(ok_sum_doc, self._class)}
        self._ok_tail = (f'{{"{C.DIM_MODEL}":{model_json},"{C.M_REQUESTS}":1,"{C.M_LATENCY}":%r,'
                         f'"{C.M_COLD_START}":%d,"{C.M_MODEL_ERRORS}":0,"{C.M_INFERENCE_LATENCY}":%r,'
                         f'"{C.M_BATCH_SIZE}":%d,"{C.M_ROWS}":%d,"{C.M_INPUT_VALUES}":%d,"{C.M_OUT_OF_RANGE}":%d,'
                         f'"{C.M_VALIDATION_FAILURES}":0')

    def _write_line(self, line: str) -> None:
        (self.stream or sys.stdout).write(line + "\n")

    def request(self, res: Result, *, latency_ms: float, cold: bool) -> list[str]:
        """Emit the request's metrics; returns the lines written."""
        if not self.enabled or not res.metered:
            return []
        ts = int(time.time() * 1000)
        if res.kind is None and res.status < 500:
            return self._ok_lines(res, ts, latency_ms, cold)
        doc: dict[str, Any] = {C.DIM_MODEL: self.model, C.M_REQUESTS: 1, C.M_LATENCY: latency_ms,
                               C.M_COLD_START: 1 if cold else 0,
                               C.M_MODEL_ERRORS: 1 if res.status >= 500 else 0}
        if res.kind is not None:
            doc[C.DIM_KIND] = res.kind
            doc[C.M_VALIDATION_FAILURES] = 1
            fail = self._fail
            if res.non_finite_rows:
                doc[C.M_NON_FINITE_OUTPUTS] = res.non_finite_rows
                fail = self._fail_non_finite
            doc["_aws"] = {"Timestamp": ts, "CloudWatchMetrics": [fail, self._kind]}
        else:
            doc["_aws"] = {"Timestamp": ts, "CloudWatchMetrics": [self._fail]}
        line = dumps(doc).decode()
        self._write_line(line)
        return [line]

    def _ok_lines(self, res: Result, ts: int, latency_ms: float, cold: bool) -> list[str]:
        counts = res.class_counts
        first = next(iter(counts.items())) if counts else None
        text = self._ok_tail % (latency_ms, 1 if cold else 0, res.infer_ms, res.rows, res.rows, res.input_values,
                                res.out_of_range)
        has_sum = res.prediction_sum is not None and math.isfinite(res.prediction_sum)
        if has_sum:
            text += f',"{C.M_PREDICTION_SUM}":{res.prediction_sum!r}'
        if first is not None:
            text += f',"{C.DIM_CLASS}":{dumps(first[0]).decode()},"{C.M_PREDICTIONS}":{first[1]}'
        lines = [f'{text},"_aws":{{"Timestamp":{ts},"CloudWatchMetrics":'
                 f'{self._ok_text[has_sum, first is not None]}}}}}']
        if counts and len(counts) > 1:
            for cls, n in list(counts.items())[1:]:
                lines.append(dumps({"_aws": {"Timestamp": ts, "CloudWatchMetrics": [self._class]},
                                    C.DIM_MODEL: self.model, C.DIM_CLASS: cls, C.M_PREDICTIONS: n}).decode())
        if res.oor_by_feature:
            for feat, n in res.oor_by_feature.items():
                lines.append(dumps({"_aws": {"Timestamp": ts, "CloudWatchMetrics": [self._feature]},
                                    C.DIM_MODEL: self.model, C.DIM_FEATURE: feat, C.M_OUT_OF_RANGE: n}).decode())
        if res.category_values or res.unseen_by_feature or res.missing_by_feature:
            lines.extend(self._table_lines(res, ts))
        for line in lines:
            self._write_line(line)
        return lines

    def _table_lines(self, res: Result, ts: int) -> list[str]:
        unseen, missing = res.unseen_by_feature or {}, res.missing_by_feature or {}
        lines = [dumps({"_aws": {"Timestamp": ts, "CloudWatchMetrics": [self._table]}, C.DIM_MODEL: self.model,
                        C.M_CATEGORY_VALUES: res.category_values, C.M_UNSEEN_CATEGORIES: sum(unseen.values()),
                        C.M_MISSING_VALUES: sum(missing.values())}).decode()]
        for metric, by in ((C.M_UNSEEN_CATEGORIES, unseen), (C.M_MISSING_VALUES, missing)):
            for feat, n in by.items():
                lines.append(dumps({"_aws": {"Timestamp": ts, "CloudWatchMetrics": [self._table_feature[metric]]},
                                    C.DIM_MODEL: self.model, C.DIM_FEATURE: feat, metric: n}).decode())
        return lines

    def batch(self, *, rows: int, errors: int, latency_ms: float, cold: bool) -> list[str]:
        """One line per batch event: BatchInvocations, BatchRows, BatchRowErrors, BatchLatency (never the API's
        Requests or Rows, so batch scoring does not move the endpoint's alarms)."""
        if not self.enabled:
            return []
        doc = {C.DIM_MODEL: self.model, C.M_BATCH_INVOCATIONS: 1, C.M_BATCH_ROWS: rows, C.M_BATCH_ROW_ERRORS: errors,
               C.M_BATCH_LATENCY: latency_ms, C.M_COLD_START: 1 if cold else 0,
               "_aws": {"Timestamp": int(time.time() * 1000), "CloudWatchMetrics": [self._batch]}}
        line = dumps(doc).decode()
        self._write_line(line)
        return [line]

    def log(self, level: str, message: str, request_id: str | None = None, **fields: Any) -> None:
        if _LEVELS.get(level, 20) < self.level:
            return
        rec = {"level": level.upper(), "message": message, "model": self.model, "request_id": request_id,
               "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **fields}
        self._write_line(dumps(rec).decode())
