"""The wheel holds what mlpack reads at run time. Every other test runs from this editable checkout,
where a file missing from the package data is never noticed; a team installs the wheel."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("packager", "stacks", "handlers")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel_names(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    out = tmp_path_factory.mktemp("wheel")
    # from a copy of the files git knows (setuptools leaves build/ behind, whose stale files would end up
    # in a later wheel); the venv's setuptools builds it: no build isolation, so nothing is fetched
    src = tmp_path_factory.mktemp("src")
    for rel in ("pyproject.toml", "README.md", *(f for p in PACKAGES for f in _files(p))):
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, src / rel)
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation", "-q", "-w", str(out)],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (wheel,) = out.glob("mlpack_lambda-*.whl")
    with zipfile.ZipFile(wheel) as z:
        return set(z.namelist())


def _files(package: str) -> list[str]:
    """The package's files git tracks or would track (new ones included, ignored ones not)."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", package], cwd=ROOT,
                            capture_output=True, text=True, check=True)
    return [line for line in listed.stdout.splitlines() if line and (ROOT / line).is_file()]


def test_every_file_of_the_packages_is_in_the_wheel(wheel_names):
    """Code, templates, handlers/requirements.txt (the dependency layer's input), py.typed: whatever git
    holds under the packages is read by something at run time."""
    tracked = [f for p in PACKAGES for f in _files(p)]
    assert "handlers/requirements.txt" in tracked and "packager/templates/mlpack.toml" in tracked
    missing = sorted(f for f in tracked if f not in wheel_names)
    assert not missing, f"not in the wheel (add them to [tool.setuptools.package-data]): {missing}"


def test_the_wheel_holds_no_tests_or_build_output(wheel_names):
    stray = sorted(n for n in wheel_names if n.startswith(("tests/", "bench/", "examples/", "build/", "cdk.out/"))
                   or "__pycache__" in n)
    assert not stray, stray
