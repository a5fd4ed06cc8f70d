"""`mlpack audit`: the known vulnerabilities of an image's packages, from its SBOM.

Enters: an SBOM (sbom.py's CycloneDX document) and two vulnerability sources, one per ecosystem: Python
distributions go to pip-audit (run as a program, against PyPI's vulnerability data), Debian packages to
Debian's security tracker (its JSON, every source package's CVEs with the version fixing each in bookworm).
Leaves: an `AuditResult`: findings (package, version, advisory, fixed versions) and, per ecosystem,
whether it was checked at all. A source that cannot be reached, or that cannot answer for a package,
makes that ecosystem unchecked, with the reason: never a silent pass.

Sources are a seam (`PythonSource`, `OsSource`): tests give fakes. The tracker is fetched with the
standard library (urllib; mlpack's registry client is for registries) from DEBIAN_TRACKER, or
$MLPACK_DEBIAN_TRACKER_URL; pip-audit fetches its own. Must not import contents, build, registry or
packager.cli; prints nothing.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from packager.errors import MlpackError

DEBIAN_TRACKER = "https://security-tracker.debian.org/tracker/data/json"
DEBIAN_RELEASE = "bookworm"
TIMEOUT = 30


class AuditError(MlpackError):
    """An audit found known vulnerabilities (exit 1)."""


class AuditIncomplete(AuditError):
    """An audit could not check some of the image's packages (exit 3): never reported as a pass."""

    exit_code = 3


class Unavailable(Exception):
    """A vulnerability source cannot answer (not installed, not reachable, no data); the text says why."""


@dataclass(frozen=True, kw_only=True)
class Package:
    ecosystem: str  # python | debian
    name: str
    version: str
    source: str = ""  # debian: the source package (the tracker is by source package)
    source_version: str = ""


@dataclass(frozen=True, kw_only=True)
class Finding:
    ecosystem: str
    package: str
    version: str
    id: str
    aliases: tuple[str, ...] = ()
    fixed: tuple[str, ...] = ()  # versions that fix it; empty: no fix published yet
    summary: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"ecosystem": self.ecosystem, "package": self.package, "version": self.version, "id": self.id,
                "aliases": list(self.aliases), "fixed": list(self.fixed), "summary": self.summary}


@dataclass(frozen=True, kw_only=True)
class Coverage:
    """One ecosystem: how many packages, whether they were checked, and if not why."""

    ecosystem: str
    packages: int
    checked: bool
    source: str  # what answered (or would have)
    note: str = ""  # why not checked, or what was left out

    def to_json(self) -> dict[str, Any]:
        return {"ecosystem": self.ecosystem, "packages": self.packages, "checked": self.checked,
                "source": self.source, "note": self.note}


@dataclass(frozen=True, kw_only=True)
class AuditResult:
    image: str  # the image digest the SBOM describes
    findings: tuple[Finding, ...]
    coverage: tuple[Coverage, ...]
    skipped: tuple[str, ...] = field(default_factory=tuple)

    @property
    def complete(self) -> bool:
        return all(c.checked for c in self.coverage)

    def to_json(self) -> dict[str, Any]:
        return {"image": self.image, "complete": self.complete, "findings": [f.to_json() for f in self.findings],
                "coverage": [c.to_json() for c in self.coverage], "skipped": list(self.skipped)}


class PythonSource(Protocol):
    name: str

    def __call__(self, packages: list[Package]) -> list[Finding]: ...


class OsSource(Protocol):
    name: str

    def __call__(self, packages: list[Package]) -> list[Finding]: ...


# ---------------------------------------------------------------------------------------------------
# what the SBOM lists


def _props(component: dict[str, Any]) -> dict[str, str]:
    return {str(p.get("name")): str(p.get("value")) for p in component.get("properties") or []}


