"""Compose a base and mlpack's layers into one Lambda image (an OCI layout on disk) and check Lambda's rules.

`build(spec, ...)` is the stage function behind `mlpack build`: export (when stale) -> base -> dependency,
handler and model layers -> config and manifest -> checks -> layout written to a temporary folder and renamed
into place -> build report next to it. `lambda_problems` holds Lambda's rules, shared with `mlpack check`.

Must not speak HTTP itself (bases.py goes through registry.py) nor import cmd_* or stacks/.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from handlers import contract
from packager import oci
from packager.config.spec import ModelSpec
from packager.errors import BuildError
from packager.fsutil import write_atomic
from packager.image import bases, deps, layers

MAX_UNCOMPRESSED = 10 * 1024**3  # Lambda's limit for a container image
WARN_UNCOMPRESSED = 5 * 1024**3
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


# ---------------------------------------------------------------------------------------------------
# Lambda's rules


def lambda_problems(manifest: dict[str, Any], config: dict[str, Any],
                    uncompressed_sizes: list[int] | None = None) -> tuple[list[str], list[str]]:
    """Lambda's rules on a manifest and its config. Returns (problems, warnings)."""
    problems: list[str] = []
    warnings: list[str] = []
    mt = manifest.get("mediaType")
    if mt in oci.INDEX_TYPES or "manifests" in manifest:
        problems.append("manifest: an image index; Lambda needs a single-architecture manifest")
        return problems, warnings
    if mt not in oci.MANIFEST_TYPES:
        problems.append(f"manifest: media type {mt!r} is not an OCI or Docker v2 image manifest")
    if manifest.get("schemaVersion") != 2:
        problems.append(f"manifest: schemaVersion must be 2 (got {manifest.get('schemaVersion')!r})")
    layer_list = manifest.get("layers") or []
    if not layer_list:
        problems.append("manifest: no layers")
    for i, layer in enumerate(layer_list):
        if layer.get("mediaType") not in oci.GZIP_LAYER_TYPES:
            problems.append(f"manifest: layer {i} has media type {layer.get('mediaType')!r}; Lambda needs gzip layers")
    arch = config.get("architecture")
    if arch not in oci.LAMBDA_ARCH:
        problems.append(f"config: architecture {arch!r}; Lambda runs amd64 (x86_64) or arm64")
    if config.get("os") != "linux":
        problems.append(f"config: os {config.get('os')!r}; Lambda runs linux")
    rootfs = config.get("rootfs") or {}
    if rootfs.get("type") != "layers":
        problems.append("config: rootfs.type must be 'layers'")
    if len(rootfs.get("diff_ids") or []) != len(layer_list):
        problems.append(f"config: rootfs.diff_ids lists {len(rootfs.get('diff_ids') or [])} layers, the manifest "
                        f"{len(layer_list)}")
    cfg = config.get("config") or {}
    if not (cfg.get("Entrypoint") or cfg.get("Cmd")):
        problems.append("config: neither Entrypoint nor Cmd is set; Lambda would not know what to run")
    if not cfg.get("WorkingDir"):
        problems.append("config: WorkingDir is not set")
    if uncompressed_sizes is not None:
        total = sum(uncompressed_sizes)
        if total > MAX_UNCOMPRESSED:
            problems.append(f"image: {total / 1e9:.2f} GB uncompressed; Lambda's limit is 10 GB")
        elif total > WARN_UNCOMPRESSED:
            warnings.append(f"image: {total / 1e9:.2f} GB uncompressed, more than half of Lambda's 10 GB limit")
    return problems, warnings


@dataclass(frozen=True, kw_only=True)
class CheckResult:
    image: oci.Image
    problems: tuple[str, ...]
    warnings: tuple[str, ...]
    stats: tuple[oci.LayerStats, ...]


def check(layout: Path, *, arch: str | None = None) -> CheckResult:
    """Re-verify a layout: blobs against digests and sizes, diff_ids, tar normalisation, Lambda's rules."""
    index = layout / "index.json"
    if index.is_file():
        try:
            doc = json.loads(index.read_bytes())
        except ValueError:
            doc = {}
        if len(doc.get("manifests", [])) > 1 and arch is None:
            raise BuildError(f"{index}: {len(doc['manifests'])} images; Lambda takes one architecture",
                             hint="pass --arch to check one of them")
    image = oci.read_layout(layout, arch=arch)
    problems, stats = oci.verify(image)
    lp, warns = lambda_problems(json.loads(image.manifest_bytes), image.config_json,
                                [s.uncompressed_size for s in stats])
    return CheckResult(image=image, problems=tuple(problems + lp), warnings=tuple(warns), stats=tuple(stats))


# ---------------------------------------------------------------------------------------------------
# the stage


def _handler_layer(work: Path, interpreter: str | None, mtime: int) -> layers.Layer:
    src = handlers_dir()
    tree = work / "handlers-tree"
    for p in handler_files(src):
        dest = tree / p.relative_to(src)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(p, dest)
    if interpreter is not None:
        proc = deps.compile_bytecode(tree, f"{contract.TASK_ROOT}/handlers", interpreter)
        if proc.returncode != 0:
            raise BuildError(f"handler code: compiling bytecode failed: {proc.stdout[-800:]}{proc.stderr[-800:]}",
                             hint="fix the syntax error in the handlers package")
    entries = layers.tree_entries(tree, f"{contract.TASK_ROOT}/handlers")
    return layers.write_layer(entries, work / "handler.tar.gz", name="handler",
                              created_by="mlpack: handler code (handlers package)", mtime=mtime)


