"""HTTP to one registry, with authentication and retries: the plumbing under client.py.

Enters: a registry host (or an `endpoint` to send its requests to instead), optional `Credentials`,
and requests: method, URL, the token scope they need, headers and a body (rebuilt for each try).
Leaves: the `httpx.Response` for the caller to judge; a failure worth trying again (5xx, 429, a dropped
connection) as `_Retryable`, which `RegistryHttp.retrying` retries with backoff (the budget starts again
whenever the registry accepted more of an upload) and finally turns into a `RegistryError`; a host name
that does not resolve as `_Unresolvable`, never retried, turned at once into a `RegistryError` naming the
host, with a hint for what was being done (pulling a base, pulling, pushing); `RegistryHttp.fail` turns
any other unwanted answer into one clear `RegistryError`.

Authentication: anonymous, bearer token from a WWW-Authenticate challenge (offered the credentials
when there are any), or basic. Also the streaming and URL helpers of uploads, and the readers of
the distribution API's error bodies. Must not import boto3 (credentials come in as plain values).
"""

from __future__ import annotations

import base64
import random
import re
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, Any, Literal
from urllib.parse import urlencode, urljoin, urlsplit, urlunsplit

import httpx

from packager.errors import RegistryError
from packager.registry.ref import DOCKER_HUB, is_local

DOCKER_HUB_API = "registry-1.docker.io"

PIECE = 1024 * 1024  # bytes read from disk at a time while streaming: bounds memory per upload
RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})

# What a request was for, which decides the hint of a failure: pulling a base image (`mlpack build`),
# pulling anything else (promote, relock), or pushing.
Side = Literal["base", "pull", "push"]


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


class _Unresolvable(_Retryable):
    """The host name does not resolve (DNS): offline, or a typo. Not worth trying again: `retrying`
    turns it into a `RegistryError` on the first attempt. A `_Retryable` so that code suppressing
    transport failures of a best-effort request suppresses this one too."""

    def __init__(self, what: str, host: str, why: str) -> None:
        super().__init__(what)
        self.host = host
        self.why = why


def _dns_failure(e: BaseException) -> socket.gaierror | None:
    """The name-resolution error under an httpx/httpcore connect error, if that is what it is."""
    seen: set[int] = set()
    cur: BaseException | None = e
    while cur is not None and id(cur) not in seen:
        if isinstance(cur, socket.gaierror):
            return cur
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
    return None


def _transport_failure(e: httpx.TransportError, what: str, url: str) -> _Retryable:
    """A transport error as the failure `retrying` understands: a DNS failure is not retried."""
    dns = _dns_failure(e) if isinstance(e, httpx.ConnectError) else None
    if dns is not None:
        host = urlsplit(url).hostname or url
        why = str(dns.strerror or dns)
        return _Unresolvable(f"{what}: cannot resolve the host name {host} ({why})", host, why)
    return _Retryable(f"{what}: {type(e).__name__}: {e}")


# ---------------------------------------------------------------------------------------------------
# HTTP with authentication


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str


