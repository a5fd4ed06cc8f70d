"""Export stage: ModelSpec -> OnnxArtifact (model.onnx + model.json in the build folder).

Loads the source model (ONNX, scikit-learn pickle, torch ExportedProgram, or a module:function
factory), converts it to ONNX, checks parity against the original on the sample inputs, profiles
the samples, and writes both files atomically. Nothing is written unless every check passed.

Heavy frameworks (scikit-learn, skl2onnx, torch) are imported only when a source needs them.
Must not import image, registry, stacks or handlers.predict.
"""

from __future__ import annotations

import csv
import hashlib
import importlib
import importlib.metadata
import json
import os
import pickle
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from handlers import contract
from packager.config.spec import ModelSpec, is_factory
from packager.errors import ExportError, ParityError
from packager.fsutil import write_atomic

Arrays = dict[str, np.ndarray]


@dataclass(frozen=True, kw_only=True)
class OnnxArtifact:
    """An exported model: model.onnx and model.json (format in handlers/contract.py)."""

    out_dir: Path
    metadata: dict[str, Any]

    @property
    def model_path(self) -> Path:
        return self.out_dir / contract.MODEL_FILE

    @property
    def json_path(self) -> Path:
        return self.out_dir / contract.MODEL_JSON

    @property
    def version(self) -> str:
        return str(self.metadata["version"])

    @property
    def model_sha256(self) -> str:
        return str(self.metadata["model_sha256"])


@dataclass(frozen=True, kw_only=True)
class ExportResult:
    artifact: OnnxArtifact
    skipped: bool


@dataclass(frozen=True, kw_only=True)
class _Loaded:
    kind: str  # sklearn | torch | onnx
    obj: Any
    framework: str
    framework_version: str


# ---------------------------------------------------------------------------------------------------
# entry point


def export(spec: ModelSpec, out: Path | None = None, *, force: bool = False) -> ExportResult:
    """Export spec's model into `out` (default PROJECT/build/<name>), unless nothing changed."""
    out_dir = (out or spec.default_build_dir()).resolve()
    file_digests = _file_digests(spec)
    inputs_hash = _inputs_hash(spec, file_digests)
    current = None if force else read_artifact(out_dir)
    if current is not None and current.metadata.get("inputs_hash") == inputs_hash:
        return ExportResult(artifact=current, skipped=True)

    loaded = _load_source(spec)
    samples = _load_samples(spec)
    _check_nan(loaded, samples)
    proto, original = _to_onnx(spec, loaded, samples)
    _strip_unstable(proto)
    model_bytes = proto.SerializeToString(deterministic=True)
    session = _session(model_bytes)
    feeds = _feeds(session, samples)
    got = _run_onnx(session, feeds)
    task, roles, classes, label_names = _describe_outputs(spec, loaded, session, got)
    parity = _parity(spec, loaded, original, feeds, got, roles)
    if not parity["passed"]:
        raise ParityError(_parity_failure_message(spec, parity), hint=(
            "loosen [export] rtol/atol in mlpack.toml if the differences are acceptable for float32, "
            "or check the model for operations the converter handles differently"))
    model_sha = hashlib.sha256(model_bytes).hexdigest()
    metadata: dict[str, Any] = {
        "format": contract.MODEL_FORMAT,
        "name": spec.name,
        "version": spec.model.version or model_sha[:12],
        "description": spec.model.description,
        "task": task,
        "signature": _signature(session),
        "roles": roles,
        "classes": classes,
        "label_names": label_names,
        "feature_names": _feature_names(spec, session, samples),
        "opset": _opset(proto),
        "versions": _versions(loaded),
        "source": {"kind": loaded.kind, "ref": spec.model.source, "sha256": _source_sha256(spec, file_digests)},
        "model_sha256": model_sha,
        "parity": parity,
        "profile": {},
        "inputs_hash": inputs_hash,
    }
    metadata["profile"] = _profile(feeds, got, metadata)
    _write(out_dir, model_bytes, metadata)
    return ExportResult(artifact=OnnxArtifact(out_dir=out_dir, metadata=metadata), skipped=False)


def read_artifact(out_dir: Path) -> OnnxArtifact | None:
    """The artifact in out_dir if model.json and model.onnx are both there and agree; else None."""
    meta_path, model_path = out_dir / contract.MODEL_JSON, out_dir / contract.MODEL_FILE
    try:
        metadata = json.loads(meta_path.read_text(encoding="utf-8"))
        digest = hashlib.sha256(model_path.read_bytes()).hexdigest()
    except (OSError, ValueError):
        return None
    if not isinstance(metadata, dict) or metadata.get("model_sha256") != digest:
        return None
    return OnnxArtifact(out_dir=out_dir, metadata=metadata)