def _model_layer(work: Path, model_path: Path, json_path: Path, version: str, mtime: int) -> layers.Layer:
    model_dir = contract.MODEL_DIR.strip("/")
    entries = [layers.Entry(path=f"{model_dir}/{contract.MODEL_FILE}", kind="file", source=model_path),
               layers.Entry(path=f"{model_dir}/{contract.MODEL_JSON}", kind="file", source=json_path)]
    return layers.write_layer(entries, work / "model.tar.gz", name="model",
                              created_by=f"mlpack: model {version}", mtime=mtime)


def _env(base: bases.Base) -> list[str]:
    env: dict[str, str] = {}
    for item in base.image.config_json.get("config", {}).get("Env") or []:
        k, _, v = str(item).partition("=")
        env[k] = v
    env.setdefault("LAMBDA_TASK_ROOT", contract.TASK_ROOT)
    env.setdefault(contract.ENV_MODEL_DIR, contract.MODEL_DIR)
    if not base.runtime_client:
        # the runtime client and the dependencies live in the task root, as on AWS's base
        env["PYTHONPATH"] = contract.TASK_ROOT + (":" + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        env.setdefault("LANG", "C.UTF-8")
    return [f"{k}={v}" for k, v in env.items()]


def compose(base: bases.Base, ours: list[layers.Layer], *, arch: str, mtime: int,
            labels: dict[str, str]) -> tuple[bytes, bytes]:
    """The config and manifest bytes for base + our layers."""
    created = layers.iso_utc(mtime)
    base_cfg = base.image.config_json
    inner = dict(base_cfg.get("config") or {})
    inner["Env"] = _env(base)
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
    base_layers = [oci.Descriptor(media_type=oci.MT_OCI_LAYER_GZIP if d.media_type in oci.GZIP_LAYER_TYPES
                                  else d.media_type, digest=d.digest, size=d.size) for d in base.image.layers]
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
    base = bases.resolve(spec.runtime.base, arch=arch, python=spec.runtime.python, pinned=pinned, pull=pull, log=log)
    reqs = deps.read_requirements(handlers_dir() / "requirements.txt")
    if not base.runtime_client and not any(r.split("=")[0].split("<")[0].split(">")[0].strip().lower()
                                           == "awslambdaric" for r in reqs):
        reqs.append("awslambdaric")
    target = deps.Target(python=base.python, arch=arch)
    dep = deps.dependency_layer(reqs, target, previous_report=report_path if previous else None, log=log)

    layout.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{layout.name}.tmp-", dir=layout.parent))
    try:
        work = tmp / "work"
        work.mkdir()
        interpreter = deps.find_interpreter(base.python)
        handler = _handler_layer(work, interpreter, mtime)
        model = _model_layer(work, artifact.model_path, artifact.json_path, artifact.version, mtime)
        ours = [dep.layer, handler, model]
        labels = {oci.LABEL_TITLE: spec.name, oci.LABEL_VERSION: artifact.version,
                  oci.LABEL_MODEL_SHA256: artifact.model_sha256}
        config_bytes, manifest_bytes = compose(base, ours, arch=arch, mtime=mtime, labels=labels)

        problems, warnings = lambda_problems(json.loads(manifest_bytes), json.loads(config_bytes),
                                             [*base.uncompressed_sizes, *(layer.uncompressed_size for layer in ours)])
        if problems:
            raise BuildError("the image breaks Lambda's rules:\n  " + "\n  ".join(problems),
                             hint="nothing was written; fix the base or the inputs")
        staged = tmp / "image"
        blobs = bases.layer_paths(base) + [(layer.digest, layer.path) for layer in ours]
        image = oci.write_layout(staged, manifest_bytes=manifest_bytes, media_type=oci.MT_OCI_MANIFEST, arch=arch,
                                 blobs=blobs, config_bytes=config_bytes, ref_name=artifact.version)
        if layout.exists():
            old = layout.with_name(f".{layout.name}.old-{os.getpid()}")
            os.replace(layout, old)
            os.replace(staged, layout)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(staged, layout)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    image = dataclasses.replace(image, layout=layout)  # write_layout read it back before the rename

    base_rows = zip(base.image.layers, base.uncompressed_sizes, _base_history(base), strict=True)
    rows = [LayerRow(name="base", digest=d.digest, size=d.size, uncompressed_size=u, created_by=h)
            for d, u, h in base_rows]
    rows += [LayerRow(name=layer.name, digest=layer.digest, size=layer.size,
                      uncompressed_size=layer.uncompressed_size, created_by=layer.created_by) for layer in ours]
    report = {
        "format": REPORT_FORMAT,
        "model": {"name": spec.name, "version": artifact.version, "sha256": artifact.model_sha256},
        "image": {"digest": image.manifest.digest, "layout": str(layout), "media_type": oci.MT_OCI_MANIFEST,
                  "size": sum(r.size for r in rows) + len(config_bytes)},
        "arch": arch,
        "python": base.python,
        "base": {"spec": base.spec, "source": base.source, "digest": base.digest, "python": base.python,
                 "runtime_client": "base" if base.runtime_client else "awslambdaric (dependency layer)"},
        "base_pins": {**pinned, **({base.pin_key: base.digest} if base.pin_key else {})},
        "dependencies": dep.report(),
        "layers": [r.to_json() for r in rows],
        "warnings": warnings,
    }
    write_atomic(report_path, (json.dumps(report, indent=2, sort_keys=True) + "\n").encode())
    return BuildResult(image=image, layout=layout, report_path=report_path, report=report, rows=tuple(rows),
                       exported=not exported.skipped, deps_cache_hit=dep.cache_hit, warnings=tuple(warnings))


def _base_history(base: bases.Base) -> list[str]:
    hist = [h for h in bases.history_for(base.image) if not h.get("empty_layer")]
    return [str(h.get("created_by", ""))[:200] for h in hist]