class RegistryHttp:
    """Requests to one registry, authenticated per token scope. `endpoint` overrides where requests go
    (e.g. ECR's data plane pointed at a local registry in tests); `transport`/`client` are seams for
    tests; `credentials` enable basic auth and are also offered to a bearer-token service when the
    registry asks for one."""

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
        basic_first: bool = False,
    ) -> None:
        self.registry = registry
        host = DOCKER_HUB_API if registry == DOCKER_HUB else registry
        if endpoint is None:
            endpoint = f"{'http' if is_local(registry) else 'https'}://{host}"
        self.endpoint = endpoint.rstrip("/")
        self.credentials = credentials
        self.retry = retry or RetryPolicy()
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

    def url(self, path: str) -> str:
        return f"{self.endpoint}/v2/{path}"

    def abs(self, location: str) -> str:
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

    def send(
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
                raise _transport_failure(e, f"{method} {_short(url)}", url) from e
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
        self._auth[scope] = f"Bearer {self._token(realm, params.get('service'), scope)}"
        return True

    def _token(self, realm: str, service: str | None, scope: str) -> str:
        """A bearer token for `scope` from the token service at `realm`."""
        query: list[tuple[str, str]] = []
        if service is not None:
            query.append(("service", service))
        for s in scope.split(" "):
            query.append(("scope", s))
        headers = {"Authorization": self._basic_value()} if self.credentials else {}
        try:
            r = self._http.get(realm + ("&" if "?" in realm else "?") + urlencode(query), headers=headers)
        except httpx.TransportError as e:
            raise _transport_failure(e, f"token service {_short(realm)}", realm) from e
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
        return str(token)

    def retrying(self, what: str, attempt_fn: Callable[[], Any], *, side: Side = "pull",
                 progress: Callable[[], int] | None = None) -> Any:
        """`attempt_fn()`, tried again after a `_Retryable` failure with backoff, at most `retry.attempts`
        times in a row without progress: `progress()` (bytes the registry confirmed it holds, never
        decreasing) growing since the last failure starts the budget again, so a long upload through a
        flaky network is limited by failures in a row, not by its length. A host name that does not
        resolve fails at once. `side` picks the hints."""
        last = ""
        tries = 0
        in_a_row = 0
        best = progress() if progress is not None else 0
        while True:
            tries += 1
            try:
                return attempt_fn()
            except _Unresolvable as e:
                raise RegistryError(f"{what}: cannot resolve the host name {e.host} ({e.why})",
                                    hint=_offline_hint(side, e.host)) from e
            except _Retryable as e:
                last = e.what
            if progress is not None and (now := progress()) > best:
                best, in_a_row = now, 0  # the registry holds more than before: a fresh budget
            in_a_row += 1
            if in_a_row >= self.retry.attempts:
                break
            self.retry.pause(in_a_row - 1)
        raise RegistryError(f"{what}: gave up after {tries} attempts (last: {last})",
                            hint=_gave_up_hint(side, self.registry))

    def fail(self, action: str, r: httpx.Response) -> RegistryError:
        code = r.status_code
        detail = _error_detail(r)
        if code == 401:
            return RegistryError(f"{action}: {self.registry} requires credentials ({detail})",
                                 hint=_login_hint(self.registry))
        if code == 403:
            return RegistryError(f"{action}: access denied by {self.registry} ({detail})",
                                 hint="check that your credentials allow pull and push on this repository")
        return RegistryError(f"{action}: {self.registry} answered HTTP {code} ({detail})")


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
    httpx's params= would replace them."""
    parts = urlsplit(url)
    extra = urlencode(params)
    query = f"{parts.query}&{extra}" if parts.query else extra
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


def _range_end(header: str | None) -> int:
    """The next offset from a Range header '0-1234' (bytes 0..1234 held -> 1235). '0-0' is 0: distribution
    answers it for an empty session (and for one holding one byte, which an upload of ours never is: it
    sends at least a PIECE before it asks)."""
    if not header:
        return 0
    m = re.match(r"^(?:bytes=)?(\d+)-(\d+)$", header.strip())
    if not m or m.group(2) == "0":
        return 0
    return int(m.group(2)) + 1


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


def _offline_hint(side: Side, host: str) -> str:
    """The hint for a host name that does not resolve: offline, or misspelt."""
    check = f"check the name {host} and this machine's network (DNS, proxy)"
    if side == "base":
        return (f"{check}; offline, build on `--base debian` (made from Debian's packages and cached after one "
                "build online) or on a base on disk (oci:PATH, docker-archive:PATH)")
    if side == "push":
        return f"{check}; is the registry in --to (or [registry] in mlpack.toml) spelt right?"
    return check


def _gave_up_hint(side: Side, registry: str) -> str:
    if side == "push":
        return (f"check that {registry} is reachable, then push again: blobs already uploaded are not sent "
                "again, and a large one resumes where the registry stopped")
    return f"check that {registry} is reachable, then run the command again"


def _login_hint(registry: str) -> str:
    if ".dkr.ecr." in registry:
        return "check your AWS credentials (aws sts get-caller-identity) and the region"
    return "pass credentials with MLPACK_REGISTRY_USERNAME and MLPACK_REGISTRY_PASSWORD"
