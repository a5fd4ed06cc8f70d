"""mlpack.toml: raw TOML -> validated -> resolved ModelSpec, in one place.

The schema is the frozen dataclasses below; each field's metadata carries its documentation and
its constraints, so validation, `mlpack init` and docs/PROJECT.md all come from the same source.
Every problem is reported at once with its dotted path. Unknown keys are errors.

Longer than most modules on purpose: about half of it is that declarative schema (one documented
field per mlpack.toml key), and splitting the schema from the validator that walks it would put the
two halves of every key's rules in different files.

Must not import export, image, registry or anything that touches the network.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from handlers.names import ModelNames
from packager.errors import SpecError

SPEC_FILE = "mlpack.toml"

NAME_RE = re.compile(r"^[a-z](?:[a-z0-9-]{0,38}[a-z0-9])?$")
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
FACTORY_RE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
PYTHONS = ("3.11", "3.12", "3.13")
ARCHES = ("x86_64", "arm64")
MODEL_SUFFIXES = (".onnx", ".joblib", ".pkl", ".pickle", ".pt2")
SAMPLE_SUFFIXES = (".npy", ".npz", ".csv")

Arch = Literal["x86_64", "arm64"]
Auth = Literal["api_key", "iam", "none"]
Task = Literal["auto", "classification", "regression"]
ChatKind = Literal["slack", "teams", "webhook"]
Strategy = Literal["all_at_once", "canary", "linear"]


def _f(doc: str, default: Any = dataclasses.MISSING, **rules: Any) -> Any:
    """A schema field: documentation plus rules (choices, min, max, pattern, check)."""
    meta = {"doc": doc, **rules}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


def _is_model_source(value: str) -> str | None:
    if FACTORY_RE.match(value) or value.lower().endswith(MODEL_SUFFIXES):
        return None
    return f"must be a file ending in {', '.join(MODEL_SUFFIXES)} or a module:function factory"


def _is_sample_source(value: str) -> str | None:
    if FACTORY_RE.match(value) or value.lower().endswith(SAMPLE_SUFFIXES):
        return None
    return f"must be a file ending in {', '.join(SAMPLE_SUFFIXES)} or a module:function factory"


def _is_email(value: str) -> str | None:
    return None if EMAIL_RE.match(value) else "must be an email address like ana@example.com"


def _is_version(value: str) -> str | None:
    ok = re.match(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$", value)
    return None if ok else "must be 1-64 characters of letters, digits, '.', '_' or '-' (it becomes an image tag)"


def _is_repository(value: str) -> str | None:
    """REGISTRY/REPO without a tag or digest: the tag is chosen per image by `mlpack push`."""
    if "/" not in value or "@" in value or ":" in value.rsplit("/", 1)[1]:
        return (f"must be REGISTRY/REPO without a tag or digest (got {value!r}): each push tags the image "
                "<version>-<digest>; to name a tag once, use `mlpack push --to REGISTRY/REPO:TAG`")
    return None


BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
PREFIX_RE = re.compile(r"^[A-Za-z0-9!_.*'()/-]*$")


def _is_bucket(value: str) -> str | None:
    if BUCKET_RE.match(value) and ".." not in value:
        return None
    return "must be an S3 bucket name (3-63 lower-case letters, digits, dots and dashes; no s3://, no prefix)"


def _is_prefix(value: str) -> str | None:
    if value.startswith("/") or not PREFIX_RE.match(value) or (value and not value.endswith("/")):
        return "must be a key prefix like 'scoring/in/' (ending in /, not starting with /, no wildcards)"
    return None


def _is_webhook_ref(value: str) -> str | None:
    if value.startswith(("ssm:", "secretsmanager:")) and len(value.split(":", 1)[1]) > 0:
        return None
    return (
        "must name where the webhook URL is kept, as ssm:/path/to/parameter or secretsmanager:secret-name "
        "(never the URL itself: it would end up in the CloudFormation template)"
    )


@dataclass(frozen=True, kw_only=True)
class ModelSection:
    name: str = _f(
        "Model name: lowercase letters, digits and '-', starting with a letter, at most 40 characters. "
        "It names the stack (mlpack-<name>), the ECR repository and the alarms.",
        pattern=NAME_RE,
        pattern_hint="lowercase letters, digits and '-', starting with a letter, at most 40 characters",
    )
    owners: list[str] = _f(
        "Owners' email addresses. Alarm notifications go to them.", min_items=1, each=_is_email
    )
    source: str = _f(
        "The trained model: a file relative to the project (.onnx, .joblib/.pkl/.pickle for scikit-learn "
        "estimators and pipelines, HistGradientBoosting, XGBoost and LightGBM models included, "
        ".pt2 for a saved torch.export ExportedProgram) or a module:function factory in the project "
        "folder that returns a scikit-learn estimator, a torch.nn.Module, an ExportedProgram or an ONNX "
        "ModelProto.",
        check=_is_model_source,
    )
    version: str | None = _f(
        "Model version; the image tag is <version>-<first 12 hex of the image digest>. Default: derived "
        "from the model's content hash.",
        None,
        check=_is_version,
    )
    description: str = _f("One line about the model, shown in /health and the OpenAPI document.", "")
    task: Task = _f(
        "classification or regression. auto: from the estimator (scikit-learn) or the samples; "
        "PyTorch and ONNX models with one float output of width > 1 count as classifiers.",
        "auto",
    )
    feature_names: list[str] = _f(
        "Names of the input columns, for single-input models. Default: from a CSV header, else f0..fN.", []
    )
    label_names: list[str] = _f(
        "Names of the classes, in the order of the model's probability columns. Default: the estimator's "
        "classes_, else the class indices.",
        [],
    )


@dataclass(frozen=True, kw_only=True)
class SamplesSection:
    source: str = _f(
        "Sample inputs used to check parity and to profile the training data: .npy (one input), .npz (one "
        "array per model input, by input name), .csv with a header (one input), or a module:function "
        "factory returning an array or a dict of arrays.",
        check=_is_sample_source,
    )
    max_rows: int = _f("At most this many rows are used for parity and the profile.", 10000, min=1)


@dataclass(frozen=True, kw_only=True)
class ExportSection:
    opset: int | None = _f("ONNX opset to target. Default: the converter's choice.", None, min=9, max=23)
    rtol: float = _f("Relative tolerance of the parity check for float outputs.", 1e-4, min=0.0)
    atol: float = _f("Absolute tolerance of the parity check for float outputs.", 1e-5, min=0.0)


@dataclass(frozen=True, kw_only=True)
class RuntimeSection:
    python: str | None = _f(
        "Python version in the image. For the aws base it picks the base's tag (default 3.12); other bases "
        "decide it themselves, and an explicit value they cannot satisfy is an error.",
        None,
        choices=PYTHONS,
    )
    arch: Arch = _f("CPU architecture of the image and the function.", "x86_64", choices=ARCHES)
    memory_mb: int = _f("Lambda memory in MB; CPU grows with it (1769 MB is one vCPU).", 1024, min=128, max=10240)
    timeout_s: int = _f(
        "Lambda timeout in seconds. API Gateway's REST integration gives up after 29 s.", 29, min=1, max=900
    )
    base: str = _f(
        "Base image: aws (AWS's Lambda Python base), debian (built from Debian packages), a registry "
        "reference (host/repo:tag or @sha256:...), oci:PATH (an OCI layout) or docker-archive:PATH.",
        "aws",
    )
    reserved_concurrency: int | None = _f(
        "Reserved concurrency for the function. Default: an equal share of what the app's concurrency budget "
        "(context mlpack:concurrency_budget, default half the account's) leaves after the explicit "
        "reservations and the notifier's; see docs/DEPLOYING.md.",
        None,
        min=0,
        max=10000,
    )
    provisioned_concurrency: int = _f(
        "Provisioned concurrency on the live alias (0 = none).", 0, min=0, max=10000
    )
    log_retention_days: int = _f(
        "CloudWatch Logs retention for the function's logs.",
        30,
        choices=(1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557,
                 2922, 3288, 3653),
    )


@dataclass(frozen=True, kw_only=True)
class ApiSection:
    auth: Auth = _f("api_key (a usage plan and key), iam (SigV4) or none.", "api_key")
    public: bool = _f(
        "Confirms that the endpoint is public: anyone who finds its URL can call it. Required (true) with "
        "api.auth = 'none', which is refused without it; only allowed with api.auth = 'none'.",
        False,
    )
    max_batch_size: int = _f("Largest batch a request may carry; larger ones get a 413.", 256, min=1, max=100000)
    throttle_rate: float = _f("Steady-state requests per second allowed by API Gateway.", 50.0, min=0.0)
    throttle_burst: int = _f("Burst of requests allowed by API Gateway.", 100, min=0)
    quota_per_day: int | None = _f("Requests per day per API key (api_key auth only). Default: no quota.", None, min=1)


@dataclass(frozen=True, kw_only=True)
class MonitoringSection:
    capture_rate: float = _f(
        "Share of answered requests the handler captures for drift monitoring: one JSON line per sampled request "
        "in the function's log group (docs/MONITORING.md; at 1% about 0.2 cents per million requests). 0 turns "
        "capture off.",
        0.01,
        min=0.0,
        max=1.0,
    )
    capture_exclude: list[str] = _f(
        "Input features (or outputs: 'prediction') never captured, for privacy: their drift is not measured.", [])
    accuracy_min: float | None = _f(
        "Classifiers: alarm when the realised accuracy of predictions joined with /feedback labels falls below "
        "this (0-1; unset = off).", None, min=0.0, max=1.0)
    mae_max: float | None = _f(
        "Regressors: alarm when the mean absolute error against /feedback values rises above this (unset = off).",
        None, min=0.0)


@dataclass(frozen=True, kw_only=True)
class AlarmsSection:
    period_minutes: int = _f(
        "Length of one evaluation period (every alarm but errors and api-5xx, which watch 1-minute periods, "
        "and traffic-drop).", 5, choices=(1, 5, 10, 15, 30, 60)
    )
    evaluation_periods: int = _f(
        "Periods that must breach before an alarm fires (the alarms alarms.period_minutes applies to).", 3,
        min=1, max=100
    )
    error_rate_pct: float = _f("Function errors as a share of invocations.", 1.0, min=0.0, max=100.0)
    throttles: int = _f("Throttled invocations per period.", 1, min=0)
    duration_p99_pct_of_timeout: float = _f("p99 duration as a share of the timeout.", 80.0, min=1.0, max=100.0)
    concurrency_pct: float = _f(
        "Concurrent executions as a share of the reserved (or account) limit.", 80.0, min=1.0, max=100.0
    )
    api_5xx_rate_pct: float = _f("API 5XX responses as a share of requests.", 1.0, min=0.0, max=100.0)
    api_4xx_rate_pct: float = _f("API 4XX responses as a share of requests.", 10.0, min=0.0, max=100.0)
    api_latency_p99_ms: int = _f("API Gateway p99 latency.", 3000, min=1)
    validation_failure_rate_pct: float = _f(
        "Requests refused by the handler's validation, as a share of requests.", 5.0, min=0.0, max=100.0
    )
    out_of_range_rate_pct: float = _f(
        "Input values outside the training profile's 1%-99% range, as a share of values.", 5.0, min=0.0,
        max=100.0,
    )
    unseen_category_rate_pct: float = _f(
        "String-column values of a category not seen in training, as a share of the string values "
        "checked (models fitted on a DataFrame with string columns).", 5.0, min=0.0, max=100.0,
    )
    drift: float = _f(
        "Prediction drift threshold: for classifiers the largest absolute change of a class share "
        "(0-1); for regressors the shift of the mean in training standard deviations.",
        0.2,
        min=0.0,
    )
    outage_datapoints: int = _f(
        "The errors and api-5xx alarms watch 1-minute periods: they fire when this many of the last "
        "alarms.outage_window_minutes minutes breach (so a total outage pages within this many minutes).",
        3,
        min=1,
        max=60,
    )
    outage_window_minutes: int = _f(
        "The 1-minute periods the errors and api-5xx alarms look back over (see alarms.outage_datapoints).",
        5,
        min=1,
        max=60,
    )
    traffic_min_requests: int = _f(
        "Traffic floor: the traffic-drop alarm fires when the API receives fewer requests than this in "
        "alarms.traffic_window_minutes (no requests at all included). 0 = no traffic-drop alarm.",
        0,
        min=0,
    )
    traffic_window_minutes: int = _f(
        "The window the traffic floor (alarms.traffic_min_requests) is counted over.",
        15,
        choices=(5, 10, 15, 30, 60),
    )


@dataclass(frozen=True, kw_only=True)
class ChatTarget:
    kind: ChatKind = _f("slack, teams or webhook (generic JSON POST).")
    webhook: str = _f(
        "Where the webhook URL is kept, in the model's own namespace: ssm:/mlpack/<model name>/NAME (an SSM "
        "parameter) or secretsmanager:mlpack/<model name>/NAME (a secret). Read at run time by the shared "
        "notifier, which may read nothing else.",
        check=_is_webhook_ref,
    )


@dataclass(frozen=True, kw_only=True)
class NotificationsSection:
    email: bool = _f("Subscribe the owners' emails to the model's SNS topic.", True)
    ok_actions: bool = _f("Also notify when an alarm returns to OK.", True)
    chat: list[ChatTarget] = _f("Chat targets for alarm messages ([[notifications.chat]] tables).", [])


@dataclass(frozen=True, kw_only=True)
class DeploySection:
    strategy: Strategy = _f(
        "How a new version reaches traffic: all_at_once, or canary/linear through CodeDeploy with "
        "automatic rollback when the model's alarms fire.",
        "all_at_once",
    )
    percent: int = _f("Traffic shifted per step (canary/linear).", 10, min=1, max=99)
    interval_minutes: int = _f("Minutes between steps (canary/linear).", 5, min=1, max=60)


@dataclass(frozen=True, kw_only=True)
class RegistrySection:
    repository: str | None = _f(
        "Where `mlpack push` sends the image: REGISTRY/REPO. Default: ECR of the current AWS account and "
        "region, repository mlpack/<name>.",
        None,
        check=_is_repository,
    )


@dataclass(frozen=True, kw_only=True)
class BatchSection:
    enabled: bool = _f(
        "Add a batch-scoring state machine (Step Functions Distributed Map over S3, `mlpack batch`) to the "
        "model's stack; it invokes the same function's live alias.",
        False,
    )
    rows_per_invocation: int = _f(
        "Rows per function invocation (the Distributed Map's ItemBatcher). Checked at synth against a child "
        "execution's 256 KB input and the function's timeout (docs/BATCH.md).",
        1000,
        min=1,
        max=100000,
    )
    max_concurrency: int = _f(
        "Invocations at once (the Map's MaxConcurrency); must fit inside the function's reserved concurrency, "
        "leaving room for the API.",
        5,
        min=1,
        max=10000,
    )
    tolerated_failure_pct: float = _f(
        "Share of failed invocations (batches) a run tolerates before it fails (ToleratedFailurePercentage). "
        "Bad rows are not failures: each is answered with its own error.",
        0.0,
        min=0.0,
        max=100.0,
    )
    input_bucket: str | None = _f("The S3 bucket the input files are read from (required when enabled).", None,
                                  check=_is_bucket)
    input_prefix: str = _f("Only objects under this prefix may be read ('' = the whole bucket).", "",
                           check=_is_prefix)
    output_bucket: str | None = _f("The S3 bucket results are written to (required when enabled).", None,
                                   check=_is_bucket)
    output_prefix: str = _f("Results are written under this prefix.", "mlpack-batch/", check=_is_prefix)
    key_columns: list[str] = _f(
        "Input columns copied to the output next to the predictions and never fed to the model "
        "(a customer id, say).",
        [],
    )


@dataclass(frozen=True, kw_only=True)
class InputRule:
    missing: bool | None = _f(
        "Whether the input (a DataFrame column) accepts missing values: JSON null becomes NaN (numbers) or "
        "the pipeline's missing marker (strings). Default: decided at export, by whether the model "
        "answers rows with the column missing; true is an error when it does not.",
        None,
    )
    min: float | None = _f(
        "Smallest value a request may send for this input; below it is a 422. For an integer input "
        "that feeds an embedding table the exporter can see, the default is 0.",
        None,
    )
    max: float | None = _f(
        "Largest value a request may send for this input; above it is a 422. For an integer input "
        "that feeds an embedding table the exporter can see, the default is its size - 1.",
        None,
    )


SECTIONS: dict[str, type] = {
    "model": ModelSection,
    "samples": SamplesSection,
    "export": ExportSection,
    "runtime": RuntimeSection,
    "api": ApiSection,
    "alarms": AlarmsSection,
    "notifications": NotificationsSection,
    "deploy": DeploySection,
    "registry": RegistrySection,
    "batch": BatchSection,
    "monitoring": MonitoringSection,
}
REQUIRED_SECTIONS = ("model", "samples")
# tables whose keys the project names: [inputs.<input or column>] holds an InputRule, [outputs] maps an
# output's name in the exported graph to the name requests and responses use
MAP_SECTIONS = ("inputs", "outputs")
OUTPUT_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True, kw_only=True)
class ModelSpec:
    """A validated, resolved model project. Paths are absolute."""

    project_dir: Path
    model: ModelSection
    samples: SamplesSection
    export: ExportSection = field(default_factory=ExportSection)
    runtime: RuntimeSection = field(default_factory=RuntimeSection)
    api: ApiSection = field(default_factory=ApiSection)
    alarms: AlarmsSection = field(default_factory=AlarmsSection)
    notifications: NotificationsSection = field(default_factory=NotificationsSection)
    deploy: DeploySection = field(default_factory=DeploySection)
    registry: RegistrySection = field(default_factory=RegistrySection)
    batch: BatchSection = field(default_factory=BatchSection)
    monitoring: MonitoringSection = field(default_factory=MonitoringSection)
    inputs: Mapping[str, InputRule] = field(default_factory=dict)  # by input (column) name
    outputs: Mapping[str, str] = field(default_factory=dict)  # exported output name -> served name

    @property
    def name(self) -> str:
        return self.model.name

    @property
    def spec_path(self) -> Path:
        return self.project_dir / SPEC_FILE

    @property
    def stack_name(self) -> str:
        return ModelNames(self.model.name).stack

    def source_path(self) -> Path | None:
        """The model file, or None when the source is a module:function factory."""
        return None if is_factory(self.model.source) else self.project_dir / self.model.source

    def samples_path(self) -> Path | None:
        return None if is_factory(self.samples.source) else self.project_dir / self.samples.source

    def default_build_dir(self) -> Path:
        return self.project_dir / "build" / self.model.name


def is_factory(ref: str) -> bool:
    return bool(FACTORY_RE.match(ref)) and not ref.lower().endswith(MODEL_SUFFIXES + SAMPLE_SUFFIXES)


# ---------------------------------------------------------------------------------------------------
# validation


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (types.UnionType, typing.Union):
        return " or ".join(_type_name(a) for a in typing.get_args(tp) if a is not type(None))
    if origin is list:
        return f"list of {_type_name(typing.get_args(tp)[0])}"
    if dataclasses.is_dataclass(tp):
        return "table"
    return {str: "string", int: "integer", float: "number", bool: "true/false"}.get(tp, str(tp))


def _a(noun: str) -> str:
    return f"an {noun}" if noun[:1] in "aeiou" else f"a {noun}"


def _show(value: Any) -> str:
    return repr(value) if isinstance(value, str) else str(value).lower() if isinstance(value, bool) else str(value)


def _convert(tp: Any, value: Any, path: str, meta: Mapping[str, Any], problems: list[str]) -> Any:
    """Check one value against its declared type and rules; returns it converted, or None on a problem."""
    origin = typing.get_origin(tp)
    if origin in (types.UnionType, typing.Union):
        inner = next(a for a in typing.get_args(tp) if a is not type(None))
        return _convert(inner, value, path, meta, problems)
    if origin is Literal:
        allowed = typing.get_args(tp)
        if value not in allowed:
            problems.append(f"{path}: must be one of {', '.join(map(repr, allowed))} (got {_show(value)})")
            return None
        return value
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if not isinstance(value, list):
            problems.append(f"{path}: must be {_a(_type_name(tp))} (got {_show(value)})")
            return None
        if len(value) < meta.get("min_items", 0):
            problems.append(f"{path}: must list at least {meta['min_items']} item(s)")
        out = []
        for i, item in enumerate(value):
            item_meta = {"check": meta["each"]} if "each" in meta else {}
            out.append(_convert(item_tp, item, f"{path}[{i}]", item_meta, problems))
        return out
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            problems.append(f"{path}: must be a table (got {_show(value)})")
            return None
        return _build(tp, value, path, problems)
    ok = (
        (tp is bool and isinstance(value, bool))
        or (tp is int and isinstance(value, int) and not isinstance(value, bool))
        or (tp is float and isinstance(value, int | float) and not isinstance(value, bool))
        or (tp is str and isinstance(value, str))
    )
    if not ok:
        problems.append(f"{path}: must be {_a(_type_name(tp))} (got {_show(value)})")
        return None
    if tp is float:
        value = float(value)
    before = len(problems)
    if "choices" in meta and value not in meta["choices"]:
        problems.append(f"{path}: must be one of {', '.join(_show(c) for c in meta['choices'])} (got {_show(value)})")
    if "min" in meta and "max" in meta and not meta["min"] <= value <= meta["max"]:
        problems.append(f"{path}: must be {meta['min']}-{meta['max']} (got {_show(value)})")
    elif "min" in meta and "max" not in meta and value < meta["min"]:
        problems.append(f"{path}: must be at least {meta['min']} (got {_show(value)})")
    if "pattern" in meta and not meta["pattern"].match(value):
        problems.append(f"{path}: must be {meta['pattern_hint']} (got {_show(value)})")
    if "check" in meta and (why := meta["check"](value)):
        problems.append(f"{path}: {why} (got {_show(value)})")
    return value if len(problems) == before else None


def _build(cls: Any, raw: Mapping[str, Any], path: str, problems: list[str]) -> Any:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in sorted(set(raw) - set(fields)):
        problems.append(f"{path}.{key}: unknown key; allowed: {', '.join(sorted(fields))}")
    values: dict[str, Any] = {}
    for name, f in fields.items():
        if name not in raw:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                problems.append(f"{path}.{name}: required ({_type_name(hints[name])}); {f.metadata['doc']}")
            continue
        values[name] = _convert(hints[name], raw[name], f"{path}.{name}", f.metadata, problems)
    try:
        return cls(**values)
    except TypeError:  # a required field was missing; already reported
        return None


def _cross_checks(spec: ModelSpec, problems: list[str], *, files: bool = True) -> None:
    """Rules that involve more than one field or the file system (files=False: not the model's source and
    samples, which a deploy from a clean checkout does not have: weights and data are not committed)."""
    _field_checks(spec, problems)
    if files:
        _file_checks(spec, problems)


def _file_checks(spec: ModelSpec, problems: list[str]) -> None:
    src = spec.source_path()
    if src is not None and not src.is_file():
        problems.append(f"model.source: file not found: {src} (paths are relative to the project folder)")
    samples = spec.samples_path()
    if samples is not None and not samples.is_file():
        problems.append(f"samples.source: file not found: {samples} (paths are relative to the project folder)")
    for ref, key in ((spec.model.source, "model.source"), (spec.samples.source, "samples.source")):
        if is_factory(ref):
            module = ref.split(":", 1)[0]
            mod_file = spec.project_dir / (module.replace(".", "/") + ".py")
            pkg_file = spec.project_dir / module.replace(".", "/") / "__init__.py"
            if not mod_file.is_file() and not pkg_file.is_file():
                problems.append(f"{key}: module {module!r} not found in {spec.project_dir} (expected {mod_file.name})")


def _field_checks(spec: ModelSpec, problems: list[str]) -> None:
    if spec.api.quota_per_day is not None and spec.api.auth != "api_key":
        problems.append(f"api.quota_per_day: needs api.auth = 'api_key' (got {spec.api.auth!r})")
    if len(set(spec.model.label_names)) != len(spec.model.label_names):
        problems.append("model.label_names: names must be unique")
    if len(set(spec.model.feature_names)) != len(spec.model.feature_names):
        problems.append("model.feature_names: names must be unique")
    rc, pc = spec.runtime.reserved_concurrency, spec.runtime.provisioned_concurrency
    if rc is not None and pc > rc:
        problems.append(f"runtime.provisioned_concurrency: must not exceed runtime.reserved_concurrency ({pc} > {rc})")
    if spec.api.auth == "none" and not spec.api.public:
        problems.append("api.public: api.auth = 'none' lets anyone on the internet call the endpoint; confirm with "
                        "api.public = true, or choose api.auth = 'api_key' or 'iam'")
    if spec.api.public and spec.api.auth != "none":
        problems.append(f"api.public: true only goes with api.auth = 'none' (got api.auth = {spec.api.auth!r}); "
                        "remove api.public")
    a = spec.alarms
    if a.outage_datapoints > a.outage_window_minutes:
        problems.append(f"alarms.outage_datapoints: must not exceed alarms.outage_window_minutes "
                        f"({a.outage_datapoints} > {a.outage_window_minutes})")
    b = spec.batch
    if b.enabled:
        for key in ("input_bucket", "output_bucket"):
            if getattr(b, key) is None:
                problems.append(f"batch.{key}: required when batch.enabled = true")
        if (b.input_bucket, b.input_prefix) == (b.output_bucket, b.output_prefix) and b.input_bucket:
            problems.append("batch.output_prefix: must differ from batch.input_prefix in the same bucket (results "
                            "would be read back as input)")
        rc = spec.runtime.reserved_concurrency
        if rc is not None and b.max_concurrency > rc:
            problems.append(f"batch.max_concurrency: must not exceed runtime.reserved_concurrency "
                            f"({b.max_concurrency} > {rc})")
    if len(set(b.key_columns)) != len(b.key_columns):
        problems.append("batch.key_columns: names must be unique")
    for i, target in enumerate(spec.notifications.chat):
        if why := webhook_outside_namespace(target.webhook, spec.name):
            problems.append(f"notifications.chat[{i}].webhook: {why} (got {target.webhook!r})")


WEBHOOK_NAME_RE = re.compile(r"^[A-Za-z0-9_.\-/]+$")


def webhook_namespace(model: str) -> tuple[str, str]:
    """The references a model's chat targets may use: (ssm prefix, secretsmanager prefix). The same in every
    environment (one mlpack.toml serves them all); the shared notifier's role may read nothing else."""
    return f"ssm:/{ModelNames(model).chat_namespace}/", f"secretsmanager:{ModelNames(model).chat_namespace}/"


