"""Requests to a tabular model (one trained on a DataFrame): records or columns -> one feed per column.

In: a `Model` whose model.json says `tabular`, and the decoded JSON of a /predict body, either records
({"instances": [{"city": "paris", "age": 41, "income": null}, ...]}) or columns ({"inputs": {"city":
[...], "age": [...]}}), or a v2 tensor's data for one column. Out: {column: (rows, 1) array} as export
built them for parity (strings as objects with "" for missing, everything else float32 with NaN for
missing, booleans as 0/1), and the counts the metrics need (`TableCounts`: categories not seen in
training, missing values, per column); or a RequestError naming the row and column at fault.

Each column is held to its rules from model.json's input_rules: its kind (a number, an integer, true or
false, a string), whether null is accepted, the range mlpack.toml declares, and whether a category never
seen in training is answered (counted) or refused.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from handlers import contract as C
from handlers import model_json
from handlers.inference.types import RequestError
from handlers.inference.validate import _bad, _jtype

MISSING_STRING = ""  # a missing string, as the exported graph expects it

Where = Callable[[int], str]  # row index -> the path of that row's cell in the request


class Column:
    """One column's rules, worked out at load."""

    __slots__ = ("categories", "hi", "kind", "lo", "missing", "name", "refuse_unseen", "v2_type")

    def __init__(self, name: str, rules: model_json.InputRules | None, dtype_kind: str) -> None:
        rules = rules or model_json.InputRules()
        self.name = name
        self.kind: str = rules.kind or ("string" if dtype_kind in "OU" else "number")
        self.missing = bool(rules.missing)
        self.categories: frozenset[str] | None = (frozenset(rules.categories) if rules.categories is not None
                                                  else None)
        self.refuse_unseen = rules.unseen == "refuse"
        self.lo = float(rules.min) if rules.min is not None else -math.inf
        self.hi = float(rules.max) if rules.max is not None else math.inf
        self.v2_type = {"string": "BYTES", "boolean": "BOOL", "integer": "INT64"}.get(self.kind, "FP32")

    def describe(self) -> str:
        return {"string": "a string", "boolean": "true or false", "integer": "an integer"}.get(self.kind, "a number")


class TableCounts:
    """What a tabular request's values tell the metrics: string values checked against the training
    categories, those unseen in training and null values accepted, per column."""

    __slots__ = ("categorical", "missing", "unseen")

    def __init__(self) -> None:
        self.categorical = 0
        self.unseen: dict[str, int] = {}
        self.missing: dict[str, int] = {}


def parse(model: Any, obj: dict[str, Any], counts: TableCounts) -> dict[str, np.ndarray]:
    """A /predict body's object (one key: "instances" or "inputs") -> the feeds."""
    if len(obj) != 1 or not ("instances" in obj or "inputs" in obj):
        extra = next((k for k in obj if k not in ("instances", "inputs")), None)
        raise RequestError(400, C.BAD_REQUEST, (f"unknown field {extra!r}; " if extra is not None else "") +
                           'send records {"instances": [{"<column>": value, ...}, ...]} or columns '
                           '{"inputs": {"<column>": [value, ...], ...}}', str(extra) if extra else "body")
    if "instances" in obj:
        return records(model, obj["instances"], counts)
    return columns(model, obj["inputs"], counts)


def records(model: Any, rows: Any, counts: TableCounts) -> dict[str, np.ndarray]:
    if not isinstance(rows, list):
        raise RequestError(400, C.BAD_REQUEST, f'"instances" must be a list of records (objects), got '
                           f"{_jtype(rows)}", "instances")
    _check_rows(model, len(rows), "instances")
    known = model.column_set
    for i, row in enumerate(rows):
        if type(row) is not dict:
            raise _bad(f"instances[{i}]", f"must be a record (an object of column: value), got {_jtype(row)}")
        if not row.keys() <= known:
            extra = next(k for k in row if k not in known)
            raise _bad(f"instances[{i}].{extra}", f"unknown column {extra!r}; the model's columns are "
                       f"{model.input_names_text}")
    feeds = {}
    for col in model.columns:
        name = col.name
        values = [row.get(name) for row in rows]  # an absent column is a null
        if not col.missing and None in values:
            i = values.index(None)
            if name not in rows[i]:
                raise _bad(f"instances[{i}].{name}", f"missing column {name!r} ({col.describe()}); it does not "
                           "accept missing values")
        feeds[name] = column_array(col, values, _record_cell(name), counts)
    return feeds