def packages_of(doc: dict[str, Any]) -> list[Package]:
    """The SBOM's Python and Debian packages (by purl type), each once."""
    out: dict[tuple[str, str, str], Package] = {}
    for c in doc.get("components") or []:
        purl = str(c.get("purl") or "")
        name, version = str(c.get("name") or ""), str(c.get("version") or "")
        if not name or not version:
            continue
        if purl.startswith("pkg:pypi/"):
            out.setdefault(("python", name, version), Package(ecosystem="python", name=name, version=version))
        elif purl.startswith("pkg:deb/"):
            src = _props(c).get("mlpack:deb:source", name)
            m = re.fullmatch(r"(\S+) \((\S+)\)", src)
            source, source_version = (m.group(1), m.group(2)) if m else (src, version)
            out.setdefault(("debian", name, version), Package(ecosystem="debian", name=name, version=version,
                                                               source=source, source_version=source_version))
    return [out[k] for k in sorted(out)]


# ---------------------------------------------------------------------------------------------------
# Python: pip-audit


class PipAudit:
    """pip-audit (the PyPA's auditor) on `name==version` lines, against PyPI's vulnerability data."""

    name = "pip-audit (PyPI)"

    def __init__(self, *, service: str = "pypi", run: Callable[..., subprocess.CompletedProcess[str]] | None = None):
        self.service = service
        self._run = run or subprocess.run

    def __call__(self, packages: list[Package]) -> list[Finding]:
        if not packages:
            return []
        import importlib.util

        if importlib.util.find_spec("pip_audit") is None:
            raise Unavailable("pip-audit is not installed (pip install pip-audit)")
        with tempfile.TemporaryDirectory(prefix="mlpack-audit-") as tmp:
            req = Path(tmp) / "requirements.txt"
            req.write_text("".join(f"{p.name}=={p.version}\n" for p in packages))
            proc = self._run([sys.executable, "-m", "pip_audit", "-r", str(req), "--no-deps", "--disable-pip",
                              "-f", "json", "-s", self.service, "--progress-spinner", "off",
                              "--timeout", str(TIMEOUT), "--cache-dir", str(Path(tmp) / "cache")],
                             capture_output=True, text=True, check=False, timeout=600)
        try:
            data = json.loads(proc.stdout)
            deps = data["dependencies"]
        except (ValueError, KeyError, TypeError):
            tail = " ".join(proc.stderr.strip().splitlines()[-3:])[-400:]
            raise Unavailable(f"pip-audit failed (exit {proc.returncode}): {tail or 'no output'}") from None
        skipped = [f"{d.get('name')} {d.get('version', '')}".strip() for d in deps if d.get("skip_reason")]
        if skipped:
            # pip-audit exits 0 for what it could not look up: that is no answer, not a clean bill
            reason = next(d["skip_reason"] for d in deps if d.get("skip_reason"))
            raise Unavailable(f"{self.service} has no data for {len(skipped)} of {len(packages)} "
                              f"distribution(s) ({', '.join(skipped[:5])}{', ...' if len(skipped) > 5 else ''}): "
                              f"{reason}")
        out = []
        for d in deps:
            for v in d.get("vulns") or []:
                out.append(Finding(ecosystem="python", package=str(d["name"]), version=str(d["version"]),
                                   id=str(v.get("id")), aliases=tuple(v.get("aliases") or ()),
                                   fixed=tuple(v.get("fix_versions") or ()),
                                   summary=str(v.get("description") or "").strip().split("\n")[0][:200]))
        return out


# ---------------------------------------------------------------------------------------------------
# Debian: the security tracker


def _order(c: str) -> int:
    if c == "~":
        return -1
    if c.isalpha():
        return ord(c)
    return ord(c) + 256


def _lead(pattern: str, text: str) -> str:
    m = re.match(pattern, text)
    return m.group(0) if m else ""


def _compare_part(a: str, b: str) -> int:
    """Debian's comparison of an upstream version or revision (deb-version(7))."""
    while a or b:
        na, nb = _lead(r"[^0-9]*", a), _lead(r"[^0-9]*", b)
        for i in range(max(len(na), len(nb))):
            ca = _order(na[i]) if i < len(na) else 0
            cb = _order(nb[i]) if i < len(nb) else 0
            if ca != cb:
                return -1 if ca < cb else 1
        a, b = a[len(na):], b[len(nb):]
        da, db = _lead(r"[0-9]*", a), _lead(r"[0-9]*", b)
        ia, ib = int(da or 0), int(db or 0)
        if ia != ib:
            return -1 if ia < ib else 1
        a, b = a[len(da):], b[len(db):]
    return 0


