"""Batch scoring benchmarks (issue 17; figures go to docs/BENCHMARKS.md).

    .venv/bin/python bench/bench_batch.py [--quick] [--runs 30] [--json]

1. The handler's batch path: a 1,000-row batch event in (what a Distributed Map's ItemBatcher sends),
   per-row answers out, metrics line written (to /dev/null): handlers.events.handle, against a bare
   `session.run` on the same 1,000 rows already as arrays. churn (examples/churn: a scikit-learn pipeline
   on 7 DataFrame columns, exported by mlpack) with the rows as CSV text (as ItemReader reads a CSV) and as
   JSON records; iris (4 numbers a row). Target: <= 1.5x. For scale, churn's batch path against the same
   1,000 records sent as one API request (a direct invoke of /predict).
2. `mlpack batch --local` throughput: 100,000 churn customers (20,000 with --quick) from a CSV file through
   the function under AWS's runtime client (the export folder as a task root under this Python; one
   function, 1,000 rows an invocation), reading, batching and writing the output CSV included. Rows/s.

Prints a table; nothing here is a test.
"""

from __future__ import annotations

import csv
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import ROOT, Row, at_most, cli, parser, samples

sys.path.insert(0, str(ROOT))
from handlers import contract as C
from handlers import events, metrics
from handlers.inference import load_model

TARGET = 1.5
BATCH = 1000


def _median_us(fn: Any, runs: int) -> float:
    fn()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e6)
    return statistics.median(times)


def _churn(work: Path, rows: int) -> tuple[Path, Any, Path]:
    """(export folder, the customers frame, a CSV of `rows` customers)."""
    from packager.config import spec as spec_mod
    from packager.export.pipeline import export
    from tests.support.images import copy_example

    project = copy_example("churn", work)
    artifact = export(spec_mod.load(project), project / "build" / "churn").artifact
    sys.path.insert(0, str(project))
    import train

    frame, _ = train.customers(rows, seed=7)
    frame.insert(0, "customer_id", [f"c{i}" for i in range(rows)])
    path = work / "customers.csv"
    frame.to_csv(path, index=False)
    return artifact.out_dir, frame, path


def _pair(model: Any, event: Any, feeds: dict[str, Any], runs: int, api: bool = False) -> tuple[float, float]:
    emitter = metrics.Emitter(model.name, stream=io.StringIO())
    emitter.stream = open("/dev/null", "w")  # noqa: SIM115
    doc = events.handle(model, emitter, event, "bench")
    if api:
        assert "outputs" in doc and len(doc["outputs"]["label"]) == BATCH, doc
    else:
        assert doc["errors"] == 0 and doc["rows"] == BATCH, doc.get("row_errors", [])[:3]
    ours = _median_us(lambda: events.handle(model, emitter, event, "bench"), runs)
    bare = _median_us(lambda: model.session.run(model.output_names, feeds), runs)
    return ours, bare


def run(quick: bool, runs: int | None = None) -> list[Row]:
    import numpy as np

    from packager.local import batch as batch_mod
    from packager.local import function as local
    from packager.local.prepare import prepare
    from tests.support import handler_models as hm

    runs = runs or (10 if quick else 30)
    rows_local = 20_000 if quick else 100_000
    out: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        export_dir, frame, csv_path = _churn(work, rows_local)
        churn = load_model(str(export_dir), max_batch=256)
        with csv_path.open(newline="") as f:
            text = [r for _, r in zip(range(BATCH), csv.DictReader(f), strict=False)]
        for r in text:
            r.pop("customer_id")
        head = frame.iloc[:BATCH].drop(columns=["customer_id"])
        records = [{k: (None if v != v else v) for k, v in r.items()} for r in head.to_dict("records")]
        feeds = {c.name: (np.array(["" if v is None else v for v in head[c.name].astype(object).where(
            head[c.name].notna(), None)], dtype=object).reshape(-1, 1) if c.kind == "string" else
            head[c.name].to_numpy(dtype=np.float32).reshape(-1, 1)) for c in churn.columns}
        for what, event in (("CSV text", {C.BATCH_ITEMS: text, C.BATCH_INPUT: {"source": "csv"}}),
                            ("JSON records", {C.BATCH_ITEMS: records, C.BATCH_INPUT: {"source": "json"}})):
            ours, bare = _pair(churn, event, feeds, runs)
            out.append(Row("batch", f"churn 1,000 rows ({what}): handler batch path / session.run", ours / bare, "x",
                           *at_most(ours / bare, TARGET, "x"),
                           f"{ours / 1000:.2f} ms vs {bare / 1000:.2f} ms; {samples(runs)}"))
        api_model = load_model(str(export_dir), max_batch=BATCH)
        api, _ = _pair(api_model, {"instances": records}, feeds, runs, api=True)
        out.append(Row("batch", "churn 1,000 JSON records: handler batch path / the same rows as one API request",
                       _pair(churn, {C.BATCH_ITEMS: records, C.BATCH_INPUT: {}}, feeds, runs)[0] / api, "x",
                       note=f"API request {api / 1000:.2f} ms (a direct invoke, api.max_batch_size = 1000); "
                       f"{samples(runs)}"))
        folder, _clf, X = hm.iris(work / "iris")
        iris = load_model(str(folder), max_batch=256)
        Xb = np.tile(X, (BATCH // len(X) + 1, 1))[:BATCH].astype(np.float32)
        ours, bare = _pair(iris, {C.BATCH_ITEMS: Xb.tolist(), C.BATCH_INPUT: {}},
                           {iris.single.name: Xb}, runs)
        out.append(Row("batch", "iris 1,000 rows: handler batch path / session.run", ours / bare, "x",
                       *at_most(ours / bare, TARGET, "x"), f"{ours / 1000:.2f} ms vs {bare / 1000:.2f} ms; "
                       f"{samples(runs)}"))
        with prepare(export_dir, isolate=False, memory_mb=1769, timeout_s=60) as prep, \
                local.LocalFunction(prep.command, timeout_s=60, output=lambda s: None) as fn:
            fn.start()
            t = time.perf_counter()
            result = batch_mod.score_file([fn], csv_path, work / "scored.csv", rows_per_invocation=BATCH,
                                          key_columns=["customer_id"])
            seconds = time.perf_counter() - t
        assert result.row_errors == 0 and not result.failed_invocations
        out.append(Row("batch", f"mlpack batch --local: churn {rows_local:,} rows from CSV (task root, 1 function)",
                       rows_local / seconds, "rows/s",
                       note=f"{seconds:.1f} s, read + {result.invocations} invocations + write; single sample"))
    return out


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--runs", type=int, default=None, help="timed repetitions per case (default 30, quick 10)")
    cli(ap, run)


if __name__ == "__main__":
    main()