def columns(model: Any, given: Any, counts: TableCounts) -> dict[str, np.ndarray]:
    if not isinstance(given, dict):
        raise RequestError(400, C.BAD_REQUEST, f'"inputs" must be an object of columns ({{"<column>": [...]}}) '
                           f'or use records {{"instances": [...]}}, got {_jtype(given)}', "inputs")
    for name in given:
        if name not in model.column_set:
            raise _bad(f"inputs.{name}", f"unknown column {name!r}; the model's columns are "
                       f"{model.input_names_text}")
    n: int | None = None
    feeds = {}
    for col in model.columns:
        if col.name not in given:
            raise _bad(f"inputs.{col.name}", f"missing column {col.name!r} ({col.describe()} per row)")
        values = given[col.name]
        if not isinstance(values, list):
            raise _bad(f"inputs.{col.name}", f"must be a list with one value per row, got {_jtype(values)}")
        if n is None:
            n = len(values)
            _check_rows(model, n, f"inputs.{col.name}")
        elif len(values) != n:
            raise _bad(f"inputs.{col.name}", f"has {len(values)} values, but the other columns have {n}")
        feeds[col.name] = column_array(col, values, _column_cell(col.name), counts)
    return feeds


def _record_cell(name: str) -> Where:
    return lambda i: f"instances[{i}].{name}"


def _column_cell(name: str) -> Where:
    return lambda i: f"inputs.{name}[{i}]"


def _check_rows(model: Any, n: int, path: str) -> None:
    if n == 0:
        raise _bad(path, "is an empty batch; send at least one row")
    if n > model.max_batch:
        raise RequestError(413, C.TOO_LARGE, f"batch of {n} rows is over the maximum of {model.max_batch}; "
                           "split it into smaller requests", path)


def column_array(col: Column, values: list[Any], where: Where, counts: TableCounts) -> np.ndarray:
    """One column's values (one per row, as the client sent them) -> its (rows, 1) feed."""
    if col.kind == "string":
        return _strings(col, values, where, counts)
    return _numbers(col, values, where, counts)


def _strings(col: Column, values: list[Any], where: Where, counts: TableCounts) -> np.ndarray:
    out = values
    if not all(type(v) is str and v for v in values):
        out = []
        for i, v in enumerate(values):
            if v is None or v == MISSING_STRING:
                if not col.missing:
                    raise _bad(where(i), f"is {'null' if v is None else 'empty'}, but column {col.name!r} does not "
                               f"accept missing values; send {col.describe()}")
                counts.missing[col.name] = counts.missing.get(col.name, 0) + 1
                out.append(MISSING_STRING)
            elif type(v) is str:
                out.append(v)
            else:
                raise _bad(where(i), f"must be a string for column {col.name!r}, got {_jtype(v)}")
    cats = col.categories
    if cats is not None:
        present = [v for v in out if v]
        counts.categorical += len(present)
        unseen = [i for i, v in enumerate(out) if v and v not in cats]
        if unseen:
            if col.refuse_unseen:
                i = unseen[0]
                known = ", ".join(map(repr, sorted(cats)[:10])) + (", ..." if len(cats) > 10 else "")
                raise _bad(where(i), f"{out[i]!r} is not a category the model was trained on for column "
                           f"{col.name!r} (known: {known})")
            counts.unseen[col.name] = counts.unseen.get(col.name, 0) + len(unseen)
    return np.array(out, dtype=object).reshape(-1, 1)


