"""Benchmark `mlpack push` against a local registry (Debian's docker-registry on 127.0.0.1).

1. The real iris image: examples/iris (a copy) built by mlpack on the debian base, pushed; retrained
   (another C in the copy's train.py: a model-only change), rebuilt and pushed again; pushed a third
   time with nothing changed. Bytes and time of each push (one push each: single samples). Checked,
   not only reported, on the set of blobs each push uploaded (the pusher's own account, and the blobs
   the registry's storage gained): the first push uploads every layer and the config; after the
   retrain, exactly the layers that differ between the two images' manifests plus the new config, and
   those layers must be exactly the model layer; with nothing changed, no blob. Any other outcome
   fails the script (non-zero exit; bench/run shows a FAILED row).
2. Peak memory (VmHWM of a fresh process) while pushing ONE LAYER OF RANDOM DATA (1 GB; 256 MB with
   --quick), monolithic and chunked, next to the same process's peak before the push: a memory test of
   the transport, not an image.

    .venv/bin/python bench/bench_push.py [--layer-mb 1024] [--keep] [--quick] [--json]

Prints a table. The build uses a private mlpack cache under the temp folder (mmdebstrap and pip may
download); pushes never leave 127.0.0.1.
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
from dataclasses import dataclass
from pathlib import Path

from common import ROOT, Row, at_most, cli, parser
from iris_image import build, build_iris, private_cache, retrain

sys.path.insert(0, str(ROOT))
from packager import oci
from packager.image import build as image_mod
from packager.registry import push as push_mod
from packager.registry.client import ImageRef, RegistryClient
from tests.support.layouts import OCI_CONFIG, OCI_LAYER, OCI_MANIFEST
from tests.support.registry import RegistryServer, start_registry

REPOSITORY = "mlpack/iris"


class PushCheckFailed(AssertionError):
    """A push uploaded other blobs than the ones it should have."""


@dataclass(frozen=True)
class Pushed:
    seconds: float
    bytes_sent: int
    counts: dict[str, int]
    uploaded: frozenset[str]  # digests the pusher uploaded (its progress callback, after any mount fallback)
    stored: frozenset[str]  # digests the registry's blob storage gained (blobs and the manifest)


def registry_blobs(server: RegistryServer) -> set[str]:
    """Every digest in the registry's filesystem storage (layers, configs and manifests all live there)."""
    store = server.root / "data" / "docker" / "registry" / "v2" / "blobs" / "sha256"
    return {"sha256:" + p.parent.name for p in store.glob("*/*/data")}


def timed_push(image: oci.Image, server: RegistryServer, tag: str) -> Pushed:
    before = registry_blobs(server)
    uploaded: set[str] = set()

    def progress(step: push_mod.BlobStep, action: str) -> None:
        if action == "upload":
            uploaded.add(step.digest)

    t0 = time.perf_counter()
    with RegistryClient(server.host) as client:
        plan = push_mod.plan_push(image, ImageRef(server.host, REPOSITORY, tag, None), client)
        result = push_mod.execute(plan, image, client, progress=progress)
    seconds = time.perf_counter() - t0
    return Pushed(seconds, result.bytes_sent, result.counts, frozenset(uploaded),
                  frozenset(registry_blobs(server) - before))


def names(result: image_mod.BuildResult) -> dict[str, str]:
    """digest -> what it is in the image (base, deps, handler, model, config)."""
    out = {r.digest: r.name for r in result.rows}
    out[result.image.config.digest] = "config"
    out[result.image.manifest.digest] = "manifest"
    return out


def describe(digests: set[str] | frozenset[str], known: dict[str, str]) -> str:
    return "{" + ", ".join(sorted(f"{known.get(d, 'unknown')} {d[:19]}" for d in digests)) + "}"


def check(what: str, pushed: Pushed, image: oci.Image, expected: set[str], known: dict[str, str]) -> None:
    """Fail unless the push uploaded exactly `expected`, sent exactly their bytes, and the registry's
    storage gained exactly those blobs (plus the manifest, when it was new)."""
    problems = []
    if pushed.uploaded != expected:
        problems.append(f"uploaded {describe(pushed.uploaded, known)}, expected {describe(expected, known)}")
    sizes = {d.digest: d.size for d in [*image.layers, image.config]}
    want_bytes = sum(sizes[d] for d in expected)
    if pushed.bytes_sent != want_bytes:
        problems.append(f"sent {pushed.bytes_sent} bytes, the expected blobs hold {want_bytes}")
    if pushed.stored - {image.manifest.digest} != expected:
        problems.append(f"the registry's storage gained {describe(pushed.stored, known)}")
    if problems:
        raise PushCheckFailed(f"{what}: " + "; ".join(problems))


