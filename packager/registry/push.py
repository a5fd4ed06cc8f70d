"""Push an image (an OCI layout written by `mlpack build`) to a registry and pin its digest.

Enters: an `Image`, its destination `ImageRef` (registry/repository:tag), a `RegistryClient` for that
registry and, for registries whose repositories must be created first (ECR), the `Repositories` to
ask and create with; the lock file's path. Leaves: the lock's entries, read and checked before anything
is planned (`read_lock`); a `PushPlan` (plain data), then a `PushResult` (the pushed, digest-pinned
`ImageRef`), and the entry `record_lock` writes to mlpack.lock.json (or finds already there).

Tags: `image_tag` names an image, not only a model (`<model version>-<12 hex of the manifest digest>`),
so a new image never needs an existing tag; a tag is never moved, and a refused tag comes with a free
one to use instead.

Plan, then act: `plan_push` asks (read-only) whether the repository exists and what the registry already
has, and returns a `PushPlan` (the repository to create, if any; per blob: skip, mount or upload, with
sizes; the tag's state); `execute` carries it out (the repository first, then blobs, the manifest by
digest, then the tag). Where an image goes is decided in destination.py.

Speaks to registries only through packager/registry/client.py; reaches AWS only through the `Repositories`
it is handed (it does not import packager/aws.py). Must not import build or export code beyond reading
the layout (packager/oci/).
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import IO, Any, Literal, Protocol

from handlers import contract
from handlers.model_json import Identity, ModelJsonError, identity
from packager import oci
from packager.config import lock as lock_mod
from packager.config import records as records_mod
from packager.errors import RegistryError
from packager.oci import Descriptor, Image
from packager.registry.client import ImageRef, RegistryClient, UploadSessions

Action = Literal["skip", "mount", "upload"]
TagState = Literal["absent", "same", "conflict", "none"]

TAG_MAX = 128  # the OCI distribution spec's tag grammar: [A-Za-z0-9_][A-Za-z0-9._-]{0,127}
TAG_DIGEST_CHARS = 12  # hex digits of the manifest digest in a default tag


def image_tag(base: str, manifest_digest: str, digits: int = TAG_DIGEST_CHARS) -> str:
    """`<base>-<first digits hex of the manifest digest>`, a valid tag whatever `base` holds: characters a
    tag may not hold become '_', leading '.' and '-' go, and `base` is cut so the tag fits in 128."""
    hexpart = manifest_digest.partition(":")[2][:digits]
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", base).lstrip(".-")[:TAG_MAX - len(hexpart) - 1]
    return f"{safe}-{hexpart}" if safe else hexpart


def free_tag(client: RegistryClient, repository: str, taken: str, manifest_digest: str) -> str | None:
    """A tag for this image in place of `taken` that is free (or already names this image), asking the
    registry; None when neither candidate is."""
    for digits in (TAG_DIGEST_CHARS, 64):
        tag = image_tag(taken, manifest_digest, digits)
        if client.head_manifest(repository, tag) in (None, manifest_digest):
            return tag
    return None


@dataclass(frozen=True, kw_only=True)
class BlobStep:
    digest: str
    size: int
    kind: str  # "config" | "layer"
    action: Action
    mount_from: str | None = None


class Repositories(Protocol):
    """A registry whose repositories must exist before anything is pushed to them (ECR): `plan_push`
    asks whether one exists (changing nothing), `execute` creates it."""

    def exists(self, repository: str) -> bool: ...

    def create(self, repository: str) -> None: ...


@dataclass(frozen=True, kw_only=True)
class PushPlan:
    dest: ImageRef  # repository and tag (no digest)
    manifest_digest: str
    manifest_media_type: str
    manifest_present: bool
    tag_state: TagState
    tag_points_to: str | None
    blobs: tuple[BlobStep, ...]
    create_repository: str | None = None  # the repository to create before anything is uploaded
    free_tag: str | None = None  # on a conflict: a tag for this image that is free in the repository

    @property
    def bytes_to_upload(self) -> int:
        return sum(b.size for b in self.blobs if b.action == "upload")

    @property
    def pinned(self) -> ImageRef:
        return ImageRef(self.dest.registry, self.dest.repository, None, self.manifest_digest)

    def to_json(self) -> dict[str, Any]:
        return {
            "destination": str(self.dest),
            "image": str(self.pinned),
            "create_repository": self.create_repository,
            "manifest": {"digest": self.manifest_digest, "media_type": self.manifest_media_type,
                         "present": self.manifest_present},
            "tag": {"name": self.dest.tag, "state": self.tag_state, "points_to": self.tag_points_to,
                    "free": self.free_tag},
            "blobs": [asdict(b) for b in self.blobs],
            "bytes_to_upload": self.bytes_to_upload,
        }


@dataclass(frozen=True, kw_only=True)
class PushResult:
    ref: ImageRef  # registry/repository:tag@digest
    bytes_sent: int
    counts: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"image": str(self.ref.with_tag(None)), "tag": self.ref.tag, "digest": self.ref.digest,
                "bytes_sent": self.bytes_sent, "blobs": dict(sorted(self.counts.items()))}


# ---------------------------------------------------------------------------------------------------
# plan


def _blobs(image: Image) -> list[tuple[Descriptor, str]]:
    out = [(d, "layer") for d in image.layers] + [(image.config, "config")]
    seen: set[str] = set()
    unique = []
    for d, kind in out:
        if d.digest not in seen:  # the same layer twice is uploaded once
            seen.add(d.digest)
            unique.append((d, kind))
    return unique


def plan_push(image: Image, dest: ImageRef, client: RegistryClient, *,
              mount_candidates: Iterable[str] = (), repositories: Repositories | None = None) -> PushPlan:
    """What a push of `image` to `dest` would do, asking the registry (read-only) what it has.
    `mount_candidates` are other repositories of the same registry that may hold shared blobs;
    `repositories`, when given, is asked whether `dest`'s repository exists: when it does not, the plan
    creates it first, and the registry is not asked about a repository that does not exist yet."""
    repo = dest.repository
    create = repositories is not None and not repositories.exists(repo)
    candidates = [c for c in dict.fromkeys(mount_candidates) if c != repo]
    steps: list[BlobStep] = []
    for desc, kind in _blobs(image):
        if not create and client.blob_size(repo, desc.digest) is not None:
            steps.append(BlobStep(digest=desc.digest, size=desc.size, kind=kind, action="skip"))
            continue
        source = next((c for c in candidates if client.blob_size(c, desc.digest) is not None), None)
        steps.append(BlobStep(digest=desc.digest, size=desc.size, kind=kind,
                              action="mount" if source else "upload", mount_from=source))
    present = not create and client.head_manifest(repo, image.manifest.digest) is not None
    tag_state: TagState = "none"
    points_to: str | None = None
    if dest.tag:
        points_to = None if create else client.head_manifest(repo, dest.tag)
        tag_state = "absent" if points_to is None else "same" if points_to == image.manifest.digest else "conflict"
    free = free_tag(client, repo, dest.tag, image.manifest.digest) if dest.tag and tag_state == "conflict" else None
    return PushPlan(dest=dest.with_digest(None), manifest_digest=image.manifest.digest,
                    manifest_media_type=image.manifest.media_type, manifest_present=present,
                    tag_state=tag_state, tag_points_to=points_to, blobs=tuple(steps),
                    create_repository=repo if create else None, free_tag=free)


def check_plan(plan: PushPlan) -> None:
    """Refuse a plan that would move an existing tag; the hint names a free tag when the plan found one."""
    if plan.tag_state == "conflict":
        instead = (f"push with --to {plan.dest.name}:{plan.free_tag} (free, and it names this image)"
                   if plan.free_tag else "push with another tag in --to")
        raise RegistryError(
            f"{plan.dest}: the tag already points to {plan.tag_points_to}, not to this image "
            f"({plan.manifest_digest}); mlpack never moves a tag",
            hint=f"{instead}; when neither --to nor [registry].repository names a tag, mlpack tags the image "
                 "<model version>-<12 hex of its digest>",
        )


# ---------------------------------------------------------------------------------------------------
# act

Progress = Callable[[BlobStep, str], None]
ChunkProgress = Callable[[BlobStep, int], None]  # a blob, and the bytes of it the registry confirmed holding


def execute(plan: PushPlan, image: Image, client: RegistryClient, *, progress: Progress | None = None,
            repositories: Repositories | None = None, sessions: UploadSessions | None = None,
            chunk_progress: ChunkProgress | None = None) -> PushResult:
    """Carry out a plan: the repository when it is missing (with `repositories`), blobs, then the manifest
    by digest (exact bytes), then the tag. Large blobs go up in chunks whose upload sessions are kept in
    `sessions` (by default under mlpack's cache folder), so a push that stops half-way, for whatever
    reason, is resumed by the next one. `chunk_progress` hears of every chunk the registry confirmed."""
    sessions = sessions if sessions is not None else UploadSessions.default()
    check_plan(plan)
    if image.manifest.digest != plan.manifest_digest:
        raise RegistryError(f"{image.layout}: the image changed since the push was planned",
                            hint="run `mlpack push` again")
    repo = plan.dest.repository
    if plan.create_repository is not None:
        if repositories is None:
            raise RegistryError(f"{plan.dest.name}: the plan creates the repository, but nothing was given "
                                "to create it with", hint="plan and execute the push with the same repositories")
        repositories.create(plan.create_repository)
    sent = 0
    counts = {"skip": 0, "mount": 0, "upload": 0}
    for step in plan.blobs:
        action = step.action
        if action == "mount":
            assert step.mount_from is not None
            if not client.mount_blob(repo, step.digest, step.mount_from):
                action = "upload"
        if action == "upload":
            path = image.blob_path(step.digest)
            if not path.is_file():
                raise RegistryError(f"{image.layout}: blob {step.digest} is missing from the image layout",
                                    hint="rebuild the image with `mlpack build`")

            def open_blob(path: Path = path) -> IO[bytes]:
                return path.open("rb")

            def on_chunk(offset: int, step: BlobStep = step) -> None:
                if chunk_progress:
                    chunk_progress(step, offset)

            sent += client.upload_blob(repo, step.digest, step.size, open_blob, sessions=sessions,
                                       on_progress=on_chunk).bytes_sent
        counts[action] += 1
        if progress:
            progress(step, action)
    # Every blob must be there before the manifest goes up: a manifest never refers to a missing blob.
    missing = [s.digest for s in plan.blobs if client.blob_size(repo, s.digest) is None]
    if missing:
        raise RegistryError(f"{plan.dest.name}: the registry lacks {len(missing)} blob(s) after upload "
                            f"({', '.join(missing)})", hint="run the push again")
    if not plan.manifest_present:
        client.put_manifest(repo, plan.manifest_digest, image.manifest_bytes, image.manifest.media_type)
    if plan.dest.tag and plan.tag_state != "same":
        # The tag may have been set by someone else since the plan: look again right before writing it.
        now = client.head_manifest(repo, plan.dest.tag)
        if now is not None and now != plan.manifest_digest:
            check_plan(replace(plan, tag_state="conflict", tag_points_to=now,
                               free_tag=free_tag(client, repo, plan.dest.tag, plan.manifest_digest)))
        if now is None:
            client.put_manifest(repo, plan.dest.tag, image.manifest_bytes, image.manifest.media_type)
    ref = ImageRef(plan.dest.registry, repo, plan.dest.tag, plan.manifest_digest)
    return PushResult(ref=ref, bytes_sent=sent, counts=counts)


# ---------------------------------------------------------------------------------------------------
# model metadata and the lock file


ModelInfo = Identity  # what the lock records about the model: name, version, model_sha256


def model_info_for(image: Image, model_json: Path) -> ModelInfo:
    """The model inside the image, from the labels `mlpack build` sets on its config (the image is the
    truth: model.json in the build folder may be newer than the image); model.json when they are absent."""
    labels = (image.config_json.get("config") or {}).get("Labels") or {}
    values = [labels.get(k) for k in (oci.LABEL_TITLE, oci.LABEL_VERSION, oci.LABEL_MODEL_SHA256)]
    if all(isinstance(v, str) and v for v in values):
        return ModelInfo(name=str(values[0]), version=str(values[1]), model_sha256=str(values[2]))
    return model_info(model_json)


def model_info(model_json: Path) -> ModelInfo:
    """The model named by an export's model.json."""
    try:
        data = json.loads(model_json.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise RegistryError(f"{model_json}: not found; mlpack push needs the export's model.json next to the "
                            "image layout", hint="run `mlpack build` on the project first") from e
    except (OSError, ValueError) as e:
        raise RegistryError(f"{model_json}: cannot read it: {e}", hint="run `mlpack build` again") from e
    try:
        return identity(data, str(model_json))
    except ModelJsonError as e:  # e.field lists every one of name, version, model_sha256 that is missing
        raise RegistryError(f"{model_json}: missing {e.field}", hint="run `mlpack build` again") from e


def default_lock_path(project_dir: Path) -> Path:
    """mlpack.lock.json at the root of the repository holding the project (the first folder upwards
    with .git or cdk.json), else in the project folder."""
    project_dir = project_dir.resolve()
    for folder in (project_dir, *project_dir.parents):
        if (folder / ".git").exists() or (folder / "cdk.json").exists():
            return folder / lock_mod.LOCK_FILE
    return project_dir / lock_mod.LOCK_FILE


def read_lock(lock_path: Path) -> dict[str, lock_mod.LockEntry]:
    """The lock's entries, before anything is planned or uploaded: a damaged lock file, or one that could
    not be written, stops the push here (`DeployError`), when nothing has been sent yet."""
    models = lock_mod.read(lock_path)
    lock_mod.check_writable(lock_path)
    return models


def actor() -> str:
    """Who records a lock entry: MLPACK_ACTOR, else GITHUB_ACTOR (in GitHub Actions), else the user name."""
    for var in ("MLPACK_ACTOR", "GITHUB_ACTOR"):
        if os.environ.get(var):
            return os.environ[var]
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no user name in a bare container
        return "unknown"


def timestamp(now: dt.datetime | None = None) -> str:
    return (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def image_model_json(image: Image) -> dict[str, Any] | None:
    """The model.json inside the image (its model layer), parsed; None when the image has none (an
    image mlpack did not build)."""
    member = f"{contract.MODEL_DIR}/{contract.MODEL_JSON}"
    # a missing blob is not this function's to report: the push's own check names it
    blobs = [(image.blob_path(d.digest), d.media_type) for d in image.layers if image.blob_path(d.digest).is_file()]
    data = oci.read_file(blobs, member)
    if data is None:
        return None
    try:
        doc = json.loads(data)
    except ValueError as e:
        raise RegistryError(f"{image.layout}: {member} in the image is not valid JSON ({e})",
                            hint="rebuild the image with `mlpack build`") from e
    return doc if isinstance(doc, dict) else None


def model_size(image: Image) -> int | None:
    """model.onnx's size in the image (its model layer, read from the top without unpacking); None without one."""
    member = f"{contract.MODEL_DIR}/model.onnx"
    blobs = [(image.blob_path(d.digest), d.media_type) for d in image.layers if image.blob_path(d.digest).is_file()]
    found = oci.find_members(blobs, [member]).get(member)
    return found[0] if found else None


def deploy_facts(image: Image, model: ModelInfo, model_json: Path) -> dict[str, Any]:
    """What the deploy record keeps: the image's own model.json (model.json beside the layout for an image
    without one), checked to be the export of the model the image holds. Raises before anything is sent."""
    doc = image_model_json(image)
    origin = f"{image.layout} ({contract.MODEL_DIR}/{contract.MODEL_JSON})"
    if doc is None:
        origin = str(model_json)
        try:
            doc = json.loads(model_json.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise RegistryError(f"{model_json}: cannot read the export's model.json for the deploy record: {e}",
                                hint="run `mlpack build` on the project first") from e
    try:
        found = identity(doc, origin)
    except ModelJsonError as e:
        raise RegistryError(f"{origin}: missing {e.field}", hint="run `mlpack build` again") from e
    if found != model:
        raise RegistryError(f"{origin}: model {found.name} {found.version} is not the image's {model.name} "
                            f"{model.version}", hint="run `mlpack build` again so the image and its export agree")
    assert isinstance(doc, dict)
    return doc


def record_lock(lock_path: Path, *, model: ModelInfo, ref: ImageRef, arch: str, project_dir: Path,
                facts: dict[str, Any] | None = None, how: str = "push", replace_damaged: bool = False,
                sbom: str | None = None, model_bytes: int | None = None,
                now: dt.datetime | None = None) -> tuple[lock_mod.LockEntry, bool]:
    """Record the pushed image as `model`'s entry, after writing its deploy record (facts: the image's
    model.json) beside the lock, so an entry never names a missing record. Returns the entry and whether
    the lock changed: an entry of the image already recorded leaves the file byte-identical.
    replace_damaged: the model's entry may be damaged (relock replaces it)."""
    assert ref.digest is not None
    if facts is not None:
        records_mod.write(lock_path, model.name, ref.digest, arch, facts, model_bytes)
    entry = lock_mod.LockEntry(
        repository=ref.name, digest=ref.digest, arch=arch, model_version=model.version,
        model_sha256=model.model_sha256,
        project=Path(os.path.relpath(project_dir.resolve(), lock_path.resolve().parent)).as_posix(),
        pushed_at=timestamp(now), pushed_by=actor(), how=how, sbom=sbom or "",
    )
    return entry, lock_mod.record(lock_path, model.name, entry, lenient=replace_damaged)


def check_same_project(models: dict[str, lock_mod.LockEntry], lock_path: Path, name: str, project_dir: Path) -> None:
    """Refuse, before anything is sent, a push that would silently replace the model of another project
    with the same model name (one whose mlpack.toml is still there). A project that moved (its old folder
    has no mlpack.toml now) is simply recorded at its new place."""
    old = models.get(name)
    project = Path(os.path.relpath(project_dir.resolve(), lock_path.resolve().parent)).as_posix()
    if old is None or old.project == project:
        return
    other = lock_path.resolve().parent / old.project / "mlpack.toml"
    if other.is_file() and f'"{name}"' in other.read_text(encoding="utf-8", errors="replace"):
        raise RegistryError(
            f"{lock_path}: models.{name} is the model of project {old.project}, not of {project}: both projects "
            f"name their model {name!r}",
            hint="model names are unique per lock: rename one ([model].name in its mlpack.toml), or push to "
                 "another lock (--env, --lock)")


def mount_candidates(models: dict[str, lock_mod.LockEntry], dest: ImageRef) -> list[str]:
    """Repositories of the same registry that earlier pushes recorded (the lock's `models`): they likely
    share base and dependency layers with this image."""
    out = []
    for entry in models.values():
        registry, _, repository = entry.repository.partition("/")
        if registry == dest.registry and repository != dest.repository:
            out.append(repository)
    return sorted(set(out))