def webhook_outside_namespace(ref: str, model: str) -> str | None:
    """Why a webhook reference is refused: outside the model's own namespace (/mlpack/<model>/... in SSM,
    mlpack/<model>/... in Secrets Manager), an ARN, wildcards or odd characters, or the model's chat
    parameter itself. None when it is fine."""
    ssm_prefix, secret_prefix = webhook_namespace(model)
    where = ref.split(":", 1)[1] if ":" in ref else ""
    must = f"must be under the model's own namespace, {ssm_prefix}NAME or {secret_prefix}NAME"
    if not ref.startswith((ssm_prefix, secret_prefix)) or len(ref) in (len(ssm_prefix), len(secret_prefix)):
        return must + " (the shared notifier may read nothing else)"
    if not WEBHOOK_NAME_RE.match(where) or "//" in where or where.endswith("/") or "/../" in f"{where}/":
        return must + ", NAME made of letters, digits and _ . - / (no wildcards, no ARN)"
    if ref == f"ssm:{ModelNames(model).chat_parameter}":
        return "must not be the model's chat parameter, which mlpack writes (the list of targets)"
    return None


def parse(raw: Mapping[str, Any], project_dir: Path, origin: str = SPEC_FILE, *, files: bool = True) -> ModelSpec:
    """Validate a raw TOML mapping. Raises SpecError listing every problem. files=False skips the checks
    that the model's source and samples exist (what deploying needs is in the deploy record)."""
    problems: list[str] = []
    allowed = sorted([*SECTIONS, *MAP_SECTIONS])
    for key in sorted(set(raw) - set(SECTIONS) - set(MAP_SECTIONS)):
        problems.append(f"{key}: unknown section; allowed: {', '.join(allowed)}")
    sections: dict[str, Any] = {}
    for name, cls in SECTIONS.items():
        value = raw.get(name)
        if value is None:
            if name in REQUIRED_SECTIONS:
                problems.append(f"{name}: required section [{name}] is missing")
            continue
        if not isinstance(value, dict):
            problems.append(f"{name}: must be a table [{name}] (got {_show(value)})")
            continue
        sections[name] = _build(cls, value, name, problems)
    sections.update(_map_sections(raw, problems))
    if problems or any(v is None for v in sections.values()):
        raise SpecError(origin, problems)
    spec = ModelSpec(project_dir=project_dir.resolve(), **sections)
    _cross_checks(spec, problems, files=files)
    if problems:
        raise SpecError(origin, problems)
    return spec


