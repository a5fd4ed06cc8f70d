"""Cold init of the same model served by its own framework versus by mlpack's ONNX handler: what a
user would get without ONNX, measured side by side in one run.

    .venv/bin/python bench/bench_frameworks.py [--runs 11] [--quick] [--json]

For each example, a fresh Python process does imports, loads the model and answers one prediction:
- iris (examples/iris): scikit-learn itself (`joblib.load` + `predict_proba`), against mlpack's handler
  (`import handlers.predict` — model.json, onnxruntime session — and one API Gateway request), and a
  bare `import numpy, onnxruntime` + session + run for reference;
- digits-mlp (examples/digits-mlp): PyTorch itself (`import torch`, the model class, `load_state_dict`
  of weights saved once to a temp folder, one forward under no_grad), against the same two ONNX paths.
The three processes run interleaved, in rotating order, round after round; figures are medians and
each ratio is the median of per-round ratios (the machines are noisy). Whole-process wall time.
Prints a table; nothing here is a test.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from common import ROOT, Row, cli, cold_programs, parser, process_ms, samples

sys.path.insert(0, str(ROOT))
from handlers import contract as C
from tests.support.images import copy_example

SKLEARN = """
import joblib, numpy
m = joblib.load({path!r})
m.predict_proba(numpy.array({row!r}, dtype=numpy.float32))
"""
# The model class is written out here, as a user's serving code would hold it: importing train.py
# would also import scikit-learn's datasets and charge PyTorch for them.
TORCH = """
import torch
class DigitsMLP(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(64, 128), torch.nn.ReLU(),
            torch.nn.Linear(128, 64), torch.nn.ReLU(),
            torch.nn.Linear(64, 10),
        )
    def forward(self, pixels):
        return torch.softmax(self.net(pixels), dim=-1)
m = DigitsMLP()
m.load_state_dict(torch.load({path!r}, weights_only=True))
m.eval()
with torch.no_grad():
    m(torch.tensor({row!r}, dtype=torch.float32))
"""
SAVE_TORCH = """
import sys, torch
sys.path.insert(0, ".")
import train
torch.save(train.build_model().state_dict(), sys.argv[1])
"""


def export(project: Path, out: Path) -> Path:
    subprocess.run([sys.executable, "-m", "packager", "export", str(project), "-o", str(out)], cwd=ROOT,
                   check=True, capture_output=True)
    return out


def prepare(work: Path) -> list[tuple[str, str, str, str, str]]:
    """(model, framework label, framework code, handler code, bare onnxruntime code) per example."""
    cases = []
    for name in ("iris", "digits-mlp"):
        project = copy_example(name, work)
        if name == "iris":
            row = [[5.1, 3.5, 1.4, 0.2]]
            label, fw = "scikit-learn", SKLEARN.format(path=str(project / "model.joblib"), row=row)
        else:
            weights = work / "digits-mlp.pt"
            subprocess.run([sys.executable, "-c", SAVE_TORCH, str(weights)], cwd=project, check=True,
                           capture_output=True)
            row = [[0.5] * 64]
            label, fw = "PyTorch", TORCH.format(path=str(weights), row=row)
        handler, bare = cold_programs(export(project, work / f"{name}-onnx"), row)
        cases.append((name, label, fw, handler, bare))
    return cases


def run(quick: bool, runs: int | None = None) -> list[Row]:
    runs = runs or (5 if quick else 11)
    env = {**os.environ, "PYTHONPATH": str(ROOT), C.ENV_METRICS: "on"}
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="bench-frameworks-") as tmp:
        cases = prepare(Path(tmp))
        for name, label, fw, handler, bare in cases:
            codes = [fw, handler, bare]
            for code in codes:  # page cache and bytecode, so round one is like the others
                process_ms(code, env)
            times: list[list[float]] = [[], [], []]
            for r in range(runs):
                order = [(r + k) % 3 for k in range(3)]  # rotate, so no path always runs first
                got = {i: process_ms(codes[i], env) for i in order}
                for i in range(3):
                    times[i].append(got[i])
            fw_ms, h_ms, bare_ms = (statistics.median(t) for t in times)
            fw_ratio = statistics.median(f / h for f, h in zip(times[0], times[1], strict=True))
            h_ratio = statistics.median(h / b for h, b in zip(times[1], times[2], strict=True))
            how = f"fresh process: imports, load, 1 prediction; {samples(runs, ' interleaved runs')}"
            rows += [
                Row("frameworks", f"cold init {name}: served by {label} itself", fw_ms, "ms", note=how),
                Row("frameworks", f"cold init {name}: mlpack ONNX handler", h_ms, "ms", note=how),
                Row("frameworks", f"cold init {name}: bare onnxruntime", bare_ms, "ms", note=how),
                Row("frameworks", f"cold init {name}: {label} / mlpack handler", fw_ratio, "x",
                    note="> 1 means the ONNX handler starts faster; "
                         + ("median of per-round ratios" if runs > 1 else "single sample")),
                Row("frameworks", f"cold init {name}: mlpack handler / bare onnxruntime", h_ratio, "x",
                    note="median of per-round ratios" if runs > 1 else "single sample"),
            ]
    return rows


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--runs", type=int, default=None, help="rounds of fresh processes (default 11, quick 5)")
    cli(ap, run)


if __name__ == "__main__":
    main()
