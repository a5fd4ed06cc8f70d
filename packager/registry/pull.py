"""Pull one image by digest from a registry into an OCI layout on disk: what promotion copies.

Enters: a `RegistryClient`, a repository, a manifest digest and an empty folder. Leaves: the `Image` in
that folder, every blob verified against its digest (the manifest's bytes are kept exactly, so the
digest is the same wherever it is pushed next). Speaks to registries only through
packager/registry/client.py; no AWS.
"""

from __future__ import annotations

import json
from pathlib import Path

from packager import oci
from packager.errors import RegistryError
from packager.registry.client import RegistryClient


def pull(client: RegistryClient, repository: str, digest: str, dest: Path) -> oci.Image:
    """The image `repository@digest`, written to the layout `dest` (created). Only single-architecture
    manifests (what mlpack pushes)."""
    data, media_type, got = client.get_manifest(repository, digest)
    where = f"{client.registry}/{repository}@{digest}"
    if got != digest or oci.sha256_bytes(data) != digest:
        raise RegistryError(f"{where}: the registry returned a manifest with another digest ({got})")
    if media_type not in oci.MANIFEST_TYPES:
        raise RegistryError(f"{where}: a {media_type}, not a single-architecture image manifest",
                            hint="promote the digest mlpack pushed (the lock's), not an index")
    doc = json.loads(data)
    config = oci.Descriptor.from_json(doc.get("config"), f"{where}: config")
    layers = [oci.Descriptor.from_json(x, f"{where}: layer") for x in doc.get("layers", [])]
    staging = dest / ".pull"
    for desc in [config, *layers]:
        client.fetch_blob(repository, desc.digest, staging / desc.digest.partition(":")[2])  # verified
    config_bytes = (staging / config.digest.partition(":")[2]).read_bytes()
    arch = _arch(json.loads(config_bytes), where)
    image = oci.write_layout(dest, manifest_bytes=data, media_type=media_type, arch=arch,
                             blobs=[(d.digest, staging / d.digest.partition(":")[2]) for d in layers],
                             config_bytes=config_bytes)
    for path in staging.iterdir():
        path.unlink()
    staging.rmdir()
    return image


def _arch(config: dict[str, object], where: str) -> str:
    arch = oci.LAMBDA_ARCH.get(str(config.get("architecture")))
    if arch is None:
        raise RegistryError(f"{where}: architecture {config.get('architecture')!r} is not one Lambda runs")
    return arch