# ---------------------------------------------------------------------------------------------------
# loading


@contextmanager
def _project_on_path(project_dir: Path) -> Iterator[None]:
    """Import factories from the project folder without leaving its modules behind (two projects may
    both have a train.py)."""
    before = set(sys.modules)
    sys.path.insert(0, str(project_dir))
    try:
        yield
    finally:
        sys.path.remove(str(project_dir))
        for name in set(sys.modules) - before:
            mod = sys.modules.get(name)
            file = getattr(mod, "__file__", None) or ""
            if file.startswith(str(project_dir)):
                del sys.modules[name]


def _call_factory(spec: ModelSpec, ref: str, key: str) -> Any:
    module_name, func_name = ref.split(":", 1)
    with _project_on_path(spec.project_dir):
        try:
            module = importlib.import_module(module_name)
        except Exception as e:
            raise ExportError(f"{key}: importing {module_name!r} from {spec.project_dir} failed: "
                              f"{type(e).__name__}: {e}", hint="run it with python to see the full error") from e
        func = getattr(module, func_name, None)
        if not callable(func):
            raise ExportError(f"{key}: {module_name}.py has no function {func_name!r}",
                              hint=f"define `def {func_name}():` in {module_name}.py or fix {key}")
        try:
            return func()
        except Exception as e:
            raise ExportError(f"{key}: {ref}() raised {type(e).__name__}: {e}",
                              hint="run it with python to see the full traceback (or mlpack --debug)") from e


def _load_source(spec: ModelSpec) -> _Loaded:
    ref = spec.model.source
    if is_factory(ref):
        return _classify(_call_factory(spec, ref, "model.source"), f"model.source ({ref})")
    path = spec.project_dir / ref
    if not path.is_file():
        raise ExportError(f"model.source: file not found: {path}", hint="paths are relative to the project folder")
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        try:
            proto = onnx.load(str(path))
        except Exception as e:
            raise ExportError(f"model.source: {path} is not a readable ONNX model: {e}") from e
        return _classify(proto, f"model.source ({path.name})")
    if suffix == ".pt2":
        torch = _import_torch()
        try:
            program = torch.export.load(str(path))
        except Exception as e:
            raise ExportError(f"model.source: {path} could not be loaded by torch.export.load: {e}",
                              hint="save it with torch.export.save(torch.export.export(model, args), path)") from e
        return _classify(program, f"model.source ({path.name})")
    try:
        import joblib

        obj = joblib.load(path)
    except ImportError:
        obj = _unpickle(path)
    except Exception as e:
        raise ExportError(f"model.source: {path} failed to load: {type(e).__name__}: {e}",
                          hint="save it with joblib.dump(model, path) in an environment with the same "
                               "scikit-learn version") from e
    return _classify(obj, f"model.source ({path.name})")


def _unpickle(path: Path) -> Any:
    try:
        with path.open("rb") as f:
            return pickle.load(f)
    except Exception as e:
        raise ExportError(f"model.source: {path} failed to load: {type(e).__name__}: {e}") from e


def _import_torch() -> Any:
    try:
        import torch
    except ImportError as e:
        raise ExportError("this model needs PyTorch, which is not installed",
                          hint="pip install 'mlpack-lambda[torch]'") from e
    return torch


def _classify(obj: Any, where: str) -> _Loaded:
    if isinstance(obj, onnx.ModelProto):
        try:
            onnx.checker.check_model(obj, full_check=True)
        except Exception as e:
            raise ExportError(f"{where}: the ONNX checker rejected the model: {e}") from e
        return _Loaded(kind="onnx", obj=obj, framework="onnx", framework_version=onnx.__version__)
    # Look only at frameworks already imported: whatever made `obj` has imported its own.
    if "torch" in sys.modules:
        torch = sys.modules["torch"]
        if isinstance(obj, torch.nn.Module | torch.export.ExportedProgram):
            return _Loaded(kind="torch", obj=obj, framework="torch", framework_version=torch.__version__)
    if "sklearn" in sys.modules:
        import sklearn
        from sklearn.base import BaseEstimator

        if isinstance(obj, BaseEstimator) and hasattr(obj, "predict"):
            return _Loaded(kind="sklearn", obj=obj, framework="scikit-learn",
                           framework_version=sklearn.__version__)
    raise ExportError(f"{where}: unsupported model type {type(obj).__module__}.{type(obj).__qualname__}",
                      hint="mlpack exports scikit-learn estimators and Pipelines, torch.nn.Module, "
                           "torch.export.ExportedProgram (.pt2) and ONNX models")


