"""Converting the loaded model to ONNX, and opening it in onnxruntime.

Enters: a ModelSpec, the `Loaded` source model and its samples (sources.py). Leaves: an ONNX
ModelProto (from torch, its inputs' and outputs' dynamic first dimension named "batch"), stripped of
what would make its bytes depend on where and when the export ran, its unordered parts in one order
(so the bytes do not follow the hash seed either); the object parity compares it against (the
original model, or None for an ONNX source); and an onnxruntime session over the serialized bytes.
Or ExportError naming what could not be converted (a converter's own error summarised, its full
text written to export-error.log in the project's build folder).

scikit-learn models go through skl2onnx, torch models through torch.export and torch.onnx (dynamo);
an ONNX source is taken as it is; converters.py registers what skl2onnx needs for XGBoost, LightGBM
and HistGradientBoosting models. skl2onnx, torch and onnxruntime are imported only when needed.
"""

from __future__ import annotations

import traceback
from typing import Any

import numpy as np
import onnx

from handlers import contract
from packager.config.spec import ModelSpec
from packager.errors import ExportError
from packager.export import converters, tabular
from packager.export.sources import Arrays, Loaded, Samples, import_torch
from packager.fsutil import write_atomic


def to_onnx(spec: ModelSpec, loaded: Loaded, samples: Samples) -> tuple[onnx.ModelProto, Any]:
    """Returns the ONNX model and the object to compare against (the original model, or None)."""
    if loaded.kind == "onnx":
        return loaded.obj, None
    if isinstance(samples, tabular.Table):
        return _table_to_onnx(spec, loaded.obj, samples), loaded.obj
    if loaded.kind == "sklearn":
        return _sklearn_to_onnx(spec, loaded.obj, samples), loaded.obj
    return _torch_to_onnx(spec, loaded.obj, samples)


def _table_to_onnx(spec: ModelSpec, model: Any, table: tabular.Table) -> onnx.ModelProto:
    """A model fitted on a DataFrame: one graph input per column (tabular.py says how each is typed)."""
    try:
        from skl2onnx import to_onnx
        from sklearn.base import is_classifier
    except ImportError as e:
        raise ExportError("scikit-learn models need skl2onnx", hint="pip install 'mlpack-lambda[sklearn]'") from e
    target = tabular.for_conversion(model, table.columns, table.frame)
    options = {id(target): {"zipmap": False}} if is_classifier(target) else None
    try:
        opset = converters.prepare(target, spec.export.opset, inputs="decimal")
        proto: onnx.ModelProto = to_onnx(target, initial_types=tabular.initial_types(table.columns),
                                         options=options, target_opset=opset)
    except ExportError:
        raise
    except Exception as e:
        raise _conversion_error(spec, model, e) from e
    # skl2onnx makes names C identifiers ("od280/od315" becomes "od280_od315"); requests use the columns' own
    given = [i.name for i in proto.graph.input]
    wanted = [c.name for c in table.columns]
    if given != wanted and len(given) == len(wanted):
        _rename_values(proto.graph, {g: w for g, w in zip(given, wanted, strict=True) if g != w})
    return proto


def rename_outputs(spec: ModelSpec, proto: onnx.ModelProto) -> None:
    """[outputs] renames applied to the graph itself, so everything after export (parity, model.json, the
    handler, the stacks) sees only the served names."""
    if not spec.outputs:
        return
    names = [o.name for o in proto.graph.output]
    unknown = [k for k in spec.outputs if k not in names]
    if unknown:
        raise ExportError(f"outputs.{unknown[0]}: the exported model has no output {unknown[0]!r}",
                          hint=f"its outputs are {', '.join(names)}")
    taken = _value_names(proto.graph) - set(spec.outputs)
    clash = [n for n in spec.outputs.values() if n in taken]
    if clash:
        raise ExportError(f"outputs: {clash[0]!r} is already a name in the exported graph",
                          hint="choose another name")

    _rename_values(proto.graph, dict(spec.outputs))


def _rename_values(graph: onnx.GraphProto, names: dict[str, str]) -> None:
    """Rename values (graph inputs and outputs, node inputs and outputs, subgraphs' references) by `names`."""
    for vi in list(graph.input) + list(graph.output) + list(graph.value_info):
        if vi.name in names:
            vi.name = names[vi.name]
    for node in graph.node:
        for i, n in enumerate(node.output):
            if n in names:
                node.output[i] = names[n]
        for i, n in enumerate(node.input):
            if n in names:
                node.input[i] = names[n]
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                _rename_values(attr.g, names)
            for g in attr.graphs:
                _rename_values(g, names)


