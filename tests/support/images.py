"""Stand-in bases and project copies for image-build tests.

`aws_like_base` re-shapes a built debian base into what AWS's Lambda Python base looks like from the
outside (entrypoint /lambda-entrypoint.sh, LAMBDA_* env, python under /var/lang), so the `aws` and
registry base forms can be exercised against a local registry. Uses packager's own layer writer.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from packager import oci
from packager.image import layers

REPO_ROOT = Path(__file__).resolve().parents[2]

ENTRYPOINT_SH = b"""#!/bin/sh
# stand-in for AWS's /lambda-entrypoint.sh: run the runtime client with the handler
exec /var/lang/bin/python3 -m awslambdaric "$@"
"""


def copy_example(name: str, dest: Path) -> Path:
    """A copy of examples/<name> without its build folder (so tests never write into the repo), trained
    when the example's outputs are absent (a fresh clone ignores them)."""
    src = REPO_ROOT / "examples" / name
    out = dest / name
    shutil.copytree(src, out, ignore=shutil.ignore_patterns("build", "__pycache__", "cdk.out"))
    spec = (out / "mlpack.toml").read_text()
    needs = [f for f in ("model.joblib", "samples.csv") if f'"{f}"' in spec and not (out / f).exists()]
    if needs:
        subprocess.run([sys.executable, "train.py"], cwd=out, check=True, capture_output=True, timeout=600)
    return out


def aws_like_base(debian: oci.Image, dest: Path, *, python: str = "3.11") -> oci.Image:
    """An OCI layout at `dest`: the debian base plus a layer that makes it look like AWS's base."""
    work = dest.parent / (dest.name + "-work")
    work.mkdir(parents=True, exist_ok=True)
    entries = [
        layers.Entry(path="lambda-entrypoint.sh", kind="file", mode=0o755, data=ENTRYPOINT_SH),
        layers.Entry(path=f"var/lang/bin/python{python}", kind="symlink", target=f"/usr/bin/python{python}"),
        layers.Entry(path="var/lang/bin/python3", kind="symlink", target=f"python{python}"),
        layers.Entry(path="var/runtime", kind="dir"),
        layers.Entry(path="var/task", kind="dir"),
    ]
    layer = layers.write_layer(entries, work / "aws.tar.gz", name="aws-shape", created_by="stand-in aws shape",
                               mtime=0)
    config = json.loads(json.dumps(debian.config_json))
    config["config"] = {
        "Env": ["LANG=en_US.UTF-8", "TZ=:/etc/localtime",
                "PATH=/var/lang/bin:/usr/local/bin:/usr/bin/:/bin:/opt/bin",
                "LD_LIBRARY_PATH=/var/lang/lib:/lib64:/usr/lib64:/var/runtime:/var/runtime/lib:/var/task",
                "LAMBDA_TASK_ROOT=/var/task", "LAMBDA_RUNTIME_DIR=/var/runtime"],
        "Entrypoint": ["/lambda-entrypoint.sh"],
        "WorkingDir": "/var/task",
    }
    config["rootfs"]["diff_ids"] = [*debian.diff_ids, layer.diff_id]
    config["history"] = [*config.get("history", []), {"created_by": layer.created_by}]
    config_bytes = oci.canonical_json(config)
    descs = [oci.Descriptor(media_type=d.media_type, digest=d.digest, size=d.size) for d in debian.layers]
    descs.append(oci.Descriptor(media_type=oci.MT_OCI_LAYER_GZIP, digest=layer.digest, size=layer.size))
    manifest = {"schemaVersion": 2, "mediaType": oci.MT_OCI_MANIFEST,
                "config": {"mediaType": oci.MT_OCI_CONFIG, "digest": oci.sha256_bytes(config_bytes),
                           "size": len(config_bytes)},
                "layers": [d.to_json() for d in descs]}
    blobs = [(d.digest, debian.blob_path(d.digest)) for d in debian.layers] + [(layer.digest, layer.path)]
    arch = oci.LAMBDA_ARCH[config["architecture"]]
    image = oci.write_layout(dest, manifest_bytes=oci.canonical_json(manifest), media_type=oci.MT_OCI_MANIFEST,
                             arch=arch, blobs=blobs, config_bytes=config_bytes, ref_name=python)
    shutil.rmtree(work)
    return image


def skopeo_copy(src: str, dest: str) -> None:
    subprocess.run(["skopeo", "copy", "--quiet", "--insecure-policy", "--dest-tls-verify=false", src, dest],
                   check=True, capture_output=True, timeout=300)


def multi_arch_layout(images: list[oci.Image], dest: Path, *, tag: str) -> Path:
    """An OCI layout whose tag points at an image index over `images` (one per architecture)."""
    dest.mkdir(parents=True)
    (dest / "oci-layout").write_bytes(oci.canonical_json({"imageLayoutVersion": oci.OCI_LAYOUT_VERSION}))
    entries = []
    for img in images:
        for blob in (img.layout / "blobs" / "sha256").iterdir():
            oci.put_blob_file(dest, blob, "sha256:" + blob.name)
        entries.append({**img.manifest.to_json(), "platform": {"architecture": oci.OCI_ARCH[img.arch], "os": "linux"}})
    index = oci.canonical_json({"schemaVersion": 2, "mediaType": oci.MT_OCI_INDEX, "manifests": entries})
    digest = oci.put_blob_bytes(dest, index)
    top = {"schemaVersion": 2, "mediaType": oci.MT_OCI_INDEX,
           "manifests": [{"mediaType": oci.MT_OCI_INDEX, "digest": digest, "size": len(index),
                          "annotations": {oci.ANNOTATION_REF_NAME: tag}}]}
    (dest / "index.json").write_bytes(oci.canonical_json(top))
    return dest