def _load_samples(spec: ModelSpec) -> Arrays | np.ndarray:
    ref = spec.samples.source
    if is_factory(ref):
        value = _call_factory(spec, ref, "samples.source")
        where = f"samples.source ({ref})"
    else:
        path = spec.project_dir / ref
        where = f"samples.source ({path})"
        if not path.is_file():
            raise ExportError(f"samples.source: file not found: {path}",
                              hint="paths are relative to the project folder")
        try:
            suffix = path.suffix.lower()
            if suffix == ".npy":
                value = np.load(path, allow_pickle=False)
            elif suffix == ".npz":
                with np.load(path, allow_pickle=False) as z:
                    value = {k: z[k] for k in sorted(z.files)}
            else:
                value = _read_csv(path)
        except ExportError:
            raise
        except Exception as e:
            raise ExportError(f"samples.source: {path} could not be read: {type(e).__name__}: {e}") from e
    arrays = value if isinstance(value, Mapping) else {"": value}
    out: Arrays = {}
    for name, arr in arrays.items():
        try:
            a = np.asarray(arr)
        except Exception as e:
            raise ExportError(f"{where}: input {name!r} is not an array: {e}") from e
        label = f"input {name!r}" if name else "the samples"
        if a.ndim == 0 or a.shape[0] == 0:
            raise ExportError(f"{where}: {label} {'has' if name else 'have'} no rows (shape {a.shape})",
                              hint="give at least 1 row, ideally 100+")
        if a.dtype.kind not in "biuf":
            raise ExportError(f"{where}: {label} is not numeric (dtype {a.dtype})",
                              hint="encode categories as numbers before export")
        out[str(name)] = a[: spec.samples.max_rows]
    rows = {a.shape[0] for a in out.values()}
    if len(rows) > 1:
        raise ExportError(f"{where}: inputs have different row counts {sorted(rows)}",
                          hint="every input needs one entry per sample row")
    return out[""] if list(out) == [""] else out


def _read_csv(path: Path) -> np.ndarray:
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if not header:
            raise ExportError(f"samples.source: {path} is empty", hint="a CSV needs a header row and data rows")
        rows = []
        for lineno, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) != len(header):
                raise ExportError(f"samples.source: {path}:{lineno}: {len(row)} columns, header has {len(header)}")
            try:
                rows.append([float(v) if v.strip() not in ("", "nan", "NaN") else np.nan for v in row])
            except ValueError as e:
                raise ExportError(f"samples.source: {path}:{lineno}: not a number: {e}",
                                  hint="CSV samples must be numeric; encode categories first") from e
    return np.asarray(rows, dtype=np.float64).reshape(len(rows), len(header))


def csv_header(path: Path) -> list[str]:
    with path.open(newline="", encoding="utf-8") as f:
        return [h.strip() for h in next(csv.reader(f), [])]


# ---------------------------------------------------------------------------------------------------
# conversion


def _to_onnx(spec: ModelSpec, loaded: _Loaded, samples: Arrays | np.ndarray) -> tuple[onnx.ModelProto, Any]:
    """Returns the ONNX model and the object to compare against (the original model, or None)."""
    if loaded.kind == "onnx":
        return loaded.obj, None
    if loaded.kind == "sklearn":
        return _sklearn_to_onnx(spec, loaded.obj, samples), loaded.obj
    return _torch_to_onnx(spec, loaded.obj, samples)


def _sklearn_to_onnx(spec: ModelSpec, model: Any, samples: Arrays | np.ndarray) -> onnx.ModelProto:
    try:
        from skl2onnx import to_onnx
        from skl2onnx.common.data_types import FloatTensorType
        from sklearn.base import is_classifier
    except ImportError as e:
        raise ExportError("scikit-learn models need skl2onnx", hint="pip install 'mlpack-lambda[sklearn]'") from e
    if isinstance(samples, dict):
        raise ExportError("samples.source: a scikit-learn model takes one input; give one array, not several",
                          hint="use .npy or .csv samples")
    width = int(np.prod(samples.shape[1:])) if samples.ndim > 1 else 1
    n_in = getattr(model, "n_features_in_", None)
    if n_in is not None and n_in != width:
        raise ExportError(f"samples.source: samples have {width} feature(s) per row but the model expects {n_in}",
                          hint=f"give samples shaped (rows, {n_in})")
    options = {id(model): {"zipmap": False}} if is_classifier(model) else None
    opset: Any = {"": spec.export.opset, "ai.onnx.ml": 3} if spec.export.opset else None
    try:
        proto: onnx.ModelProto = to_onnx(
            model, initial_types=[("input", FloatTensorType([None, width]))], options=options, target_opset=opset)
        return proto
    except Exception as e:
        name = type(model).__name__
        steps = getattr(model, "steps", None)
        if steps:
            name = f"Pipeline({', '.join(type(s).__name__ for _, s in steps)})"
        raise ExportError(f"model.source: cannot convert {name} to ONNX: {type(e).__name__}: {e}",
                          hint="skl2onnx supports most scikit-learn estimators; see its list of supported "
                               "models, or export to ONNX yourself and point model.source at the .onnx") from e