def _map_sections(raw: Mapping[str, Any], problems: list[str]) -> dict[str, Any]:
    """[inputs.<name>] tables and the [outputs] renames, validated like the other sections."""
    out: dict[str, Any] = {}
    inputs = raw.get("inputs")
    if inputs is not None:
        if not isinstance(inputs, dict):
            problems.append(f"inputs: must be a table of [inputs.<name>] tables (got {_show(inputs)})")
        else:
            rules: dict[str, InputRule] = {}
            for name, table in inputs.items():
                if not isinstance(table, dict):
                    problems.append(f"inputs.{name}: must be a table like [inputs.{name}] (got {_show(table)})")
                    continue
                rule = _build(InputRule, table, f"inputs.{name}", problems)
                if rule is not None and rule.min is not None and rule.max is not None and rule.min > rule.max:
                    problems.append(f"inputs.{name}: min must not exceed max ({rule.min:g} > {rule.max:g})")
                if rule is not None:
                    rules[name] = rule
            out["inputs"] = rules
    outputs = raw.get("outputs")
    if outputs is not None:
        if not isinstance(outputs, dict):
            problems.append(f"outputs: must be a table of renames like `variable = \"price\"` (got {_show(outputs)})")
        else:
            renames: dict[str, str] = {}
            for old, new in outputs.items():
                if not isinstance(new, str) or not OUTPUT_NAME_RE.match(new):
                    problems.append(f"outputs.{old}: must be a name of letters, digits, '_', '.' or '-', starting "
                                    f"with a letter or '_' (got {_show(new)})")
                    continue
                renames[old] = new
            taken = [n for n in renames.values() if list(renames.values()).count(n) > 1]
            if taken:
                problems.append(f"outputs: two outputs renamed to {taken[0]!r}; names must be unique")
            out["outputs"] = renames
    return out


