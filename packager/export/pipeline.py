"""Export stage: ModelSpec -> OnnxArtifact (model.onnx + model.json in the build folder).

Enters: a resolved ModelSpec and the output folder. Leaves: an `ExportResult`: the `OnnxArtifact`
(the folder, and model.json as a handlers.model_json document), whether the export was skipped
because nothing that determines it changed since the last one, and if not, why it was redone
("weights.pt changed since the last export").

The steps, in order: staleness.py (skip if model.json's inputs_hash is current, with the files that
export recorded hashed again), sources.py (load the model and the samples, recording the files they
read), parity.py (refuse NaN samples the model cannot take), convert.py (to ONNX, stable bytes, an
onnxruntime session), parity.py (run the samples), describe.py (task and roles),
parity.py (compare with the original; ParityError if it differs), describe.py (signature, names,
versions, profile), then both files are written atomically. Nothing is written unless every check
passed.

Must not import image, registry, stacks or handlers.predict.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from handlers import contract, model_json
from packager.config.spec import ModelSpec
from packager.errors import ParityError
from packager.export import convert, describe, parity, sources, staleness, tabular
from packager.fsutil import write_atomic


@dataclass(frozen=True, kw_only=True)
class OnnxArtifact:
    """An exported model: model.onnx and model.json (format in handlers/contract.py)."""

    out_dir: Path
    document: model_json.ModelJson  # model.json; always has a version and a model_sha256

    @property
    def model_path(self) -> Path:
        return self.out_dir / contract.MODEL_FILE

    @property
    def json_path(self) -> Path:
        return self.out_dir / contract.MODEL_JSON

    @property
    def metadata(self) -> dict[str, Any]:
        """model.json as its JSON object."""
        return model_json.as_dict(self.document)

    @property
    def version(self) -> str:
        version = self.document.version
        assert version is not None  # export and read_artifact make no artifact without one
        return version

    @property
    def model_sha256(self) -> str:
        digest = self.document.model_sha256
        assert digest is not None  # as for version
        return digest


@dataclass(frozen=True, kw_only=True)
class ExportResult:
    artifact: OnnxArtifact
    skipped: bool
    # why it was exported, "" when skipped: "forced", "no earlier export in <folder>", "<file> changed
    # since the last export", ...
    reason: str = ""


def export(spec: ModelSpec, out: Path | None = None, *, force: bool = False) -> ExportResult:
    """Export spec's model into `out` (default PROJECT/build/<name>), unless nothing changed."""
    out_dir = (out or spec.default_build_dir()).resolve()
    file_digests = staleness.file_digests(spec)
    current = None if force else read_artifact(out_dir)
    reason = "forced" if force else f"no earlier export in {out_dir}"
    if current is not None:
        reason = _stale_reason(spec, current.document, file_digests)
        if not reason:
            return ExportResult(artifact=current, skipped=True)

    with staleness.recording(spec) as recording:
        loaded = sources.load_source(spec)
        samples = sources.load_samples(spec, loaded)
    inputs_hash = staleness.inputs_hash(spec, file_digests, recording.files)
    parity.check_nan(loaded, samples)
    table = samples if isinstance(samples, tabular.Table) else None
    probe = tabular.probe(spec, loaded.obj, table) if table is not None else None
    proto, original = convert.to_onnx(spec, loaded, samples)
    convert.rename_outputs(spec, proto)
    convert.strip_unstable(proto)
    model_bytes = proto.SerializeToString(deterministic=True)
    session = convert.session(model_bytes)
    feeds = parity.sample_feeds(session, samples)
    got = parity.run_onnx(session, feeds)
    task, roles, classes, label_names = describe.task_and_roles(spec, loaded, session, got)
    if table is not None and probe is not None:
        # parity over the samples and the probe rows (columns missing, categories unseen) the model answered
        probe_feeds = parity.sample_feeds(session, tabular.Table(frame=probe.frame, columns=table.columns))
        report = parity.check(spec, loaded, original, probe_feeds, parity.run_onnx(session, probe_feeds), roles,
                              frame=probe.frame)
    else:
        report = parity.check(spec, loaded, original, feeds, got, roles)
    if not report["passed"]:
        raise ParityError(parity.failure_message(spec, report), hint=(
            "loosen [export] rtol/atol in mlpack.toml if the differences are acceptable for float32, "
            "or check the model for operations the converter handles differently"))
    model_sha = hashlib.sha256(model_bytes).hexdigest()
    metadata: dict[str, Any] = {
        "format": contract.MODEL_FORMAT,
        "name": spec.name,
        "version": spec.model.version or model_sha[:12],
        "description": spec.model.description,
        "task": task,
        "signature": describe.signature(session),
        "roles": roles,
        "classes": classes,
        "label_names": label_names,
        "feature_names": describe.feature_names(spec, session, samples),
        "opset": describe.opset(proto),
        "versions": describe.versions(loaded),
        "source": {"kind": loaded.kind, "ref": spec.model.source,
                   "sha256": staleness.source_sha256(spec, file_digests)},
        "model_sha256": model_sha,
        "parity": report,
        "profile": {},
        "inputs_hash": inputs_hash,
        "read_files": [{"path": f.path, "sha256": f.sha256} for f in recording.files],
    }
    metadata["profile"] = describe.profile(feeds, got, metadata)
    metadata["reference"] = describe.reference(feeds, got, metadata)
    metadata["input_rules"] = describe.input_rules(spec, proto, session, table, probe) or {}
    metadata["tabular"] = table is not None
    document = model_json.from_dict(metadata, str(out_dir / contract.MODEL_JSON))
    _write(out_dir, model_bytes, document)
    return ExportResult(artifact=OnnxArtifact(out_dir=out_dir, document=document), skipped=False, reason=reason)