def _torch_to_onnx(spec: ModelSpec, obj: Any, samples: Arrays | np.ndarray) -> tuple[onnx.ModelProto, Any]:
    torch = _import_torch()
    import inspect
    import logging
    import warnings

    if isinstance(obj, torch.export.ExportedProgram):
        module = obj.module()
        names = [s.arg.name for s in obj.graph_signature.input_specs
                 if s.kind == torch.export.graph_signature.InputKind.USER_INPUT]
    else:
        module = obj.eval()
        params = list(inspect.signature(obj.forward).parameters.values())
        names = [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if isinstance(samples, dict):
        missing = [n for n in names if n not in samples]
        extra = [n for n in samples if n not in names]
        if missing or extra:
            raise ExportError(f"samples.source: inputs {sorted(samples)} do not match the model's {names}",
                              hint="an .npz or factory must give one array per forward() argument, by name")
        arrays = [samples[n] for n in names]
    else:
        if len(names) != 1:
            raise ExportError(f"samples.source: the model takes {len(names)} inputs {names} but one array was given",
                              hint="give an .npz or a factory returning a dict with one array per input")
        arrays = [samples]
    tensors = tuple(torch.from_numpy(np.ascontiguousarray(a.astype(np.float32) if a.dtype.kind == "f" else a))
                    for a in arrays)
    batch = torch.export.Dim("batch", min=1)
    try:
        if isinstance(obj, torch.export.ExportedProgram):
            program = obj
        else:
            with torch.no_grad():
                program = torch.export.export(
                    module, tensors, dynamic_shapes={n: {0: batch} for n in names}, strict=False)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            logging.getLogger("torch.onnx").setLevel(logging.ERROR)
            onnx_program = torch.onnx.export(
                program, tensors, None, input_names=names, dynamo=True, verbose=False,
                opset_version=spec.export.opset, optimize=True)
    except ExportError:
        raise
    except Exception as e:
        raise ExportError(f"model.source: torch could not export the model to ONNX: {type(e).__name__}: {e}",
                          hint="the forward() must be traceable by torch.export with a dynamic batch dimension"
                          ) from e
    proto = onnx_program.model_proto
    _name_batch_dim(proto)
    return proto, module


def _name_batch_dim(proto: onnx.ModelProto) -> None:
    """Call the first dimension of every graph input and output 'batch' (exporters make up names)."""
    for vi in list(proto.graph.input) + list(proto.graph.output):
        dims = vi.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            dims[0].dim_param = contract.BATCH_DIM


def _strip_unstable(proto: onnx.ModelProto) -> None:
    """Remove what would make the bytes depend on where and when the export ran (stack traces with
    absolute paths, doc strings); the computation is unchanged."""
    def clean(graph: onnx.GraphProto) -> None:
        for node in graph.node:
            del node.metadata_props[:]
            node.doc_string = ""
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.GRAPH:
                    clean(attr.g)
                for g in attr.graphs:
                    clean(g)
        for vi in list(graph.value_info) + list(graph.input) + list(graph.output):
            del vi.metadata_props[:]
            vi.doc_string = ""
        for init in graph.initializer:
            del init.metadata_props[:]

    clean(proto.graph)
    for fn in proto.functions:
        for node in fn.node:
            del node.metadata_props[:]
            node.doc_string = ""
    proto.doc_string = ""


def _session(model_bytes: bytes) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    try:
        return ort.InferenceSession(model_bytes, opts, providers=["CPUExecutionProvider"])
    except Exception as e:
        raise ExportError(f"onnxruntime cannot load the exported model: {e}",
                          hint="check the model's opset against the installed onnxruntime") from e


# ---------------------------------------------------------------------------------------------------
# running and comparing


def _feeds(session: Any, samples: Arrays | np.ndarray) -> Arrays:
    inputs = session.get_inputs()
    if isinstance(samples, dict):
        names = [i.name for i in inputs]
        if sorted(samples) != sorted(names):
            raise ExportError(f"samples.source: inputs {sorted(samples)} do not match the model's {names}",
                              hint="an .npz or factory must give one array per model input, by name")
        given = samples
    else:
        if len(inputs) != 1:
            raise ExportError(f"samples.source: the model takes {len(inputs)} inputs "
                              f"{[i.name for i in inputs]} but one array was given",
                              hint="give an .npz or a factory returning a dict with one array per input")
        given = {inputs[0].name: samples}
    feeds: Arrays = {}
    for meta in inputs:
        arr = np.asarray(given[meta.name])
        dtype = np.dtype(_ort_dtype(meta.type))
        shape = meta.shape
        if arr.ndim != len(shape):
            if len(shape) == 2 and arr.ndim == 1:
                arr = arr.reshape(-1, 1)
            else:
                raise ExportError(f"samples.source: input {meta.name!r} has shape {arr.shape}, the model expects "
                                  f"{_shape_str(shape)}", hint="reshape the samples to match the model's input")
        for axis, (want, got) in enumerate(zip(shape, arr.shape, strict=True)):
            if isinstance(want, int) and want != got and axis > 0:
                raise ExportError(f"samples.source: input {meta.name!r} has shape {arr.shape}, the model expects "
                                  f"{_shape_str(shape)} (axis {axis}: {got} != {want})",
                                  hint="give samples with the model's feature count")
        fractional = arr.dtype.kind == "f" and (not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)))
        if dtype.kind in "iub" and fractional:
            raise ExportError(f"samples.source: input {meta.name!r} must hold integers ({dtype})")
        feeds[meta.name] = np.ascontiguousarray(arr.astype(dtype, copy=False))
    return feeds


