"""The one door to container registries: the OCI distribution API over HTTP, pull side and push side.

`ImageRef` is a parsed image reference; `RegistryClient` fetches manifests and blobs (streamed,
digest-verified, written atomically) and pushes them (HEAD to skip, cross-repository mount,
monolithic or chunked streamed upload, manifest with its exact bytes, returned digest checked).
Authentication: anonymous, bearer token from a WWW-Authenticate challenge, or basic.

Must not import boto3 (credentials come in as plain values from packager/aws.py), nor spec/build code;
media types, architecture names and digests come from packager/oci.py (the on-disk format).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import random
import re
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlencode, urljoin, urlsplit, urlunsplit

import httpx

from packager import oci
from packager.errors import RegistryError

DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"

OCI_MANIFEST = oci.MT_OCI_MANIFEST
OCI_INDEX = oci.MT_OCI_INDEX
DOCKER_MANIFEST = oci.MT_DOCKER_MANIFEST
DOCKER_LIST = oci.MT_DOCKER_LIST
INDEX_TYPES = oci.INDEX_TYPES
MANIFEST_TYPES = oci.MANIFEST_TYPES
ACCEPT = ", ".join((*MANIFEST_TYPES, *INDEX_TYPES))

DIGEST_RE = oci.DIGEST_RE
_TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_REPO_RE = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$")

PIECE = 1024 * 1024  # bytes read from disk at a time while streaming: bounds memory per upload
CHUNKED_ABOVE = 64 * 1024 * 1024  # blobs larger than this go up in PATCH chunks, resumable after a failure
CHUNK_SIZE = 32 * 1024 * 1024
RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})


# ---------------------------------------------------------------------------------------------------
# references


@dataclass(frozen=True)
class ImageRef:
    """registry/repository[:tag][@digest], with docker's defaults applied (docker.io, library/, latest)."""

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @classmethod
    def parse(cls, s: str, *, default_tag: str | None = "latest") -> ImageRef:
        """Parse docker-style; `default_tag` applies when neither tag nor digest is given."""
        text = s.strip()
        bad = RegistryError(
            f"{s!r}: not an image reference",
            hint="write it as [REGISTRY/]REPOSITORY[:TAG][@sha256:DIGEST], e.g. 123456789012.dkr.ecr."
            "eu-west-1.amazonaws.com/mlpack/iris:1 or 127.0.0.1:5000/mlpack/iris",
        )
        if not text or any(c.isspace() for c in text) or "://" in text:
            raise bad
        digest: str | None = None
        if "@" in text:
            text, digest = text.split("@", 1)
            if not DIGEST_RE.match(digest):
                raise RegistryError(f"{s!r}: digest must be sha256: followed by 64 lowercase hex digits",
                                    hint="copy the digest from `mlpack push --json` or mlpack.lock.json")
        first, sep, rest = text.partition("/")
        if sep and ("." in first or ":" in first or first == "localhost"):
            registry, path = first, rest
        else:
            registry, path = DOCKER_HUB, text
        tag: str | None = None
        last_slash = path.rfind("/")
        colon = path.rfind(":")
        if colon > last_slash:
            path, tag = path[:colon], path[colon + 1:]
            if not _TAG_RE.match(tag):
                raise RegistryError(f"{s!r}: tag {tag!r} is not valid",
                                    hint="a tag is 1-128 letters, digits, '_', '.' or '-', not starting with . or -")
        if registry == DOCKER_HUB and "/" not in path:
            path = f"library/{path}"
        if not path or not _REPO_RE.match(path):
            raise bad
        if tag is None and digest is None:
            tag = default_tag
        return cls(registry=registry, repository=path, tag=tag, digest=digest)

    def __str__(self) -> str:
        out = f"{self.registry}/{self.repository}"
        if self.tag:
            out += f":{self.tag}"
        if self.digest:
            out += f"@{self.digest}"
        return out

    @property
    def name(self) -> str:
        """registry/repository, without tag or digest."""
        return f"{self.registry}/{self.repository}"

    @property
    def reference(self) -> str:
        """What to ask the registry for: the digest when pinned, else the tag."""
        ref = self.digest or self.tag
        if ref is None:
            raise RegistryError(f"{self}: names no tag or digest", hint="add :TAG or @sha256:DIGEST")
        return ref

    def with_digest(self, digest: str | None) -> ImageRef:
        return replace(self, digest=digest)

    def with_tag(self, tag: str | None) -> ImageRef:
        return replace(self, tag=tag)


sha256_digest = oci.sha256_bytes