def _stale_reason(spec: ModelSpec, previous: model_json.ModelJson, file_digests: dict[str, str]) -> str:
    """Why the export in `previous` is stale, or "" when it is current: its inputs_hash is computed again
    with the files it recorded as they are now."""
    reads, changes = staleness.recheck(spec, previous.read_files or ())
    if previous.inputs_hash == staleness.inputs_hash(spec, file_digests, reads):
        return ""
    if changes:
        more = f" (and {len(changes) - 3} more)" if len(changes) > 3 else ""
        return f"{', '.join(changes[:3])}{more} since the last export"
    try:
        source_changed = previous.source is None or previous.source.sha256 != staleness.source_sha256(
            spec, file_digests)
    except OSError:  # a factory's module is gone: loading says so
        source_changed = True
    if source_changed:
        return f"model.source ({spec.model.source}) changed since the last export"
    return ("the samples, the project's Python files, mlpack.toml or an installed converter changed "
            "since the last export")


def read_artifact(out_dir: Path) -> OnnxArtifact | None:
    """The artifact in out_dir if model.json (a document handlers.model_json reads, with a version) and
    model.onnx are both there and agree; else None."""
    meta_path, model_path = out_dir / contract.MODEL_JSON, out_dir / contract.MODEL_FILE
    try:
        document = model_json.read(meta_path)
        digest = hashlib.sha256(model_path.read_bytes()).hexdigest()
    except (OSError, model_json.ModelJsonError):
        return None
    if document.model_sha256 != digest or document.version is None:
        return None
    return OnnxArtifact(out_dir=out_dir, document=document)


def _write(out_dir: Path, model_bytes: bytes, document: model_json.ModelJson) -> None:
    """model.onnx first, model.json last: model.json names model.onnx's digest, so a reader never takes
    a mismatched pair for an export (read_artifact checks)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(out_dir / contract.MODEL_FILE, model_bytes)
    write_atomic(out_dir / contract.MODEL_JSON, model_json.dumps(document))
    os.utime(out_dir)