def _ort_dtype(ort_type: str) -> str:
    inner = ort_type[len("tensor("):-1] if ort_type.startswith("tensor(") else ort_type
    return {"float": "float32", "double": "float64", "string": "str", "float16": "float16"}.get(inner, inner)


def _shape_str(shape: list[Any]) -> str:
    return "(" + ", ".join(str(d) if isinstance(d, int) else "batch" if i == 0 else str(d)
                           for i, d in enumerate(shape)) + ")"


def _run_onnx(session: Any, feeds: Arrays) -> Arrays:
    try:
        outs = session.run(None, feeds)
    except Exception as e:
        raise ExportError(f"onnxruntime failed on the samples: {e}",
                          hint="check that the samples match the model's inputs") from e
    return {o.name: np.asarray(v) for o, v in zip(session.get_outputs(), outs, strict=True)}


def _check_nan(loaded: _Loaded, samples: Arrays | np.ndarray) -> None:
    """Samples with NaN are fine only for a model that takes NaN (some scikit-learn estimators do);
    the model itself is the judge."""
    arrays = samples if isinstance(samples, dict) else {"": samples}
    for name, arr in arrays.items():
        if arr.dtype.kind != "f" or np.all(np.isfinite(arr)):
            continue
        flat = arr.reshape(arr.shape[0], -1)
        bad = np.argwhere(~np.isfinite(flat))
        where = ", ".join(f"row {r} column {c}" for r, c in bad[:5]) + (" ..." if len(bad) > 5 else "")
        label = f"input {name!r}" if name else "the samples"
        if loaded.kind == "sklearn":
            rows = np.unique(bad[:, 0])
            try:
                loaded.obj.predict(flat[rows].astype(np.float32))
                continue
            except Exception as e:
                reason = f"{type(loaded.obj).__name__} refuses them: {str(e).splitlines()[0]}"
        else:
            reason = f"a {loaded.kind} model gives no defined output for them"
        verb = "contains" if name else "contain"
        raise ExportError(f"samples.source: {label} {verb} NaN or infinite values ({where}); {reason}",
                          hint="drop or impute those rows, or use a model that handles missing values")


def _describe_outputs(spec: ModelSpec, loaded: _Loaded, session: Any,
                      got: Arrays) -> tuple[str, dict[str, Any], list[Any], list[str]]:
    """task, roles, classes (values of the label output), label names (one per score column)."""
    outputs = session.get_outputs()
    names = [o.name for o in outputs]
    classes: list[Any] = []
    if loaded.kind == "sklearn":
        from sklearn.base import is_classifier

        if is_classifier(loaded.obj):
            classes = [c.item() if hasattr(c, "item") else c for c in loaded.obj.classes_]
            task = "classification"
        else:
            task = "regression"
    elif spec.model.task != "auto":
        task = spec.model.task
    else:
        floats = [n for n in names if got[n].dtype.kind == "f"]
        ints = [n for n in names if got[n].dtype.kind in "iuOU"]
        wide = len(floats) == 1 and got[floats[0]].ndim == 2 and got[floats[0]].shape[1] > 1
        task = "classification" if (wide and len(names) <= 2) or (ints and floats) else "regression"
    roles: dict[str, Any] = {"label": None, "scores": None, "scores_kind": None}
    if task == "classification":
        label = next((n for n in names if got[n].dtype.kind in "iuUO" and got[n].ndim == 1), None)
        scores = next((n for n in names if got[n].dtype.kind == "f" and got[n].ndim == 2), None)
        if scores is None:
            raise ExportError(f"model: task is classification but no output holds per-class scores "
                              f"(outputs: {names})", hint="set model.task = 'regression' if that is what it is")
        s = got[scores].astype(np.float64)
        is_prob = bool(np.all(s >= -1e-6) and np.all(s <= 1 + 1e-6) and np.allclose(s.sum(axis=1), 1, atol=1e-3))
        roles = {"label": label, "scores": scores, "scores_kind": "probabilities" if is_prob else "logits"}
        width = got[scores].shape[1]
        if not classes:
            classes = list(range(width))
        label_names = list(spec.model.label_names) or [str(c) for c in classes]
        if len(label_names) != width:
            raise ExportError(f"model.label_names: {len(label_names)} names for {width} classes",
                              hint=f"list exactly {width} names, in the order of the model's classes")
    else:
        label_names = []
        if spec.model.label_names:
            raise ExportError("model.label_names: given, but the model is a regressor",
                              hint="remove label_names, or set model.task = 'classification'")
    return task, roles, classes, label_names