def load(project_dir: Path | str, *, files: bool = True) -> ModelSpec:
    """Read and validate DIR/mlpack.toml (files=False: see `parse`)."""
    project_dir = Path(project_dir)
    path = project_dir / SPEC_FILE if project_dir.is_dir() or not project_dir.suffix else project_dir
    if path.name == SPEC_FILE:
        project_dir = path.parent
    if not path.is_file():
        raise SpecError(str(path), [f"no {SPEC_FILE} here; create one with `mlpack init {project_dir}`"])
    return parse(read_toml(path), project_dir, str(path), files=files)


def read_toml(path: Path) -> dict[str, Any]:
    """A TOML file's table; SpecError naming the file when it cannot be read or is not TOML."""
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise SpecError(str(path), [f"cannot read: {e}"]) from e
    except tomllib.TOMLDecodeError as e:
        raise SpecError(str(path), [f"not valid TOML: {e}"]) from e


# ---------------------------------------------------------------------------------------------------
# resolution: the one place where flag > environment > file > default is applied

ENV_OVERRIDES = {
    "runtime.arch": "MLPACK_ARCH",
    "runtime.base": "MLPACK_BASE",
    "runtime.python": "MLPACK_PYTHON",
    "registry.repository": "MLPACK_REGISTRY",
}


