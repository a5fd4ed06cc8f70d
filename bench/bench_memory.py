#!/usr/bin/env python3
"""Peak memory of one request with a large JSON body, by body shape: what a 6 MB body costs the function.

    bench/bench_memory.py [--quick] [--json]

The models and each case's event (serialised as the runtime client receives it) are made first; then
each case runs in a fresh process that only loads the model and reads the event's bytes (that is the
baseline). It resets its peak RSS (/proc/self/clear_refs), parses the event as the runtime client does
(that growth is noted: the runtime's, not the handler's), resets the peak again and runs one
`events.handle`: that growth is the handler's. The growth is what the
request cost beyond the model's own working set; the target (issue: runtime hardening) is at most twice
the body's size. Bodies a model could never take (more values, lists or objects than its batch limit of
rows) are refused before anything parses them (handlers/inference/body.py check_values); bodies it can
take are parsed. No timings.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, Row, at_most, cli, parser

BODY = 6 * 1024 * 1024 - 512
# (model, shape, what): 6 MB bodies of every shape against the iris model, and the largest requests the
# other models take (parsed all the way)
CASES = [
    ("iris", "ints", "6 MB of small integers in one row"),
    ("iris", "floats", "6 MB of floats in one row"),
    ("iris", "rows", "6 MB of 4-number rows"),
    ("iris", "lists", "6 MB of empty lists"),
    ("iris", "objects", "6 MB of empty objects"),
    ("iris", "strings", "6 MB of one-letter strings"),
    ("mlp", "valid", "256 x 784 floats, the largest JSON request the model takes"),
    ("mlp", "validv2", "the same as a v2 tensor"),
    ("mlp", "validnpy", "the same as a .npy body (float32)"),
    ("table", "validrec", "256 records of 20 columns"),
    ("table", "objects", "6 MB of empty objects (records)"),
]


def _body(shape: str, model: object) -> str:
    import numpy as np

    rng = np.random.default_rng(0)
    make = {
        "ints": lambda: '{"inputs": [[' + ",".join(["0"] * (BODY // 2)) + "]]}",
        "floats": lambda: '{"inputs": [[' + ",".join(["0.123"] * (BODY // 6)) + "]]}",
        "rows": lambda: '{"inputs": [' + ",".join(["[0,0,0,0]"] * (BODY // 10)) + "]}",
        "lists": lambda: '{"inputs": [' + ",".join(["[]"] * (BODY // 3)) + "]}",
        "objects": lambda: '{"instances": [' + ",".join(["{}"] * (BODY // 3)) + "]}",
        "strings": lambda: '{"inputs": [' + ",".join(['"a"'] * (BODY // 4)) + "]}",
        "valid": lambda: json.dumps({"inputs": rng.random((256, 784)).tolist()}),
        "validv2": lambda: json.dumps({"inputs": [{"name": model.inputs[0].name, "shape": [256, 784],  # type: ignore
                                                   "datatype": "FP32", "data": rng.random(256 * 784).tolist()}]}),
        "validrec": lambda: json.dumps({"instances": [
            {c.name: ("x" if c.kind == "string" else 1.5) for c in model.columns} for _ in range(256)]}),  # type: ignore
    }
    return make[shape]()


def prepare(work: Path) -> dict[str, Path]:
    """Export the three models and write each case's event (as the runtime client receives it) to a file,
    here in the parent: the child process must not hold the building's memory in its peak."""
    sys.path.insert(0, str(ROOT))
    from handlers import inference
    from tests.support import events as ev
    from tests.support import handler_models as hm

    folders = {"iris": hm.iris(work / "iris")[0], "mlp": hm.mlp(work / "mlp"), "table": hm.table(work / "table")[0]}
    for model_kind, shape, _ in CASES:
        model = inference.load_model(str(folders[model_kind]), max_batch=256, intra_op_threads=1)
        path = f"/v2/models/{model.name}/infer" if shape == "validv2" else "/predict"
        if shape == "validnpy":
            import numpy as np

            body = ev.npy_bytes(np.random.default_rng(0).random((256, 784), dtype=np.float32))
            event = ev.rest_v1("POST", path, body, content_type="application/x-npy")
        else:
            body = _body(shape, model)
            event = ev.rest_v1("POST", path, body)
        (work / f"{model_kind}-{shape}.event.json").write_text(json.dumps(event))
        (work / f"{model_kind}-{shape}.size").write_text(str(len(body)))
    return {k: Path(v) for k, v in folders.items()}