def _value_names(graph: onnx.GraphProto) -> set[str]:
    names = {i.name for i in graph.input} | {i.name for i in graph.initializer}
    for node in graph.node:
        names.update(node.output)
    return names


def embedding_ranges(proto: onnx.ModelProto) -> dict[str, tuple[int, int]]:
    """Integer graph inputs used as the indices of a Gather over a constant table (an embedding), maybe
    through a Cast, Reshape, Squeeze, Unsqueeze or Flatten: input name -> (0, rows - 1). ONNX's Gather
    wraps a negative index and fails on one past the end, so the handler refuses both (a 422)."""
    graph = proto.graph
    tables = {i.name: list(i.dims) for i in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].type == onnx.AttributeProto.TENSOR:
            tables[node.output[0]] = list(node.attribute[0].t.dims)
    ints = {i.name for i in graph.input
            if i.type.tensor_type.elem_type in (onnx.TensorProto.INT64, onnx.TensorProto.INT32)}
    passthrough = {"Cast", "Reshape", "Squeeze", "Unsqueeze", "Flatten", "Identity"}
    origin = {n: n for n in ints}  # value name -> the graph input it carries unchanged
    for node in graph.node:  # nodes are in topological order
        if node.op_type in passthrough and node.input and node.input[0] in origin:
            for out in node.output:
                origin[out] = origin[node.input[0]]
    ranges: dict[str, tuple[int, int]] = {}
    for node in graph.node:
        if node.op_type != "Gather" or len(node.input) < 2 or node.input[1] not in origin:
            continue
        axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
        dims = tables.get(node.input[0])
        if axis != 0 or not dims:
            continue
        name = origin[node.input[1]]
        lo, hi = ranges.get(name, (0, dims[0] - 1))
        ranges[name] = (lo, min(hi, dims[0] - 1))
    return ranges


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
    try:
        opset = converters.prepare(model, spec.export.opset, inputs="float32")
        proto: onnx.ModelProto = to_onnx(
            model, initial_types=[("input", FloatTensorType([None, width]))], options=options, target_opset=opset)
        return proto
    except ExportError:
        raise
    except Exception as e:
        raise _conversion_error(spec, model, e) from e


ERROR_LOG = "export-error.log"  # in the project's build folder: a converter's full error text
_SUMMARY_LINES = 12  # of the converter's message; the whole ExportError stays under ~20 lines
_SUMMARY_WIDTH = 160  # characters per line (one line of an attribute dump can be the whole dump)


def _conversion_error(spec: ModelSpec, model: Any, e: Exception) -> ExportError:
    """ExportError for a failed skl2onnx conversion: the model, the error's type and its first lines; the
    full text (with the traceback) goes to ERROR_LOG in the build folder, which the message names."""
    name = type(model).__name__
    steps = getattr(model, "steps", None)
    if steps:
        name = f"Pipeline({', '.join(type(s).__name__ for _, s in steps)})"
    final = steps[-1][1] if steps else model
    cls = f"{type(final).__module__}.{type(final).__qualname__}"
    body, where = _summarise(spec, f"cannot convert {name} ({cls}) to ONNX", e)
    return ExportError(f"model.source: cannot convert {name} to ONNX ({cls}): {type(e).__name__}:\n{body}\n{where}",
                       hint="skl2onnx supports most scikit-learn estimators, and mlpack adds XGBoost and LightGBM; "
                            "see skl2onnx's list of supported models, or export to ONNX yourself and point "
                            "model.source at the .onnx")


