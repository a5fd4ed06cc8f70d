"""Loading what an export starts from: the source model and the sample inputs.

Enters: a ModelSpec (model.source: an .onnx, .pt2 or pickled scikit-learn file, or a module:function
factory in the project folder; samples.source: .npy, .npz, .csv or a factory). Leaves: a `Loaded`
(the model object, its kind and framework) and the samples as one array or a dict of arrays by input
name, checked to be numeric, non-empty and of equal row counts; for a model fitted on a DataFrame, a
`tabular.Table`; or ExportError saying what is wrong.

Heavy frameworks are imported only when a source needs them: torch for .pt2 files, joblib for
pickles; whatever a factory returns has imported its own.
"""

from __future__ import annotations

import csv
import importlib
import pickle
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from packager.config.spec import ModelSpec, is_factory
from packager.errors import ExportError
from packager.export import tabular

Arrays = dict[str, np.ndarray]


@dataclass(frozen=True, kw_only=True)
class Loaded:
    """A source model as loaded: its kind, the object, and the framework that made it."""

    kind: str  # sklearn | torch | onnx
    obj: Any
    framework: str
    framework_version: str


@contextmanager
def _project_on_path(project_dir: Path) -> Iterator[None]:
    """Import factories from the project folder without leaving its modules behind (two projects may
    both have a train.py)."""
    # a module of the same name imported from elsewhere (a notebook's own train.py, another project's)
    # would stand in for the project's: set aside while the project's modules are imported, then put back
    shadowing = {name: mod for name, mod in sys.modules.items() if _top_level_of(project_dir, name)
                 and not (getattr(mod, "__file__", None) or "").startswith(str(project_dir))}
    for name in shadowing:
        del sys.modules[name]
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
        sys.modules.update(shadowing)


def _top_level_of(project_dir: Path, name: str) -> bool:
    """Whether `name` (or the package it is in) is a module or package the project folder holds."""
    root = name.split(".", 1)[0]
    return (project_dir / f"{root}.py").is_file() or (project_dir / root / "__init__.py").is_file()


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


def load_source(spec: ModelSpec) -> Loaded:
    """The model named by model.source, classified by what it is."""
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
        torch = import_torch()
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


def import_torch() -> Any:
    """The torch module, or ExportError saying how to install it."""
    try:
        import torch
    except ImportError as e:
        raise ExportError("this model needs PyTorch, which is not installed",
                          hint="pip install 'mlpack-lambda[torch]'") from e
    return torch


def _classify(obj: Any, where: str) -> Loaded:
    if isinstance(obj, onnx.ModelProto):
        try:
            onnx.checker.check_model(obj, full_check=True)
        except Exception as e:
            raise ExportError(f"{where}: the ONNX checker rejected the model: {e}") from e
        return Loaded(kind="onnx", obj=obj, framework="onnx", framework_version=onnx.__version__)
    # Look only at frameworks already imported: whatever made `obj` has imported its own.
    if "torch" in sys.modules:
        torch = sys.modules["torch"]
        if isinstance(obj, torch.nn.Module | torch.export.ExportedProgram):
            return Loaded(kind="torch", obj=obj, framework="torch", framework_version=torch.__version__)
    if "sklearn" in sys.modules:
        import sklearn
        from sklearn.base import BaseEstimator

        if isinstance(obj, BaseEstimator) and hasattr(obj, "predict"):
            framework, version = _estimator_library(obj) or ("scikit-learn", sklearn.__version__)
            return Loaded(kind="sklearn", obj=obj, framework=framework, framework_version=version)
    raise ExportError(f"{where}: unsupported model type {type(obj).__module__}.{type(obj).__qualname__}",
                      hint="mlpack exports scikit-learn estimators and Pipelines (with XGBoost and LightGBM "
                           "models among them), torch.nn.Module, "
                           "torch.export.ExportedProgram (.pt2) and ONNX models")


def _estimator_library(obj: Any) -> tuple[str, str] | None:
    """("xgboost" or "lightgbm", its version) when the estimator (a Pipeline's last step) comes from one of
    the libraries whose scikit-learn-style models mlpack exports; else None (scikit-learn itself)."""
    steps = getattr(obj, "steps", None)
    final = steps[-1][1] if steps else obj
    root = type(final).__module__.split(".")[0]
    module = sys.modules.get(root)
    if root in ("xgboost", "lightgbm") and module is not None:
        return root, str(getattr(module, "__version__", "unknown"))
    return None


Samples = Arrays | np.ndarray | tabular.Table


def load_samples(spec: ModelSpec, loaded: Loaded | None = None) -> Samples:
    """The sample inputs named by samples.source (at most samples.max_rows rows): one array, a dict of
    arrays by input name, or for a model fitted on a DataFrame a `tabular.Table` (from a DataFrame, or a
    CSV file read as one)."""
    ref = spec.samples.source
    columns = tabular.fitted_columns(loaded.obj) if loaded is not None and loaded.kind == "sklearn" else None
    if is_factory(ref):
        value = _call_factory(spec, ref, "samples.source")
        where = f"samples.source ({ref})"
        if tabular.is_dataframe(value):
            assert loaded is not None, "DataFrame samples need the model"
            return tabular.table(spec, loaded.obj, value, where)
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
            elif columns is not None:  # a DataFrame model: the CSV is a table, strings and all
                assert loaded is not None
                return tabular.table(spec, loaded.obj, tabular.read_csv(path), where)
            else:
                value = _read_csv(path)
        except ExportError:
            raise
        except Exception as e:
            raise ExportError(f"samples.source: {path} could not be read: {type(e).__name__}: {e}") from e
    if columns is not None:
        raise ExportError(f"{where}: the model was fitted on a DataFrame with columns {columns}, so its samples "
                          "must be one too", hint="give a CSV file with a header, or a factory returning a "
                                                  "pandas DataFrame")
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
    """A CSV file's column names (its first row)."""
    with path.open(newline="", encoding="utf-8") as f:
        return [h.strip() for h in next(csv.reader(f), [])]
