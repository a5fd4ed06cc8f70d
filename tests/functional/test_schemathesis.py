"""schemathesis, a client no one here wrote, fuzzes `mlpack serve` from the handler's own OpenAPI
document: every generated request (bodies, methods, headers the document allows and does not) must be
answered without a server error. An array model and a DataFrame model (records and columns)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import handler_models as hm
from tests.support.serving import Served

pytestmark = pytest.mark.slow

ST = Path(sys.executable).parent / "st"


@pytest.mark.parametrize("kind", ["iris", "table"])
def test_no_generated_request_gets_a_server_error(tmp_path, kind):
    if not ST.exists():
        pytest.fail(f"{ST} is missing: run scripts/setup (schemathesis is in the test extra)")
    folder = hm.iris(tmp_path / kind)[0] if kind == "iris" else hm.table(tmp_path / kind)[0]
    served = Served([str(folder)], wait_s=120)
    try:
        run = subprocess.run([str(ST), "run", f"{served.url}/openapi.json", "--checks", "not_a_server_error",
                              "--max-examples", "40", "--seed", "1", "--no-color"],
                             capture_output=True, text=True, timeout=600, cwd=tmp_path)  # its .schemathesis/ there
    finally:
        assert served.stop() == 0
    assert run.returncode == 0, run.stdout[-5000:] + run.stderr[-2000:]
    assert " passed" in run.stdout and "generated" in run.stdout
