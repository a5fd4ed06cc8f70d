"""Loading the model, once, in Lambda's init phase.

In: the folder holding model.json and model.onnx, the batch limit, and a thread count (or the function's
memory and the host's CPUs, for threads_for_memory to derive one). Out: a `Model` whose onnxruntime
session runs one request at a time, or ModelLoadError saying which file is missing or does not match.
onnxruntime is imported here, when a model is loaded, not when the package is.
"""

from __future__ import annotations

from typing import Any

from handlers import contract as C
from handlers import model_json
from handlers.inference import codec
from handlers.inference.types import Model, ModelLoadError


def session_options(intra_op_threads: int | None) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if intra_op_threads:
        opts.intra_op_num_threads = intra_op_threads
    opts.inter_op_num_threads = 1  # sequential execution: one request at a time per environment
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return opts


def threads_for_memory(memory_mb: int | None, cpus: int | None) -> int | None:
    """Lambda gives one vCPU per 1769 MB; more threads than vCPUs only adds contention."""
    if not memory_mb:
        return None
    n = max(1, round(memory_mb / C.MB_PER_VCPU))
    return min(n, cpus) if cpus else n


def load_model(model_dir: str, *, max_batch: int = C.DEFAULT_MAX_BATCH,
               intra_op_threads: int | None = None) -> Model:
    import os

    import onnxruntime as ort

    meta_path = os.path.join(model_dir, C.MODEL_JSON)
    onnx_path = os.path.join(model_dir, C.MODEL_FILE)
    try:
        with open(meta_path, "rb") as f:
            meta = codec.loads(f.read())
    except OSError as e:
        raise ModelLoadError(f"cannot read {meta_path}: {e}") from e
    except codec.DECODE_ERRORS as e:
        raise ModelLoadError(f"{meta_path} is not valid JSON: {e}") from e
    try:
        document = model_json.from_dict(meta, meta_path)
    except model_json.ModelJsonError as e:
        if e.field in ("", "format"):
            raise ModelLoadError(f"{meta_path}: format must be {C.MODEL_FORMAT!r}") from None
        what = f"missing {e.key!r}" if e.problem == "missing" else f"{e.field}: {e.problem}"
        raise ModelLoadError(f"{meta_path} does not describe the model ({what}); export it again with "
                             "`mlpack export`") from None
    try:
        session = ort.InferenceSession(onnx_path, sess_options=session_options(intra_op_threads),
                                       providers=["CPUExecutionProvider"])
    except Exception as e:
        raise ModelLoadError(f"cannot load {onnx_path}: {e}") from e
    try:
        model = Model(document, session, max_batch=max_batch)
    except ValueError as e:  # well-formed but not servable, e.g. a dtype numpy does not know
        raise ModelLoadError(f"{meta_path} does not describe the model ({e}); export it again with "
                             "`mlpack export`") from e
    actual = sorted(i.name for i in session.get_inputs())
    declared = sorted(t.name for t in model.inputs)
    if actual != declared:
        raise ModelLoadError(f"{meta_path}: signature inputs {declared} do not match model.onnx's {actual}")
    return model
