"""The image's software bill of materials: a CycloneDX 1.6 JSON document of what an image ships.

Enters: an image (an OCI layout on disk) and, when at hand, its build report. Leaves: the SBOM as a dict
and as bytes (`sbom.cdx.json` beside the layout and the build report): the operating system and every
OS package (from the image's /var/lib/dpkg/status, as image scanners read it), every Python distribution
(from each *.dist-info/METADATA in the final file system: the dependency layer's and any base's), with
the wheel's sha256 when the build report has it, the model (its sha256 and version, from the image's
labels) and mlpack as the tool. Deterministic: the same image gives the same bytes (the serial number
is derived from the image digest, the timestamp is the image's own `created`).

Reads layers with the standard library only; must not import contents, build, checks, registry or
packager.cli. Nothing here reaches the network.
"""

from __future__ import annotations

import email.parser
import gzip
import json
import re
import tarfile
import uuid
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote

from packager import oci
from packager.errors import BuildError
from packager.fsutil import write_atomic
from packager.image.bases import DPKG_STATUS, parse_status

SBOM_FILE = "sbom.cdx.json"
SPEC_VERSION = "1.6"
TOOL = "mlpack-lambda"
# where a Lambda image's Python finds distributions: the task root, AWS's runtime, site-packages
DIST_INFO_RE = re.compile(r"^(?:var/task|var/runtime|var/lang/lib/python3[^/]*/site-packages|opt/python|"
                          r"usr/(?:local/)?lib/python3[^/]*/(?:site|dist)-packages)/([^/]+)\.dist-info/METADATA$")
_OS_RELEASE = ("etc/os-release", "usr/lib/os-release")
_WANTED_EXACT = {DPKG_STATUS, "etc/debian_version", *_OS_RELEASE}


@dataclass(frozen=True, kw_only=True)
class OsPackage:
    name: str
    version: str
    arch: str
    source: str

    def to_json(self) -> dict[str, str]:
        return {"name": self.name, "version": self.version, "arch": self.arch, "source": self.source}


@dataclass(frozen=True, kw_only=True)
class PythonPackage:
    name: str  # normalised (PEP 503)
    version: str
    location: str  # the .dist-info folder in the image
    sha256: str | None  # the wheel's, when the build report has it
    license: str | None

    def to_json(self) -> dict[str, str | None]:
        return {"name": self.name, "version": self.version, "location": self.location, "sha256": self.sha256}


@dataclass(frozen=True, kw_only=True)
class Contents:
    """What an image ships, read from its final file system."""

    os_name: str  # "debian", or "" when the image has no os-release
    os_version: str  # "12", the os-release VERSION_ID
    os_release: str  # "12.13" (/etc/debian_version), else os_version
    os_packages: tuple[OsPackage, ...]
    python: tuple[PythonPackage, ...]
    has_dpkg: bool


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _final_files(image: oci.Image) -> dict[str, bytes]:
    """The files SBOMs are made of, as they are in the image's final file system (later layers win,
    whiteouts remove)."""
    found: dict[str, bytes] = {}
    for desc in image.layers:
        path = image.blob_path(desc.digest)
        try:
            with (gzip.open(path) if desc.media_type in oci.GZIP_LAYER_TYPES else open(path, "rb")) as raw, \
                    tarfile.open(fileobj=raw, mode="r|") as tar:
                for m in tar:
                    name = oci.norm_name(m.name)
                    folder, _, base = name.rpartition("/")
                    if base == ".wh..wh..opq":
                        for k in [k for k in found if k.startswith(folder + "/")]:
                            del found[k]
                        continue
                    if base.startswith(".wh."):
                        gone = f"{folder}/{base[4:]}" if folder else base[4:]
                        for k in [k for k in found if k == gone or k.startswith(gone + "/")]:
                            del found[k]
                        continue
                    if name in _WANTED_EXACT or DIST_INFO_RE.match(name):
                        f = tar.extractfile(m) if m.isfile() else None
                        if f is not None:
                            found[name] = f.read()
                        else:
                            found.pop(name, None)  # a link or folder now stands there
        except (OSError, tarfile.TarError, EOFError) as e:
            raise BuildError(f"{path}: cannot read layer {desc.digest}: {e}",
                             hint="the layout is damaged; rebuild it (mlpack check tells more)") from e
    return found


