"""Image references: where an image lives, as text and as a value.

Enters: docker-style text, REGISTRY/REPOSITORY[:TAG][@sha256:DIGEST] (docker's defaults apply:
docker.io, library/, latest). Leaves: an `ImageRef` (registry, repository, tag, digest), and
`is_local`, whether a registry host is this machine (spoken to over plain HTTP).

No network and no I/O: transport.py and client.py build on it. Digest syntax comes from packager/oci/.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from packager import oci
from packager.errors import RegistryError

DOCKER_HUB = "docker.io"

DIGEST_RE = oci.DIGEST_RE
_TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_REPO_RE = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$")


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


def is_local(registry: str) -> bool:
    host = registry.rsplit(":", 1)[0] if not registry.startswith("[") else registry.split("]")[0] + "]"
    return host in ("127.0.0.1", "localhost", "[::1]")
