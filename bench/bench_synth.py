"""Synth time of the CDK app for 1, 10 and 50 models, and the marginal cost per model.

    .venv/bin/python bench/bench_synth.py [--sizes 1 10 50] [--repeat 3] [--cli] [--quick] [--json]

Generates fixture projects (tests/support/stack_projects.py: classifiers with 3 classes, every
alarm, api_key auth, a chat target on every fifth model) in a temporary folder, then in one Python
process: imports aws_cdk once (jsii start-up, paid by every `cdk synth`), and for each size builds
the plan, the stacks and synthesizes a cloud assembly (median of --repeat runs). --cli also times
the whole `cdk synth` through the pinned CLI (a fresh Python process: start-up included).
Prints a table; not a test.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, Row, at_most, cli, parser

sys.path.insert(0, str(ROOT))
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
os.environ.setdefault("CDK_DISABLE_CLI_TELEMETRY", "true")

from tests.support import stack_projects as sp

CHAT = '[[notifications.chat]]\nkind = "slack"\nwebhook = "ssm:/mlpack/{name}/slack"\n'


def make_root(base: Path, n: int) -> Path:
    root = base / f"n{n}"
    names = [f"model-{i:03d}" for i in range(n)]
    for i, name in enumerate(names):
        sp.write_project(root, name, toml_extra=CHAT.format(name=name) if i % 5 == 0 else "")
    sp.write_lock(root, names)
    sp.write_cdk_json(root, ROOT)
    return root


def synth_in_process(root: Path, outdir: Path) -> tuple[float, int]:
    import aws_cdk as cdk

    from stacks.assembly import add_stacks
    from stacks.plan import plan

    t0 = time.perf_counter()
    app = cdk.App(outdir=str(outdir))
    stacks = add_stacks(app, plan(root, patterns=["models/*"], lock_path=Path("mlpack.lock.json")))
    app.synth()
    return time.perf_counter() - t0, len(stacks)


def synth_cli(root: Path) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")} | {"PYTHONPATH": str(ROOT)}
    t0 = time.perf_counter()
    subprocess.run(
        [str(ROOT / "node_modules/.bin/cdk"), "synth", "-q", "--no-notices", "-o", str(root / "cdk.out")],
        cwd=root,
        env=env,
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - t0


def run(quick: bool, sizes: list[int] | None = None, repeat: int | None = None, cli: bool = False) -> list[Row]:
    sizes = sizes or ([1, 10] if quick else [1, 10, 50])
    repeat = repeat or (1 if quick else 3)
    t0 = time.perf_counter()
    import aws_cdk  # noqa: F401  (jsii start-up: a Node process and the aws-cdk-lib bundle)

    import stacks.assembly  # noqa: F401

    startup = time.perf_counter() - t0
    measured = []
    with tempfile.TemporaryDirectory(prefix="bench-synth-") as tmp:
        base = Path(tmp)
        synth_in_process(make_root(base, 1), base / "warm-up")  # first synth loads lazily imported modules
        for n in sizes:
            root = make_root(base, n)
            times = []
            for r in range(repeat):
                seconds, count = synth_in_process(root, base / f"out-{n}-{r}")
                times.append(seconds)
            measured.append((n, count, statistics.median(times), min(times), synth_cli(root) if cli else None))
    rows = [Row("synth", "jsii + aws-cdk-lib import, once per process", startup, "s", note="single sample")]
    for n, count, med, low, cli_s in measured:
        note = f"{count} stacks; " + (f"median of {repeat}, min {low:.2f} s" if repeat > 1 else "single sample")
        note += f"; {med / n:.3f} s per model"
        if cli_s is not None:
            note += f"; whole `cdk synth` CLI {cli_s:.2f} s (single sample)"
        rows.append(Row("synth", f"synth {n} model{'s' if n > 1 else ''} (in-process)", med, "s", note=note))
    if len(measured) >= 2:
        (n0, _, t_lo, _, _), (n1, _, t_hi, _, _) = measured[0], measured[-1]
        marginal = (t_hi - t_lo) / (n1 - n0)
        rows.append(Row("synth", f"marginal synth cost per model ({n0} -> {n1} models)", marginal, "s",
                        *at_most(marginal, 0.5, " s"),
                        f"from the {n0}- and {n1}-model figures" + ("" if repeat > 1 else ", single samples")))
    return rows


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--sizes", type=int, nargs="+", default=None, help="model counts (default 1 10 50, quick 1 10)")
    ap.add_argument("--repeat", type=int, default=None, help="synths per size (default 3, quick 1)")
    ap.add_argument("--cli", action="store_true", help="also time `cdk synth` through the CLI")
    cli(ap, run)


if __name__ == "__main__":
    main()
