"""model.json as typed data: the one reader and the one writer of the file `mlpack export` writes
(its format is documented in handlers/contract.py).

Enters: model.json's text or bytes (`loads`, `read`), or the JSON already parsed (`from_dict`, for a
reader with its own JSON decoder). Leaves: a `ModelJson` (immutable records, below), or
`ModelJsonError` naming the file and the field ("build/iris/model.json: signature.inputs[0].dtype:
missing"). The other way, `dumps` turns a `ModelJson` into the exact bytes export writes (keys sorted,
two-space indent, a trailing newline), `as_dict` into the JSON object, and `plain` any part of one
into its JSON value.

What a document must hold is what the handler needs to serve: format (exactly contract.MODEL_FORMAT),
name, and the signature's inputs and outputs (each a name, a dtype and a shape). Every other field may
be absent: it is None here and left out when written, so hand-made files and test models that omit
some still read. Each reader checks the optional fields it needs (the stacks: version and task). Two
exceptions to "absent is left out": the three members of `roles` are always written, null when None,
as export writes them; and collections are written whenever they are not None, empty ones included.
A field that is present must have its documented JSON type (a number where a number belongs, never a
bool); a null counts as absent. Keys this version does not know are ignored, and not written back.

`identity` reads only what `mlpack push` records (name, version, model_sha256), from any JSON object.

The records are `_Record` subclasses: frozen, keyword-only, compared by value, typed like dataclasses
(`dataclass_transform`), but made without @dataclass, which spends about half a millisecond per class
generating methods at import (some 7 ms for these), and model.json is read in the handler's cold start.

Standard library only: it ships inside the Lambda image with the rest of handlers/, and packager/ and
stacks/ import it too.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar, dataclass_transform

from handlers import contract

Scalar = str | int | float | bool  # a class value: whatever the label output holds
Reader = Callable[[Any, str], Any]  # (JSON value, field path) -> typed value; raises _Problem


class ModelJsonError(ValueError):
    """model.json is not a document this mlpack reads. `field` is the path to the bad field
    ("signature.inputs[0].dtype"; "" for the document as a whole), `problem` what is wrong with it
    ("missing", "expected a string, got int", ...)."""

    def __init__(self, origin: str, field: str, problem: str) -> None:
        super().__init__(f"{origin}: {field}: {problem}" if field else f"{origin}: {problem}")
        self.origin, self.field, self.problem = origin, field, problem

    @property
    def key(self) -> str:
        """The last name in `field`: for a missing field, the key the document lacks ("dtype")."""
        return self.field.rsplit(".", 1)[-1]


class _Problem(Exception):
    """Raised while reading, before the origin is known; from_dict turns it into ModelJsonError."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(path, problem)
        self.path, self.problem = path, problem


def _expected(what: str, value: Any, path: str) -> _Problem:
    names = {dict: "object", list: "list", bool: "bool", type(None): "null"}
    return _Problem(path, f"expected {what}, got {names.get(type(value), type(value).__name__)}")


# ---------------------------------------------------------------------------------------------------
# readers: each checks a JSON value's type and returns the typed value (lists become tuples)


class _Scalar:
    """Reads one JSON scalar of the given types. A number is kept as it was written (an int stays an
    int, so it is written back the same); a bool is never taken for a number."""

    __slots__ = ("types", "what")

    def __init__(self, what: str, *types: type) -> None:
        self.what, self.types = what, frozenset(types)

    def __call__(self, value: Any, path: str) -> Any:
        if isinstance(value, tuple(self.types)) and (bool in self.types or not isinstance(value, bool)):
            return value
        raise _expected(self.what, value, path)


_STR = _Scalar("a string", str)
_INT = _Scalar("an integer", int)
_FLOAT = _Scalar("a number", int, float)
_BOOL = _Scalar("true or false", bool)
_CLASS = _Scalar("a string, number or boolean", str, int, float, bool)
_DIM = _Scalar("an integer or a string", int, str)


def _json(value: Any, path: str) -> Any:
    return value


def _exact_types(item: Reader) -> frozenset[type]:
    """The types `item` takes as they are (checked with type(v) in ..., the fast path); none for others."""
    return item.types if isinstance(item, _Scalar) else frozenset()


def _list(item: Reader) -> Reader:
    fast = _exact_types(item)

    def read(value: Any, path: str) -> tuple[Any, ...]:
        if not isinstance(value, list):
            raise _expected("a list", value, path)
        if fast and all(type(v) in fast for v in value):
            return tuple(value)
        return tuple(item(v, f"{path}[{i}]") for i, v in enumerate(value))

    return read


