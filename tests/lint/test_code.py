"""The code's own rules, checked on every run so they cannot rot: the import boundaries the module
docstrings promise (import-linter's contracts in pyproject.toml, plus an allow-list of what handlers/
may import, which a "forbidden" contract cannot express), that only the command line talks to the
terminal, ruff, and mypy (strict where pyproject.toml says so)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

# What the image's handler may import besides the standard library: the image ships exactly these.
HANDLER_THIRD_PARTY = {"numpy", "onnxruntime", "orjson", "simdjson"}
# The notifier runs in Lambda's managed Python runtime from a zip of notify.py and names.py: the runtime
# provides boto3, nothing else is there.
NOTIFIER_FILES = {"notify.py", "names.py"}
NOTIFIER_THIRD_PARTY = {"boto3", "botocore"}


def _run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)


def _imports(path: Path) -> set[str]:
    """Top-level names of every absolute import in a file, lazy ones inside functions included."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.add(node.module.split(".")[0])
    return out


def _py_files(*folders: str) -> list[Path]:
    return sorted(p for f in folders for p in (ROOT / f).rglob("*.py") if "templates" not in p.parts)


def test_import_contracts_hold():
    result = _run(str(BIN / "lint-imports"), "--no-cache")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


@pytest.mark.parametrize("path", _py_files("handlers"), ids=lambda p: p.name)
def test_handlers_import_only_what_the_image_ships(path):
    if path.name in NOTIFIER_FILES:
        allowed = NOTIFIER_THIRD_PARTY | {"handlers", "names"}
    else:
        allowed = HANDLER_THIRD_PARTY | {"handlers"}
    outside = {m for m in _imports(path) if m not in sys.stdlib_module_names and m not in allowed}
    assert not outside, f"{path.relative_to(ROOT)} imports {sorted(outside)}: the image does not ship them"


def test_the_notifier_imports_no_other_handler_module():
    for name in NOTIFIER_FILES:
        tree = ast.parse((ROOT / "handlers" / name).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("handlers")):
                assert {a.name for a in node.names} <= {"names"}, f"handlers/{name}: only names.py is in its zip"


def _terminal_writes(path: Path) -> list[str]:
    """print(...), sys.stdout/sys.stderr.write(...) and click.echo(...) calls, as file:line."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        writes = (
            (isinstance(f, ast.Name) and f.id == "print")
            or (isinstance(f, ast.Attribute) and f.attr == "echo")
            or (
                isinstance(f, ast.Attribute)
                and f.attr == "write"
                and isinstance(f.value, ast.Attribute)
                and f.value.attr in ("stdout", "stderr")
            )
        )
        if writes:
            found.append(f"{path}:{node.lineno}")
    return found


def test_only_the_command_line_talks_to_the_terminal():
    """packager/cli/ (and stacks/app.py, the CDK app's edge) print; stages return data or raise MlpackError,
    and report progress through callbacks the command line passes in."""
    edges = {ROOT / "stacks" / "app.py"}
    files = [p for p in _py_files("packager", "stacks") if "cli" not in p.relative_to(ROOT).parts and p not in edges]
    found = [hit for p in files for hit in _terminal_writes(p)]
    assert not found, f"terminal output outside packager/cli: {found}"


def test_the_terminal_check_finds_writes(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("import sys\nprint('x')\nsys.stderr.write('y')\nclick.echo('z')\nlog.write('fine')\n")
    assert _terminal_writes(probe) == [f"{probe}:2", f"{probe}:3", f"{probe}:4"]


def test_ruff():
    result = _run(str(BIN / "ruff"), "check", "--no-cache", ".")
    assert result.returncode == 0, result.stdout[-6000:]


@pytest.mark.slow
def test_mypy():
    # [tool.mypy] in pyproject.toml says which files and how strict; the cache (.mypy_cache, ignored by
    # git) makes a second run fast
    result = _run(str(BIN / "mypy"))
    assert result.returncode == 0, result.stdout[-6000:]
