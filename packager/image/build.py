"""Build the Lambda image: execute the layer plan, compose config and manifest, write the layout and report.

`build(spec, ...)` is the stage function behind `mlpack build`: export (when stale) -> base (bases.py) ->
plan (contents.py) -> dependency layer (deps.py) -> handler and model layers (layers.py) -> config and
manifest -> Lambda's rules (checks.py) -> layout written to a temporary folder and renamed into place ->
build report next to it. A killed build's temporary folders are removed by the next build (deps.remove_stale).

Enters: a resolved ModelSpec. Leaves: a `BuildResult`: the image in its OCI layout and the build report
(also written as build-report.json next to the layout). No layout is written when Lambda's rules fail.

Must not speak HTTP itself (bases.py goes through the registry client) nor import packager.cli or stacks/.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from handlers import contract
from packager import oci
from packager.config.spec import ModelSpec
from packager.errors import BuildError
from packager.fsutil import write_atomic
from packager.image import bases, checks, contents, deps, layers
from packager.image import pins as pins_mod

if TYPE_CHECKING:  # the export stage imports numpy and onnx; build() imports it when it runs
    from packager.export.pipeline import OnnxArtifact

REPORT_FILE = "build-report.json"
REPORT_FORMAT = "mlpack.build/1"


@dataclass(frozen=True, kw_only=True)
class LayerRow:
    name: str  # base | deps | handler | model
    digest: str
    size: int
    uncompressed_size: int | None
    created_by: str

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "digest": self.digest, "size": self.size,
                "uncompressed_size": self.uncompressed_size, "created_by": self.created_by}


@dataclass(frozen=True, kw_only=True)
class BuildResult:
    image: oci.Image
    layout: Path
    report_path: Path
    report: dict[str, Any]
    rows: tuple[LayerRow, ...]
    exported: bool
    deps_cache_hit: bool
    warnings: tuple[str, ...]

    @property
    def digest(self) -> str:
        return self.image.manifest.digest


# ---------------------------------------------------------------------------------------------------
# executing the plan


def _compiled(plan: contents.LayerPlan, bytecode: contents.Bytecode, work: Path) -> list[layers.Entry]:
    """The plan's files staged in a folder and compiled there; the entries for that folder."""
    tree = work / f"{plan.name}-tree"
    root = PurePosixPath(bytecode.root.strip("/"))
    for e in plan.entries:
        if e.source is None:
            raise BuildError(f"layer entry {e.path}: only files on disk can be compiled")
        dest = tree / PurePosixPath(e.path).relative_to(root)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(e.source, dest)
        dest.chmod(e.mode)
    proc = deps.compile_bytecode(tree, bytecode.root, bytecode.interpreter)
    if proc.returncode != 0:
        raise BuildError(f"{bytecode.what}: compiling bytecode failed: {proc.stdout[-800:]}{proc.stderr[-800:]}",
                         hint=bytecode.hint)
    return layers.tree_entries(tree, bytecode.root)


def _write_layer(plan: contents.LayerPlan, work: Path) -> layers.Layer:
    """Write one planned layer as work/<name>.tar.gz."""
    entries = list(plan.entries) if plan.bytecode is None else _compiled(plan, plan.bytecode, work)
    return layers.write_layer(entries, work / f"{plan.name}.tar.gz", name=plan.name, created_by=plan.created_by,
                              mtime=plan.mtime)


# ---------------------------------------------------------------------------------------------------
# config, manifest and report


