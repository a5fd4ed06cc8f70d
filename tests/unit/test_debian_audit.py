"""`mlpack audit` (packager/image/audit.py and its command): an image's packages against vulnerability data,
from its SBOM. No network: the sources are fakes, the tracker is "fetched" from 127.0.0.1:9 (nothing
listens there) and pip-audit is stood in for by a canned process; the real pip-audit runs once, skipped
with the reason when PyPI's vulnerability service cannot answer from here.

What is checked: findings are reported with their fix and make the command exit 1; a source that cannot be
reached leaves its ecosystem NOT CHECKED with the reason and exits 3 (never a pass); pip-audit's "could not
be audited" answers (exit 0 from pip-audit) count as unchecked, not as clean; --skip leaves an ecosystem
out on purpose, said in the report; an image without a dpkg database says its OS packages are unknown;
the tracker's data is read by source package and Debian version order (dpkg --compare-versions).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from packager.cli import main
from packager.image import audit

SBOM: dict[str, Any] = {
    "bomFormat": "CycloneDX", "specVersion": "1.6",
    "metadata": {"component": {"bom-ref": "image:sha256:" + "1" * 64},
                 "properties": [{"name": "mlpack:os-packages", "value": "dpkg"}]},
    "components": [
        {"type": "library", "name": "numpy", "version": "1.21.0", "purl": "pkg:pypi/numpy@1.21.0"},
        {"type": "library", "name": "orjson", "version": "3.10.0", "purl": "pkg:pypi/orjson@3.10.0"},
        {"type": "library", "name": "libssl3", "version": "3.0.20-1~deb12u1",
         "purl": "pkg:deb/debian/libssl3@3.0.20-1~deb12u1?arch=amd64",
         "properties": [{"name": "mlpack:deb:source", "value": "openssl"}]},
        {"type": "library", "name": "python3", "version": "3.11.2-1+b1",
         "purl": "pkg:deb/debian/python3@3.11.2-1%2Bb1?arch=amd64",
         "properties": [{"name": "mlpack:deb:source", "value": "python3-defaults (3.11.2-1)"}]},
    ],
}


class Fake:
    def __init__(self, name: str, findings: list[audit.Finding] | None = None, error: str | None = None) -> None:
        self.name = name
        self.findings = findings or []
        self.error = error
        self.asked: list[audit.Package] = []

    def __call__(self, packages: list[audit.Package]) -> list[audit.Finding]:
        self.asked = packages
        if self.error:
            raise audit.Unavailable(self.error)
        return self.findings


def run_cli(capsys: pytest.CaptureFixture[str], tmp_path: Path, *args: str) -> tuple[int, str, str]:
    """`mlpack audit` as the console runs it (errors become exit codes); output with runs of spaces as one."""
    path = tmp_path / "sbom.cdx.json"
    path.write_text(json.dumps(SBOM))
    code = main(["audit", str(path), *args])
    out, err = capsys.readouterr()
    return code, (out if "--json" in args else re.sub(r" +", " ", out)), re.sub(r" +", " ", err)


def test_packages_come_from_the_sbom() -> None:
    pkgs = audit.packages_of(SBOM)
    assert [(p.ecosystem, p.name, p.source, p.source_version) for p in pkgs] == [
        ("debian", "libssl3", "openssl", "3.0.20-1~deb12u1"), ("debian", "python3", "python3-defaults", "3.11.2-1"),
        ("python", "numpy", "", ""), ("python", "orjson", "", "")]


def test_findings_and_coverage(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                               capsys: pytest.CaptureFixture[str]) -> None:
    py = Fake("fake-py", [audit.Finding(ecosystem="python", package="numpy", version="1.21.0", id="PYSEC-2021-1",
                                        fixed=("1.22.0",), summary="a buffer overflow")])
    deb = Fake("fake-deb")
    result = audit.audit(SBOM, python=py, os_source=deb)
    assert [p.name for p in py.asked] == ["numpy", "orjson"] and [p.name for p in deb.asked] == ["libssl3", "python3"]
    assert result.complete and [f.id for f in result.findings] == ["PYSEC-2021-1"]
    monkeypatch.setattr(audit, "PipAudit", lambda: py)
    monkeypatch.setattr(audit, "DebianTracker", lambda: deb)
    code, out, err = run_cli(capsys, tmp_path)
    assert code == 1
    assert "python 2 packages checked (fake-py)" in out and "debian 2 packages checked (fake-deb)" in out
    assert "numpy 1.21.0: PYSEC-2021-1 (fixed in 1.22.0) a buffer overflow" in out
    assert "1 known vulnerability" in err and "hint:" in err


def test_an_unreachable_source_is_never_a_pass(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("MLPACK_DEBIAN_TRACKER_URL", "http://127.0.0.1:9/tracker/data/json")
    monkeypatch.setattr(audit, "PipAudit", lambda: Fake("fake-py"))
    code, out, err = run_cli(capsys, tmp_path)
    assert code == 3
    assert "debian 2 packages NOT CHECKED: cannot check OS packages: no vulnerability data reachable: " \
           "http://127.0.0.1:9/tracker/data/json" in out
    assert "the audit is incomplete: cannot check OS packages: no vulnerability data reachable" in err
    # leaving the OS packages out on purpose is said, and then the rest can pass
    code, out, _ = run_cli(capsys, tmp_path, "--skip", "debian")
    assert code == 0 and "debian skipped (--skip debian)" in out
    code, out, _ = run_cli(capsys, tmp_path, "--json")
    data = json.loads(out)
    assert code == 3 and data["complete"] is False
    assert [c["checked"] for c in data["coverage"]] == [True, False]


def test_an_image_without_dpkg_says_its_os_packages_are_unknown() -> None:
    doc = {**SBOM, "components": SBOM["components"][:2],
           "metadata": {"properties": [{"name": "mlpack:os-packages", "value": "none found"}]}}
    result = audit.audit(doc, python=Fake("py"), os_source=Fake("deb"))
    assert not result.complete
    assert [(c.ecosystem, c.checked) for c in result.coverage] == [("python", True), ("os", False)]
    assert "no dpkg database" in result.coverage[-1].note


def _proc(stdout: str, code: int = 0) -> Any:
    return lambda *a, **k: subprocess.CompletedProcess(a, code, stdout=stdout, stderr="")


def test_pip_audit_answers_are_read_and_could_not_audit_is_no_answer() -> None:
    pkgs = audit.packages_of(SBOM)[2:]
    found = {"dependencies": [
        {"name": "numpy", "version": "1.21.0", "vulns": [{"id": "PYSEC-1", "fix_versions": ["1.22.0"],
                                                           "aliases": ["CVE-2021-1"], "description": "bad\nmore"}]},
        {"name": "orjson", "version": "3.10.0", "vulns": []}], "fixes": []}
    result = audit.PipAudit(run=_proc(json.dumps(found), 1))(pkgs)
    assert [(f.package, f.id, f.aliases, f.fixed, f.summary) for f in result] == [
        ("numpy", "PYSEC-1", ("CVE-2021-1",), ("1.22.0",), "bad")]
    unknown = {"dependencies": [{"name": "numpy", "skip_reason": "Dependency not found on PyPI and could not be "
                                 "audited: numpy (1.21.0)"}, {"name": "orjson", "version": "3.10.0", "vulns": []}]}
    with pytest.raises(audit.Unavailable) as e:
        audit.PipAudit(run=_proc(json.dumps(unknown)))(pkgs)
    assert "no data for 1 of 2" in str(e.value) and "could not be audited" in str(e.value)
    with pytest.raises(audit.Unavailable) as e:
        audit.PipAudit(run=_proc("", 2))(pkgs)
    assert "pip-audit failed (exit 2)" in str(e.value)


def test_the_tracker_is_read_by_source_package_and_debian_version_order() -> None:
    tracker = {
        "openssl": {
            "CVE-2025-1": {"description": "fixed later", "releases": {"bookworm": {
                "status": "resolved", "fixed_version": "3.0.22-1~deb12u1"}}},
            "CVE-2024-2": {"releases": {"bookworm": {"status": "resolved", "fixed_version": "3.0.20-1~deb12u1"}}},
            "CVE-2024-3": {"releases": {"bookworm": {"status": "open"}}},
            "CVE-2024-4": {"releases": {"bookworm": {"status": "resolved", "fixed_version": "0"}}},
            "CVE-2024-5": {"releases": {"trixie": {"status": "open"}}}},
        "python3-defaults": {"CVE-2023-9": {"releases": {"bookworm": {"status": "resolved",
                                                                      "fixed_version": "3.11.2-1"}}}},
    }
    source = audit.DebianTracker(fetch=lambda url: json.dumps(tracker).encode())
    found = source(audit.packages_of(SBOM)[:2])
    assert [(f.package, f.id, f.fixed) for f in found] == [
        ("libssl3", "CVE-2024-3", ()), ("libssl3", "CVE-2025-1", ("3.0.22-1~deb12u1",))]


@pytest.mark.skipif(shutil.which("dpkg") is None, reason="dpkg --compare-versions is the reference")
def test_debian_version_order_is_dpkgs() -> None:
    versions = ["1.0", "1.0-1", "1.0~rc1", "1.0~rc1-1", "1:0.9", "1.0+b1", "1.0-1+deb12u1", "1.0-1~deb12u1",
                "2.36-9+deb12u14", "2.36-9+deb12u4", "3.0.22-1~deb12u2", "3.0.22-1", "1.0a", "1.0.1", "0:1.0"]
    for a in versions:
        for b in versions:
            ours = audit.compare_versions(a, b)
            op = {-1: "lt", 0: "eq", 1: "gt"}[ours]
            assert subprocess.run(["dpkg", "--compare-versions", a, op, b]).returncode == 0, (a, op, b)


@pytest.mark.slow  # reaches PyPI: the one test here that leaves this machine
def test_pip_audit_for_real() -> None:
    """pip-audit itself, on a version with a published advisory (requests 2.19.0: CVE-2018-18074)."""
    pkgs = [audit.Package(ecosystem="python", name="requests", version="2.19.0")]
    try:
        found = audit.PipAudit()(pkgs)
    except audit.Unavailable as e:
        pytest.skip(f"PyPI's vulnerability service cannot answer from here: {e}")
    assert any("CVE-2018-18074" in (f.id, *f.aliases) for f in found)