def _map(item: Reader) -> Reader:
    def read(value: Any, path: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise _expected("an object", value, path)
        return {k: item(v, f"{path}[{k!r}]") for k, v in value.items()}

    return read


def _obj(cls: type[_Record]) -> Reader:
    def read(value: Any, path: str) -> Any:
        return _read_record(cls, value, path)

    return read


# ---------------------------------------------------------------------------------------------------
# records


class _Field:
    """A record field: how to read it, whether the document must have it, and whether None is written as
    null (else left out)."""

    __slots__ = ("fast", "null", "read", "required")

    def __init__(self, read: Reader, *, required: bool, null: bool) -> None:
        self.read, self.required, self.null = read, required, null
        self.fast = _exact_types(read)


def _field(read: Reader, *, default: None = ..., null: bool = False) -> Any:  # type: ignore[assignment]
    """A field read by `read`; required unless given default=None."""
    return _Field(read, required=default is ..., null=null)


@dataclass_transform(kw_only_default=True, frozen_default=True, field_specifiers=(_field,))
class _Record:
    """Base of the document's parts: keyword-only construction (an omitted optional field is None),
    immutable, equal when of the same class with equal fields."""

    _fields: ClassVar[tuple[tuple[str, _Field], ...]] = ()
    _blank: ClassVar[dict[str, None]] = {}  # every field None, in order: a new record's starting point

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._fields = cls._fields + tuple((k, v) for k, v in vars(cls).items() if isinstance(v, _Field))
        cls._blank = dict.fromkeys(name for name, _ in cls._fields)

    def __init__(self, **values: Any) -> None:
        unknown = sorted(values.keys() - self._blank.keys())
        missing = [name for name, f in self._fields if f.required and name not in values]
        if unknown or missing:
            raise TypeError(f"{type(self).__name__}(): unknown {unknown}, missing {missing}")
        self.__dict__.update(self._blank)
        self.__dict__.update(values)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable: cannot set {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable: cannot delete {name!r}")

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self.__dict__ == other.__dict__

    def __hash__(self) -> int:
        return hash(tuple(self.__dict__.values()))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.__dict__.items())})"


def _read_record(cls: type[_Record], value: Any, path: str) -> Any:
    """cls from a JSON object: a required field must be there; an optional one absent or null is None."""
    if not isinstance(value, dict):
        raise _expected("an object", value, path)
    values: dict[str, Any] = {}
    for name, f in cls._fields:
        raw = value.get(name)
        if type(raw) in f.fast:
            values[name] = raw
        elif raw is not None or (f.required and name in value):
            values[name] = f.read(raw, f"{path}.{name}" if path else name)
        elif f.required:
            raise _Problem(f"{path}.{name}" if path else name, "missing")
    record = object.__new__(cls)
    record.__dict__.update(cls._blank)
    record.__dict__.update(values)
    return record


# ---------------------------------------------------------------------------------------------------
# the document, innermost parts first


class Tensor(_Record):
    """One input or output: its name, numpy dtype name, and shape (the first dimension is "batch";
    other dynamic dimensions are strings, fixed ones integers)."""

    name: str = _field(_STR)
    dtype: str = _field(_STR)
    shape: tuple[int | str, ...] = _field(_list(_DIM))


class Signature(_Record):
    inputs: tuple[Tensor, ...] = _field(_list(_obj(Tensor)))
    outputs: tuple[Tensor, ...] = _field(_list(_obj(Tensor)))


class Roles(_Record):
    """Which output holds the labels and which the per-class scores (None: no such output)."""

    label: str | None = _field(_STR, default=None, null=True)
    scores: str | None = _field(_STR, default=None, null=True)
    scores_kind: str | None = _field(_STR, default=None, null=True)  # "probabilities" | "logits"


class Versions(_Record):
    mlpack: str | None = _field(_STR, default=None)
    onnx: str | None = _field(_STR, default=None)
    onnxruntime: str | None = _field(_STR, default=None)
    framework: str | None = _field(_STR, default=None)
    framework_version: str | None = _field(_STR, default=None)
    converter: str | None = _field(_STR, default=None)  # absent for ONNX sources: nothing was converted


class Source(_Record):
    kind: str | None = _field(_STR, default=None)  # "sklearn" | "torch" | "onnx"
    ref: str | None = _field(_STR, default=None)  # model.source as written in mlpack.toml
    sha256: str | None = _field(_STR, default=None)


class ReadFile(_Record):
    """A file the source or the samples read while they were loaded (a factory's weights, a CSV): its
    path (POSIX, relative to the project folder when inside it, else absolute) and its sha256 then."""

    path: str = _field(_STR)
    sha256: str = _field(_STR)


