"""Shared pieces of the benchmark scripts: the Row every benchmark returns, the one table format,
the command line (`--quick`/`--json`), fresh-process timing, and the machine description that goes
next to the figures.

Each bench_*.py exposes `run(quick: bool, **its options) -> list[Row]` and stays runnable alone;
bench/run runs each in its own process with `--json` and prints every row in one table. Imports only
the standard library at module level (it is imported before anything heavy, and by every script).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# The last stdout line of a script run with --json; anything it printed before is left alone.
JSON_MARKER = "BENCH-ROWS "


@dataclass(frozen=True)
class Row:
    benchmark: str  # which script/area: export, build, push, handler, synth, frameworks
    measure: str  # what was measured, in words
    value: float
    unit: str  # s, ms, us, MB, x (a ratio) ...
    target: str = ""  # the target in words, e.g. "<= 3.5x"; empty when only recorded
    met: bool | None = None  # None when there is no target
    note: str = ""  # the figures a ratio came from, run counts ...


def samples(n: int, what: str = "") -> str:
    """How a figure was taken, for a row's note: "median of 5 pairs", or "single sample" when n is 1."""
    return "single sample" if n == 1 else f"median of {n}{what}"


def at_most(value: float, limit: float, unit: str = "") -> tuple[str, bool]:
    """(target text, met) for an upper bound."""
    return f"<= {limit:g}{unit}", value <= limit


def fmt(value: float) -> str:
    a = abs(value)
    if a == 0 or a >= 100:
        return f"{value:.0f}"
    if a >= 10:
        return f"{value:.1f}"
    if a >= 0.1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def table(rows: list[Row]) -> str:
    head = ("benchmark", "measure", "value", "unit", "target", "met", "notes")
    body = [(r.benchmark, r.measure, fmt(r.value), r.unit, r.target,
             "" if r.met is None else ("yes" if r.met else "MISSED"), r.note) for r in rows]
    widths = [max(len(line[i]) for line in [head, *body]) for i in range(len(head))]
    right = {2}  # numbers line up on the right

    def line(cells: tuple[str, ...]) -> str:
        out = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))]
        return "  ".join(out).rstrip()

    return "\n".join([line(head), line(tuple("-" * w for w in widths)), *(line(b) for b in body)])


def parser(doc: str) -> argparse.ArgumentParser:
    """A script's command line: its docstring as help, --quick and --json; the script adds its own
    options, each named after a parameter of its run()."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer repetitions, smaller sizes (minutes)")
    ap.add_argument("--json", action="store_true",
                    help=f"print the rows as JSON on a last line starting {JSON_MARKER.strip()!r} (for bench/run)")
    return ap


def cli(ap: argparse.ArgumentParser, run: Callable[..., list[Row]], header: Callable[[], str] | None = None) -> None:
    """Parse, call run(quick, **the script's options) and print its rows: as a table (after `header`,
    if any), or with --json as the line bench/run reads."""
    options = vars(ap.parse_args())
    quick, as_json = options.pop("quick"), options.pop("json")
    rows = run(quick, **options)
    if as_json:
        print(JSON_MARKER + json.dumps([asdict(r) for r in rows]), flush=True)
        return
    if header is not None:
        print(header() + "\n")
    print(table(rows))


def parse(stdout: str) -> list[Row]:
    for text in reversed(stdout.splitlines()):
        if text.startswith(JSON_MARKER):
            return [Row(**d) for d in json.loads(text[len(JSON_MARKER):])]
    raise ValueError("no rows in the script's output")


def version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine() -> dict[str, str]:
    """What the figures depend on: CPU, cores, memory, Python and the libraries that do the work."""
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu = next((t.split(":", 1)[1].strip() for t in f if t.startswith("model name")), cpu)
    except OSError:
        pass
    mem = "unknown"
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            kb = next((int(t.split()[1]) for t in f if t.startswith("MemTotal:")), 0)
        mem = f"{kb / 1024 / 1024:.1f} GiB" if kb else mem
    except OSError:
        pass
    commit = "unknown"
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True)
        if head.returncode == 0:
            commit = head.stdout.strip() + (" + uncommitted changes" if dirty.stdout.strip() else "")
    except OSError:
        pass
    load = " ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "unknown"
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "memory": mem,
        "os": f"{platform.system()} {platform.release()} {platform.machine()}",
        "python": sys.version.split()[0],
        "onnxruntime": version("onnxruntime"),
        "numpy": version("numpy"),
        "scikit-learn": version("scikit-learn"),
        "torch": version("torch"),
        "aws-cdk-lib": version("aws-cdk-lib"),
        "commit": commit,
        "load average at start": load,
    }


def process_ms(code: str, env: dict[str, str]) -> float:
    """Wall time of a fresh `python -c code` in the repository, in ms."""
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=ROOT, stdout=subprocess.DEVNULL)
    return (time.perf_counter() - t) * 1000


# Fresh-process programs for cold-init comparisons: mlpack's handler answering one event from a model
# folder, and a bare onnxruntime session + one run.
COLD_HANDLER = """
import os
os.environ[{env!r}] = {folder!r}
import handlers.predict as p
r = p.handler({event!r}, None)
assert r["statusCode"] == 200, r
"""
COLD_BARE = """
import numpy, onnxruntime
s = onnxruntime.InferenceSession({onnx!r}, providers=["CPUExecutionProvider"])
s.run(None, {{{name!r}: numpy.array({row!r}, dtype=numpy.float32)}})
"""


def cold_programs(folder: Path, row: list[list[float]]) -> tuple[str, str]:
    """(handler, bare onnxruntime) programs predicting `row` with the exported model in `folder`, the
    handler through an API Gateway REST request. Needs ROOT on sys.path."""
    from handlers import contract as C
    from handlers import model_json
    from tests.support import events as ev

    first_input = model_json.read(folder / C.MODEL_JSON).signature.inputs[0].name
    event = ev.rest_v1("POST", "/predict", {"inputs": row})
    handler = COLD_HANDLER.format(env=C.ENV_MODEL_DIR, folder=str(folder), event=event)
    bare = COLD_BARE.format(onnx=str(folder / C.MODEL_FILE), name=first_input, row=row)
    return handler, bare
