"""Image build benchmarks, measured side by side in one run (figures go to docs/BENCHMARKS.md).

    .venv/bin/python bench/bench_build.py [--repeat 5] [--base debian]

1. cold build: iris with an empty mlpack cache (debian base from mmdebstrap, wheels from pip's own
   cache or the index, export, layers, layout).
2. warm rebuild after a model-only change: retrain iris with another C, rebuild (export + one new
   layer); median of --repeat runs. Target: under 3 s.
3. dependency layer size: mlpack's stripped onnxruntime+numpy tree (and the whole dependency layer)
   against an unstripped `pip install --target` of onnxruntime numpy for the same target. Target: <= 70%.

Prints a table; nothing here is a test. Needs the network only for the cold build's downloads.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from packager import deps  # noqa: E402
from packager import image as image_mod  # noqa: E402
from packager import spec as spec_mod  # noqa: E402


def retrain(project: Path, c: float) -> None:
    import joblib
    import numpy as np
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    data = load_iris()
    model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=1000, random_state=0))
    model.fit(data.data.astype(np.float32), data.target)
    joblib.dump(model, project / "model.joblib")


def copy_iris(dest: Path) -> Path:
    project = dest / "iris"
    shutil.copytree(ROOT / "examples" / "iris", project, ignore=shutil.ignore_patterns("build", "__pycache__"))
    if not (project / "model.joblib").exists() or not (project / "samples.csv").exists():
        subprocess.run([sys.executable, "train.py"], cwd=project, check=True, capture_output=True)
    return project


def build(project: Path, base: str) -> tuple[float, image_mod.BuildResult]:
    spec = spec_mod.resolve(spec_mod.load(project), {"runtime.base": base})
    t0 = time.perf_counter()
    result = image_mod.build(spec)
    return time.perf_counter() - t0, result


def unstripped_tree_bytes(target: deps.Target, work: Path) -> int:
    tree = work / "unstripped"
    args = [sys.executable, "-m", "pip", "install", "-q", "--target", str(tree), "--python-version", target.python,
            "--implementation", "cp", "--only-binary=:all:", "--no-compile", "--disable-pip-version-check"]
    for plat in deps.PIP_PLATFORMS[target.arch]:
        args += ["--platform", plat]
    subprocess.run([*args, "onnxruntime", "numpy"], check=True, capture_output=True)
    return deps.tree_size(tree)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--base", default="debian")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="mlpack-bench-") as tmp:
        work = Path(tmp)
        os.environ["MLPACK_CACHE_DIR"] = str(work / "cache")
        project = copy_iris(work)

        cold_s, first = build(project, args.base)
        warm = []
        for i in range(args.repeat):
            retrain(project, c=0.5 + i * 0.25)
            seconds, result = build(project, args.base)
            changed = sum(a.digest != b.digest for a, b in zip(first.rows, result.rows, strict=True))
            assert changed == 1, f"a model-only change changed {changed} layers"
            assert result.deps_cache_hit
            first = result
            warm.append(seconds)
        noop = [build(project, args.base)[0] for _ in range(args.repeat)]
        # what a user waits for: a new `mlpack build` process (imports scikit-learn/skl2onnx for export)
        cli_warm = []
        mlpack = str(Path(sys.executable).parent / "mlpack")
        for i in range(args.repeat):
            retrain(project, c=2.0 + i * 0.25)
            t0 = time.perf_counter()
            subprocess.run([mlpack, "build", str(project), "--base", args.base], check=True, capture_output=True)
            cli_warm.append(time.perf_counter() - t0)

        target = deps.Target(python=first.report["python"], arch=first.report["arch"])
        unstripped = unstripped_tree_bytes(target, work)
        ours = deps.dependency_layer(["onnxruntime", "numpy"], target)
        layer_row = next(r for r in first.rows if r.name == "deps")

    warm_med = statistics.median(warm)
    rows = [
        ("cold build, empty mlpack cache (s)", f"{cold_s:.1f}", ""),
        (f"warm rebuild after model-only change, in-process, median of {args.repeat} (s)", f"{warm_med:.2f}",
         f"{warm_med / 3.0:.2f} of the 3 s target"),
        (f"same, as a new `mlpack build` process, median of {args.repeat} (s)", f"{statistics.median(cli_warm):.2f}",
         f"{statistics.median(cli_warm) / 3.0:.2f} of the 3 s target"),
        (f"rebuild with nothing changed, median of {args.repeat} (s)", f"{statistics.median(noop):.2f}", ""),
        (f"unstripped pip tree onnxruntime+numpy, python {target.python} {target.arch} (MB)",
         f"{unstripped / 1e6:.1f}", "1.00"),
        ("mlpack stripped onnxruntime+numpy tree, with bytecode (MB)" if ours.bytecode
         else "mlpack stripped onnxruntime+numpy tree (MB)",
         f"{ours.stripped_bytes / 1e6:.1f}", f"{ours.stripped_bytes / unstripped:.2f} (target <= 0.70)"),
        ("mlpack onnxruntime+numpy layer, uncompressed tar (MB)", f"{ours.layer.uncompressed_size / 1e6:.1f}",
         f"{ours.layer.uncompressed_size / unstripped:.2f}"),
        ("mlpack onnxruntime+numpy layer, gzip (MB)", f"{ours.layer.size / 1e6:.1f}",
         f"{ours.layer.size / unstripped:.2f}"),
        (f"whole dependency layer ({' '.join(first.report['dependencies']['requirements'])}), uncompressed (MB)",
         f"{(layer_row.uncompressed_size or 0) / 1e6:.1f}", f"{(layer_row.uncompressed_size or 0) / unstripped:.2f}"),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"{'measure':<{width}}  {'value':>8}  ratio")
    for name, value, ratio in rows:
        print(f"{name:<{width}}  {value:>8}  {ratio}")
    print(f"\nbase={args.base}, python {target.python}, {target.arch}; cold build used pip's own cache when warm")


if __name__ == "__main__":
    main()
