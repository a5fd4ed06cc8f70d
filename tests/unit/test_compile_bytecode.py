"""packager/image/deps.compile_bytecode: the pycs Lambda reads (unchecked-hash, at the in-image path, next
to their source), whatever PYTHON* variables the build machine has; `exclude` leaves matches as source."""

from __future__ import annotations

import marshal
import sys
from pathlib import Path

import pytest

from packager.image import deps

TAG = sys.implementation.cache_tag


def _tree(root: Path) -> Path:
    (root / "pkg" / "skipped").mkdir(parents=True)
    (root / "pkg" / "__init__.py").write_text("X = {'a', 'b', 'c'}\n")
    (root / "pkg" / "skipped" / "mod.py").write_text("Y = 1\n")
    return root


def test_pycs_land_next_to_the_source_whatever_the_environment(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    tree = _tree(tmp_path / "tree")
    # a build machine's settings that would send the pycs elsewhere or give them another name
    monkeypatch.setenv("PYTHONPYCACHEPREFIX", str(tmp_path / "elsewhere"))
    monkeypatch.setenv("PYTHONOPTIMIZE", "2")
    proc = deps.compile_bytecode(tree, "/var/task", sys.executable, exclude=r"/pkg/skipped/")
    assert proc.returncode == 0, proc.stderr
    pyc = tree / "pkg" / "__pycache__" / f"__init__.{TAG}.pyc"
    data = pyc.read_bytes()
    assert int.from_bytes(data[4:8], "little") == 1  # hash-based, unchecked
    assert marshal.loads(data[16:]).co_filename == "/var/task/pkg/__init__.py"
    assert not (tmp_path / "elsewhere").exists()
    assert [p.name for p in tree.rglob("*.pyc")] == [pyc.name]  # nothing under skipped/, no .opt-N
