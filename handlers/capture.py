"""Request capture for drift monitoring: a sampled share of the requests the model answered, written
as one compact JSON log line (handlers/drift.capture_line) to the function's log group, which the
monitor and `mlpack drift` read back. No network call: Lambda ships stdout to CloudWatch Logs.

Enters: at init, the model and the environment (contract.ENV_CAPTURE_RATE, a share in [0, 1];
ENV_CAPTURE_EXCLUDE, comma-separated feature names never written; ENV_CAPTURE_FILE, a local file that
`mlpack serve --capture` reads instead of CloudWatch). Per request, after the model answered: the
feeds and outputs. Leaves: nothing (`Capture.offer` writes the line when the draw says so; `feedback` writes a /feedback
call's ground truth, drift.feedback_line, which the monitor joins with the capture by request id).

The warm path pays a countdown per request (the gap to the next capture is drawn once per capture, from an
LCG: no `random` import in the cold start); only a sampled request builds
its line. Imports the standard library and numpy; never packager/ or stacks/.
"""

from __future__ import annotations

import math
import os
import sys
import time
from typing import Any, TextIO

import numpy as np

from handlers import contract as C
from handlers import drift

PREDICTION = "prediction"  # a classifier's predicted label (as packager/export/describe.py names it)


class Capture:
    """What one model captures: the rate, the columns left out, where the lines go."""

    def __init__(self, model: Any, rate: float, exclude: frozenset[str], *, name: str = "",
                 stream: TextIO | None = None, path: str | None = None) -> None:
        self.model, self.rate, self.exclude, self.stream, self.path = model, rate, exclude, stream, path
        self.name = name or model.name
        self._state = int.from_bytes(os.urandom(8), "little")
        self.draw = self._next
        self._log_keep = math.log1p(-rate) if rate < 1 else 0.0
        self.left = self.gap()  # requests until the next one captured, this one included

    def _next(self) -> float:
        """A uniform draw in [0, 1) from a 64-bit linear congruential generator (Knuth's MMIX constants),
        seeded from os.urandom: no `random` import in the cold start, three integer operations a request."""
        self._state = (self._state * 6364136223846793005 + 1442695040888963407) & 0xFFFFFFFFFFFFFFFF
        return (self._state >> 11) * (1.0 / 9007199254740992.0)

    @classmethod
    def from_env(cls, model: Any, name: str) -> Capture | None:
        raw = os.environ.get(C.ENV_CAPTURE_RATE, "").strip()
        try:
            rate = min(max(float(raw), 0.0), 1.0) if raw else 0.0
        except ValueError:
            rate = 0.0
        if rate <= 0:
            return None
        exclude = frozenset(s.strip() for s in os.environ.get(C.ENV_CAPTURE_EXCLUDE, "").split(",") if s.strip())
        return cls(model, rate, exclude, name=name, path=os.environ.get(C.ENV_CAPTURE_FILE) or None)

    def gap(self) -> int:
        """Requests until the next capture: geometric with success `rate`, so each request is captured with
        probability `rate`, independently, as a draw per request would; but drawn once per capture."""
        if self.rate >= 1:
            return 1
        return int(math.log(1.0 - self.draw()) / self._log_keep) + 1

    def offer(self, request_id: str, feeds: dict[str, np.ndarray], outs: list[Any]) -> bool:
        """Write this request's capture line if it is sampled; whether it was."""
        self.left -= 1
        if self.left > 0:
            return False
        self.left = self.gap()
        line = drift.capture_line(self.name, request_id, self.columns(feeds, outs),
                                  int(time.time() * 1000))
        self.write(line)
        return True

    def write(self, line: str) -> None:
        """One line to the capture file, else the stream (stdout: the function's log group)."""
        if self.path is not None:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(line + "\n")
        else:
            (self.stream or sys.stdout).write(line + "\n")

    def columns(self, feeds: dict[str, np.ndarray], outs: list[Any]) -> dict[str, list[Any]]:
        """Per feature name its values in this request; the prediction (classifiers) or each float output."""
        m = self.model
        cols: dict[str, list[Any]] = {}
        for name, arr in feeds.items():
            rows = arr.shape[0]
            flat = arr.reshape(rows, -1)
            names = m.feature_names.get(name) or []
            for j in range(flat.shape[1]):
                key = names[j] if j < len(names) else f"{name}[{j}]"
                if key in self.exclude:
                    continue
                col = flat[:, j]
                cols[key] = [str(v) for v in col.tolist()] if col.dtype.kind in "OUS" else col.tolist()
        if m.is_classifier and m.scores_index is not None:
            scores = np.asarray(outs[m.scores_index])
            idx = np.argmax(scores.reshape(scores.shape[0], -1), axis=1).tolist()
            labels = m.label_names
            if PREDICTION not in self.exclude:
                cols[PREDICTION] = [labels[i] if i < len(labels) else str(i) for i in idx]
        elif not m.is_classifier:
            for i in m.float_outputs:
                out = np.asarray(outs[i])
                flat = out.reshape(out.shape[0], -1)
                name = m.output_names[i]
                for j in range(flat.shape[1]):
                    key = name if flat.shape[1] == 1 else f"{name}[{j}]"
                    if key not in self.exclude:
                        cols[key] = flat[:, j].tolist()
        return cols


def feedback(model: Any, data: Any, request_id: str) -> dict[str, Any]:
    """POST /feedback's body {"request_id": "...", "truth": [label or value per row]} written as a feedback line
    (to the capture's file or stream when capture is on, else stdout); its answer. ValueError for a bad body."""
    if not isinstance(data, dict) or not isinstance(data.get("request_id"), str) or not data["request_id"]:
        raise ValueError("the body must be {\"request_id\": \"<the prediction's request id>\", \"truth\": [...]}")
    truth = data.get("truth")
    if not isinstance(truth, list) or not truth or len(truth) > C.DEFAULT_MAX_BATCH * 4 or not all(
            isinstance(t, str | int | float) and not isinstance(t, bool) for t in truth):
        raise ValueError("truth must be a non-empty list of labels or numbers, one per row of the request")
    line = drift.feedback_line(model.name, data["request_id"], truth, int(time.time() * 1000))
    cap = model.capture
    if cap is not None:
        cap.write(line)
    else:
        sys.stdout.write(line + "\n")
    return {"accepted": len(truth), "request_id": data["request_id"], "logged_by": request_id}
