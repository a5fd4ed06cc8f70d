"""`mlpack batch --local`: a file's rows scored through the function on this machine, batched as the
Distributed Map batches them in AWS.

Enters: an input file (CSV with a header, or JSON Lines), the rows per invocation, the key columns, and
one or more started `LocalFunction`s (packager/local/function.py; `prepare` makes their command: the
image isolated, or its task root under this machine's Python). Leaves: the output file (CSV or JSON
Lines, by its suffix): per input row, its key columns, then the model's outputs (a classifier's scores
one column per class: probabilities.<label>), and `error` for a row the model refused (its code,
message and path). Rows are read as Step Functions' ItemReader reads them (CSV values as text, JSON
Lines one value per line) and sent as ItemBatcher sends them ({"Items": [...], "BatchInput": {...}}),
so a file scored here is scored the same in AWS. Progress goes to a callback (rows done, rows in all).

Must not import export, registry, or anything that talks to AWS.
"""

from __future__ import annotations

import csv
import io
import json
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from handlers import contract
from packager.errors import MlpackError
from packager.local.function import LocalFunction

FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl"}


def file_format(path: Path, what: str) -> str:
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise MlpackError(f"{what} {path}: cannot tell its format from the name",
                          hint="name it .csv (with a header row) or .jsonl (one JSON object or row a line)")
    return fmt


def read_rows(path: Path) -> tuple[str, list[Any], list[str]]:
    """(format, rows, the CSV header or the first record's keys)."""
    fmt = file_format(path, "input")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as e:
        raise MlpackError(f"input {path}: cannot read it: {e.strerror}") from e
    if fmt == "csv":
        reader = csv.DictReader(io.StringIO(text, newline=""))
        rows: list[Any] = list(reader)
        return fmt, rows, list(reader.fieldnames or [])
    rows = []
    for n, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except ValueError as e:
                raise MlpackError(f"input {path}, line {n}: not JSON ({e})") from e
    first = next((r for r in rows if isinstance(r, dict)), None)
    return fmt, rows, list(first) if first else []


@dataclass
class BatchRun:
    """What a local run did: rows, rows answered with an error, invocations, failed invocations."""

    rows: int = 0
    row_errors: int = 0
    invocations: int = 0
    failed_invocations: list[str] = field(default_factory=list)


def batches(rows: list[Any], size: int) -> Iterator[tuple[int, list[Any]]]:
    for start in range(0, len(rows), size):
        yield start, rows[start:start + size]


def score_file(functions: list[LocalFunction], source: Path, out: Path, *, rows_per_invocation: int,
               key_columns: list[str], progress: Callable[[int, int], None] = lambda done, total: None) -> BatchRun:
    """Score every row of `source` into `out` through the functions (one batch at a time on each)."""
    fmt, rows, header = read_rows(source)
    out_fmt = file_format(out, "output")
    missing = [k for k in key_columns if k not in header] if fmt == "csv" else []
    if missing:
        raise MlpackError(f"input {source}: no column {missing[0]!r} (a key column); its columns: {', '.join(header)}")
    options = {"source": "csv" if fmt == "csv" else "json", "key_columns": list(key_columns)}
    answers: dict[int, tuple[list[Any], dict[str, Any] | None, str | None]] = {}
    run = BatchRun(rows=len(rows))
    lock = threading.Lock()
    done = [0]
    free = list(functions)
    free_lock = threading.Condition()

    def one(start: int, chunk: list[Any]) -> None:
        keys = [{k: r.get(k) for k in key_columns} if isinstance(r, dict) else {} for r in chunk]
        with free_lock:
            while not free:
                free_lock.wait()
            fn = free.pop()
        try:
            result = fn.invoke(json.dumps({contract.BATCH_ITEMS: chunk, contract.BATCH_INPUT: options}).encode())
        finally:
            with free_lock:
                free.append(fn)
                free_lock.notify()
        doc = result.json() if result.ok else None
        failure = None
        if doc is None or not isinstance(doc, dict) or "outputs" not in doc:
            failure = (f"rows {start}-{start + len(chunk) - 1}: {result.error_type or 'refused'}: "
                       f"{result.payload.decode('utf-8', 'replace')[:300]}")
        with lock:
            run.invocations += 1
            if failure is not None:
                run.failed_invocations.append(failure)
                answers[start] = (keys, None, failure)
            else:
                assert doc is not None
                run.row_errors += int(doc.get("errors") or 0)
                answers[start] = (keys, doc, None)
            done[0] += len(chunk)
            progress(done[0], len(rows))

    progress(0, len(rows))
    with ThreadPoolExecutor(max_workers=max(1, len(functions))) as pool:
        for f in [pool.submit(one, s, c) for s, c in batches(rows, rows_per_invocation)]:
            f.result()
    _write(out, out_fmt, answers, key_columns)
    return run


def _flat(name: str, value: Any, into: dict[str, Any]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            into[f"{name}.{k}"] = v
    elif isinstance(value, list):
        for i, v in enumerate(value):
            into[f"{name}[{i}]"] = v
    else:
        into[name] = value


def _records(answers: dict[int, tuple[list[Any], dict[str, Any] | None, str | None]],
             flat: bool) -> Iterator[dict[str, Any]]:
    for start in sorted(answers):
        keys, doc, failure = answers[start]
        if doc is None:
            for k in keys:
                yield {**k, "error": failure}
            continue
        errors = {e["row"]: e for e in doc.get("row_errors") or []}
        outputs: dict[str, list[Any]] = doc["outputs"]
        for i, k in enumerate(keys):
            rec: dict[str, Any] = dict(k)
            for name, values in outputs.items():
                if flat:
                    _flat(name, values[i], rec)
                else:
                    rec[name] = values[i]
            err = errors.get(i)
            rec["error"] = (f"{err['code']}: {err['message']} ({err['path']})" if flat else
                            {"code": err["code"], "message": err["message"], "path": err["path"]}) if err else None
            yield rec


def _write(out: Path, fmt: str, answers: dict[int, tuple[list[Any], dict[str, Any] | None, str | None]],
           key_columns: list[str]) -> None:
    from packager.fsutil import write_atomic

    buf = io.StringIO(newline="")
    if fmt == "csv":
        records = list(_records(answers, flat=True))
        columns: dict[str, None] = dict.fromkeys(key_columns)
        for r in records:
            for k in r:
                if k != "error":
                    columns.setdefault(k, None)
        writer = csv.DictWriter(buf, fieldnames=[*columns, "error"], extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for r in records:
            writer.writerow({k: "" if v is None else v for k, v in r.items()})
    else:
        for r in _records(answers, flat=False):
            buf.write(json.dumps(r) + "\n")
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out, buf.getvalue().encode())