class Mismatch(_Record):
    """One of a failed parity check's worst rows (only in failed checks, which export never writes)."""

    row: int | None = _field(_INT, default=None)
    column: int | None = _field(_INT, default=None)  # close comparisons only
    expected: Any = _field(_json, default=None)
    got: Any = _field(_json, default=None)


class ParityCheck(_Record):
    output: str | None = _field(_STR, default=None)
    kind: str | None = _field(_STR, default=None)  # "exact" | "close" | "finite"
    rows: int | None = _field(_INT, default=None)
    passed: bool | None = _field(_BOOL, default=None)
    mismatches: int | None = _field(_INT, default=None)
    max_abs_err: float | None = _field(_FLOAT, default=None)  # close comparisons only
    summary: str | None = _field(_STR, default=None)
    worst: tuple[Mismatch, ...] | None = _field(_list(_obj(Mismatch)), default=None)


class Parity(_Record):
    passed: bool | None = _field(_BOOL, default=None)
    rows: int | None = _field(_INT, default=None)
    rtol: float | None = _field(_FLOAT, default=None)
    atol: float | None = _field(_FLOAT, default=None)
    checks: tuple[ParityCheck, ...] | None = _field(_list(_obj(ParityCheck)), default=None)


class Stats(_Record):
    min: float | None = _field(_FLOAT, default=None)
    max: float | None = _field(_FLOAT, default=None)
    mean: float | None = _field(_FLOAT, default=None)
    std: float | None = _field(_FLOAT, default=None)
    q01: float | None = _field(_FLOAT, default=None)
    q50: float | None = _field(_FLOAT, default=None)
    q99: float | None = _field(_FLOAT, default=None)


class FeatureProfile(Stats):
    """One input feature over the samples (finite values only; for a string column, the share of each
    category instead of the statistics)."""

    name: str | None = _field(_STR, default=None)
    count: int | None = _field(_INT, default=None)
    nan_share: float | None = _field(_FLOAT, default=None)
    categories: Mapping[str, float] | None = _field(_map(_FLOAT), default=None)  # string columns: value -> share


class OutputProfile(Stats):
    """One regression output column over the samples."""

    name: str | None = _field(_STR, default=None)


class ProfileOutputs(_Record):
    classes: Mapping[str, float] | None = _field(_map(_FLOAT), default=None)  # classifiers: label name -> share
    regression: tuple[OutputProfile, ...] | None = _field(_list(_obj(OutputProfile)), default=None)  # regressors


class Profile(_Record):
    rows: int | None = _field(_INT, default=None)
    # per input: one entry per feature (the input flattened)
    inputs: Mapping[str, tuple[FeatureProfile, ...]] | None = _field(_map(_list(_obj(FeatureProfile))), default=None)
    outputs: ProfileOutputs | None = _field(_obj(ProfileOutputs), default=None)


class ReferenceFeature(_Record):
    """One input feature or output in the drift reference (handlers/drift.py): numeric ones carry quantile
    bin edges and the samples' count per bin (len(edges) + 1 bins), categorical ones a count per category."""

    name: str = _field(_STR)
    kind: str = _field(_STR)  # "numeric" | "categorical"
    input: str | None = _field(_STR, default=None)  # the input tensor it comes from (inputs)
    output: str | None = _field(_STR, default=None)  # the output tensor it comes from (regressors' outputs)
    index: int | None = _field(_INT, default=None)  # its column in that tensor, flattened
    edges: tuple[float, ...] | None = _field(_list(_FLOAT), default=None)
    counts: tuple[int, ...] | None = _field(_list(_INT), default=None)
    categories: Mapping[str, int] | None = _field(_map(_INT), default=None)


class Reference(_Record):
    """The training samples' distributions, the drift monitor's baseline."""

    rows: int | None = _field(_INT, default=None)
    bins: int | None = _field(_INT, default=None)
    features: tuple[ReferenceFeature, ...] | None = _field(_list(_obj(ReferenceFeature)), default=None)
    outputs: tuple[ReferenceFeature, ...] | None = _field(_list(_obj(ReferenceFeature)), default=None)


class InputRules(_Record):
    """What a request may send for one input (a DataFrame column of a tabular model, or any input with a
    declared range), beyond its dtype and shape."""

    kind: str | None = _field(_STR, default=None)  # tabular: "number" | "integer" | "boolean" | "string"
    missing: bool | None = _field(_BOOL, default=None)  # null accepted (NaN, or "" for strings)
    categories: tuple[str, ...] | None = _field(_list(_STR), default=None)  # seen in training, sorted
    unseen: str | None = _field(_STR, default=None)  # a category not seen: "accept" (counted) | "refuse" (422)
    min: float | None = _field(_FLOAT, default=None)  # values below are a 422
    max: float | None = _field(_FLOAT, default=None)  # values above are a 422
    range_from: str | None = _field(_STR, default=None)  # "mlpack.toml" | "embedding": where min/max came from
    example: Scalar | None = _field(_CLASS, default=None)  # a value from the samples, for documentation