def resolve(spec: ModelSpec, flags: Mapping[str, Any] | None = None,
            environ: Mapping[str, str] | None = None, *, files: bool = True) -> ModelSpec:
    """Apply overrides: a flag (dotted key -> value, None = not given) beats an MLPACK_* environment
    variable, which beats the file, which beats the default. Overrides are validated like the file."""
    env = os.environ if environ is None else environ
    changes: dict[str, Any] = {}
    for key, var in ENV_OVERRIDES.items():
        if env.get(var):
            changes[key] = env[var]
    for key, value in (flags or {}).items():
        if value is not None:
            changes[key] = value
    if not changes:
        return spec
    raw = to_raw(spec)
    for key, value in changes.items():
        section, name = key.split(".", 1)
        raw.setdefault(section, {})[name] = value
    return parse(raw, spec.project_dir, f"{spec.spec_path} (with overrides {', '.join(sorted(changes))})",
                 files=files)


def to_raw(spec: ModelSpec) -> dict[str, Any]:
    """The spec as a TOML-shaped mapping (None values left out)."""

    def strip(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: strip(x) for k, x in v.items() if x is not None}
        if isinstance(v, list):
            return [strip(x) for x in v]
        return v

    raw = {name: strip(dataclasses.asdict(getattr(spec, name))) for name in SECTIONS}
    if spec.inputs:
        raw["inputs"] = {k: strip(dataclasses.asdict(v)) for k, v in spec.inputs.items()}
    if spec.outputs:
        raw["outputs"] = dict(spec.outputs)
    return raw