def _os_release(files: dict[str, bytes]) -> dict[str, str]:
    text = (files.get("etc/os-release") or files.get("usr/lib/os-release") or b"").decode(errors="replace")
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            out[key.strip()] = value.strip().strip('"')
    return out


def _wheel_hashes(report: dict[str, Any] | None) -> dict[tuple[str, str], str]:
    dists = ((report or {}).get("dependencies") or {}).get("distributions") or []
    return {(normalise(str(d["name"])), str(d["version"])): str(d["sha256"])
            for d in dists if isinstance(d, dict) and d.get("name") and d.get("sha256")}


def read_contents(image: oci.Image, report: dict[str, Any] | None = None) -> Contents:
    """The OS and Python packages of `image` (the build report supplies the wheels' sha256)."""
    files = _final_files(image)
    release = _os_release(files)
    os_packages = []
    if DPKG_STATUS in files:
        for para in parse_status(files[DPKG_STATUS].decode(errors="replace")):
            fields = dict(para)
            if not fields.get("Status", "").endswith(" installed"):
                continue
            os_packages.append(OsPackage(name=fields.get("Package", ""), version=fields.get("Version", ""),
                                         arch=fields.get("Architecture", ""),
                                         source=fields.get("Source", "") or fields.get("Package", "")))
    hashes = _wheel_hashes(report)
    python = []
    for path, data in files.items():
        if not DIST_INFO_RE.match(path):
            continue
        meta = email.parser.BytesHeaderParser().parsebytes(data)
        name, version = normalise(str(meta.get("Name", ""))), str(meta.get("Version", ""))
        if not name or not version:
            continue
        lic = meta.get("License-Expression") or meta.get("License")
        python.append(PythonPackage(name=name, version=version, location=str(PurePosixPath(path).parent),
                                    sha256=hashes.get((name, version)),
                                    license=str(lic).strip() if lic and "\n" not in str(lic).strip() else None))
    os_version = release.get("VERSION_ID", "")
    return Contents(os_name=release.get("ID", ""), os_version=os_version,
                    os_release=files.get("etc/debian_version", b"").decode(errors="replace").strip() or os_version,
                    os_packages=tuple(sorted(os_packages, key=lambda p: (p.name, p.arch, p.version))),
                    python=tuple(sorted(python, key=lambda p: (p.name, p.version, p.location))),
                    has_dpkg=DPKG_STATUS in files)


def _q(text: str) -> str:
    return quote(text, safe="")


def deb_purl(pkg: OsPackage, contents: Contents) -> str:
    distro = f"&distro={_q(contents.os_name)}-{_q(contents.os_version)}" if contents.os_version else ""
    return f"pkg:deb/{_q(contents.os_name or 'debian')}/{_q(pkg.name)}@{_q(pkg.version)}?arch={_q(pkg.arch)}{distro}"


def pypi_purl(pkg: PythonPackage) -> str:
    return f"pkg:pypi/{_q(pkg.name)}@{_q(pkg.version)}"


def _tool_version() -> str:
    try:
        return metadata.version(TOOL)
    except metadata.PackageNotFoundError:
        return "unknown"


