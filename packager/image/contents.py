"""What goes into each layer of the image, decided in one place before anything is written.

Enters: the resolved base, the exported model (OnnxArtifact) and the layers' mtime. Leaves: an `ImagePlan`,
plain data that build.py executes, layers bottom to top:

- base: the base's layer blobs, copied as they are, and the descriptors our manifest lists for them
- deps: the requirements and target for deps.py, which builds that layer (or takes it from its cache)
- handler: the handlers package's *.py files under /var/task/handlers, compiled to bytecode there by the
  compiler deps.bytecode_compiler found (a host interpreter of the target's python, else the base's own)
- model: model.onnx and model.json under /var/task/model

File entries are mode 0644 and the handler and model layers carry the build's mtime (SOURCE_DATE_EPOCH, or 0;
deps.py reads the same); layers.py normalises the rest (owners, order, parent directories). Reads the handlers
package's file list and requirements and looks for the target's interpreter; writes nothing.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from handlers import contract
from packager import oci
from packager.errors import BuildError
from packager.image import bases, deps, layers

if TYPE_CHECKING:  # the export stage imports numpy and onnx, which `mlpack check` does not need
    from packager.export.pipeline import OnnxArtifact


@dataclass(frozen=True, kw_only=True)
class Bytecode:
    """Compile a layer's *.py files with `interpreter` as if they lay at `root` in the image; the layer then
    holds the sources and their __pycache__. `what` and `hint` word the error when compiling fails."""

    interpreter: deps.Compiler
    root: str  # an absolute image path; every entry of the layer lies under it
    what: str
    hint: str


@dataclass(frozen=True, kw_only=True)
class LayerPlan:
    """One layer mlpack writes itself: its entries (image path, source file, mode) and how it is labelled."""

    name: str  # handler | model
    created_by: str
    mtime: int
    entries: tuple[layers.Entry, ...]
    bytecode: Bytecode | None = None


@dataclass(frozen=True, kw_only=True)
class DepsPlan:
    """What the dependency layer installs: deps.dependency_layer(requirements, target) builds it."""

    requirements: tuple[str, ...]
    target: deps.Target


@dataclass(frozen=True, kw_only=True)
class ImagePlan:
    """Every layer of the image, bottom to top: the base's, then deps, handler and model."""

    base_layers: tuple[oci.Descriptor, ...]  # as our manifest lists them
    base_blobs: tuple[tuple[str, Path], ...]  # (digest, file in the blob store), copied into the layout
    deps: DepsPlan
    handler: LayerPlan
    model: LayerPlan


def handlers_dir() -> Path:
    spec = importlib.util.find_spec("handlers")
    if spec is None or not spec.submodule_search_locations:
        raise BuildError("the handlers package cannot be found", hint="reinstall mlpack (pip install -e .)")
    return Path(next(iter(spec.submodule_search_locations)))


def handler_files(root: Path) -> list[Path]:
    """The handler package's *.py files, without tests and caches."""
    out = []
    for p in sorted(root.rglob("*.py")):
        rel = p.relative_to(root).parts
        if any(part in ("tests", "test", "__pycache__") for part in rel) or p.name.startswith("test_"):
            continue
        out.append(p)
    return out


def base_layers(base: bases.Base) -> tuple[oci.Descriptor, ...]:
    """The base's layers as our manifest lists them: gzip layers under the OCI media type, no annotations."""
    return tuple(oci.Descriptor(media_type=oci.MT_OCI_LAYER_GZIP if d.media_type in oci.GZIP_LAYER_TYPES
                                else d.media_type, digest=d.digest, size=d.size) for d in base.image.layers)


def requirements(base: bases.Base) -> tuple[str, ...]:
    """The handler's requirements, plus Lambda's runtime interface client when the base lacks one."""
    reqs = deps.read_requirements(handlers_dir() / "requirements.txt")
    if not base.runtime_client and not any(r.split("=")[0].split("<")[0].split(">")[0].strip().lower()
                                           == "awslambdaric" for r in reqs):
        reqs.append("awslambdaric")
    return tuple(reqs)


def handler_layer(interpreter: deps.Compiler | None, mtime: int) -> LayerPlan:
    """The handlers package at /var/task/handlers, compiled when `interpreter` is given."""
    src = handlers_dir()
    root = f"{contract.TASK_ROOT}/handlers"
    entries = tuple(layers.Entry(path=f"{root.strip('/')}/{p.relative_to(src).as_posix()}", kind="file",
                                 mode=0o644, source=p) for p in handler_files(src))
    bytecode = None if interpreter is None else Bytecode(
        interpreter=interpreter, root=root, what="handler code", hint="fix the syntax error in the handlers package")
    return LayerPlan(name="handler", created_by="mlpack: handler code (handlers package)", mtime=mtime,
                     entries=entries, bytecode=bytecode)


def model_layer(artifact: OnnxArtifact, mtime: int) -> LayerPlan:
    """model.onnx and model.json in the model folder the handler reads."""
    model_dir = contract.MODEL_DIR.strip("/")
    entries = (layers.Entry(path=f"{model_dir}/{contract.MODEL_FILE}", kind="file", source=artifact.model_path),
               layers.Entry(path=f"{model_dir}/{contract.MODEL_JSON}", kind="file", source=artifact.json_path))
    return LayerPlan(name="model", created_by=f"mlpack: model {artifact.version}", mtime=mtime, entries=entries)


def plan(base: bases.Base, artifact: OnnxArtifact, *, arch: str, mtime: int,
         compiler: deps.Compiler | None = "host") -> ImagePlan:
    """Every layer of the image for `artifact` on `base` (for `arch`), all carrying `mtime`; the handler
    compiled by `compiler` (default: a host interpreter of the base's python, if any)."""
    if compiler == "host":
        compiler = deps.find_interpreter(base.python)
    return ImagePlan(
        base_layers=base_layers(base),
        base_blobs=tuple(bases.layer_paths(base)),
        deps=DepsPlan(requirements=requirements(base), target=deps.Target(python=base.python, arch=arch)),
        handler=handler_layer(compiler, mtime),
        model=model_layer(artifact, mtime),
    )
