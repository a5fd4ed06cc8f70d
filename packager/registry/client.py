"""The OCI distribution API of one registry, pull side and push side, over transport.py.

Enters: repository names, digests and tags; for a push, blobs to stream (opened again for each try)
and manifests' exact bytes. Leaves: manifests (bytes, media type, digest) and blobs written to disk
(streamed, digest-verified, atomically); for a push, what each blob upload did (`BlobUpload`) and the
manifest's digest, checked against the registry's answer.

`RegistryClient` fetches manifests and blobs (an index is followed to one architecture) and pushes them
(HEAD to skip, cross-repository mount, monolithic or chunked streamed upload, manifest with its exact
bytes). A chunked upload learns from the registry how much it holds (the session's Range) after each chunk
and before going on from an interruption, and keeps its session in `UploadSessions` (a small file per blob
under mlpack's cache folder): the next push resumes it while the registry still has it. Authentication and
retries are transport.py's; references are ref.py's. `ImageRef`, `Credentials` and `RetryPolicy` are
re-exported here: callers of the registry need only this module.

Must not import boto3 (credentials come in as plain values from packager/aws.py), nor spec/build code;
media types, architecture names and digests come from packager/oci/ (the on-disk format).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlencode

import httpx

from packager import oci
from packager.errors import RegistryError
from packager.fsutil import write_atomic
from packager.registry.ref import DOCKER_HUB, ImageRef, is_local
from packager.registry.transport import (
    DOCKER_HUB_API,
    PIECE,
    Credentials,
    RegistryHttp,
    RetryPolicy,
    Side,
    _error_codes,
    _error_detail,
    _range_end,
    _Retryable,
    _stream,
    _with_query,
)

__all__ = [
    "ACCEPT", "CHUNKED_ABOVE", "CHUNK_SIZE", "DOCKER_HUB", "DOCKER_HUB_API", "DOCKER_LIST", "DOCKER_MANIFEST",
    "INDEX_TYPES", "MANIFEST_TYPES", "OCI_INDEX", "OCI_MANIFEST", "BlobUpload", "Credentials", "ImageRef",
    "RegistryClient", "RetryPolicy", "UploadSessions", "cache_dir", "is_local", "sha256_digest",
]

OCI_MANIFEST = oci.MT_OCI_MANIFEST
OCI_INDEX = oci.MT_OCI_INDEX
DOCKER_MANIFEST = oci.MT_DOCKER_MANIFEST
DOCKER_LIST = oci.MT_DOCKER_LIST
INDEX_TYPES = oci.INDEX_TYPES
MANIFEST_TYPES = oci.MANIFEST_TYPES
ACCEPT = ", ".join((*MANIFEST_TYPES, *INDEX_TYPES))

DIGEST_RE = oci.DIGEST_RE

CHUNKED_ABOVE = 64 * 1024 * 1024  # blobs larger than this go up in PATCH chunks, resumable after a failure
CHUNK_SIZE = 32 * 1024 * 1024

SESSION_MAX_AGE_S = 6 * 24 * 3600  # registries drop unfinished uploads after a while (distribution: 7 days)

sha256_digest = oci.sha256_bytes


def cache_dir() -> Path:
    """mlpack's cache folder: MLPACK_CACHE_DIR, else $XDG_CACHE_HOME/mlpack, else ~/.cache/mlpack. The same
    rule as packager.image.deps.cache_dir (a test holds them equal): this plumbing sits below the image
    stage and cannot import it."""
    override = os.environ.get("MLPACK_CACHE_DIR")
    if override:
        return Path(override)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "mlpack"


class UploadSessions:
    """The sessions of chunked uploads not finished yet, one small JSON file per registry, repository and
    blob digest under `root` (`<cache>/uploads` by default), written atomically: the session URL and the
    offset the registry last confirmed. A push that is interrupted leaves its file; the next push of the
    same blob asks the registry how much of that session it holds and goes on from there. Unreadable,
    stale (older than SESSION_MAX_AGE_S) or mismatched files are ignored."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @classmethod
    def default(cls) -> UploadSessions:
        return cls(cache_dir() / "uploads")

    def _path(self, registry: str, repository: str, digest: str) -> Path:
        key = hashlib.sha256(f"{registry}/{repository}@{digest}".encode()).hexdigest()[:40]
        return self.root / f"{key}.json"

    def load(self, registry: str, repository: str, digest: str, size: int) -> str | None:
        """The stored session URL of this blob's upload, or None."""
        path = self._path(registry, repository, digest)
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
            ok = (doc["registry"], doc["repository"], doc["digest"], doc["size"]) == (registry, repository,
                                                                                       digest, size)
            fresh = time.time() - float(doc["saved_at"]) < SESSION_MAX_AGE_S
            location = doc["location"]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return str(location) if ok and fresh and isinstance(location, str) and location else None

    def save(self, registry: str, repository: str, digest: str, size: int, location: str, offset: int) -> None:
        doc = {"registry": registry, "repository": repository, "digest": digest, "size": size,
               "location": location, "offset": offset, "saved_at": time.time()}
        with contextlib.suppress(OSError):  # a cache we cannot write costs the resumption, never the push
            write_atomic(self._path(registry, repository, digest), json.dumps(doc, sort_keys=True).encode(),
                         mode=0o600)

    def forget(self, registry: str, repository: str, digest: str) -> None:
        with contextlib.suppress(OSError):
            self._path(registry, repository, digest).unlink(missing_ok=True)


