"""One ONNX model behind HTTP-shaped requests: load it once, validate each request against its
signature, run it, shape the response. Pure functions over a `Model` and a `Request`; no event
formats (events.py), no stdout (metrics.py), no environment variables (predict.py).

In: a model folder (model.json + model.onnx) once, then one `Request` at a time. Out: a `Model`, then
one `Result` per request (status, JSON payload, and what the metrics need); `handle` never raises.

The modules: what init sets up, then the stages in the order a request meets them.

    codec       which JSON library reads and writes (orjson, else json; simdjson for the fast paths)
    types       Model, TensorSpec, Request, Result, RequestError (NonFiniteOutputError), ModelLoadError
    loading     model.json + model.onnx -> Model, at init (load_model, threads_for_memory)
    routes      handle: method and path -> a route; a RequestError -> a 4xx, a model failure -> a 500
    body        the body's media type and size; JSON or .npy decoding
    predict_v1  POST /predict -> feeds, with its simdjson fast path for rows of numbers
    v2          POST /v2/models/<name>/infer -> feeds, with its simdjson fast path for tensors' data
    validate    one input's value -> an array of its dtype, or the first element at fault
    run         session.run, the rows whose outputs are not finite, the values outside the training profile
    outputs     the session's outputs -> a /predict response's "outputs", and the prediction metrics

A name with a leading underscore is private to this package: its modules share it, importers do not.
A test that replaces a module attribute replaces it where the code looks it up: in codec for the JSON
functions and what both fast paths share (codec.loads, codec._PARSER, codec._ROWS_FAST_MIN), in
predict_v1 and v2 for their own thresholds. The names re-exported here are copies: replacing them
changes nothing.

Imports only the standard library, numpy, onnxruntime and (when the image ships them) orjson and
pysimdjson, and handlers.contract; never packager/ or stacks/.
"""

from __future__ import annotations

from handlers.inference import codec as _codec
from handlers.inference import predict_v1 as _predict_v1
from handlers.inference.codec import dumps, loads
from handlers.inference.loading import load_model, threads_for_memory
from handlers.inference.routes import error_result, handle
from handlers.inference.types import Model, ModelLoadError, Request, RequestError, Result

# read by the image's own check that it ships both JSON libraries (tests/functional/test_build.py)
orjson = _codec.orjson
_PARSER = _codec._PARSER
_rows_fast = _predict_v1._rows_fast

# what predict.py, events.py and metrics.py use; the other stages are imported from their modules
__all__ = [
    "Model", "ModelLoadError", "Request", "RequestError", "Result", "dumps", "error_result", "handle", "load_model",
    "loads", "threads_for_memory",
]
