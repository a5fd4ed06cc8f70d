"""Synth time of the CDK app for 1, 10 and 50 models, and the marginal cost per model.

    .venv/bin/python bench/bench_synth.py [--sizes 1 10 50] [--repeat 3] [--cli]

Generates fixture projects (tests/support/stack_projects.py: classifiers with 3 classes, every
alarm, api_key auth, a chat target on every fifth model) in a temporary folder, then in one Python
process: imports aws_cdk once (jsii start-up, paid by every `cdk synth`), and for each size builds
the plan, the stacks and synthesizes a cloud assembly (median of --repeat runs). --cli also times
the whole `cdk synth` through the pinned CLI (a fresh Python process: start-up included).
Prints a table; not a test.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
os.environ.setdefault("CDK_DISABLE_CLI_TELEMETRY", "true")

from tests.support import stack_projects as sp  # noqa: E402

CHAT = '[[notifications.chat]]\nkind = "slack"\nwebhook = "ssm:/team/slack"\n'


def make_root(base: Path, n: int) -> Path:
    root = base / f"n{n}"
    names = [f"model-{i:03d}" for i in range(n)]
    for i, name in enumerate(names):
        sp.write_project(root, name, toml_extra=CHAT if i % 5 == 0 else "")
    sp.write_lock(root, names)
    sp.write_cdk_json(root, REPO)
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
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")} | {"PYTHONPATH": str(REPO)}
    t0 = time.perf_counter()
    subprocess.run(
        [str(REPO / "node_modules/.bin/cdk"), "synth", "-q", "--no-notices", "-o", str(root / "cdk.out")],
        cwd=root,
        env=env,
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1, 10, 50])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--cli", action="store_true", help="also time `cdk synth` through the CLI")
    args = ap.parse_args()
    t0 = time.perf_counter()
    import aws_cdk  # noqa: F401  (jsii start-up: a Node process and the aws-cdk-lib bundle)

    import stacks.assembly  # noqa: F401

    startup = time.perf_counter() - t0
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        synth_in_process(make_root(base, 1), base / "warm-up")  # first synth loads lazily imported modules
        for n in args.sizes:
            root = make_root(base, n)
            times = []
            for r in range(args.repeat):
                seconds, count = synth_in_process(root, base / f"out-{n}-{r}")
                times.append(seconds)
            cli = synth_cli(root) if args.cli else None
            rows.append((n, count, statistics.median(times), min(times), cli))
    print(f"jsii + aws-cdk-lib import (once per process): {startup:.2f} s")
    print(
        f"{'models':>6} {'stacks':>6} {'synth median s':>15} {'min s':>7} {'per model s':>12}"
        + (f" {'cdk synth CLI s':>16}" if args.cli else "")
    )
    for n, count, med, low, cli in rows:
        line = f"{n:>6} {count:>6} {med:>15.2f} {low:>7.2f} {med / n:>12.3f}"
        print(line + (f" {cli:>16.2f}" if cli is not None else ""))
    if len(rows) >= 2:
        (n0, _, t_lo, _, _), (n1, _, t_hi, _, _) = rows[0], rows[-1]
        print(f"marginal cost per model ({n0} -> {n1} models): {(t_hi - t_lo) / (n1 - n0):.3f} s")


if __name__ == "__main__":
    main()
