"""app.py's context values (cdk.json, or `-c key=value` on the CDK command line): valid ones are read
in both forms, bad ones stop `cdk synth` with exit 2 and one line per problem naming the key, the bad
value and what to put instead, never a traceback.

The CDK CLI runs app.py as a subprocess with the context in CDK_CONTEXT_JSON; these tests do the same
without the CLI (the messages are app.py's own). Validation comes before anything else, so no model
project is needed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from stacks import app

REPO = Path(__file__).resolve().parents[2]


def _synth(tmp_path: Path, context: dict) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CDK_"))}
    env |= {
        "CDK_CONTEXT_JSON": json.dumps(context),
        "CDK_OUTDIR": str(tmp_path / "cdk.out"),
        "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
    }
    return subprocess.run(
        [sys.executable, str(REPO / "app.py")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_every_bad_context_value_is_named_in_one_run_without_a_traceback(tmp_path):
    result = _synth(
        tmp_path,
        {
            "mlpack:account_concurrency": "abc",
            "mlpack:projects": "[bad json",
            "mlpack:bootstrapless": "maybe",
        },
    )
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("mlpack:")]
    assert lines == [
        "mlpack: context mlpack:projects must be a glob or a JSON list of globs (got '[bad json'): "
        """set it in cdk.json or pass -c mlpack:projects='["models/*"]'""",
        "mlpack: context mlpack:account_concurrency must be a positive integer (got 'abc'): "
        "set it in cdk.json or pass -c mlpack:account_concurrency=N",
        "mlpack: context mlpack:bootstrapless must be true or false (got 'maybe'): "
        "set it in cdk.json or pass -c mlpack:bootstrapless=true",
    ]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "cdk.out").exists() or not list((tmp_path / "cdk.out").glob("*.template.json"))


@pytest.mark.parametrize("value", ["0", "-5", 0, 2.5])
def test_a_concurrency_that_is_not_a_positive_integer_stops_synth(tmp_path, value):
    result = _synth(tmp_path, {"mlpack:account_concurrency": value})
    assert result.returncode == 2, result.stderr
    assert f"mlpack: context mlpack:account_concurrency must be a positive integer (got {value!r})" in result.stderr
    assert "Traceback" not in result.stderr


# --- read_context in-process: what is accepted --------------------------------------------------


def test_unset_context_takes_the_defaults():
    assert app.read_context({}.get) == app.Settings()
    assert app.Settings() == app.Settings(
        projects=("examples/*",), lock=Path("mlpack.lock.json"), account_concurrency=1000, bootstrapless=False
    )


def test_cdk_json_values_are_json_typed():
    s = app.read_context(
        {
            "mlpack:projects": ["models/*", "more/*"],
            "mlpack:lock": "locks/mlpack.lock.json",
            "mlpack:account_concurrency": 250,
            "mlpack:bootstrapless": True,
        }.get
    )
    assert s == app.Settings(
        projects=("models/*", "more/*"),
        lock=Path("locks/mlpack.lock.json"),
        lock_given=True,
        account_concurrency=250,
        bootstrapless=True,
    )


def test_command_line_values_are_strings():
    s = app.read_context(
        {
            "mlpack:projects": '["models/*"]',
            "mlpack:account_concurrency": " 3000 ",
            "mlpack:bootstrapless": "false",
        }.get
    )
    assert (s.projects, s.account_concurrency, s.bootstrapless) == (("models/*",), 3000, False)
    assert app.read_context({"mlpack:projects": "models/churn"}.get).projects == ("models/churn",)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("mlpack:projects", "[]"),
        ("mlpack:projects", '[1, "models/*"]'),
        ("mlpack:projects", ""),
        ("mlpack:projects", {"models": "*"}),
        ("mlpack:lock", ""),
        ("mlpack:lock", 5),
        ("mlpack:account_concurrency", True),
        ("mlpack:account_concurrency", "1e3"),
        ("mlpack:account_concurrency", "٣"),  # a digit, but not one int() should be handed silently
        ("mlpack:bootstrapless", "ture"),
        ("mlpack:concurrency_budget", "0"),
        ("mlpack:concurrency_budget", "half"),
        ("mlpack:platform_email", "ops"),
        ("mlpack:platform_email", '["ops@example.com", "nobody"]'),
        ("mlpack:platform_email", []),
    ],
)
def test_bad_values_are_refused_with_the_key_and_the_value(key, value):
    with pytest.raises(app.ContextError) as e:
        app.read_context({key: value}.get)
    (problem,) = e.value.problems
    assert problem.startswith(f"context {key} must be ") and f"(got {value!r})" in problem
    assert f"pass -c {key}=" in problem and e.value.exit_code == 2


def test_the_concurrency_budget_and_the_platform_emails():
    s = app.read_context({"mlpack:concurrency_budget": "300", "mlpack:platform_email": "ops@example.com"}.get)
    assert (s.concurrency_budget, s.platform_emails) == (300, ("ops@example.com",))
    s = app.read_context({"mlpack:concurrency_budget": 40, "mlpack:platform_email": ["a@x.io", "b@x.io"]}.get)
    assert (s.concurrency_budget, s.platform_emails) == (40, ("a@x.io", "b@x.io"))
    assert app.read_context({"mlpack:platform_email": '["a@x.io"]'}.get).platform_emails == ("a@x.io",)
    assert (app.Settings().concurrency_budget, app.Settings().platform_emails) == (None, ())
