"""What the image's handler and the CDK stacks must agree on: environment variables, routes,
metric names, error kinds, the layout of the model inside the image, and the shape of model.json.

stacks/ imports this to configure; handlers/ imports it to read. Standard library only, and
nothing from packager/ or stacks/.

model.json (written by `mlpack export`, read by the handler, `mlpack push` and the stacks, all
through the typed records of handlers/model_json.py):

    {
      "format": "mlpack.model/1",
      "name": "iris", "version": "3f2a9c01b7d4", "description": "...",
      "task": "classification" | "regression",
      "signature": {
        "inputs":  [{"name": "input", "dtype": "float32", "shape": ["batch", 4]}],
        "outputs": [{"name": "label", "dtype": "int64", "shape": ["batch"]},
                    {"name": "probabilities", "dtype": "float32", "shape": ["batch", 3]}]
      },
      "roles": {"label": "label" | null,           # output holding class indices/labels
                "scores": "probabilities" | null,  # output holding per-class scores
                "scores_kind": "probabilities" | "logits" | null},
      "classes": [0, 1, 2],            # classifiers: the label output's values, one per score column
      "feature_names": {"input": ["sepal length (cm)", ...]},   # per input, for rank-2 inputs
      "label_names": ["setosa", "versicolor", "virginica"],     # classifiers; [] for regressors
      "opset": 17,
      "versions": {"mlpack": ..., "onnx": ..., "onnxruntime": ..., "framework": "scikit-learn",
                   "framework_version": ...},
      "source": {"kind": "sklearn" | "torch" | "onnx", "ref": "model.joblib", "sha256": "..."},
      "model_sha256": "<sha256 of model.onnx>",
      "parity": {"passed": true, "rows": 150, "rtol": 1e-4, "atol": 1e-5, "checks": [...]},
      "profile": {
        "rows": 150,
        "inputs": {"input": [{"name": "sepal length (cm)", "count": 150, "min": ..., "max": ...,
                              "mean": ..., "std": ..., "q01": ..., "q50": ..., "q99": ...,
                              "nan_share": 0.0}, ...]},          # one entry per feature (flattened)
        "outputs": {"classes": {"setosa": 0.33, ...}}                         # classifiers
                   | {"regression": [{"name": "variable", "mean": ..., "std": ...,
                                      "q01": ..., "q50": ..., "q99": ...}]}  # regressors
      },
      "inputs_hash": "<sha256 over everything that determined this export>",
      "read_files": [{"path": "weights/model.pt", "sha256": "..."}, ...],
      "tabular": true,                 # trained on a DataFrame: one input per column, shape [batch, 1]
      "input_rules": {"city": {"kind": "string", "missing": true, "categories": ["lyon", "paris"],
                               "unseen": "accept", "example": "paris"},
                      "age": {"kind": "integer", "missing": false, "min": 0, "max": 120,
                              "range_from": "mlpack.toml", "example": 41}},
      "reference": {"rows": 150, "bins": 10,   # the drift baseline (handlers/drift.py, docs/MONITORING.md)
                    "features": [{"name": "sepal length (cm)", "input": "input", "index": 0, "kind": "numeric",
                                  "edges": [4.8, ...], "counts": [14, ...]},        # len(edges) + 1 bins
                                 {"name": "city", "input": "city", "index": 0, "kind": "categorical",
                                  "categories": {"lyon": 40, "paris": 60}}],
                    "outputs": [{"name": "prediction", "kind": "categorical", "categories": {"setosa": 50, ...}}]}
    }

A tabular model's requests name columns: records ({"instances": [{"city": "paris", "age": 41}, ...]})
or columns ({"inputs": {"city": ["paris"], "age": [41]}}). Its string columns are tensor(string), its
numeric and boolean columns tensor(float) (booleans as 0/1); a missing string is the empty string, a
missing number NaN. The profile of a string column holds the share of each category
(profile.inputs.<column>[0].categories) instead of statistics.

The batch dimension is always the first and is written as the string "batch"; other dynamic
dimensions are strings too, fixed ones integers. dtypes are numpy names. read_files lists, sorted by
path, the regular files the source and the samples read while export loaded them (a factory's weights
file, a CSV it parses; not the Python installation's files, the project's build/ folder, files the
load wrote, nor files inputs_hash covers already: the source and samples files and, with a factory, the
project's Python files): paths POSIX and relative to the project folder when inside it, absolute
otherwise; sha256 as read. Their digests are part of inputs_hash, and the next export re-hashes them
to decide whether it is stale.
"""