def child(folder: Path, event_file: Path) -> dict[str, object]:
    """Load the model, read the event's bytes, then measure the peak RSS around the runtime client's parse
    of the event and one request."""
    sys.path.insert(0, str(ROOT))
    from handlers import events, inference, metrics

    model = inference.load_model(str(folder), max_batch=256, intra_op_threads=1)
    emitter = metrics.Emitter(model.name, stream=open(os.devnull, "w"))  # noqa: SIM115
    _warm(model)
    raw = event_file.read_bytes()
    before = _reset_peak()
    event = json.loads(raw)  # what the runtime client does before the handler runs
    parsed = _status_kb("VmHWM")
    del raw
    start = _reset_peak()
    out = events.handle(model, emitter, event, "bench")
    after = _status_kb("VmHWM")
    return {"status": out["statusCode"], "growth_mb": (after - start) / 1024, "runtime_mb": (parsed - before) / 1024,
            "baseline_mb": start / 1024}


def _warm(model: object) -> None:
    """One inference at the batch limit, on zeros: the model's own working set at its largest batch (the
    runtime's memory arena sized for it) belongs to the baseline, not to the request."""
    import numpy as np

    feeds = {}
    for t in model.session.get_inputs():  # type: ignore[attr-defined]
        shape = [256 if not isinstance(d, int) else d for d in t.shape]
        if "string" in t.type:
            feeds[t.name] = np.full(shape, "", dtype=object)
        else:
            feeds[t.name] = np.zeros(shape, dtype=np.float32 if "float" in t.type else np.int64)
    model.session.run(None, feeds)  # type: ignore[attr-defined]


def _status_kb(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {key} in /proc/self/status")


def _reset_peak() -> int:
    """Reset this process's peak RSS to its current RSS (Linux: 5 > /proc/self/clear_refs) and return it, in
    KB. (getrusage's ru_maxrss cannot be used: a child starts with its parent's peak.)"""
    Path("/proc/self/clear_refs").write_text("5")
    return _status_kb("VmRSS")


def run(quick: bool) -> list[Row]:
    rows: list[Row] = []
    cases = CASES[::2] if quick else CASES
    with tempfile.TemporaryDirectory(prefix="mlpack-bench-memory-") as tmp:
        work = Path(tmp)
        folders = prepare(work)
        for model_kind, shape, what in cases:
            event = work / f"{model_kind}-{shape}.event.json"
            proc = subprocess.run([sys.executable, __file__, "--child", str(folders[model_kind]), str(event)],
                                  capture_output=True, text=True, cwd=ROOT)
            if proc.returncode != 0:
                raise RuntimeError(proc.stderr[-3000:])
            got = json.loads(proc.stdout.strip().splitlines()[-1])
            body_mb = int((work / f"{model_kind}-{shape}.size").read_text()) / 2**20
            target, met = at_most(round(got["growth_mb"], 1), round(2 * body_mb, 1), " MB")
            rows.append(Row("memory", f"{model_kind}, {what}: handler's peak RSS growth", round(got["growth_mb"], 1),
                            "MB", f"{target} (2x the body)", met,
                            f"HTTP {got['status']}; body {body_mb:.1f} MB; before it, the runtime client's parse of "
                            f"the event took {got['runtime_mb']:.1f} MB; model loaded, run once at batch 256: "
                            f"{got['baseline_mb']:.0f} MB; "
                            "single sample"))
    return rows


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        print(json.dumps(child(Path(sys.argv[2]), Path(sys.argv[3]))))
        return
    cli(parser(__doc__), run)


if __name__ == "__main__":
    main()
