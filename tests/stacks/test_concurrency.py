"""Every function's concurrency is reserved (stacks/assembly.py reserve_concurrency): explicit values as
they are, the notifier's few, an equal share of the rest of the budget for every other model; and synth
stops, naming the figures, when the reservations would leave Lambda fewer than 100 unreserved."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from packager.config import spec as spec_mod
from packager.errors import DeployError
from stacks.assembly import reserve_concurrency
from tests.support import stack_projects as sp

pytestmark = pytest.mark.slow


def model(name: str, reserved: int | None = None, provisioned: int = 0) -> SimpleNamespace:
    runtime = {"provisioned_concurrency": provisioned} | ({"reserved_concurrency": reserved} if reserved is not None
                                                          else {})
    raw = {"model": {"name": name, "owners": ["ana@example.com"], "source": "train:build"},
           "samples": {"source": "train:samples"}, "runtime": runtime}
    return SimpleNamespace(spec=spec_mod.parse(raw, Path("."), files=False))


def test_models_without_a_value_share_what_the_budget_leaves():
    models = [model("a"), model("b", reserved=20), model("c"), model("d")]
    assert reserve_concurrency(models, account_concurrency=1000, notifier=5) == {"a": 158, "b": 20, "c": 158, "d": 158}
    assert reserve_concurrency(models, account_concurrency=1000, budget=900) == {"a": 293, "b": 20, "c": 293, "d": 293}
    assert reserve_concurrency([model("a", reserved=0)], account_concurrency=1000) == {"a": 0}


def test_the_budget_must_leave_lambdas_100_unreserved():
    with pytest.raises(DeployError) as e:
        reserve_concurrency([model("a")], account_concurrency=1000, budget=950)
    assert str(e.value).startswith("context mlpack:concurrency_budget=950 leaves 50 of the account's 1000 "
                                   "(mlpack:account_concurrency) unreserved; Lambda requires 100")
    assert e.value.hint == "set -c mlpack:concurrency_budget=900 or less"


def test_explicit_reservations_over_the_budget_name_every_figure():
    with pytest.raises(DeployError) as e:
        reserve_concurrency([model("a", reserved=400), model("b", reserved=200), model("c")],
                            account_concurrency=1000, notifier=5)
    assert str(e.value).startswith("reserved concurrency 605 (a 400, b 200, notifier 5) plus at least 1 for each of "
                                   "1 other model(s) exceeds the budget of 500 of the account's 1000")
    with pytest.raises(DeployError, match=r"498 \(a 498\) plus at least 1 for each of 3 other model"):  # 2 left
        reserve_concurrency([model("a", reserved=498), model("b"), model("c"), model("d")], account_concurrency=1000)


def test_a_default_share_below_the_provisioned_concurrency_is_refused():
    models = [model("a", reserved=480), model("b", provisioned=15), model("c")]
    with pytest.raises(DeployError) as e:
        reserve_concurrency(models, account_concurrency=1000)
    assert "model b: its default reserved concurrency, 10 (an equal share of the 20 left" in str(e.value)
    assert "below its runtime.provisioned_concurrency 15" in str(e.value)


def test_synth_stops_with_the_figures_and_no_traceback(tmp_path):
    import json
    import os
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[2]
    sp.write_project(tmp_path, "iris", toml_extra="[runtime]\nreserved_concurrency = 950\n")
    sp.write_lock(tmp_path, ["iris"])
    sp.write_cdk_json(tmp_path, repo)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CDK_"))}
    env |= {"CDK_CONTEXT_JSON": json.dumps({"mlpack:projects": "models/*"}), "CDK_OUTDIR": str(tmp_path / "out"),
            "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20"}
    result = subprocess.run([sys.executable, str(repo / "app.py")], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 2, result.stderr
    assert "mlpack: reserved concurrency 950 (iris 950) exceeds the budget of 500 of the account's 1000" \
        in result.stderr
    assert "Traceback" not in result.stderr