def is_local(registry: str) -> bool:
    host = registry.rsplit(":", 1)[0] if not registry.startswith("[") else registry.split("]")[0] + "]"
    return host in ("127.0.0.1", "localhost", "[::1]")


# ---------------------------------------------------------------------------------------------------
# retries


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """Exponential backoff with jitter. `sleep` is a seam so tests do not wait."""

    attempts: int = 6
    base_s: float = 0.25
    max_s: float = 8.0
    sleep: Callable[[float], None] = time.sleep

    def pause(self, attempt: int) -> None:
        delay = min(self.max_s, self.base_s * (2**attempt))
        self.sleep(delay * (0.5 + random.random() / 2))


class _Retryable(Exception):
    """A failure worth trying again (5xx, 429, a dropped connection)."""

    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


# ---------------------------------------------------------------------------------------------------
# the client


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str


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
        self.registry = registry
        host = DOCKER_HUB_API if registry == DOCKER_HUB else registry
        if endpoint is None:
            endpoint = f"{'http' if is_local(registry) else 'https'}://{host}"
        self.endpoint = endpoint.rstrip("/")
        self.credentials = credentials
        self.retry = retry or RetryPolicy()
        self.chunked_above = chunked_above
        self.chunk_size = chunk_size
        self._own_client = client is None
        self._http = client or httpx.Client(
            transport=transport,
            timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 15.0)),
            follow_redirects=True,  # blob GETs redirect to storage; httpx drops Authorization across origins
        )
        self._auth: dict[str, str] = {}  # scope -> Authorization header value
        # ECR always wants basic auth: sending it up front saves a 401 round trip per scope.
        self._basic = basic_first and credentials is not None

    def close(self) -> None:
        if self._own_client:
            self._http.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- plumbing -------------------------------------------------------------------------------

    def _url(self, path: str) -> str:
        return f"{self.endpoint}/v2/{path}"

    def _abs(self, location: str) -> str:
        """A Location header made absolute (registries may answer with a path)."""
        return urljoin(self.endpoint + "/", location)

    def _header_for(self, scope: str) -> dict[str, str]:
        if scope in self._auth:
            return {"Authorization": self._auth[scope]}
        if self._basic and self.credentials:
            return {"Authorization": self._basic_value()}
        return {}

    def _basic_value(self) -> str:
        assert self.credentials is not None
        raw = f"{self.credentials.username}:{self.credentials.password}".encode()
        return "Basic " + base64.b64encode(raw).decode()

    def _send(
        self,
        method: str,
        url: str,
        *,
        scope: str,
        headers: dict[str, str] | None = None,
        body: Callable[[], Iterator[bytes] | bytes] | None = None,
        stream: bool = False,
    ) -> httpx.Response:
        """One request, answering one authentication challenge. Transport errors and retryable
        statuses become _Retryable; other statuses are returned for the caller to judge."""
        for _ in range(2):
            h = {**(headers or {}), **self._header_for(scope)}
            content = body() if body is not None else None
            try:
                request = self._http.build_request(method, url, headers=h, content=content)
                response = self._http.send(request, stream=stream)
            except httpx.TransportError as e:
                raise _Retryable(f"{method} {_short(url)}: {type(e).__name__}: {e}") from e
            if response.status_code == 401 and self._answer_challenge(response, scope):
                response.close()
                continue
            if response.status_code in RETRY_STATUS:
                if stream:
                    response.close()
                raise _Retryable(f"{method} {_short(url)}: HTTP {response.status_code}")
            return response
        return response

    def _answer_challenge(self, response: httpx.Response, scope: str) -> bool:
        """Get credentials for the challenge in a 401; False when there is nothing new to try."""
        challenge = response.headers.get("www-authenticate", "")
        scheme, _, rest = challenge.partition(" ")
        if scheme.lower() == "basic":
            if self.credentials is None or self._basic:
                return False
            self._basic = True
            return True
        if scheme.lower() != "bearer":
            return False
        params = dict(re.findall(r'(\w+)="([^"]*)"', rest))
        realm = params.get("realm")
        if not realm or scope in self._auth:
            return False  # a token we already had was refused: do not loop
        query: list[tuple[str, str]] = []
        if "service" in params:
            query.append(("service", params["service"]))
        for s in scope.split(" "):
            query.append(("scope", s))
        headers = {"Authorization": self._basic_value()} if self.credentials else {}
        try:
            r = self._http.get(realm + ("&" if "?" in realm else "?") + urlencode(query), headers=headers)
        except httpx.TransportError as e:
            raise _Retryable(f"token service {_short(realm)}: {e}") from e
        if r.status_code in RETRY_STATUS:
            raise _Retryable(f"token service {_short(realm)}: HTTP {r.status_code}")
        if r.status_code != 200:
            raise RegistryError(f"{self.registry}: the token service refused access to {scope} "
                                f"(HTTP {r.status_code})", hint=_login_hint(self.registry))
        try:
            data = r.json()
        except ValueError as e:  # a captive portal or proxy page instead of the token service
            raise RegistryError(f"{self.registry}: the token service {_short(realm)} did not answer with JSON",
                                hint="check the registry address and any proxy in between") from e
        token = (data.get("token") or data.get("access_token")) if isinstance(data, dict) else None
        if not token:
            raise RegistryError(f"{self.registry}: the token service answered without a token")
        self._auth[scope] = f"Bearer {token}"
        return True

    def _retrying(self, what: str, attempt_fn: Callable[[], Any]) -> Any:
        last = ""
        for attempt in range(self.retry.attempts):
            try:
                return attempt_fn()
            except _Retryable as e:
                last = e.what
                if attempt + 1 < self.retry.attempts:
                    self.retry.pause(attempt)
        raise RegistryError(f"{what}: gave up after {self.retry.attempts} attempts (last: {last})",
                            hint=f"check that {self.registry} is reachable, then run the command again; "
                                 "what already arrived is not sent twice")

    def _fail(self, action: str, r: httpx.Response) -> RegistryError:
        code = r.status_code
        detail = _error_detail(r)
        if code == 401:
            return RegistryError(f"{action}: {self.registry} requires credentials ({detail})",
                                 hint=_login_hint(self.registry))
        if code == 403:
            return RegistryError(f"{action}: access denied by {self.registry} ({detail})",
                                 hint="check that your credentials allow pull and push on this repository")
        return RegistryError(f"{action}: {self.registry} answered HTTP {code} ({detail})")

    @staticmethod
    def _pull(repository: str) -> str:
        return f"repository:{repository}:pull"

    @staticmethod
    def _push(repository: str) -> str:
        return f"repository:{repository}:pull,push"

    # --- pull side ------------------------------------------------------------------------------

    def get_manifest(self, repository: str, reference: str) -> tuple[bytes, str, str]:
        """The manifest's exact bytes, its media type and its digest (verified when asked by digest)."""
        action = f"get manifest {self.registry}/{repository}:{reference}"

        def attempt() -> httpx.Response:
            r = self._send("GET", self._url(f"{repository}/manifests/{reference}"),
                           scope=self._pull(repository), headers={"Accept": ACCEPT})
            r.read()
            return r

        r: httpx.Response = self._retrying(action, attempt)
        if r.status_code == 404:
            raise RegistryError(f"{action}: not found",
                                hint="check the repository name and tag (`skopeo list-tags docker://...`)")
        if r.status_code != 200:
            raise self._fail(action, r)
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

    def head_manifest(self, repository: str, reference: str) -> str | None:
        """The digest a tag or digest currently resolves to, or None when absent."""
        action = f"check manifest {self.registry}/{repository}:{reference}"

        def attempt() -> httpx.Response:
            return self._send("HEAD", self._url(f"{repository}/manifests/{reference}"),
                              scope=self._pull(repository), headers={"Accept": ACCEPT})

        r: httpx.Response = self._retrying(action, attempt)
        if r.status_code == 404:
            return None
        if r.status_code != 200:
            raise self._fail(action, r)
        digest = r.headers.get("docker-content-digest")
        if not digest:
            # Some registries omit the header on HEAD; fetch the bytes to know for sure.
            return self.get_manifest(repository, reference)[2]
        return str(digest)

    def resolve(self, ref: ImageRef, arch: str) -> tuple[bytes, str, str]:
        """The image manifest for one architecture: an index is followed to its `arch` entry."""
        data, media_type, digest = self.get_manifest(ref.repository, ref.reference)
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
                    data, media_type, digest = self.get_manifest(ref.repository, child)
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
                    r = self._send("GET", self._url(f"{repository}/blobs/{digest}"),
                                   scope=self._pull(repository), stream=True)
                    try:
                        if r.status_code == 404:
                            raise RegistryError(f"{action}: not found")
                        if r.status_code != 200:
                            r.read()
                            raise self._fail(action, r)
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

        self._retrying(action, attempt)

    # --- push side ------------------------------------------------------------------------------

    def blob_size(self, repository: str, digest: str) -> int | None:
        """The size of a blob in `repository`, or None when it is not there."""
        action = f"check blob {self.registry}/{repository}@{digest}"

        def attempt() -> httpx.Response:
            return self._send("HEAD", self._url(f"{repository}/blobs/{digest}"),
                              scope=self._pull(repository))

        r: httpx.Response = self._retrying(action, attempt)
        if r.status_code == 404:
            return None
        if r.status_code in (401, 403):
            # Some registries refuse HEAD in repositories that do not exist yet or that we may not read.
            return None
        if r.status_code != 200:
            raise self._fail(action, r)
        return int(r.headers.get("content-length", "-1"))

    def mount_blob(self, repository: str, digest: str, from_repository: str) -> bool:
        """Ask the registry to link a blob from another repository; False when it would not."""
        action = f"mount blob {digest} from {from_repository} into {self.registry}/{repository}"
        url = self._url(f"{repository}/blobs/uploads/") + "?" + urlencode({"mount": digest, "from": from_repository})
        scope = f"{self._push(repository)} {self._pull(from_repository)}"

        def attempt() -> httpx.Response:
            return self._send("POST", url, scope=scope, headers={"Content-Length": "0"})

        r: httpx.Response = self._retrying(action, attempt)
        if r.status_code == 201:
            return True
        if r.status_code == 202:
            # The registry started an ordinary upload instead; cancel it rather than leave it dangling.
            location = r.headers.get("location")
            if location:
                with contextlib.suppress(_Retryable):
                    self._send("DELETE", self._abs(location), scope=self._push(repository)).close()
            return False
        if r.status_code in (401, 403, 404):
            return False
        raise self._fail(action, r)

    def upload_blob(self, repository: str, digest: str, size: int, open_blob: Callable[[], IO[bytes]]) -> BlobUpload:
        """Upload a blob streamed from `open_blob()` (called again for each attempt). Before each retry the
        registry is asked what arrived: a complete blob is not sent again, a chunked upload resumes."""
        action = f"upload blob {digest} to {self.registry}/{repository}"
        sent = [0]
        state: dict[str, Any] = {"location": None}

        def attempt() -> str:
            if state["location"] is None:
                if self.blob_size(repository, digest) is not None:
                    return "skip"  # there already, or arrived before a lost response
                state["location"], state["min_chunk"] = self._start_upload(repository, action)
            if size > self.chunked_above:
                self._chunked(repository, digest, size, open_blob, state, sent, action)
            else:
                location = state["location"]
                state["location"] = None  # a failed monolithic PUT leaves the session unusable
                self._put_blob(repository, location, digest, size, open_blob, 0, sent, action)
            return "upload"

        done: str = self._retrying(action, attempt)
        return BlobUpload(digest=digest, action=done, bytes_sent=sent[0])

    def _start_upload(self, repository: str, action: str) -> tuple[str, int]:
        """Open an upload session: its URL, and the smallest chunk the registry accepts (OCI 1.1 header)."""
        r = self._send("POST", self._url(f"{repository}/blobs/uploads/"), scope=self._push(repository),
                       headers={"Content-Length": "0"})
        if r.status_code != 202 or "location" not in r.headers:
            raise self._fail(action, r)
        min_chunk = r.headers.get("oci-chunk-min-length", "0")
        return self._abs(r.headers["location"]), int(min_chunk) if min_chunk.isdigit() else 0

    def _put_blob(self, repository: str, location: str, digest: str, size: int, open_blob: Callable[[], IO[bytes]],
                  offset: int, sent: list[int], action: str) -> None:
        """Finish an upload with a PUT that carries the rest of the blob from `offset`."""
        length = size - offset

        def body() -> Iterator[bytes]:
            return _stream(open_blob, offset, length, sent)

        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(length)}
        r = self._send("PUT", _with_query(location, {"digest": digest}), scope=self._push(repository),
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
        raise self._fail(action, r)

    def _chunked(self, repository: str, digest: str, size: int, open_blob: Callable[[], IO[bytes]],
                 state: dict[str, Any], sent: list[int], action: str) -> None:
        offset = self._upload_offset(repository, state, action) if state.get("resumed") else 0
        state["resumed"] = True  # any later attempt asks the registry how far it got
        while True:
            length = min(max(self.chunk_size, state.get("min_chunk") or 0), size - offset)
            if offset + length >= size:
                # The last piece (empty when every byte already arrived before an interruption) closes the upload.
                self._put_blob(repository, state["location"], digest, size, open_blob, offset, sent, action)
                state["location"], state["resumed"] = None, False
                return
            start = offset

            def body(start: int = start, length: int = length) -> Iterator[bytes]:
                return _stream(open_blob, start, length, sent)

            headers = {"Content-Type": "application/octet-stream", "Content-Length": str(length),
                       "Content-Range": f"{start}-{start + length - 1}"}
            r = self._send("PATCH", state["location"], scope=self._push(repository), headers=headers, body=body)
            if r.status_code == 404:
                state["location"], state["resumed"] = None, False
                raise _Retryable(f"{action}: upload session lost")
            if r.status_code != 202:
                raise self._fail(action, r)
            state["location"] = self._abs(r.headers.get("location", state["location"]))
            offset = _range_end(r.headers.get("range")) or start + length

    def _upload_offset(self, repository: str, state: dict[str, Any], action: str) -> int:
        """How many bytes of an interrupted chunked upload the registry holds."""
        r = self._send("GET", state["location"], scope=self._push(repository))
        if r.status_code == 204:
            state["location"] = self._abs(r.headers.get("location", state["location"]))
            return _range_end(r.headers.get("range"))
        # The session is gone: start over (the next attempt begins with a HEAD of the blob).
        state["location"], state["resumed"] = None, False
        raise _Retryable(f"{action}: upload session lost (HTTP {r.status_code})")

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
            r = self._send("PUT", self._url(f"{repository}/manifests/{reference}"), scope=self._push(repository),
                           headers={"Content-Type": media_type}, body=lambda: data)
            r.read()
            return r

        r: httpx.Response = self._retrying(action, attempt)
        if r.status_code not in (200, 201):
            detail = _error_detail(r)
            if "BLOB_UNKNOWN" in r.text:  # MANIFEST_BLOB_UNKNOWN too
                raise RegistryError(f"{action}: the registry lacks a blob the manifest refers to ({detail})",
                                    hint="run the push again; it uploads what is missing")
            if "TAG_INVALID" in r.text or "ImageTagAlreadyExists" in r.text or "IMMUTABLE" in r.text.upper():
                raise RegistryError(f"{action}: tag {reference!r} already exists and the registry will not move it",
                                    hint="bump model.version in mlpack.toml, or push to another repository with --to")
            raise self._fail(action, r)
        got = r.headers.get("docker-content-digest")
        if got and got != digest:
            raise RegistryError(f"{action}: the registry reports digest {got}, expected {digest}",
                                hint="the registry rewrote the manifest; pinning by digest would break")
        return digest


# ---------------------------------------------------------------------------------------------------
# helpers


def _stream(open_blob: Callable[[], IO[bytes]], offset: int, length: int, sent: list[int]) -> Iterator[bytes]:
    """Yield `length` bytes from `offset`, a PIECE at a time, counting what goes out."""
    with open_blob() as f:
        f.seek(offset)
        left = length
        while left > 0:
            piece = f.read(min(PIECE, left))
            if not piece:
                raise RegistryError(f"blob file ended {left} bytes early",
                                    hint="the image layout changed during the push; rebuild it")
            left -= len(piece)
            sent[0] += len(piece)
            yield piece


def _with_query(url: str, params: dict[str, str]) -> str:
    """Add query parameters to a URL that may already carry the registry's own (its upload state):
    httpx's params= would replace them (FACTS.md)."""
    parts = urlsplit(url)
    extra = urlencode(params)
    query = f"{parts.query}&{extra}" if parts.query else extra
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


def _range_end(header: str | None) -> int:
    """The next offset from a Range header '0-1234' (bytes 0..1234 held -> 1235)."""
    if not header:
        return 0
    m = re.match(r"^(?:bytes=)?(\d+)-(\d+)$", header.strip())
    return int(m.group(2)) + 1 if m else 0


def _json_or_none(data: bytes) -> dict[str, Any] | None:
    try:
        doc = json.loads(data)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


def _errors(r: httpx.Response) -> list[dict[str, Any]]:
    """The `errors` of an OCI distribution error body; empty when it has none."""
    try:
        r.read()
        errors = r.json().get("errors") or []
    except (ValueError, AttributeError, httpx.HTTPError):
        return []
    return [e for e in errors if isinstance(e, dict)]


def _error_codes(r: httpx.Response) -> set[str]:
    return {str(e.get("code")) for e in _errors(r)}


def _error_detail(r: httpx.Response) -> str:
    errors = _errors(r)
    return "; ".join(f"{e.get('code')}: {e.get('message')}" for e in errors) if errors else f"HTTP {r.status_code}"


def _short(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.netloc}{parts.path}"


def _login_hint(registry: str) -> str:
    if ".dkr.ecr." in registry:
        return "check your AWS credentials (aws sts get-caller-identity) and the region"
    return "pass credentials with MLPACK_REGISTRY_USERNAME and MLPACK_REGISTRY_PASSWORD"