def _original_outputs(loaded: _Loaded, original: Any, feeds: Arrays) -> dict[str, np.ndarray]:
    """The original model's outputs keyed by role: 'label' and 'scores' or 'values'."""
    if loaded.kind == "sklearn":
        from sklearn.base import is_classifier

        (x,) = feeds.values()
        x2 = x.reshape(x.shape[0], -1)
        if is_classifier(original):
            out = {"label": np.asarray(original.predict(x2))}
            if hasattr(original, "predict_proba"):
                out["scores"] = np.asarray(original.predict_proba(x2))
            return out
        return {"values": np.asarray(original.predict(x2))}
    torch = _import_torch()
    with torch.no_grad():
        result = original(*[torch.from_numpy(a) for a in feeds.values()])
    if isinstance(result, tuple | list):
        return {f"out{i}": r.detach().numpy() for i, r in enumerate(result)}
    return {"out0": result.detach().numpy()}


def _compare(name: str, expected: np.ndarray, got: np.ndarray, *, exact: bool, rtol: float, atol: float,
             ) -> dict[str, Any]:
    rows = expected.shape[0]
    e = expected.reshape(rows, -1)
    g = got.reshape(rows, -1)
    if e.shape != g.shape:
        return {"output": name, "kind": "exact" if exact else "close", "rows": rows, "passed": False,
                "mismatches": rows, "summary": f"shape differs: expected {expected.shape}, got {got.shape}",
                "worst": []}
    if exact:
        bad = np.any(e.astype(str) != g.astype(str), axis=1)
        worst = [{"row": int(r), "expected": _py(e[r]), "got": _py(g[r])} for r in np.flatnonzero(bad)[:5]]
        n_bad = int(bad.sum())
        summary = f"{rows - n_bad}/{rows} labels equal" if n_bad else f"all {rows} labels equal"
        return {"output": name, "kind": "exact", "rows": rows, "passed": n_bad == 0, "mismatches": n_bad,
                "summary": summary, "worst": worst}
    e64, g64 = e.astype(np.float64), g.astype(np.float64)
    err = np.abs(e64 - g64)
    allowed = atol + rtol * np.abs(np.nan_to_num(e64))
    # NaN on one side only is a mismatch; NaN on both sides agrees (comparisons with NaN are False)
    nan_e, nan_g = np.isnan(e64), np.isnan(g64)
    err = np.where(nan_e & nan_g, 0.0, np.where(nan_e | nan_g, np.inf, err))
    bad_cells = err > allowed
    bad_rows = np.any(bad_cells, axis=1)
    excess = np.max(np.where(bad_cells, err - allowed, -np.inf), axis=1)
    order = np.argsort(-excess, kind="stable")[: min(5, int(bad_rows.sum()))]
    cols = [int(np.argmax(err[r] - allowed[r])) for r in order]  # each row's worst column
    worst = [{"row": int(r), "column": c, "expected": float(e64[r, c]), "got": float(g64[r, c])}
             for r, c in zip(order, cols, strict=True)]
    finite_err = err[np.isfinite(err)]
    max_abs = float(finite_err.max()) if finite_err.size else 0.0
    n_bad = int(bad_rows.sum())
    summary = (f"max abs error {max_abs:.3g} within rtol={rtol:g} atol={atol:g} over {rows} rows" if not n_bad
               else f"{n_bad}/{rows} rows out of tolerance (max abs error {max_abs:.3g})")
    return {"output": name, "kind": "close", "rows": rows, "passed": n_bad == 0, "mismatches": n_bad,
            "max_abs_err": max_abs, "summary": summary, "worst": worst}


def _py(v: np.ndarray) -> Any:
    items = v.tolist()
    return items[0] if len(items) == 1 else items