def compare_versions(a: str, b: str) -> int:
    """-1, 0 or 1 as Debian version `a` sorts before, with or after `b` (dpkg --compare-versions)."""
    def split(v: str) -> tuple[int, str, str]:
        epoch, _, rest = v.rpartition(":") if ":" in v else ("0", "", v)
        upstream, _, revision = rest.rpartition("-") if "-" in rest else (rest, "", "0")
        return int(epoch or 0), upstream, revision

    ea, ua, ra = split(a)
    eb, ub, rb = split(b)
    if ea != eb:
        return -1 if ea < eb else 1
    return _compare_part(ua, ub) or _compare_part(ra, rb)


class DebianTracker:
    """Debian's security tracker: each source package's CVEs, with the version fixing each in a release."""

    name = "Debian security tracker"

    def __init__(self, *, url: str | None = None, release: str = DEBIAN_RELEASE,
                 fetch: Callable[[str], bytes] | None = None) -> None:
        self.url = url or os.environ.get("MLPACK_DEBIAN_TRACKER_URL") or DEBIAN_TRACKER
        self.release = release
        self._fetch = fetch or _fetch

    def __call__(self, packages: list[Package]) -> list[Finding]:
        if not packages:
            return []
        try:
            data = json.loads(self._fetch(self.url))
        except (OSError, urllib.error.URLError) as e:
            raise Unavailable(f"no vulnerability data reachable: {self.url}: {getattr(e, 'reason', e)}") from e
        except ValueError as e:
            raise Unavailable(f"{self.url} did not answer with the tracker's JSON: {e}") from e
        if not isinstance(data, dict):
            raise Unavailable(f"{self.url} did not answer with the tracker's JSON")
        out = []
        for pkg in packages:
            for cve, entry in sorted((data.get(pkg.source) or {}).items()):
                rel = ((entry or {}).get("releases") or {}).get(self.release) or {}
                status, fixed = rel.get("status"), str(rel.get("fixed_version") or "")
                if status == "open" or (status == "resolved" and fixed and fixed != "0"
                                        and compare_versions(pkg.source_version, fixed) < 0):
                    out.append(Finding(ecosystem="debian", package=pkg.name, version=pkg.version, id=cve,
                                       fixed=(fixed,) if status == "resolved" else (),
                                       summary=str(entry.get("description") or "")[:200]))
        return out


def _fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=TIMEOUT) as resp:
        data: bytes = resp.read()
        return data


# ---------------------------------------------------------------------------------------------------


def audit(doc: dict[str, Any], *, python: PythonSource | None = None, os_source: OsSource | None = None,
          skip: Iterable[str] = ()) -> AuditResult:
    """Check the SBOM's packages; `skip` names ecosystems ("python", "debian") left out on purpose."""
    python = python or PipAudit()
    os_source = os_source or DebianTracker()
    skipped = tuple(sorted(set(skip)))
    pkgs = packages_of(doc)
    findings: list[Finding] = []
    coverage: list[Coverage] = []
    for eco, source in (("python", python), ("debian", os_source)):
        mine = [p for p in pkgs if p.ecosystem == eco]
        if eco in skipped:
            continue
        try:
            findings.extend(source(mine))
            coverage.append(Coverage(ecosystem=eco, packages=len(mine), checked=True, source=source.name))
        except Unavailable as e:
            coverage.append(Coverage(ecosystem=eco, packages=len(mine), checked=False, source=source.name,
                                     note=str(e)))
    if not any(p.ecosystem == "debian" for p in pkgs) and "debian" not in skipped:
        props = {str(p.get("name")): str(p.get("value")) for p in (doc.get("metadata") or {}).get("properties") or []}
        if not props.get("mlpack:os-packages", "dpkg").startswith("dpkg"):
            coverage = [c for c in coverage if c.ecosystem != "debian"]
            coverage.append(Coverage(ecosystem="os", packages=0, checked=False, source="the image",
                                     note="the image has no dpkg database: its OS packages are unknown"))
    image = str(((doc.get("metadata") or {}).get("component") or {}).get("bom-ref", "")).removeprefix("image:")
    findings.sort(key=lambda f: (f.ecosystem, f.package, f.version, f.id))
    return AuditResult(image=image, findings=tuple(findings), coverage=tuple(coverage), skipped=skipped)
