"""`mlpack check` warns about Python modules an image ships without bytecode: Lambda's file system is
read-only, so each cold start would compile them again."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from packager import oci
from packager.cli import cli
from packager.image import checks
from tests.support.layouts import write_layout

PYC = b"bytecode"


def _image(tmp_path: Path) -> Path:
    base = {
        "usr/lib/python3.11/json/decoder.py": b"",
        "usr/lib/python3.11/json/__pycache__/decoder.cpython-311.pyc": PYC,
        "usr/lib/python3.11/test/test_json.py": b"",  # the test suite: nothing imports it
        "usr/lib/python3.11/legacy.py": b"",
        "usr/lib/python3.11/legacy.pyc": PYC,
        "usr/share/doc/example.py": b"",  # not where Python imports from
    }
    deps = {
        "var/task/numpy/core.py": b"",
        "var/task/numpy/__pycache__/core.cpython-311.pyc": PYC,
        "var/task/numpy/slow.py": b"",  # no bytecode
        "var/task/numpy/opt.py": b"",
        "var/task/numpy/__pycache__/opt.cpython-311.opt-1.pyc": PYC,  # python -O's only: not read by Lambda
        "var/task/gone.py": b"",
        "var/task/old/stale.py": b"",
    }
    handler = {
        "var/task/.wh.gone.py": b"",  # deleted by this layer
        "var/task/old/.wh..wh..opq": b"",  # the folder's earlier contents hidden
        "var/task/handlers/predict.py": b"",
    }
    layout = tmp_path / "image"
    write_layout(layout, [base, deps, handler])
    return layout


def test_modules_without_bytecode_are_found_in_the_final_file_system(tmp_path):
    image = oci.read_layout(_image(tmp_path))
    assert checks.modules_without_bytecode(image) == [
        "var/task/handlers/predict.py",
        "var/task/numpy/opt.py",
        "var/task/numpy/slow.py",
    ]


def test_check_warns_with_the_count_and_examples(tmp_path):
    layout = _image(tmp_path)
    (warning,) = [w for w in checks.check(layout).warnings if "bytecode" in w]
    assert warning.startswith("image: 3 Python module(s) ship without bytecode (var/task/handlers/predict.py, "
                              "var/task/numpy/opt.py, var/task/numpy/slow.py)")
    assert "each cold start compiles" in warning
    # a warning, not a problem: Lambda runs such an image (this stand-in has problems of its own, WorkingDir)
    result = CliRunner().invoke(cli, ["check", str(layout)])
    assert f"warning: {warning}" in result.stderr
    assert "WorkingDir" in str(result.exception) and "bytecode" not in str(result.exception)
