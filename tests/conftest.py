"""Shared test setup. Topic fixtures live in tests/support/ and are imported explicitly by the tests
that use them."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"

# jsii warns on every start about Node 20; the CDK CLI must not phone home from tests.
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
os.environ.setdefault("CDK_DISABLE_CLI_TELEMETRY", "true")


@pytest.fixture
def example_copy(tmp_path: Path):
    """Copy an example project into tmp_path (without build output), so tests never write into the repo."""

    def copy(name: str) -> Path:
        dest = tmp_path / name
        shutil.copytree(EXAMPLES / name, dest, ignore=shutil.ignore_patterns("build", "__pycache__"))
        return dest

    return copy