@dataclass
class _Upload:
    """One blob's upload across attempts: its session, and what the registry confirmed holding."""

    location: str | None = None
    min_chunk: int = 0
    offset: int = 0  # bytes the registry confirmed holding in this session
    accepted: int = 0  # bytes it confirmed accepting, over every session: only grows (renews the retry budget)
    ask: bool = False  # the session was interrupted: ask the registry its offset before sending more
    used: bool = False  # data went up for it (so the result is an upload, even when a retry finds the blob)
    lost: int = 0  # sessions the registry dropped during this upload

    def confirm(self, offset: int) -> None:
        if offset > self.offset:
            self.accepted += offset - self.offset
        self.offset = offset


@dataclass(frozen=True)
class BlobUpload:
    """What a blob upload did: 'skip' (already there) or 'upload', and bytes sent over the wire."""

    digest: str
    action: str
    bytes_sent: int


class RegistryClient:
    """Talks to one registry. `endpoint` overrides where requests go (e.g. ECR's data plane pointed at a
    local registry in tests); `transport`/`client` are seams for tests; `credentials` enable basic auth
    and are also offered to a bearer-token service when the registry asks for one."""

    def __init__(
        self,
        registry: str,
        *,
        credentials: Credentials | None = None,
        endpoint: str | None = None,
        transport: httpx.BaseTransport | None = None,
        client: httpx.Client | None = None,
        retry: RetryPolicy | None = None,
        timeout_s: float = 60.0,
        chunked_above: int = CHUNKED_ABOVE,
        chunk_size: int = CHUNK_SIZE,
        basic_first: bool = False,
    ) -> None:
        self.http = RegistryHttp(registry, credentials=credentials, endpoint=endpoint, transport=transport,
                                 client=client, retry=retry, timeout_s=timeout_s, basic_first=basic_first)
        self.registry = registry
        self.chunked_above = chunked_above
        self.chunk_size = chunk_size

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @staticmethod
    def _pull(repository: str) -> str:
        return f"repository:{repository}:pull"

    @staticmethod
    def _push(repository: str) -> str:
        return f"repository:{repository}:pull,push"

    # --- pull side ------------------------------------------------------------------------------

    def get_manifest(self, repository: str, reference: str, *, side: Side = "pull") -> tuple[bytes, str, str]:
        """The manifest's exact bytes, its media type and its digest (verified when asked by digest).
        `side` picks the hints of failures (resolve says "base": it pulls base images)."""
        action = f"get manifest {self.registry}/{repository}:{reference}"

        def attempt() -> httpx.Response:
            r = self.http.send("GET", self.http.url(f"{repository}/manifests/{reference}"),
                               scope=self._pull(repository), headers={"Accept": ACCEPT})
            r.read()
            return r

        r: httpx.Response = self.http.retrying(action, attempt, side=side)
        if r.status_code == 404:
            raise RegistryError(f"{action}: not found",
                                hint="check the repository name and tag (`skopeo list-tags docker://...`)")
        if r.status_code != 200:
            raise self.http.fail(action, r)
        data = r.content
        media_type = r.headers.get("content-type", "").split(";")[0].strip()
        if not media_type or media_type == "application/json":
            doc = _json_or_none(data)
            media_type = str(doc.get("mediaType", "")) if doc else ""
        digest = sha256_digest(data)
        if DIGEST_RE.match(reference) and digest != reference:
            raise RegistryError(f"{action}: the registry sent a manifest whose digest is {digest}",
                                hint="the registry or a proxy altered the manifest; try again or use another mirror")
        return data, media_type, digest

    def referrers(self, repository: str, digest: str) -> dict[str, Any] | None:
        """The registry's referrers index of `digest` (OCI distribution 1.1 referrers API), or None when the
        registry does not have the API (it answers 404: clients then keep the tag-schema fallback)."""
        action = f"list referrers of {self.registry}/{repository}@{digest}"

        def attempt() -> httpx.Response:
            r = self.http.send("GET", self.http.url(f"{repository}/referrers/{digest}"),
                               scope=self._pull(repository), headers={"Accept": oci.MT_OCI_INDEX})
            r.read()
            return r

        r: httpx.Response = self.http.retrying(action, attempt)
        if r.status_code == 404:
            return None
        if r.status_code != 200:
            raise self.http.fail(action, r)
        doc = _json_or_none(r.content)
        return doc if isinstance(doc, dict) and r.headers.get("content-type", "").startswith(oci.MT_OCI_INDEX) \
            else None

    def head_manifest(self, repository: str, reference: str) -> str | None:
        """The digest a tag or digest currently resolves to, or None when absent."""
        action = f"check manifest {self.registry}/{repository}:{reference}"

        def attempt() -> httpx.Response:
            return self.http.send("HEAD", self.http.url(f"{repository}/manifests/{reference}"),
                                  scope=self._pull(repository), headers={"Accept": ACCEPT})

        r: httpx.Response = self.http.retrying(action, attempt, side="push")
        if r.status_code == 404:
            return None
        if r.status_code != 200:
            raise self.http.fail(action, r)
        digest = r.headers.get("docker-content-digest")
        if not digest:
            # Some registries omit the header on HEAD; fetch the bytes to know for sure.
            return self.get_manifest(repository, reference)[2]
        return str(digest)

    def resolve(self, ref: ImageRef, arch: str) -> tuple[bytes, str, str]:
        """The image manifest for one architecture: an index is followed to its `arch` entry."""
        data, media_type, digest = self.get_manifest(ref.repository, ref.reference, side="base")
        doc = _json_or_none(data)
        if doc is None:
            raise RegistryError(f"{ref}: the manifest is not JSON")
        if not media_type:
            media_type = str(doc.get("mediaType", ""))
        if media_type in INDEX_TYPES or (not media_type and "manifests" in doc):
            want = oci.OCI_ARCH.get(arch, arch)
            found = []
            for m in doc.get("manifests", []):
                plat = m.get("platform") or {}
                found.append(f"{plat.get('os')}/{plat.get('architecture')}")
                if plat.get("os") == "linux" and plat.get("architecture") == want:
                    child = str(m["digest"])
                    data, media_type, digest = self.get_manifest(ref.repository, child, side="base")
                    break
            else:
                raise RegistryError(f"{ref}: no linux/{want} image in its index (has {', '.join(found) or 'none'})",
                                    hint="pick another base or another runtime.arch")
        if media_type not in MANIFEST_TYPES:
            raise RegistryError(f"{ref}: unsupported manifest type {media_type or '(none)'}",
                                hint="use an image with an OCI or Docker v2 schema 2 manifest")
        return data, media_type, digest

    def fetch_blob(self, repository: str, digest: str, dest: Path) -> None:
        """Stream a blob to `dest`, verifying its digest; `dest` appears only when complete and correct."""
        if not DIGEST_RE.match(digest):
            raise RegistryError(f"fetch blob {digest!r}: not a sha256 digest")
        action = f"fetch blob {self.registry}/{repository}@{digest}"
        dest.parent.mkdir(parents=True, exist_ok=True)

        def attempt() -> None:
            fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
            try:
                with os.fdopen(fd, "wb") as f:
                    r = self.http.send("GET", self.http.url(f"{repository}/blobs/{digest}"),
                                       scope=self._pull(repository), stream=True)
                    try:
                        if r.status_code == 404:
                            raise RegistryError(f"{action}: not found")
                        if r.status_code != 200:
                            r.read()
                            raise self.http.fail(action, r)
                        h = hashlib.sha256()
                        try:
                            for piece in r.iter_bytes(PIECE):
                                h.update(piece)
                                f.write(piece)
                        except httpx.TransportError as e:
                            raise _Retryable(f"{action}: download interrupted: {e}") from e
                    finally:
                        r.close()
                got = "sha256:" + h.hexdigest()
                if got != digest:
                    raise _Retryable(f"{action}: received data has digest {got}")
                os.replace(tmp, dest)
            finally:
                Path(tmp).unlink(missing_ok=True)

        self.http.retrying(action, attempt)

    # --- push side ------------------------------------------------------------------------------

    def blob_size(self, repository: str, digest: str) -> int | None:
        """The size of a blob in `repository`, or None when it is not there."""
        action = f"check blob {self.registry}/{repository}@{digest}"

        def attempt() -> httpx.Response:
            return self.http.send("HEAD", self.http.url(f"{repository}/blobs/{digest}"),
                                  scope=self._pull(repository))

        r: httpx.Response = self.http.retrying(action, attempt, side="push")
        if r.status_code == 404:
            return None
        if r.status_code in (401, 403):
            # Some registries refuse HEAD in repositories that do not exist yet or that we may not read.
            return None
        if r.status_code != 200:
            raise self.http.fail(action, r)
        return int(r.headers.get("content-length", "-1"))

    def mount_blob(self, repository: str, digest: str, from_repository: str) -> bool:
        """Ask the registry to link a blob from another repository; False when it would not."""
        action = f"mount blob {digest} from {from_repository} into {self.registry}/{repository}"
        query = urlencode({"mount": digest, "from": from_repository})
        url = self.http.url(f"{repository}/blobs/uploads/") + "?" + query
        scope = f"{self._push(repository)} {self._pull(from_repository)}"

        def attempt() -> httpx.Response:
            return self.http.send("POST", url, scope=scope, headers={"Content-Length": "0"})

        r: httpx.Response = self.http.retrying(action, attempt, side="push")
        if r.status_code == 201:
            return True
        if r.status_code == 202:
            # The registry started an ordinary upload instead; cancel it rather than leave it dangling.
            location = r.headers.get("location")
            if location:
                with contextlib.suppress(_Retryable):
                    self.http.send("DELETE", self.http.abs(location), scope=self._push(repository)).close()
            return False
        if r.status_code in (401, 403, 404):
            return False
        raise self.http.fail(action, r)

    def upload_blob(self, repository: str, digest: str, size: int, open_blob: Callable[[], IO[bytes]], *,
                    sessions: UploadSessions | None = None,
                    on_progress: Callable[[int], None] | None = None) -> BlobUpload:
        """Upload a blob streamed from `open_blob()` (called again for each attempt, read a PIECE at a time).
        Before each retry the registry is asked what arrived: a complete blob is not sent again, a chunked
        upload goes on from the offset the registry reports, and every byte the registry confirms starts
        the retry budget again. With `sessions`, a chunked upload's session is kept there until the blob is
        complete, so that a push interrupted for any reason is resumed by the next one. `on_progress` gets
        the offset the registry confirmed after each chunk (it may raise to stop the upload)."""
        action = f"upload blob {digest} to {self.registry}/{repository}"
        sent = [0]
        up = _Upload()
        chunked = size > self.chunked_above
        keep = sessions if chunked else None
        stored = [keep.load(self.registry, repository, digest, size) if keep else None]

        def attempt() -> str:
            if up.location is None:
                if self.blob_size(repository, digest) is not None:
                    if keep:
                        keep.forget(self.registry, repository, digest)
                    # there already (or arrived before a lost response)
                    return "upload" if up.used else "skip"
                if stored[0] is not None and keep is not None:
                    up.location, up.offset, stored[0] = self.http.abs(stored[0]), 0, None
                    if self._upload_offset(repository, up) is None:  # the registry no longer has it: start over
                        keep.forget(self.registry, repository, digest)
                        up.location = None
                if up.location is None:
                    up.location, up.min_chunk = self._start_upload(repository, action)
                    up.offset, up.ask = 0, False
                    if keep:
                        keep.save(self.registry, repository, digest, size, self._portable(up.location), 0)
            up.used = True
            if chunked:
                self._chunked(repository, digest, size, open_blob, up, sent, action, keep, on_progress)
                if keep:
                    keep.forget(self.registry, repository, digest)
            else:
                location = up.location
                up.location = None  # a failed monolithic PUT leaves the session unusable
                self._put_blob(repository, location, digest, size, open_blob, 0, sent, action)
            return "upload"

        done: str = self.http.retrying(action, attempt, side="push", progress=lambda: up.accepted)
        return BlobUpload(digest=digest, action=done, bytes_sent=sent[0])

    def _portable(self, location: str) -> str:
        """A session URL as stored: relative to the endpoint when it is on it (the next push may reach the
        same registry through another endpoint, a proxy's port for one), else as it is."""
        return location[len(self.http.endpoint):] if location.startswith(self.http.endpoint + "/") else location

    def _start_upload(self, repository: str, action: str) -> tuple[str, int]:
        """Open an upload session: its URL, and the smallest chunk the registry accepts (OCI 1.1 header)."""
        r = self.http.send("POST", self.http.url(f"{repository}/blobs/uploads/"), scope=self._push(repository),
                           headers={"Content-Length": "0"})
        if r.status_code != 202 or "location" not in r.headers:
            raise self.http.fail(action, r)
        min_chunk = r.headers.get("oci-chunk-min-length", "0")
        return self.http.abs(r.headers["location"]), int(min_chunk) if min_chunk.isdigit() else 0

    def _put_blob(self, repository: str, location: str, digest: str, size: int, open_blob: Callable[[], IO[bytes]],
                  offset: int, sent: list[int], action: str) -> None:
        """Finish an upload with a PUT that carries the rest of the blob from `offset`."""
        length = size - offset

        def body() -> Iterator[bytes]:
            return _stream(open_blob, offset, length, sent)

        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(length)}
        r = self.http.send("PUT", _with_query(location, {"digest": digest}), scope=self._push(repository),
                           headers=headers, body=body)
        if r.status_code == 201:
            self._check_digest_header(r, digest, action)
            return
        codes = _error_codes(r)
        # Check DIGEST_INVALID first: its message ("did not match uploaded content") mentions uploads too.
        if r.status_code == 400 and "DIGEST_INVALID" in codes:
            raise RegistryError(f"{action}: the registry computed another digest for the data we sent",
                                hint="the local blob is corrupt; rebuild the image with `mlpack build`")
        if r.status_code == 404 or (r.status_code == 400 and codes & {"BLOB_UPLOAD_UNKNOWN", "BLOB_UPLOAD_INVALID"}):
            raise _Retryable(f"{action}: upload session lost (HTTP {r.status_code})")
        raise self.http.fail(action, r)

    def _chunked(self, repository: str, digest: str, size: int, open_blob: Callable[[], IO[bytes]], up: _Upload,
                 sent: list[int], action: str, keep: UploadSessions | None,
                 on_progress: Callable[[int], None] | None) -> None:
        """PATCH the blob from the session's offset, a chunk at a time, then PUT the last piece."""
        assert up.location is not None
        if up.ask and self._upload_offset(repository, up) is None:
            # The session is gone: start over (the next attempt begins with a HEAD of the blob). Distribution
            # (Docker Hub's and the CNCF registry) cancels a session asked about with the URL from before a
            # chunk whose answer was lost: after a lost answer, an upload there starts over.
            raise self._session_lost(up, action, "the registry no longer has the upload session")
        up.ask = True  # whatever fails below, the next attempt asks the registry how far it got
        offset = up.offset
        while True:
            length = min(max(self.chunk_size, up.min_chunk), size - offset)
            if offset + length >= size:
                # The last piece (empty when every byte already arrived before an interruption) closes the upload.
                self._put_blob(repository, up.location, digest, size, open_blob, offset, sent, action)
                up.location, up.ask = None, False
                up.confirm(size)
                return
            start = offset

            def body(start: int = start, length: int = length) -> Iterator[bytes]:
                return _stream(open_blob, start, length, sent)

            headers = {"Content-Type": "application/octet-stream", "Content-Length": str(length),
                       "Content-Range": f"{start}-{start + length - 1}"}
            r = self.http.send("PATCH", up.location, scope=self._push(repository), headers=headers, body=body)
            if r.status_code == 404 or (r.status_code == 400
                                        and _error_codes(r) & {"BLOB_UPLOAD_UNKNOWN", "BLOB_UPLOAD_INVALID"}):
                raise self._session_lost(up, action, f"upload session lost (HTTP {r.status_code})")
            if r.status_code == 416:  # the registry holds another amount than we thought: ask it, then go on
                raise _Retryable(f"{action}: the registry expected another offset than {start} (HTTP 416)")
            if r.status_code != 202:
                raise self.http.fail(action, r)
            up.location = self.http.abs(r.headers.get("location", up.location))
            offset = _range_end(r.headers.get("range")) or start + length
            up.confirm(offset)
            if keep:
                keep.save(self.registry, repository, digest, size, self._portable(up.location), offset)
            if on_progress:
                on_progress(offset)

    def _session_lost(self, up: _Upload, action: str, why: str) -> Exception:
        """The failure to raise when the registry dropped the session: one more attempt, with a new session,
        unless it dropped as many as the retry policy has attempts (a registry losing every session would
        otherwise renew the budget forever, accepting bytes each time)."""
        up.location, up.ask, up.offset = None, False, 0
        up.lost += 1
        if up.lost > self.http.retry.attempts:
            return RegistryError(f"{action}: the registry dropped the upload session {up.lost} times",
                                 hint="try again later, or push through a steadier network; each session "
                                      "lost starts the blob over")
        return _Retryable(f"{action}: {why}")

    def _upload_offset(self, repository: str, up: _Upload) -> int | None:
        """How many bytes of an interrupted upload the registry holds (GET on the session: `Range: 0-<last
        byte>`), noted in `up`; None when the registry no longer has the session."""
        assert up.location is not None
        r = self.http.send("GET", up.location, scope=self._push(repository))
        r.close()
        if r.status_code not in (200, 202, 204):
            return None
        up.location = self.http.abs(r.headers.get("location", up.location))
        up.confirm(_range_end(r.headers.get("range")))  # what the registry says, even less than we thought
        up.ask = False
        return up.offset

    def _check_digest_header(self, r: httpx.Response, digest: str, action: str) -> None:
        got = r.headers.get("docker-content-digest")
        if got and got != digest:
            raise RegistryError(f"{action}: the registry stored it as {got}",
                                hint="the registry or a proxy altered the data; do not deploy this image")

    def put_manifest(self, repository: str, reference: str, data: bytes, media_type: str) -> str:
        """PUT the manifest's exact bytes under a tag or digest; returns the digest, checked against ours."""
        digest = sha256_digest(data)
        action = f"push manifest {self.registry}/{repository}:{reference}"

        def attempt() -> httpx.Response:
            r = self.http.send("PUT", self.http.url(f"{repository}/manifests/{reference}"),
                               scope=self._push(repository), headers={"Content-Type": media_type}, body=lambda: data)
            r.read()
            return r

        r: httpx.Response = self.http.retrying(action, attempt, side="push")
        if r.status_code not in (200, 201):
            detail = _error_detail(r)
            if "BLOB_UNKNOWN" in r.text:  # MANIFEST_BLOB_UNKNOWN too
                raise RegistryError(f"{action}: the registry lacks a blob the manifest refers to ({detail})",
                                    hint="run the push again; it uploads what is missing")
            if "TAG_INVALID" in r.text or "ImageTagAlreadyExists" in r.text or "IMMUTABLE" in r.text.upper():
                raise RegistryError(f"{action}: tag {reference!r} already exists and the registry will not move it",
                                    hint="bump model.version in mlpack.toml, or push to another repository with --to")
            raise self.http.fail(action, r)
        got = r.headers.get("docker-content-digest")
        if got and got != digest:
            raise RegistryError(f"{action}: the registry reports digest {got}, expected {digest}",
                                hint="the registry rewrote the manifest; pinning by digest would break")
        return digest



def _json_or_none(data: bytes) -> dict[str, Any] | None:
    try:
        doc = json.loads(data)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None
