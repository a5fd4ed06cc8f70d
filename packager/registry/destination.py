"""What `mlpack push` sends and where: the source image and the destination, each decided in one place.

Enters: the path given on the command line (a model project or an OCI image layout), an optional
destination `ImageRef` (--to), the model's name and version, the image's manifest digest, and the
environment (MLPACK_REGISTRY_ENDPOINT, MLPACK_REGISTRY_USERNAME/PASSWORD; for ECR, AWS's own).
Leaves: a `Source` (layout, model.json, project folder, [registry].repository) and its `Image`; a
`Destination`: the `ImageRef` (registry/repository:tag; the tag is the one given, else
`<model version>-<12 hex of the manifest digest>`, which names the image), a `RegistryClient` with
credentials and, for ECR, the `Repositories` that push.py's plan asks whether the repository exists and
its execution creates it with.

Changes nothing itself: ECR is only asked (the account, a login token); creating the repository is a
step of the push plan, so `--dry-run` shows it. AWS is reached only through packager/aws.py, imported
when ECR is involved (boto3 loads only then).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from packager import oci
from packager.config import spec as spec_mod
from packager.config.repo import Environment
from packager.errors import RegistryError
from packager.registry import push as push_mod
from packager.registry.client import Credentials, ImageRef, RegistryClient

if TYPE_CHECKING:
    from packager import aws as aws_mod

# send registry API calls here instead (a proxy, or tests): one URL for every registry, or
# "HOST=URL,HOST=URL" for some registries only (promotion talks to two)
ENV_ENDPOINT = "MLPACK_REGISTRY_ENDPOINT"
ENV_USERNAME = "MLPACK_REGISTRY_USERNAME"
ENV_PASSWORD = "MLPACK_REGISTRY_PASSWORD"
ECR_REPO_PREFIX = "mlpack/"


@dataclass(frozen=True, kw_only=True)
class Source:
    """What is being pushed: the layout, its model.json, and the project folder it came from."""

    layout: Path
    model_json: Path
    project_dir: Path
    registry_repository: str | None  # from mlpack.toml [registry].repository


def find_source(path: Path) -> Source:
    """A model project (mlpack.toml; image at build/<name>/image) or an OCI layout folder."""
    path = path.resolve()
    if (path / spec_mod.SPEC_FILE).exists():
        spec = spec_mod.resolve(spec_mod.load(path))
        build = spec.default_build_dir()
        return Source(layout=build / "image", model_json=build / "model.json", project_dir=path,
                      registry_repository=spec.registry.repository)
    if (path / "oci-layout").exists():
        project = next((p for p in path.parents if (p / spec_mod.SPEC_FILE).exists()), None)
        repo = spec_mod.resolve(spec_mod.load(project)).registry.repository if project else None
        return Source(layout=path, model_json=path.parent / "model.json", project_dir=project or path.parent,
                      registry_repository=repo)
    raise RegistryError(f"{path}: neither a model project ({spec_mod.SPEC_FILE}) nor an OCI image layout (oci-layout)",
                        hint="pass the project folder after `mlpack build`, or the image folder it wrote")


def read_image(source: Source, given: Path) -> oci.Image:
    """The image `mlpack build` wrote for the source; `given` is the path as the user named it."""
    if not (source.layout / "oci-layout").exists():
        raise RegistryError(f"{source.layout}: no image here", hint=f"run `mlpack build {given}` first")
    return oci.read_layout(source.layout)


@dataclass(frozen=True)
class EcrRepositories:
    """ECR's repositories, through packager/aws.py: what push.Repositories asks for."""

    aws: aws_mod.Aws
    registry: aws_mod.EcrRegistry

    def exists(self, repository: str) -> bool:
        return self.aws.repository_exists(self.registry, repository)

    def create(self, repository: str) -> None:
        self.aws.create_repository(self.registry, repository)  # plan_push asked `exists` already


@dataclass(frozen=True, kw_only=True)
class Destination:
    ref: ImageRef  # registry/repository:tag
    client: RegistryClient
    repositories: push_mod.Repositories | None = None  # ECR: repositories must be created before a push


def endpoint_for(registry: str) -> str | None:
    """MLPACK_REGISTRY_ENDPOINT for this registry host: the one URL, or this host's in HOST=URL,HOST=URL."""
    value = (os.environ.get(ENV_ENDPOINT) or "").strip()
    if "=" not in value:
        return value or None
    for part in value.split(","):
        host, _, url = part.strip().partition("=")
        if host.strip() == registry:
            return url.strip() or None
    return None


def destination(to: ImageRef | None, source: Source | None, model: push_mod.ModelInfo, manifest_digest: str, *,
                environment: Environment | None = None, repository: str | None = None) -> Destination:
    """Where the image goes: --to, else [registry].repository in mlpack.toml, else ECR of the environment
    (or of the current AWS account and region), repository `repository` (default mlpack/<model>). The tag
    is the one given, else one that names this image, `<model version>-<12 hex of manifest_digest>`: any
    change to the image (dependencies, base, architecture, mlpack itself) gets a new tag, so no
    legitimate push meets a taken one."""
    from packager import aws as aws_mod  # boto3 loads only when needed

    ref = to
    if ref is None and source is not None and source.registry_repository:
        ref = ImageRef.parse(source.registry_repository, default_tag=None)
    aws: aws_mod.Aws | None = None
    if ref is None and environment is not None:
        ref = ImageRef(environment.registry, repository or ECR_REPO_PREFIX + model.name, None, None)
    if ref is None:
        aws = aws_mod.Aws()
        registry = aws.default_registry()
        ref = ImageRef(registry.host, repository or ECR_REPO_PREFIX + model.name, None, None)
    ref = ref.with_tag(ref.tag or push_mod.image_tag(model.version, manifest_digest))
    return connect(ref, aws)


def connect(ref: ImageRef, aws: aws_mod.Aws | None = None) -> Destination:
    """A client for ref's registry, with credentials: ECR's from AWS (and its Repositories), others' from
    MLPACK_REGISTRY_USERNAME/PASSWORD."""
    from packager import aws as aws_mod

    endpoint = endpoint_for(ref.registry)
    ecr = aws_mod.parse_ecr_host(ref.registry)
    if ecr is not None:
        aws = aws or aws_mod.Aws(region=ecr.region)
        creds = aws.registry_credentials(ecr)
        client = RegistryClient(ref.registry, credentials=creds, endpoint=endpoint, basic_first=True)
        return Destination(ref=ref, client=client, repositories=EcrRepositories(aws, ecr))
    user, password = os.environ.get(ENV_USERNAME), os.environ.get(ENV_PASSWORD)
    basic = Credentials(user, password) if user and password else None
    return Destination(ref=ref, client=RegistryClient(ref.registry, credentials=basic, endpoint=endpoint))