def _parity(spec: ModelSpec, loaded: _Loaded, original: Any, feeds: Arrays, got: Arrays,
            roles: dict[str, Any]) -> dict[str, Any]:
    rtol, atol = spec.export.rtol, spec.export.atol
    rows = next(iter(feeds.values())).shape[0]
    checks: list[dict[str, Any]] = []
    if loaded.kind == "onnx":
        for name, value in got.items():
            finite = bool(np.all(np.isfinite(value))) if value.dtype.kind == "f" else True
            checks.append({"output": name, "kind": "finite", "rows": rows, "passed": finite,
                           "mismatches": 0 if finite else int(np.sum(~np.isfinite(value))),
                           "summary": f"ran on {rows} rows, all values finite" if finite
                           else "non-finite values in the output", "worst": []})
    else:
        expected = _original_outputs(loaded, original, feeds)
        names = list(got)
        if loaded.kind == "sklearn":
            if "label" in expected and roles["label"]:
                checks.append(_compare(roles["label"], expected["label"], got[roles["label"]], exact=True,
                                       rtol=rtol, atol=atol))
            if "scores" in expected and roles["scores"]:
                checks.append(_compare(roles["scores"], expected["scores"], got[roles["scores"]], exact=False,
                                       rtol=rtol, atol=atol))
            if "values" in expected:
                checks.append(_compare(names[0], expected["values"], got[names[0]], exact=False,
                                       rtol=rtol, atol=atol))
        else:
            if len(expected) != len(names):
                raise ExportError(f"the ONNX model has {len(names)} outputs, the torch model {len(expected)}")
            for (_, exp), name in zip(expected.items(), names, strict=True):
                checks.append(_compare(name, exp, got[name], exact=exp.dtype.kind in "iub", rtol=rtol, atol=atol))
    return {"passed": all(c["passed"] for c in checks), "rows": rows, "rtol": rtol, "atol": atol,
            "checks": checks}


