"""The Lambda entry point (contract.HANDLER = "handlers.predict.handler").

At import (Lambda's init phase) it reads model.json, creates the onnxruntime session and builds
everything a request could need; `handler` then only hands the event to events.handle (parse,
inference.handle, one metrics line). A failure to load the model raises at import, which the
runtime reports as an init error, as Lambda does.

Imports only the standard library, numpy, onnxruntime, orjson and pysimdjson; never packager/ or stacks/.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

from handlers import contract as C
from handlers import events, inference, metrics


def _int_env(name: str, default: int | None) -> int | None:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise inference.ModelLoadError(f"environment variable {name}={raw!r} must be an integer") from None


def _threads() -> int | None:
    explicit = _int_env(C.ENV_INTRA_OP_THREADS, None)
    if explicit:
        return explicit
    return inference.threads_for_memory(_int_env(C.LAMBDA_MEMORY_ENV, None), os.cpu_count())


def init() -> tuple[inference.Model, metrics.Emitter]:
    # JSON numbers beyond float32's range overflow to inf in the cast, and the finiteness check's sum may
    # overflow or meet inf - inf; such values are refused by index, and numpy's warnings about them would
    # only add noise to the function's logs
    for what in ("overflow encountered in cast", "overflow encountered in reduce",
                 "invalid value encountered in reduce"):
        warnings.filterwarnings("ignore", what, RuntimeWarning)
    model_dir = os.environ.get(C.ENV_MODEL_DIR) or C.MODEL_DIR
    model = inference.load_model(model_dir, max_batch=_int_env(C.ENV_MAX_BATCH, C.DEFAULT_MAX_BATCH)
                                 or C.DEFAULT_MAX_BATCH, intra_op_threads=_threads())
    name = os.environ.get(C.ENV_MODEL_NAME) or model.name
    emitter = metrics.Emitter(name, namespace=os.environ.get(C.ENV_METRICS_NAMESPACE) or C.METRIC_NAMESPACE,
                              enabled=os.environ.get(C.ENV_METRICS, "on").lower() != "off",
                              log_level=os.environ.get(C.ENV_LOG_LEVEL) or "info")
    from handlers import capture  # drift capture: None unless MLPACK_CAPTURE_RATE > 0

    model.capture = capture.Capture.from_env(model, name)
    return model, emitter


MODEL, EMITTER = init()
_cold = True


def handler(event: Any, context: Any) -> Any:
    global _cold
    cold, _cold = _cold, False
    request_id = getattr(context, "aws_request_id", None) or "local"
    return events.handle(MODEL, EMITTER, event, request_id, cold)