def _summarise(spec: ModelSpec, what: str, e: Exception) -> tuple[str, str]:
    """(the error's first lines, indented; where its full text and traceback were written: ERROR_LOG in
    the build folder). Converters put whole attribute dumps or graphs in their messages."""
    text = str(e)
    lines = text.splitlines() or [""]
    shown = [_clip(line) for line in lines[:_SUMMARY_LINES]]
    if len(lines) > _SUMMARY_LINES:
        more = len(lines) - _SUMMARY_LINES
        shown.append(f"... {more:,} more line{'s' if more > 1 else ''} ({len(text):,} characters in all)")
    elif any(len(line) > _SUMMARY_WIDTH for line in lines):
        shown.append(f"... ({len(text):,} characters in all)")
    log = spec.default_build_dir() / ERROR_LOG
    full = "".join(traceback.format_exception(e))
    try:
        write_atomic(log, f"mlpack export {spec.name}: {what}\n\n{full}".encode())
        where = f"the full error is in {log}"
    except OSError as oe:
        where = f"the full error could not be written to {log} ({oe.strerror or oe}); run mlpack --debug to see it"
    return "\n".join(f"  | {line}" for line in shown), where


def _clip(line: str) -> str:
    return line if len(line) <= _SUMMARY_WIDTH else line[: _SUMMARY_WIDTH - 3] + "..."


def _torch_to_onnx(spec: ModelSpec, obj: Any, samples: Samples) -> tuple[onnx.ModelProto, Any]:
    torch = import_torch()
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
        assert not isinstance(samples, tabular.Table)  # a torch model's samples are never a DataFrame
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
        body, where = _summarise(spec, "torch could not export the model to ONNX", e)
        raise ExportError(f"model.source: torch could not export the model to ONNX: {type(e).__name__}:\n{body}\n"
                          f"{where}", hint="the forward() must be traceable by torch.export with a dynamic batch "
                          "dimension") from e
    proto = onnx_program.model_proto
    _name_batch_dim(proto)
    return proto, module


def _name_batch_dim(proto: onnx.ModelProto) -> None:
    """Call the first dimension of every graph input and output 'batch' (exporters make up names)."""
    for vi in list(proto.graph.input) + list(proto.graph.output):
        dims = vi.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            dims[0].dim_param = contract.BATCH_DIM


def strip_unstable(proto: onnx.ModelProto) -> None:
    """Remove what would make the bytes depend on where and when the export ran (stack traces with
    absolute paths, doc strings), and put what has no order in one (`canonical_order`); the computation
    is unchanged."""
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
    canonical_order(proto)


def canonical_order(proto: onnx.ModelProto) -> None:
    """Put the parts of the model whose order means nothing in one order, so the bytes do not follow
    the converter's dict and set iteration (which follows PYTHONHASHSEED for strings): opset imports by
    domain, metadata_props by key, local functions by (domain, name, overload), and each node's
    attributes by name (ONNX looks every one of these up by its key). The order of nodes, inputs,
    outputs and attribute values is the computation's, and is left as it is."""
    def sort(field: Any, key: Any) -> None:
        items = list(field)
        ordered = sorted(items, key=key)
        if ordered != items:
            del field[:]
            field.extend(ordered)

    def by_domain(o: onnx.OperatorSetIdProto) -> str:
        return o.domain

    def by_key(p: onnx.StringStringEntryProto) -> str:
        return p.key

    def nodes(graph_nodes: Any) -> None:
        for node in graph_nodes:
            sort(node.attribute, lambda a: a.name)
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.GRAPH:
                    graph(attr.g)
                for g in attr.graphs:
                    graph(g)

    def graph(g: onnx.GraphProto) -> None:
        sort(g.metadata_props, by_key)
        nodes(g.node)

    sort(proto.opset_import, by_domain)
    sort(proto.metadata_props, by_key)
    graph(proto.graph)
    sort(proto.functions, lambda f: (f.domain, f.name, f.overload))
    for fn in proto.functions:
        sort(fn.opset_import, by_domain)
        sort(fn.metadata_props, by_key)
        nodes(fn.node)


def session(model_bytes: bytes) -> Any:
    """An onnxruntime session over the model's bytes: CPU, one thread."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    try:
        return ort.InferenceSession(model_bytes, opts, providers=["CPUExecutionProvider"])
    except Exception as e:
        raise ExportError(f"onnxruntime cannot load the exported model: {e}",
                          hint="check the model's opset against the installed onnxruntime") from e


def ort_dtype(ort_type: str) -> str:
    """onnxruntime's type name ("tensor(float)") as the numpy dtype name model.json uses ("float32")."""
    inner = ort_type[len("tensor("):-1] if ort_type.startswith("tensor(") else ort_type
    return {"float": "float32", "double": "float64", "string": "str", "float16": "float16"}.get(inner, inner)