def sbom(image: oci.Image, report: dict[str, Any] | None = None) -> dict[str, Any]:
    """The CycloneDX document for `image`."""
    contents = read_contents(image, report)
    digest = image.manifest.digest
    labels = (image.config_json.get("config") or {}).get("Labels") or {}
    title = str(labels.get(oci.LABEL_TITLE) or "image")
    version = str(labels.get(oci.LABEL_VERSION) or "")
    model_sha = str(labels.get(oci.LABEL_MODEL_SHA256) or "").removeprefix("sha256:")
    image_component: dict[str, Any] = {
        "type": "container", "bom-ref": f"image:{digest}", "name": title,
        "purl": f"pkg:oci/{_q(title)}@{_q(digest)}?arch={_q(image.arch)}",
        "hashes": [{"alg": "SHA-256", "content": digest.split(":", 1)[1]}],
        "properties": [{"name": "mlpack:image:digest", "value": digest},
                       {"name": "mlpack:image:arch", "value": image.arch}],
    }
    if version:
        image_component["version"] = version
    components: list[dict[str, Any]] = []
    if model_sha:
        model: dict[str, Any] = {"type": "machine-learning-model", "bom-ref": "model", "name": title,
                                 "properties": [{"name": "mlpack:model:sha256", "value": model_sha}]}
        if re.fullmatch(r"[0-9a-f]{64}", model_sha):
            model["hashes"] = [{"alg": "SHA-256", "content": model_sha}]
        if version:
            model["version"] = version
        components.append(model)
    if contents.os_name:
        components.append({"type": "operating-system", "bom-ref": f"os:{contents.os_name}",
                           "name": contents.os_name, "version": contents.os_release})
    seen: set[str] = set()
    for pkg in contents.os_packages:
        purl = deb_purl(pkg, contents)
        if purl in seen:
            continue
        seen.add(purl)
        components.append({"type": "library", "bom-ref": purl, "name": pkg.name, "version": pkg.version,
                           "purl": purl, "properties": [{"name": "mlpack:deb:source", "value": pkg.source},
                                                        {"name": "mlpack:deb:arch", "value": pkg.arch}]})
    for py in contents.python:
        ref = pypi_purl(py)
        ref = ref if ref not in seen else f"{ref}#{py.location}"  # the same distribution twice in the image
        seen.add(ref)
        item: dict[str, Any] = {"type": "library", "bom-ref": ref, "name": py.name, "version": py.version,
                                "purl": pypi_purl(py), "properties": [{"name": "mlpack:python:location",
                                                                        "value": "/" + py.location}]}
        if py.sha256:
            item["hashes"] = [{"alg": "SHA-256", "content": py.sha256}]
        if py.license:
            item["licenses"] = [{"license": {"name": py.license}}]
        components.append(item)
    created = str(image.config_json.get("created") or "1970-01-01T00:00:00Z")
    return {
        "$schema": f"http://cyclonedx.org/schema/bom-{SPEC_VERSION}.schema.json",
        "bomFormat": "CycloneDX",
        "specVersion": SPEC_VERSION,
        "serialNumber": uuid.uuid5(uuid.NAMESPACE_URL, f"mlpack:sbom:{digest}").urn,
        "version": 1,
        "metadata": {
            "timestamp": created,
            "tools": {"components": [{"type": "application", "name": TOOL, "version": _tool_version()}]},
            "component": image_component,
            "properties": [{"name": "mlpack:os-packages",
                            "value": "dpkg" if contents.has_dpkg else "none found (no /var/lib/dpkg/status)"}],
        },
        "components": components,
        "dependencies": [{"ref": image_component["bom-ref"],
                          "dependsOn": [c["bom-ref"] for c in components]}],
    }


def to_bytes(doc: dict[str, Any]) -> bytes:
    return (json.dumps(doc, indent=1, sort_keys=True, ensure_ascii=False) + "\n").encode()


def write(image: oci.Image, dest: Path, report: dict[str, Any] | None = None) -> Path:
    """Write the SBOM of `image` at `dest` (atomically); returns `dest`."""
    write_atomic(dest, to_bytes(sbom(image, report)))
    return dest


def read(path: Path) -> dict[str, Any]:
    """An SBOM file mlpack wrote (or any CycloneDX JSON)."""
    try:
        doc = json.loads(path.read_bytes())
    except (OSError, ValueError) as e:
        raise BuildError(f"{path}: not a readable SBOM: {e}", hint="write one with `mlpack build` or "
                         "`mlpack sbom LAYOUT`") from e
    if not isinstance(doc, dict) or doc.get("bomFormat") != "CycloneDX":
        raise BuildError(f"{path}: not a CycloneDX JSON document", hint="pass an sbom.cdx.json or an image layout")
    return doc