from __future__ import annotations

MODEL_FORMAT = "mlpack.model/1"
BATCH_DIM = "batch"

# --- the image ----------------------------------------------------------------------------------
TASK_ROOT = "/var/task"
MODEL_DIR = "/var/task/model"  # model.onnx + model.json
MODEL_FILE = "model.onnx"
MODEL_JSON = "model.json"
HANDLER = "handlers.predict.handler"  # the image's CMD

# --- environment (set by the stack, read by the handler) -----------------------------------------
ENV_MODEL_DIR = "MLPACK_MODEL_DIR"
ENV_MODEL_NAME = "MLPACK_MODEL_NAME"
ENV_MAX_BATCH = "MLPACK_MAX_BATCH_SIZE"
ENV_METRICS_NAMESPACE = "MLPACK_METRICS_NAMESPACE"
ENV_METRICS = "MLPACK_METRICS"  # "on" (default) or "off"
ENV_LOG_LEVEL = "MLPACK_LOG_LEVEL"
ENV_INTRA_OP_THREADS = "MLPACK_INTRA_OP_THREADS"  # default: from AWS_LAMBDA_FUNCTION_MEMORY_SIZE
ENV_CAPTURE_RATE = "MLPACK_CAPTURE_RATE"  # share of answered requests captured for drift (handlers/capture.py)
ENV_CAPTURE_EXCLUDE = "MLPACK_CAPTURE_EXCLUDE"  # comma-separated feature names never captured
ENV_CAPTURE_FILE = "MLPACK_CAPTURE_FILE"  # local runs (`mlpack serve --capture`): lines to this file, not stdout
LAMBDA_MEMORY_ENV = "AWS_LAMBDA_FUNCTION_MEMORY_SIZE"

DEFAULT_MAX_BATCH = 256
MAX_BODY_BYTES = 6 * 1024 * 1024  # Lambda's synchronous payload limit
MB_PER_VCPU = 1769
# batch events (handlers/batch.py): {"mlpack_batch": {...}}, or what a Distributed Map's ItemBatcher sends
BATCH_KEY = "mlpack_batch"
BATCH_ITEMS, BATCH_INPUT = "Items", "BatchInput"
BATCH_MAX_ROWS = 100000  # rows one batch event may carry (the 6 MB payload is the usual limit first)

# --- routes --------------------------------------------------------------------------------------
ROUTE_PREDICT = ("POST", "/predict")
ROUTE_V2_INFER = ("POST", "/v2/models/{model}/infer")
ROUTE_V2_METADATA = ("GET", "/v2/models/{model}")
ROUTE_V2_READY = ("GET", "/v2/models/{model}/ready")
ROUTE_V2_VERSION_INFER = ("POST", "/v2/models/{model}/versions/{version}/infer")
ROUTE_V2_VERSION_METADATA = ("GET", "/v2/models/{model}/versions/{version}")
ROUTE_V2_VERSION_READY = ("GET", "/v2/models/{model}/versions/{version}/ready")
ROUTE_V2_SERVER = ("GET", "/v2")  # server metadata
ROUTE_V2_LIVE = ("GET", "/v2/health/live")
ROUTE_V2_SERVER_READY = ("GET", "/v2/health/ready")
ROUTE_HEALTH = ("GET", "/health")
ROUTE_OPENAPI = ("GET", "/openapi.json")
ROUTE_FEEDBACK = ("POST", "/feedback")  # ground truth for a request id (docs/MONITORING.md)
# every route the handler answers
ROUTES = (ROUTE_PREDICT, ROUTE_V2_INFER, ROUTE_V2_METADATA, ROUTE_HEALTH, ROUTE_OPENAPI, ROUTE_V2_READY,
          ROUTE_V2_VERSION_INFER, ROUTE_V2_VERSION_METADATA, ROUTE_V2_VERSION_READY, ROUTE_V2_SERVER, ROUTE_V2_LIVE,
          ROUTE_V2_SERVER_READY, ROUTE_FEEDBACK)
# the API's own methods: the routes that carry a body schema or are called most get one each; the rest of
# /v2 (health, readiness, versions) reaches the handler through one greedy path, which keeps the template
# (CloudFormation takes 51,200 bytes inline) small
ROUTE_V2_PROXY = ("ANY", "/v2/{proxy+}")
API_ROUTES = (ROUTE_PREDICT, ROUTE_V2_INFER, ROUTE_V2_METADATA, ROUTE_HEALTH, ROUTE_OPENAPI, ROUTE_V2_SERVER,
              ROUTE_V2_PROXY)
