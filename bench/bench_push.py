"""Benchmark `mlpack push` against a local registry (Debian's docker-registry on 127.0.0.1).

1. Bytes and time of a first push of a Lambda-shaped image versus a push after a model-only change
   (only the model layer and the config should travel) and a push with nothing changed.
2. Peak memory (max RSS of a fresh process) while pushing a 1 GB layer of random data, monolithic
   and chunked, against the same process's RSS before the push.

    .venv/bin/python bench/bench_push.py [--layer-mb 1024] [--keep] [--quick] [--json]

Prints a table. Data is generated locally into a temporary folder; nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, Row, at_most, cli, parser

sys.path.insert(0, str(ROOT))
from packager import oci
from packager.registry import push as push_mod
from packager.registry.client import ImageRef, RegistryClient
from tests.support.layouts import OCI_CONFIG, OCI_LAYER, OCI_MANIFEST, write_layout
from tests.support.registry import start_registry


def noise(n: int, seed: int) -> bytes:
    """Incompressible bytes, reproducible per seed (sizes like a real base and dependency layer)."""
    out = bytearray()
    block = 0
    while len(out) < n:
        out += hashlib.shake_256(f"{seed}:{block}".encode()).digest(1 << 20)
        block += 1
    return bytes(out[:n])


def lambda_like(dest: Path, model_version: str) -> None:
    # Sizes after gzip, roughly: AWS base ~ 30 MB in this stand-in, onnxruntime+numpy ~ 28 MB (FACTS.md),
    # handler code a few KB, a small model ~ 50 KB.
    base = {"var/lang/lib/libpython.so": noise(30 << 20, 1)}
    deps = {"var/task/onnxruntime/capi/onnxruntime_pybind11_state.so": noise(28 << 20, 2)}
    handler = {"var/task/handlers/predict.py": b"# handler\n" * 2000}
    model = {"var/task/model/model.onnx": noise(50 << 10, 1000 + int(model_version)),
             "var/task/model/model.json": json.dumps({"version": model_version}).encode()}
    write_layout(dest, [base, deps, handler, model])


def timed_push(layout: Path, host: str, repo: str, tag: str) -> tuple[float, int, dict[str, int]]:
    image = oci.read_layout(layout)
    t0 = time.perf_counter()
    with RegistryClient(host) as client:
        plan = push_mod.plan_push(image, ImageRef(host, repo, tag, None), client)
        result = push_mod.execute(plan, image, client)
    return time.perf_counter() - t0, result.bytes_sent, result.counts


def big_layout(dest: Path, size: int) -> None:
    """An OCI layout whose one layer is `size` bytes of random data, written in 8 MB pieces."""
    blobs = dest / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    tmp = blobs / "tmp"
    h = hashlib.sha256()
    with tmp.open("wb") as f:
        left = size
        while left:
            piece = os.urandom(min(8 << 20, left))
            h.update(piece)
            f.write(piece)
            left -= len(piece)
    layer_digest = "sha256:" + h.hexdigest()
    tmp.rename(blobs / h.hexdigest())
    (dest / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    # The diff_id is made up: registries do not look inside layers.
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": ["sha256:" + "0" * 64]}}).encode()
    (blobs / hashlib.sha256(config).hexdigest()).write_bytes(config)
    manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                           "config": {"mediaType": OCI_CONFIG, "digest": "sha256:" + hashlib.sha256(config).hexdigest(),
                                      "size": len(config)},
                           "layers": [{"mediaType": OCI_LAYER, "digest": layer_digest, "size": size}]}).encode()
    mdigest = hashlib.sha256(manifest).hexdigest()
    (blobs / mdigest).write_bytes(manifest)
    (dest / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": f"sha256:{mdigest}", "size": len(manifest),
         "platform": {"architecture": "amd64", "os": "linux"}}]}))


CHILD = r"""
import sys, time, json
def hwm_kb():
    # VmHWM belongs to this process image; ru_maxrss would carry the parent's peak across fork+exec.
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
sys.path.insert(0, sys.argv[1])
from packager import oci
from packager.registry import push as push_mod
from packager.registry.client import ImageRef, RegistryClient
image = oci.read_layout(__import__("pathlib").Path(sys.argv[2]))
before = hwm_kb()
kw = {"chunked_above": 1 << 62} if sys.argv[5] == "monolithic" else {"chunked_above": 0}
t0 = time.perf_counter()
with RegistryClient(sys.argv[3], **kw) as client:
    r = push_mod.execute(push_mod.plan_push(image, ImageRef(sys.argv[3], sys.argv[4], "v1", None), client),
                         image, client)
dt = time.perf_counter() - t0
print(json.dumps({"before_kb": before, "peak_kb": hwm_kb(),
                  "seconds": dt, "bytes": r.bytes_sent}))
"""


def counts(c: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in c.items()) + " blobs"


def run(quick: bool, layer_mb: int | None = None, keep: bool = False) -> list[Row]:
    layer_mb = layer_mb or (256 if quick else 1024)
    tmp = Path(tempfile.mkdtemp(prefix="bench-push-"))
    server = start_registry(tmp)
    rows: list[Row] = []
    try:
        v1, v2 = tmp / "v1", tmp / "v2"
        lambda_like(v1, "1")
        lambda_like(v2, "2")
        total = sum(d.size for d in oci.read_layout(v1).layers)
        first_s, first_b, c = timed_push(v1, server.host, "mlpack/iris", "1")
        rows.append(Row("push", "first push, Lambda-shaped iris image: bytes sent", first_b / 1e6, "MB",
                        note=f"4 layers, {total / 1e6:.1f} MB; {counts(c)}"))
        rows.append(Row("push", "first push: time", first_s, "s", note="local registry on 127.0.0.1"))
        s, b, c = timed_push(v2, server.host, "mlpack/iris", "2")
        rows.append(Row("push", "push after model-only change: bytes sent", b / 1e6, "MB",
                        "only the model layer travels", b < 0.01 * first_b,
                        f"{counts(c)}; {first_b / max(b, 1):.0f}x fewer bytes"))
        rows.append(Row("push", "push after model-only change: time", s, "s", note=f"{first_s / s:.0f}x faster"))
        s, b, c = timed_push(v2, server.host, "mlpack/iris", "2")
        rows.append(Row("push", "push with nothing changed: bytes sent", b / 1e6, "MB", note=f"{s:.2f} s; {counts(c)}"))

        big = tmp / "big"
        big_layout(big, layer_mb << 20)
        for mode in ("monolithic", "chunked"):
            out = subprocess.run([sys.executable, "-c", CHILD, str(ROOT), str(big), server.host,
                                  f"bench/big-{mode}", mode], check=True, capture_output=True, text=True)
            r = json.loads(out.stdout)
            peak = r["peak_kb"] / 1024
            rows.append(Row("push", f"{layer_mb} MB layer, {mode} upload: peak RSS of the pushing process", peak,
                            "MB", *at_most(peak, 100, " MB"),
                            f"RSS before the push {r['before_kb'] / 1024:.0f} MB; {r['bytes'] / 1e6:.0f} MB "
                            f"sent in {r['seconds']:.1f} s"))
    finally:
        server.stop()
        if not keep:
            shutil.rmtree(tmp, ignore_errors=True)
    return rows


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--layer-mb", type=int, default=None, help="size of the big layer (default 1024, quick 256)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    cli(ap, run)


if __name__ == "__main__":
    main()