class ModelJson(_Record):
    """A model.json. Fields in the order export builds them; the file has its keys sorted."""

    name: str = _field(_STR)
    version: str | None = _field(_STR, default=None)
    description: str | None = _field(_STR, default=None)
    task: str | None = _field(_STR, default=None)  # "classification" | "regression"
    signature: Signature = _field(_obj(Signature))
    roles: Roles | None = _field(_obj(Roles), default=None)
    classes: tuple[Scalar, ...] | None = _field(_list(_CLASS), default=None)  # the label output's values
    label_names: tuple[str, ...] | None = _field(_list(_STR), default=None)  # one per score column
    feature_names: Mapping[str, tuple[str, ...]] | None = _field(_map(_list(_STR)), default=None)  # rank-2 inputs
    opset: int | None = _field(_INT, default=None)
    versions: Versions | None = _field(_obj(Versions), default=None)
    source: Source | None = _field(_obj(Source), default=None)
    model_sha256: str | None = _field(_STR, default=None)
    parity: Parity | None = _field(_obj(Parity), default=None)
    profile: Profile | None = _field(_obj(Profile), default=None)
    inputs_hash: str | None = _field(_STR, default=None)
    read_files: tuple[ReadFile, ...] | None = _field(_list(_obj(ReadFile)), default=None)  # sorted by path
    # a model trained on a DataFrame: one input per column, requests as records or columns
    tabular: bool | None = _field(_BOOL, default=None)
    input_rules: Mapping[str, InputRules] | None = _field(_map(_obj(InputRules)), default=None)  # by input
    reference: Reference | None = _field(_obj(Reference), default=None)  # drift baseline (handlers/drift.py)


class Identity(_Record):
    """What the push lock records about a model."""

    name: str = _field(_STR)
    version: str = _field(_STR)
    model_sha256: str = _field(_STR)


# ---------------------------------------------------------------------------------------------------
# reading


def from_dict(data: Any, origin: str) -> ModelJson:
    """The document in `data` (model.json parsed as JSON). origin: the file, for messages."""
    try:
        if isinstance(data, dict) and "format" not in data:
            raise _Problem("format", "missing")
        if isinstance(data, dict) and data["format"] != contract.MODEL_FORMAT:
            raise _Problem("format", f"expected {contract.MODEL_FORMAT!r}, got {data['format']!r}")
        document: ModelJson = _read_record(ModelJson, data, "")
        return document
    except _Problem as e:
        raise ModelJsonError(origin, e.path, e.problem) from None


def loads(text: str | bytes, origin: str) -> ModelJson:
    """The document in model.json's text (str, or UTF-8 bytes)."""
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise ModelJsonError(origin, "", f"not valid JSON: {e}") from e
    return from_dict(data, origin)


def read(path: Path) -> ModelJson:
    """The document in the file at path. OSError when it cannot be read."""
    return loads(path.read_bytes(), str(path))


def identity(data: Any, origin: str) -> Identity:
    """name, version and model_sha256 from a parsed model.json, each a non-empty string; nothing else in
    the document is looked at. ModelJsonError's field lists every one that is not, comma-separated."""
    values = data if isinstance(data, dict) else {}
    keys = ("name", "version", "model_sha256")
    bad = [k for k in keys if not isinstance(values.get(k), str) or not values[k]]
    if bad:
        raise ModelJsonError(origin, ", ".join(bad), "missing")
    return Identity(name=values["name"], version=values["version"], model_sha256=values["model_sha256"])


# ---------------------------------------------------------------------------------------------------
# writing


def plain(value: Any) -> Any:
    """A record, or any part of one, as the JSON value model.json holds for it."""
    if isinstance(value, _Record):
        return {name: plain(v) for name, f in value._fields
                if (v := value.__dict__[name]) is not None or f.null}
    if isinstance(value, tuple | list):
        return [plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: plain(v) for k, v in value.items()}
    return value


def as_dict(document: ModelJson) -> dict[str, Any]:
    """The document as the JSON object model.json holds (format first)."""
    out: dict[str, Any] = {"format": contract.MODEL_FORMAT, **plain(document)}
    return out


def dumps(document: ModelJson) -> bytes:
    """model.json's bytes: keys sorted, two-space indent, a trailing newline, no NaN or infinity
    (ValueError if a number is not finite)."""
    return (json.dumps(as_dict(document), indent=2, sort_keys=True, allow_nan=False) + "\n").encode()