def _parity_failure_message(spec: ModelSpec, parity: dict[str, Any]) -> str:
    lines = [f"{spec.name}: the ONNX model does not match the original on the samples "
             f"(rtol={parity['rtol']:g}, atol={parity['atol']:g}); nothing was written"]
    for c in parity["checks"]:
        if c["passed"]:
            continue
        lines.append(f"  {c['output']}: {c['summary']}")
        for w in c["worst"]:
            col = f", column {w['column']}" if "column" in w else ""
            lines.append(f"    row {w['row']}{col}: expected {w['expected']!r}, got {w['got']!r}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------
# metadata


def _signature(session: Any) -> dict[str, Any]:
    def describe(items: Any) -> list[dict[str, Any]]:
        out = []
        for it in items:
            shape = [d if isinstance(d, int) else (contract.BATCH_DIM if i == 0 else str(d or f"d{i}"))
                     for i, d in enumerate(it.shape)]
            out.append({"name": it.name, "dtype": _ort_dtype(it.type), "shape": shape})
        return out

    return {"inputs": describe(session.get_inputs()), "outputs": describe(session.get_outputs())}


def _feature_names(spec: ModelSpec, session: Any, samples: Arrays | np.ndarray) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    inputs = session.get_inputs()
    for meta in inputs:
        if len(meta.shape) != 2 or not isinstance(meta.shape[1], int):
            continue
        width = meta.shape[1]
        names = list(spec.model.feature_names) if len(inputs) == 1 else []
        path = spec.samples_path()
        if not names and path is not None and path.suffix.lower() == ".csv" and len(inputs) == 1:
            names = csv_header(path)
        if names and len(names) != width:
            raise ExportError(f"model.feature_names: {len(names)} names for {width} input features",
                              hint=f"list exactly {width} names, in column order")
        out[meta.name] = names or [f"f{i}" for i in range(width)]
    return out


def _opset(proto: onnx.ModelProto) -> int:
    return next((int(o.version) for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0)


def _versions(loaded: _Loaded) -> dict[str, str]:
    import onnxruntime

    versions = {"mlpack": _dist_version("mlpack-lambda"), "onnx": onnx.__version__,
                "onnxruntime": onnxruntime.__version__, "framework": loaded.framework,
                "framework_version": loaded.framework_version}
    if loaded.kind == "sklearn":
        versions["converter"] = f"skl2onnx {_dist_version('skl2onnx')}"
    elif loaded.kind == "torch":
        versions["converter"] = f"torch.onnx (onnxscript {_dist_version('onnxscript')})"
    return versions


def _dist_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _stats(values: np.ndarray) -> dict[str, float]:
    v = values.astype(np.float64)
    finite = v[np.isfinite(v)]
    if finite.size == 0:
        return {"min": 0.0, "max": 0.0, "mean": 0.0, "std": 0.0, "q01": 0.0, "q50": 0.0, "q99": 0.0}
    q01, q50, q99 = np.quantile(finite, [0.01, 0.5, 0.99])
    return {"min": _r(finite.min()), "max": _r(finite.max()), "mean": _r(finite.mean()),
            "std": _r(finite.std()), "q01": _r(q01), "q50": _r(q50), "q99": _r(q99)}


def _r(x: Any) -> float:
    # 9 significant digits: stable across platforms' last-bit differences in summation order
    return float(f"{float(x):.9g}")


def _profile(feeds: Arrays, got: Arrays, metadata: dict[str, Any]) -> dict[str, Any]:
    rows = next(iter(feeds.values())).shape[0]
    inputs: dict[str, list[dict[str, Any]]] = {}
    for name, arr in feeds.items():
        flat = arr.reshape(rows, -1)
        names = metadata["feature_names"].get(name) or [f"f{i}" for i in range(flat.shape[1])]
        feats = []
        for i in range(flat.shape[1]):
            col = flat[:, i]
            nan = int(np.sum(~np.isfinite(col))) if col.dtype.kind == "f" else 0
            feats.append({"name": names[i], "count": int(col.size - nan), "nan_share": _r(nan / max(col.size, 1)),
                          **_stats(col)})
        inputs[name] = feats
    outputs: dict[str, Any]
    roles = metadata["roles"]
    if metadata["task"] == "classification":
        scores = got[roles["scores"]]
        idx = np.argmax(scores.reshape(rows, -1), axis=1)
        counts = np.bincount(idx, minlength=len(metadata["label_names"]))
        outputs = {"classes": {n: _r(c / rows) for n, c in zip(metadata["label_names"], counts, strict=True)}}
    else:
        regression = []
        for name, value in got.items():
            if value.dtype.kind != "f":
                continue
            flat = value.reshape(rows, -1)
            for i in range(flat.shape[1]):
                col_name = name if flat.shape[1] == 1 else f"{name}[{i}]"
                regression.append({"name": col_name, **_stats(flat[:, i])})
        outputs = {"regression": regression}
    return {"rows": int(rows), "inputs": inputs, "outputs": outputs}


# ---------------------------------------------------------------------------------------------------
# change detection and writing


def _source_sha256(spec: ModelSpec, file_digests: Mapping[str, str]) -> str:
    path = spec.source_path()
    if path is not None:
        return file_digests.get("source") or _file_sha256(path)
    module = spec.model.source.split(":", 1)[0].replace(".", "/")
    file = spec.project_dir / f"{module}.py"
    return _file_sha256(file if file.is_file() else spec.project_dir / module / "__init__.py")


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _file_digests(spec: ModelSpec) -> dict[str, str]:
    """sha256 of the source and samples files that exist (a missing one is reported when loading), read
    once for both the change check and model.json."""
    return {key: _file_sha256(path) for key, path in (("source", spec.source_path()), ("samples", spec.samples_path()))
            if path is not None and path.is_file()}


def _inputs_hash(spec: ModelSpec, file_digests: Mapping[str, str]) -> str:
    """Everything that determines the export: source and samples bytes (for factories, the project's
    Python files), the spec sections that feed it, and the converter versions."""
    h = hashlib.sha256()

    def add(label: str, data: bytes) -> None:
        h.update(label.encode() + b"\0" + hashlib.sha256(data).digest())

    relevant = {
        "model": {k: v for k, v in vars(spec.model).items() if k != "owners"},
        "samples": vars(spec.samples), "export": vars(spec.export),
        "versions": {d: _dist_version(d) for d in
                     ("mlpack-lambda", "onnx", "onnxruntime", "skl2onnx", "scikit-learn", "torch", "onnxscript",
                      "numpy")},
    }
    add("spec", json.dumps(relevant, sort_keys=True, default=str).encode())
    for key, digest in file_digests.items():
        add(key, digest.encode())
    if is_factory(spec.model.source) or is_factory(spec.samples.source):
        for py in sorted(spec.project_dir.rglob("*.py")):
            rel = py.relative_to(spec.project_dir)
            if rel.parts[0] in ("build", ".venv") or "__pycache__" in rel.parts:
                continue
            add(f"py:{rel.as_posix()}", py.read_bytes())
    return h.hexdigest()


def _write(out_dir: Path, model_bytes: bytes, metadata: dict[str, Any]) -> None:
    """model.onnx first, model.json last: model.json names model.onnx's digest, so a reader never takes
    a mismatched pair for an export (read_artifact checks)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(out_dir / contract.MODEL_FILE, model_bytes)
    text = json.dumps(metadata, indent=2, sort_keys=True, allow_nan=False) + "\n"
    write_atomic(out_dir / contract.MODEL_JSON, text.encode())
    os.utime(out_dir)