def counts(c: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in c.items()) + " blobs"


def iris_rows(work: Path, server: RegistryServer) -> list[Row]:
    with private_cache(work / "cache"):
        project, first = build_iris(work)
        image1 = first.image  # descriptors stay in memory: the rebuild below replaces the layout on disk
        known = names(first)
        layers1 = {d.digest for d in image1.layers}
        p1 = timed_push(image1, server, first.report["model"]["version"])
        check("first push", p1, image1, layers1 | {image1.config.digest}, known)

        retrain(project, c=0.5)
        second = build(project)
    image2 = second.image
    known |= names(second)
    layers2 = {d.digest for d in image2.layers}
    differing = layers2 - layers1  # in the new manifest, not in the old one
    model_layer = {r.digest for r in second.rows if r.name == "model"}
    old_model = {r.digest for r in first.rows if r.name == "model"}
    if differing != model_layer or layers1 - layers2 != old_model:
        raise PushCheckFailed(f"the retrain changed the layers {describe(layers1 ^ layers2, known)}, not only "
                              f"the model layer {describe(old_model | model_layer, known)}")
    tag2 = second.report["model"]["version"]
    p2 = timed_push(image2, server, tag2)
    check("push after the retrain", p2, image2, differing | {image2.config.digest}, known)
    p3 = timed_push(image2, server, tag2)
    check("push with nothing changed", p3, image2, set(), known)

    total = sum(d.size for d in image1.layers) + image1.config.size
    model_kb = sum(d.size for d in image2.layers if d.digest in differing) / 1e3
    where = f"debian base, {len(image1.layers)} layers"
    return [
        Row("push", "first push, iris image: bytes sent", p1.bytes_sent / 1e6, "MB",
            note=f"{where} + config, {total / 1e6:.1f} MB; {counts(p1.counts)}; single sample"),
        Row("push", "first push, iris image: time", p1.seconds, "s",
            note="local registry on 127.0.0.1; single sample"),
        Row("push", "push after retrain (model-only change): bytes sent", p2.bytes_sent / 1e6, "MB",
            "only the model layer + config travel", True,
            f"checked on the uploaded blobs: model layer {model_kb:.1f} kB + config; {counts(p2.counts)}; "
            f"{p1.bytes_sent / max(p2.bytes_sent, 1):.0f}x fewer bytes; single sample"),
        Row("push", "push after retrain (model-only change): time", p2.seconds, "s",
            note=f"{p1.seconds / p2.seconds:.0f}x faster than the first push; single sample"),
        Row("push", "push with nothing changed: bytes sent", p3.bytes_sent / 1e6, "MB", "no blob uploaded", True,
            f"{p3.seconds:.2f} s; {counts(p3.counts)}; single sample"),
    ]


def big_layout(dest: Path, size: int) -> None:
    """An OCI layout whose one layer is `size` bytes of random data (not a tar: registries do not look
    inside layers), written in 8 MB pieces."""
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


def memory_rows(work: Path, server: RegistryServer, layer_mb: int) -> list[Row]:
    big = work / "big"
    big_layout(big, layer_mb << 20)
    rows = []
    for mode in ("monolithic", "chunked"):
        out = subprocess.run([sys.executable, "-c", CHILD, str(ROOT), str(big), server.host,
                              f"bench/big-{mode}", mode], check=True, capture_output=True, text=True)
        r = json.loads(out.stdout)
        peak = r["peak_kb"] / 1024
        rows.append(Row("push", f"{layer_mb} MB layer of random data (transport memory test, not an image), "
                                f"{mode} upload: peak RSS of the pushing process", peak, "MB",
                        *at_most(peak, 100, " MB"),
                        f"peak before the push {r['before_kb'] / 1024:.0f} MB; {r['bytes'] / 1e6:.0f} MB "
                        f"sent in {r['seconds']:.1f} s; single sample"))
    shutil.rmtree(big)
    return rows


def run(quick: bool, layer_mb: int | None = None, keep: bool = False) -> list[Row]:
    layer_mb = layer_mb or (256 if quick else 1024)
    tmp = Path(tempfile.mkdtemp(prefix="bench-push-"))
    server = start_registry(tmp)
    try:
        return iris_rows(tmp / "iris", server) + memory_rows(tmp, server, layer_mb)
    finally:
        server.stop()
        if not keep:
            shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--layer-mb", type=int, default=None,
                    help="size of the random-data layer for the memory test (default 1024, quick 256)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    cli(ap, run)


if __name__ == "__main__":
    main()
