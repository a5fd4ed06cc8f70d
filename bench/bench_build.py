"""Image build benchmarks, measured side by side in one run (figures go to docs/BENCHMARKS.md).

    .venv/bin/python bench/bench_build.py [--repeat 5] [--base debian] [--quick] [--json]

1. cold build: iris with an empty mlpack cache (debian base from mmdebstrap, wheels from pip's own
   cache or the index, export, layers, layout).
2. warm rebuild after a model-only change: retrain iris with another C, rebuild (export + one new
   layer); median of --repeat runs. Target: under 3 s.
3. dependency layer size: mlpack's stripped onnxruntime+numpy tree (and the whole dependency layer)
   against an unstripped `pip install --target` of onnxruntime numpy for the same target. Target: <= 70%.

Prints a table; nothing here is a test. Needs the network only for the cold build's downloads.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, Row, at_most, cli, parser, samples

sys.path.insert(0, str(ROOT))
from packager.config import spec as spec_mod
from packager.image import build as image_mod
from packager.image import deps
from tests.support.images import copy_example


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


def run(quick: bool, repeat: int | None = None, base: str = "debian") -> list[Row]:
    repeat = repeat or (2 if quick else 5)
    saved_cache = os.environ.get("MLPACK_CACHE_DIR")
    try:
        with tempfile.TemporaryDirectory(prefix="mlpack-bench-") as tmp:
            work = Path(tmp)
            # an empty cache of our own: the cold figure must never come from the user's ~/.cache/mlpack
            os.environ["MLPACK_CACHE_DIR"] = str(work / "cache")
            project = copy_example("iris", work)

            cold_s, first = build(project, base)
            warm = []
            for i in range(repeat):
                retrain(project, c=0.5 + i * 0.25)
                seconds, result = build(project, base)
                changed = sum(a.digest != b.digest for a, b in zip(first.rows, result.rows, strict=True))
                assert changed == 1, f"a model-only change changed {changed} layers"
                assert result.deps_cache_hit
                first = result
                warm.append(seconds)
            noop = [build(project, base)[0] for _ in range(repeat)]
            # what a user waits for: a new `mlpack build` process (imports scikit-learn/skl2onnx for export)
            cli_warm = []
            mlpack = str(Path(sys.executable).parent / "mlpack")
            for i in range(repeat):
                retrain(project, c=2.0 + i * 0.25)
                t0 = time.perf_counter()
                subprocess.run([mlpack, "build", str(project), "--base", base], check=True, capture_output=True)
                cli_warm.append(time.perf_counter() - t0)

            target = deps.Target(python=first.report["python"], arch=first.report["arch"])
            unstripped = unstripped_tree_bytes(target, work)
            ours = deps.dependency_layer(["onnxruntime", "numpy"], target)
            layer_row = next(r for r in first.rows if r.name == "deps")
    finally:
        if saved_cache is None:
            os.environ.pop("MLPACK_CACHE_DIR", None)
        else:
            os.environ["MLPACK_CACHE_DIR"] = saved_cache

    warm_med, cli_med = statistics.median(warm), statistics.median(cli_warm)
    share = ours.stripped_bytes / unstripped
    where = f"base={base}, python {target.python} {target.arch}"
    whole = (layer_row.uncompressed_size or 0)
    return [
        Row("build", "iris cold build, empty mlpack cache (in-process)", cold_s, "s", "recorded", None,
            f"{where}; pip's own wheel cache may be warm; single sample"),
        Row("build", "iris warm rebuild after model-only change (in-process)", warm_med, "s",
            *at_most(warm_med, 3, " s"), f"{samples(repeat)}; exactly 1 layer digest changed, deps cache hit"),
        Row("build", "iris warm rebuild after model-only change (new `mlpack build` process)", cli_med, "s",
            *at_most(cli_med, 3, " s"), f"{samples(repeat)}; includes Python + scikit-learn/skl2onnx imports"),
        Row("build", "iris rebuild with nothing changed (in-process)", statistics.median(noop), "s",
            note=samples(repeat)),
        Row("build", "unstripped `pip install --target onnxruntime numpy` tree", unstripped / 1e6, "MB",
            note=f"{where}; single sample"),
        Row("build", "mlpack stripped onnxruntime+numpy tree" + (" (with bytecode)" if ours.bytecode else ""),
            ours.stripped_bytes / 1e6, "MB", note="single sample"),
        Row("build", "stripped tree / unstripped tree", share, "x", *at_most(share, 0.70),
            f"{ours.stripped_bytes / 1e6:.1f} MB of {unstripped / 1e6:.1f} MB; single sample"),
        Row("build", "onnxruntime+numpy layer, gzip", ours.layer.size / 1e6, "MB",
            note=f"uncompressed tar {ours.layer.uncompressed_size / 1e6:.1f} MB; single sample"),
        Row("build", "whole dependency layer, uncompressed", whole / 1e6, "MB",
            note=f"{' '.join(first.report['dependencies']['requirements'])}; {whole / unstripped:.2f}x unstripped; "
                 "single sample"),
    ]


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--repeat", type=int, default=None, help="warm rebuilds to take the median of (default 5)")
    ap.add_argument("--base", default="debian")
    cli(ap, run)


if __name__ == "__main__":
    main()