def _env(base: bases.Base, serving: dict[str, str] | None = None) -> list[str]:
    """The image's environment: the base's, then what the handler needs to find its model, then `serving`
    (the project's API settings: the batch limit, the model's name), so that running the image alone
    (`mlpack serve DIR/build/<name>/image`) behaves as its stack and its project do; the stack sets the
    same variables on the function."""
    env: dict[str, str] = {}
    for item in base.image.config_json.get("config", {}).get("Env") or []:
        k, _, v = str(item).partition("=")
        env[k] = v
    env.setdefault("LAMBDA_TASK_ROOT", contract.TASK_ROOT)
    env.setdefault(contract.ENV_MODEL_DIR, contract.MODEL_DIR)
    env.update(serving or {})
    if not base.runtime_client:
        # the runtime client and the dependencies live in the task root, as on AWS's base
        env["PYTHONPATH"] = contract.TASK_ROOT + (":" + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        env.setdefault("LANG", "C.UTF-8")
    return [f"{k}={v}" for k, v in env.items()]


def compose(base: bases.Base, base_layers: tuple[oci.Descriptor, ...], ours: list[layers.Layer], *, arch: str,
            mtime: int, labels: dict[str, str], serving: dict[str, str] | None = None) -> tuple[bytes, bytes]:
    """The config and manifest bytes for the base (its layers as the plan lists them) + our layers."""
    created = layers.iso_utc(mtime)
    base_cfg = base.image.config_json
    inner = dict(base_cfg.get("config") or {})
    inner["Env"] = _env(base, serving)
    inner["WorkingDir"] = contract.TASK_ROOT
    if base.runtime_client:
        inner["Entrypoint"] = inner.get("Entrypoint") or [bases.ENTRYPOINT_AWS]
    else:
        inner["Entrypoint"] = [base.python_exe, "-m", "awslambdaric"]
    inner["Cmd"] = [contract.HANDLER]
    inner["Labels"] = {**(inner.get("Labels") or {}), **labels}
    history = bases.history_for(base.image) + [
        {"created": created, "created_by": layer.created_by, "comment": "mlpack"} for layer in ours
    ]
    config = {
        "architecture": oci.OCI_ARCH[arch],
        "os": "linux",
        "created": created,
        "config": inner,
        "rootfs": {"type": "layers", "diff_ids": [*base.image.diff_ids, *(layer.diff_id for layer in ours)]},
        "history": history,
    }
    if arch == "arm64":
        config["variant"] = "v8"
    config_bytes = oci.canonical_json(config)
    manifest = {
        "schemaVersion": 2,
        "mediaType": oci.MT_OCI_MANIFEST,
        "config": {"mediaType": oci.MT_OCI_CONFIG, "digest": oci.sha256_bytes(config_bytes),
                   "size": len(config_bytes)},
        "layers": [d.to_json() for d in base_layers] + [layer.descriptor().to_json() for layer in ours],
    }
    return config_bytes, oci.canonical_json(manifest)


def read_report(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("format") == REPORT_FORMAT else None


# ---------------------------------------------------------------------------------------------------
# the stage


def _replace(layout: Path, staged: Path) -> None:
    """Move the staged layout into place; an older layout there is removed once the new one is in."""
    if layout.exists():
        old = layout.with_name(f".{layout.name}.old-{os.getpid()}")
        os.replace(layout, old)
        os.replace(staged, layout)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staged, layout)


def _write_image(layout: Path, base: bases.Base, plan: contents.ImagePlan, dep: deps.DepsResult, *,
                 arch: str, mtime: int, labels: dict[str, str], ref_name: str,
                 serving: dict[str, str] | None = None) -> tuple[oci.Image, list[layers.Layer], bytes, list[str]]:
    """Write our layers, compose and check the image, and put its layout at `layout`.

    Returns the image (read back from `layout`), our layers, the config bytes and the warnings."""
    layout.parent.mkdir(parents=True, exist_ok=True)
    # what killed builds left here: their staging folders and old layouts (a live build's are kept)
    for prefix in (f".{layout.name}.tmp-", f".{layout.name}.old-"):
        deps.remove_stale(layout.parent, prefix)
    tmp = deps.pid_tempdir(layout.parent, f".{layout.name}.tmp-")
    try:
        work = tmp / "work"
        work.mkdir()
        ours = [dep.layer, _write_layer(plan.handler, work), _write_layer(plan.model, work)]
        config_bytes, manifest_bytes = compose(base, plan.base_layers, ours, arch=arch, mtime=mtime, labels=labels,
                                               serving=serving)

        problems, warnings = checks.lambda_problems(
            json.loads(manifest_bytes), json.loads(config_bytes),
            [*base.uncompressed_sizes, *(layer.uncompressed_size for layer in ours)])
        if problems:
            raise BuildError("the image breaks Lambda's rules:\n  " + "\n  ".join(problems),
                             hint="nothing was written; fix the base or the inputs")
        staged = tmp / "image"
        blobs = [*plan.base_blobs, *((layer.digest, layer.path) for layer in ours)]
        image = oci.write_layout(staged, manifest_bytes=manifest_bytes, media_type=oci.MT_OCI_MANIFEST, arch=arch,
                                 blobs=blobs, config_bytes=config_bytes, ref_name=ref_name)
        _replace(layout, staged)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    image = dataclasses.replace(image, layout=layout)  # write_layout read it back before the rename
    return image, ours, config_bytes, warnings


def _rows(base: bases.Base, ours: list[layers.Layer]) -> list[LayerRow]:
    base_rows = zip(base.image.layers, base.uncompressed_sizes, _base_history(base), strict=True)
    rows = [LayerRow(name="base", digest=d.digest, size=d.size, uncompressed_size=u, created_by=h)
            for d, u, h in base_rows]
    rows += [LayerRow(name=layer.name, digest=layer.digest, size=layer.size,
                      uncompressed_size=layer.uncompressed_size, created_by=layer.created_by) for layer in ours]
    return rows


def _report(spec: ModelSpec, artifact: OnnxArtifact, image: oci.Image, *, layout: Path, arch: str,
            base: bases.Base, pinned: dict[str, str], dep: deps.DepsResult, rows: list[LayerRow],
            config_size: int, warnings: list[str]) -> dict[str, Any]:
    """The build report (REPORT_FORMAT): what was built from what; the next build reads its pins."""
    return {
        "format": REPORT_FORMAT,
        "model": {"name": spec.name, "version": artifact.version, "sha256": artifact.model_sha256},
        "image": {"digest": image.manifest.digest, "layout": str(layout), "media_type": oci.MT_OCI_MANIFEST,
                  "size": sum(r.size for r in rows) + config_size},
        "arch": arch,
        "python": base.python,
        "base": {"spec": base.spec, "source": base.source, "digest": base.digest, "python": base.python,
                 "runtime_client": "base" if base.runtime_client else "awslambdaric (dependency layer)"},
        "base_pins": {**pinned, **({base.pin_key: base.digest} if base.pin_key else {})},
        "dependencies": dep.report(),
        "layers": [r.to_json() for r in rows],
        "warnings": warnings,
    }


def build(spec: ModelSpec, *, out: Path | None = None, pull: bool = False,
          log: Callable[[str], None] = lambda s: None) -> BuildResult:
    """Build the Lambda image for a resolved spec (runtime.arch/base/python already applied)."""
    from packager.export import pipeline as export_mod

    arch = spec.runtime.arch
    if arch not in oci.OCI_ARCH:
        raise BuildError(f"runtime.arch: unknown architecture {arch!r}", hint="use x86_64 or arm64")
    layout = (out or spec.default_build_dir() / "image").resolve()
    report_path = layout.parent / REPORT_FILE
    previous = read_report(report_path)
    mtime = layers.source_date_epoch()

    exported = export_mod.export(spec)
    artifact = exported.artifact
    pinned = dict((previous or {}).get("base_pins", {})) if previous and previous.get("arch") == arch else {}
    pin_file = pins_mod.find(spec.project_dir)  # the repository's committed pins win over the last build's
    pin = pins_mod.read(pin_file).get(pins_mod.key(spec.runtime.base, arch)) if pin_file else None
    base = bases.resolve(spec.runtime.base, arch=arch, python=spec.runtime.python, pinned=pinned, pull=pull, log=log,
                         pin=pin)
    labels = {oci.LABEL_TITLE: spec.name, oci.LABEL_VERSION: artifact.version,
              oci.LABEL_MODEL_SHA256: artifact.model_sha256}
    serving = {contract.ENV_MAX_BATCH: str(spec.api.max_batch_size), contract.ENV_MODEL_NAME: spec.name}
    # bytecode for the dependency and handler layers: a host interpreter of the base's python, else the
    # base's own interpreter run isolated on its root file system
    with deps.bytecode_compiler(base.python, image=base.image, python_exe=base.python_exe, arch=arch,
                                log=log) as compiler:
        plan = contents.plan(base, artifact, arch=arch, mtime=mtime, compiler=compiler)
        dep = deps.dependency_layer(list(plan.deps.requirements), plan.deps.target,
                                    previous_report=report_path if previous else None, compiler=compiler, log=log)
        image, ours, config_bytes, warnings = _write_image(layout, base, plan, dep, arch=arch, mtime=mtime,
                                                           labels=labels, ref_name=artifact.version,
                                                           serving=serving)
    rows = _rows(base, ours)
    report = _report(spec, artifact, image, layout=layout, arch=arch, base=base, pinned=pinned, dep=dep, rows=rows,
                     config_size=len(config_bytes), warnings=warnings)
    write_atomic(report_path, (json.dumps(report, indent=2, sort_keys=True) + "\n").encode())
    return BuildResult(image=image, layout=layout, report_path=report_path, report=report, rows=tuple(rows),
                       exported=not exported.skipped, deps_cache_hit=dep.cache_hit, warnings=tuple(warnings))


def _base_history(base: bases.Base) -> list[str]:
    hist = [h for h in bases.history_for(base.image) if not h.get("empty_layer")]
    return [str(h.get("created_by", ""))[:200] for h in hist]