def _numbers(col: Column, values: list[Any], where: Where, counts: TableCounts) -> np.ndarray:
    kind = col.kind
    if kind == "boolean":
        if not all(type(v) is bool for v in values):
            values = _nulls(col, values, where, counts, bool)
        floats = [math.nan if v is None else (1.0 if v else 0.0) for v in values]
        return np.array(floats, dtype=np.float32).reshape(-1, 1)
    if not all(type(v) is int or type(v) is float for v in values):
        values = _nulls(col, values, where, counts, None)
    if kind == "integer":
        for i, v in enumerate(values):
            if type(v) is float and not v.is_integer():
                raise _bad(where(i), f"must be an integer for column {col.name!r} (got {v!r})")
    try:
        arr = np.array([math.nan if v is None else v for v in values], dtype=np.float64)
    except OverflowError:  # an integer beyond a double
        i = next(i for i, v in enumerate(values) if type(v) is int and abs(v) > 2 ** 1023)
        raise _bad(where(i), f"is out of range for column {col.name!r} (got {values[i]})") from None
    if col.lo != -math.inf or col.hi != math.inf:
        with np.errstate(invalid="ignore"):
            out = (arr < col.lo) | (arr > col.hi)
        if out.any():
            i = int(np.flatnonzero(out)[0])
            raise _bad(where(i), f"must be {_range_text(col)} for column {col.name!r} (got {values[i]!r})")
    with np.errstate(over="ignore", invalid="ignore"):
        f32 = arr.astype(np.float32)
        over = np.isinf(f32) & np.isfinite(arr)
    if over.any():
        i = int(np.flatnonzero(over)[0])
        raise _bad(where(i), f"is out of range for float32, the model's type for column {col.name!r} "
                   f"(got {values[i]!r})")
    return f32.reshape(-1, 1)


def _nulls(col: Column, values: list[Any], where: Where, counts: TableCounts, only: type | None) -> list[Any]:
    """The values with every one checked: null allowed where the column accepts missing values (and
    counted), else the value's JSON type must fit the column."""
    for i, v in enumerate(values):
        if v is None:
            if not col.missing:
                raise _bad(where(i), f"is null, but column {col.name!r} does not accept missing values; send "
                           f"{col.describe()}")
            counts.missing[col.name] = counts.missing.get(col.name, 0) + 1
        elif only is bool:
            if type(v) is not bool:
                raise _bad(where(i), f"must be true or false for column {col.name!r}, got {_jtype(v)}")
        elif type(v) is bool or not isinstance(v, int | float):
            raise _bad(where(i), f"must be {col.describe()} for column {col.name!r}, got {_jtype(v)}")
    return values


def _range_text(col: Column) -> str:
    def num(x: float) -> str:
        return str(int(x)) if x.is_integer() else repr(x)

    if col.lo != -math.inf and col.hi != math.inf:
        return f"between {num(col.lo)} and {num(col.hi)}"
    return f"at least {num(col.lo)}" if col.lo != -math.inf else f"at most {num(col.hi)}"


def v2_column(col: Column, data: Any, shape: list[int], path: str, counts: TableCounts) -> np.ndarray:
    """A v2 tensor's data for one column (shape [n, 1] or [n]; flat or nested one value per row)."""
    if len(shape) not in (1, 2) or (len(shape) == 2 and shape[1] != 1):
        raise _bad(f"{path}.shape", f"must be [rows, 1] or [rows] for column {col.name!r}, got {shape}")
    if not isinstance(data, list):
        data = data.tolist() if isinstance(data, np.ndarray) else data
    if not isinstance(data, list):
        raise _bad(f"{path}.data", f"must be a list, got {_jtype(data)}")
    flat = [v[0] if type(v) is list and len(v) == 1 else v for v in data]
    if any(type(v) is list for v in flat):
        i = next(i for i, v in enumerate(flat) if type(v) is list)
        raise _bad(f"{path}.data[{i}]", f"must be one value per row for column {col.name!r}")
    if len(flat) != shape[0]:
        raise _bad(f"{path}.data", f"has {len(flat)} values but shape {shape} needs {shape[0]}")
    return column_array(col, flat, lambda i: f"{path}.data[{i}]", counts)
