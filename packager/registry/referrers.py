"""Attach an artifact (the image's SBOM) to a pushed image, as the OCI distribution spec 1.1 describes.

Enters: a `RegistryClient`, a repository, the image's manifest descriptor (the subject), the artifact's
bytes and media type. Leaves: the artifact manifest's digest. The artifact is an OCI image manifest with
`artifactType`, the empty config, one layer (the artifact) and `subject` naming the image: registries
with the referrers API (ECR among them) list it under GET /v2/<repo>/referrers/<digest> by themselves;
for the others, the tag-schema fallback: an image index tagged `sha256-<hex of the subject>` listing
the referrers, which this module adds the artifact to (once: an entry already there is left as it is).

Deterministic: the same image and SBOM give the same artifact manifest, so attaching again uploads
nothing. Speaks to registries only through packager/registry/client.py; no AWS.
"""

from __future__ import annotations

import functools
import io
import json
from dataclasses import dataclass
from typing import Any

from packager import oci
from packager.errors import RegistryError
from packager.registry.client import RegistryClient

MT_EMPTY = "application/vnd.oci.empty.v1+json"
EMPTY = b"{}"
MT_CYCLONEDX = "application/vnd.cyclonedx+json"


@dataclass(frozen=True)
class Attached:
    digest: str  # the artifact manifest's
    fallback: bool  # written into the tag-schema fallback index too (no referrers API)
    bytes_sent: int


def artifact_manifest(subject: oci.Descriptor, artifact: bytes, media_type: str) -> bytes:
    """The artifact's manifest bytes: canonical JSON, so equal inputs give one digest."""
    doc = {
        "schemaVersion": 2,
        "mediaType": oci.MT_OCI_MANIFEST,
        "artifactType": media_type,
        "config": {"mediaType": MT_EMPTY, "digest": oci.sha256_bytes(EMPTY), "size": len(EMPTY), "data": "e30="},
        "layers": [{"mediaType": media_type, "digest": oci.sha256_bytes(artifact), "size": len(artifact)}],
        "subject": {"mediaType": subject.media_type, "digest": subject.digest, "size": subject.size},
    }
    return oci.canonical_json(doc)


def fallback_tag(digest: str) -> str:
    """The tag-schema fallback's tag for a subject: sha256-<hex>."""
    algorithm, _, hexpart = digest.partition(":")
    return f"{algorithm}-{hexpart}"


def attach(client: RegistryClient, repository: str, subject: oci.Descriptor, artifact: bytes,
           media_type: str = MT_CYCLONEDX) -> Attached:
    sent = 0
    for blob in (EMPTY, artifact):
        up = client.upload_blob(repository, oci.sha256_bytes(blob), len(blob), functools.partial(io.BytesIO, blob))
        sent += up.bytes_sent
    manifest = artifact_manifest(subject, artifact, media_type)
    digest = client.put_manifest(repository, oci.sha256_bytes(manifest), manifest, oci.MT_OCI_MANIFEST)
    if client.referrers(repository, subject.digest) is not None:
        return Attached(digest=digest, fallback=False, bytes_sent=sent)
    _add_to_fallback(client, repository, subject.digest, {
        "mediaType": oci.MT_OCI_MANIFEST, "digest": digest, "size": len(manifest), "artifactType": media_type})
    return Attached(digest=digest, fallback=True, bytes_sent=sent)


def _add_to_fallback(client: RegistryClient, repository: str, subject: str, entry: dict[str, Any]) -> None:
    tag = fallback_tag(subject)
    manifests: list[dict[str, Any]] = []
    if client.head_manifest(repository, tag) is not None:
        data, media_type, _ = client.get_manifest(repository, tag)
        if media_type != oci.MT_OCI_INDEX:
            raise RegistryError(f"{client.registry}/{repository}:{tag}: the referrers fallback tag holds a "
                                f"{media_type}, not an image index", hint="delete that tag, then push again")
        manifests = list(json.loads(data).get("manifests", []))
        if any(m.get("digest") == entry["digest"] for m in manifests):
            return
    index = {"schemaVersion": 2, "mediaType": oci.MT_OCI_INDEX, "manifests": [*manifests, entry]}
    client.put_manifest(repository, tag, oci.canonical_json(index), oci.MT_OCI_INDEX)
