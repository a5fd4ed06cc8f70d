"""checkov (framework cloudformation, offline: --skip-download, no API key) over the templates of the stack
tests' app (tests/stacks/test_model_stacks.py's three models and the shared stack with its notifier):
every finding is either fixed or accepted in stacks/nag.py CHECKOV_SKIPS with its reason, passed as
--skip-check, and every entry there is still triggered (no stale reason).

checkov is not in the test extra: it pins boto3 (==1.35.49) and packaging (<24), which pytest>=8
(packaging>=24) and this project's boto3 cannot share one environment with. It runs from its own
virtualenv, .venv-checkov, which scripts/setup installs (pinned); MLPACK_CHECKOV names another
executable. Without one the test fails and says to run scripts/setup.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from stacks.nag import CHECKOV_SKIPS
from tests.support import stack_projects as sp

pytestmark = pytest.mark.slow

# findings that must stay on the resources they are accepted for (a skip is global to the run)
ONLY_IN = {"CKV_AWS_59": {"mlpack-digits.template.json"}}  # the one model with api.public = true


def _checkov() -> str:
    """MLPACK_CHECKOV, else the one scripts/setup installs (.venv-checkov), else checkov on PATH or beside
    this Python. Missing is a failure, not a skip: the suite's setup installs it."""
    own = Path(__file__).resolve().parents[2] / ".venv-checkov" / "bin" / "checkov"
    beside = Path(sys.executable).parent / "checkov"
    found = os.environ.get("MLPACK_CHECKOV") or (str(own) if own.is_file() else None) or shutil.which("checkov")
    if not found and beside.is_file():
        found = str(beside)
    if not found:
        pytest.fail("checkov is not installed: run scripts/setup (it installs checkov into .venv-checkov)")
    return found


@pytest.fixture(scope="module")
def templates(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    import aws_cdk as cdk

    from stacks.assembly import add_stacks
    from stacks.plan import plan
    from tests.stacks import test_model_stacks as fixture

    _checkov()  # skip before synthesising when there is no checkov
    root = tmp_path_factory.mktemp("checkov")
    sp.write_project(root, "iris", toml_extra=fixture.IRIS_TOML)
    sp.write_project(root, "houses", toml_extra=fixture.HOUSES_TOML, model_json=sp.regressor_json("houses", "v1"))
    sp.write_project(root, "digits", toml_extra=fixture.DIGITS_TOML,
                     model_json=sp.classifier_json("digits", "v1", fixture.DIGITS, width=64))
    sp.write_lock(root, ["iris", "houses", "digits"], arch={"digits": "arm64"})
    app = cdk.App(outdir=str(root / "cdk.out"))
    add_stacks(app, plan(root, patterns=["models/*"], lock_path=Path("mlpack.lock.json")))
    app.synth()
    files = sorted((root / "cdk.out").glob("mlpack-*.template.json"))
    assert [f.name for f in files] == [f"mlpack-{n}.template.json" for n in ("digits", "houses", "iris", "shared")]
    return files


def _failed(files: list[Path], *extra: str) -> list[dict[str, Any]]:
    cmd = [_checkov(), "--framework", "cloudformation", "--skip-download", "--quiet", "--compact", "-o", "json",
           *extra, *(a for f in files for a in ("-f", str(f)))]
    env = {k: v for k, v in os.environ.items() if k not in ("BC_API_KEY", "PRISMA_API_URL")}
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=files[0].parent)
    assert result.returncode in (0, 1), result.stderr[-3000:]  # 1: some check failed
    reports = json.loads(result.stdout) if result.stdout.strip() else []
    reports = reports if isinstance(reports, list) else [reports]
    assert all(r.get("check_type") == "cloudformation" for r in reports), reports
    return [f for r in reports for f in r.get("results", {}).get("failed_checks", [])]


def test_checkov_finds_nothing_but_the_accepted_checks(templates: list[Path]) -> None:
    failed = _failed(templates, "--skip-check", ",".join(CHECKOV_SKIPS))
    assert [(f["check_id"], f["check_name"], Path(f["file_path"]).name, f["resource"]) for f in failed] == []


def test_every_accepted_check_is_still_triggered_where_it_is_accepted(templates: list[Path]) -> None:
    failed = _failed(templates)
    assert sorted({f["check_id"] for f in failed}) == sorted(CHECKOV_SKIPS), "fix the finding or drop its reason"
    for check, files in ONLY_IN.items():
        assert {Path(f["file_path"]).name for f in failed if f["check_id"] == check} == files, check
    assert all(reason.strip().endswith(".") and len(reason) > 40 for reason in CHECKOV_SKIPS.values())