V2_BINARY_CONTENT_TYPE = "application/octet-stream"  # the v2 binary tensor data extension's bodies
NPY_CONTENT_TYPE = "application/x-npy"
JSON_CONTENT_TYPE = "application/json"

# --- metrics (CloudWatch Embedded Metric Format) ---------------------------------------------------
METRIC_NAMESPACE = "mlpack"
DIM_MODEL = "Model"
DIM_KIND = "Kind"  # ValidationFailures by kind
DIM_CLASS = "Class"  # Predictions by class
DIM_FEATURE = "Feature"  # OutOfRangeValues by feature

M_REQUESTS = "Requests"  # Count, every request that reached the handler
M_LATENCY = "Latency"  # Milliseconds, handler time per request
M_INFERENCE_LATENCY = "InferenceLatency"  # Milliseconds, session.run only
M_BATCH_SIZE = "BatchSize"  # Count, rows per request
M_ROWS = "Rows"  # Count, rows predicted (sum over a period = predictions made)
M_VALIDATION_FAILURES = "ValidationFailures"  # Count, per request refused with a 4xx ([Model] and [Model, Kind])
M_NON_FINITE_OUTPUTS = "NonFiniteOutputs"  # Count, rows whose outputs held NaN or infinity (refused: never Rows)
M_INPUT_VALUES = "InputValues"  # Count, values checked against the training profile
M_OUT_OF_RANGE = "OutOfRangeValues"  # Count, values outside the profile's [q01, q99] ([Model], [Model, Feature])
M_PREDICTIONS = "Predictions"  # Count per class ([Model, Class]); class shares = Predictions / Rows
M_PREDICTION_SUM = "PredictionSum"  # None, regressors: sum of predictions (mean = PredictionSum / Rows)
M_CATEGORY_VALUES = "CategoryValues"  # Count, string-column values checked against the training categories
M_UNSEEN_CATEGORIES = "UnseenCategories"  # Count, values of a category unseen in training ([Model], [Model, Feature])
M_MISSING_VALUES = "MissingValues"  # Count, null values sent for columns that accept them ([Model], [Model, Feature])
M_MODEL_ERRORS = "ModelErrors"  # Count, failures inside onnxruntime (500s)
M_COLD_START = "ColdStart"  # Count, 1 on the first request of an execution environment
M_NOTIFICATION_FAILURES = "NotificationFailures"  # Count, chat targets an alarm did not reach (notifier; [Model])
# batch scoring (`mlpack batch`, handlers/batch.py): counted apart from the API's Requests and Rows
M_BATCH_INVOCATIONS = "BatchInvocations"  # Count, batch events handled
M_BATCH_ROWS = "BatchRows"  # Count, rows in batch events (scored or not)
M_BATCH_ROW_ERRORS = "BatchRowErrors"  # Count, batch rows answered with an error instead of outputs
M_BATCH_LATENCY = "BatchLatency"  # Milliseconds, handler time per batch event

# --- error kinds: the "code" of a refused request's body and the Kind dimension of ValidationFailures --
BAD_JSON = "bad_json"  # 400
BAD_REQUEST = "bad_request"  # 400: structure (missing "inputs", wrong types)
UNKNOWN_ROUTE = "unknown_route"  # 404
METHOD_NOT_ALLOWED = "method_not_allowed"  # 405
TOO_LARGE = "too_large"  # 413: body over 6 MB or batch over the maximum
UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"  # 415
BAD_INPUT = "bad_input"  # 422: unknown input name, shape, dtype, non-finite values
# 422: the model's outputs for some rows hold NaN or infinity (inputs outside what it was trained on); the
# whole batch is refused, and the rows are counted in NonFiniteOutputs as well
NON_FINITE_OUTPUT = "non_finite_output"
VALIDATION_KINDS = (BAD_JSON, BAD_REQUEST, UNKNOWN_ROUTE, METHOD_NOT_ALLOWED, TOO_LARGE, UNSUPPORTED_MEDIA_TYPE,
                    BAD_INPUT, NON_FINITE_OUTPUT)
# the "code" of a 500's body (never a ValidationFailures Kind): onnxruntime failed, or the handler itself did
MODEL_ERROR = "model_error"
INTERNAL_ERROR = "internal_error"
