"""README's layout and docs/ARCHITECTURE.md describe the tree as it is: every package and module is
named there, and every module named there exists."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CODE = ("packager", "stacks", "handlers")


def _modules() -> list[Path]:
    return sorted(
        p for top in CODE for p in (ROOT / top).rglob("*.py")
        if p.name not in ("__init__.py", "__main__.py") and "templates" not in p.parts
    )


def _layout_section() -> str:
    readme = (ROOT / "README.md").read_text()
    return readme[readme.index("## Layout"):]


def test_readme_layout_names_every_package():
    layout = _layout_section()
    top = ROOT / "packager"
    packages = sorted({p.parent.relative_to(top).parts[0] for p in top.rglob("__init__.py")
                       if p.parent != top and "templates" not in p.parts})
    missing = [f"{name}/" for name in packages if f"{name}/" not in layout]
    assert not missing, f"README.md's Layout section does not mention {missing}"
    for name in (*CODE, "app.py", "tests/", "bench/", "docs/"):
        assert name in layout


def test_architecture_names_every_module():
    text = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    missing = [str(p.relative_to(ROOT)) for p in _modules() if p.name not in text and f"`{p.stem}`" not in text]
    assert not missing, f"docs/ARCHITECTURE.md does not mention {missing}"


def test_architecture_names_only_modules_that_exist():
    text = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    tests = {p.name for p in (ROOT / "tests").rglob("*.py")}
    existing = {p.name for p in _modules()} | tests | {"app.py", "__init__.py"}
    named = set(re.findall(r"\b([a-z_0-9]+\.py)\b", text))
    assert named - existing == set(), f"docs/ARCHITECTURE.md names modules that do not exist: {named - existing}"