def schema_reference() -> list[tuple[str, str, str, str]]:
    """(dotted key, type, default, doc) for every key: the source of docs/PROJECT.md."""
    rows: list[tuple[str, str, str, str]] = []

    def walk(cls: Any, prefix: str) -> None:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            tp = hints[f.name]
            if f.default is not dataclasses.MISSING:
                default = "(none)" if f.default is None else _show(f.default)
            elif f.default_factory is not dataclasses.MISSING:
                default = str(f.default_factory())
            else:
                default = "required"
            doc = f.metadata["doc"]
            if "choices" in f.metadata:
                doc += " Allowed: " + ", ".join(_show(c) for c in f.metadata["choices"]) + "."
            if "min" in f.metadata and "max" in f.metadata:
                doc += f" Range: {f.metadata['min']}-{f.metadata['max']}."
            elif "min" in f.metadata:
                doc += f" At least {f.metadata['min']}."
            rows.append((f"{prefix}{f.name}", _type_name(tp), default, doc))
            args = typing.get_args(tp)
            if typing.get_origin(tp) is list and dataclasses.is_dataclass(args[0]):
                walk(args[0], f"{prefix}{f.name}[].")

    for name, cls in SECTIONS.items():
        walk(cls, f"{name}.")
    walk(InputRule, "inputs.<name>.")
    rows.append(("outputs.<name>", "string", "(none)",
                 "Serve the exported output <name> under this name instead (e.g. variable = \"price\"): in "
                 "responses, the OpenAPI document and v2 metadata. Renamed in the ONNX graph at export."))
    return rows
