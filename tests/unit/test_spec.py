"""mlpack.toml: validation reports every problem with its dotted path; resolution applies precedence once."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from packager.cli import main
from packager.config import spec as spec_mod
from packager.errors import SpecError

MINIMAL = """
[model]
name = "churn"
owners = ["ana@example.com"]
source = "model.joblib"

[samples]
source = "samples.csv"
"""


def project(tmp_path: Path, text: str, files: tuple[str, ...] = ("model.joblib", "samples.csv")) -> Path:
    (tmp_path / "mlpack.toml").write_text(textwrap.dedent(text))
    for f in files:
        (tmp_path / f).write_bytes(b"x")
    return tmp_path


def problems(tmp_path: Path, text: str, files: tuple[str, ...] = ("model.joblib", "samples.csv")) -> list[str]:
    with pytest.raises(SpecError) as info:
        spec_mod.load(project(tmp_path, text, files))
    return info.value.problems


def test_minimal_project_gets_documented_defaults(tmp_path: Path) -> None:
    spec = spec_mod.load(project(tmp_path, MINIMAL))
    assert spec.name == "churn"
    assert spec.stack_name == "mlpack-churn"
    assert spec.runtime.arch == "x86_64"
    assert spec.runtime.python is None
    assert spec.runtime.base == "aws"
    assert spec.api.auth == "api_key"
    assert spec.source_path() == tmp_path.resolve() / "model.joblib"
    assert spec.default_build_dir() == tmp_path.resolve() / "build" / "churn"


def test_every_problem_is_reported_at_once_with_its_path(tmp_path: Path) -> None:
    found = problems(tmp_path, """
        [model]
        name = "Churn_Model"
        owners = ["not-an-email"]
        source = "model.txt"
        colour = "blue"

        [samples]
        source = "samples.csv"

        [runtime]
        memory_mb = 64
        arch = "sparc"
        python = "3.9"

        [api]
        auth = "password"

        [wat]
        x = 1
    """)
    text = "\n".join(found)
    assert "wat: unknown section; allowed: alarms, api, batch, deploy, export" in text
    assert "model.colour: unknown key; allowed: description, feature_names" in text
    assert "model.name: must be lowercase letters, digits and '-'" in text and "(got 'Churn_Model')" in text
    assert "model.owners[0]: must be an email address" in text
    assert "model.source: must be a file ending in .onnx" in text
    assert "runtime.memory_mb: must be 128-10240 (got 64)" in text
    assert "runtime.arch: must be one of 'x86_64', 'arm64' (got 'sparc')" in text
    assert "runtime.python: must be one of '3.11', '3.12', '3.13' (got '3.9')" in text
    assert "api.auth: must be one of 'api_key', 'iam', 'none' (got 'password')" in text
    assert len(found) == 9


def test_missing_sections_keys_and_files(tmp_path: Path) -> None:
    found = problems(tmp_path, """
        [model]
        name = "churn"
        owners = []
    """, files=())
    assert "model.owners: must list at least 1 item(s)" in found
    assert any(p.startswith("model.source: required") for p in found)
    assert "samples: required section [samples] is missing" in found

    found = problems(tmp_path, MINIMAL, files=())
    assert any(p.startswith("model.source: file not found:") for p in found)
    assert any(p.startswith("samples.source: file not found:") for p in found)


def test_wrong_types_name_the_expected_type(tmp_path: Path) -> None:
    found = problems(tmp_path, MINIMAL + """
        [runtime]
        memory_mb = "1024"
        [notifications]
        email = "yes"
        [[notifications.chat]]
        kind = "slack"
        webhook = "https://hooks.slack.com/services/T000/B000/XXXX"
    """)
    assert "runtime.memory_mb: must be an integer (got '1024')" in found
    assert "notifications.email: must be a true/false (got 'yes')" in found
    assert any(p.startswith("notifications.chat[0].webhook: must name where the webhook URL is kept") for p in found)


def test_name_is_dns_safe_and_at_most_40_characters(tmp_path: Path) -> None:
    ok = "a" + "-b" * 19 + "c"  # 40 characters
    assert spec_mod.load(project(tmp_path, MINIMAL.replace('"churn"', f'"{ok}"'))).name == ok
    for bad in ("a" * 41, "-churn", "churn-", "1churn", "churn.v2"):
        found = problems(tmp_path, MINIMAL.replace('"churn"', f'"{bad}"'))
        assert found and found[0].startswith("model.name:"), bad


def test_registry_repository_names_no_tag(tmp_path: Path) -> None:
    """A tag there would make every push reuse it, and tags are never moved: each push picks its own."""
    for bad in ("127.0.0.1:5000/mlpack/churn:v1", "ecr.example/churn@sha256:" + "a" * 64, "churn"):
        found = problems(tmp_path, MINIMAL + f'[registry]\nrepository = "{bad}"\n')
        assert any(p.startswith("registry.repository: must be REGISTRY/REPO without a tag") for p in found), found
    spec = spec_mod.load(project(tmp_path, MINIMAL + '[registry]\nrepository = "127.0.0.1:5000/mlpack/churn"\n'))
    assert spec.registry.repository == "127.0.0.1:5000/mlpack/churn"


def test_factory_module_must_exist(tmp_path: Path) -> None:
    text = MINIMAL.replace('"model.joblib"', '"train:build"').replace('"samples.csv"', '"train:samples"')
    found = problems(tmp_path, text, files=())
    assert any("model.source: module 'train' not found" in p for p in found)
    (tmp_path / "train.py").write_text("def build(): pass\ndef samples(): pass\n")
    assert spec_mod.load(tmp_path).model.source == "train:build"


def test_cross_field_rules(tmp_path: Path) -> None:
    found = problems(tmp_path, MINIMAL + """
        [api]
        auth = "iam"
        quota_per_day = 1000
        [runtime]
        reserved_concurrency = 2
        provisioned_concurrency = 5
    """)
    assert "api.quota_per_day: needs api.auth = 'api_key' (got 'iam')" in found
    assert any(p.startswith("runtime.provisioned_concurrency: must not exceed") for p in found)


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "mlpack.toml").write_text("[model\nname=")
    with pytest.raises(SpecError) as info:
        spec_mod.load(tmp_path)
    assert str(tmp_path / "mlpack.toml") in str(info.value)
    assert "not valid TOML" in str(info.value)


def test_precedence_flag_over_environment_over_file(tmp_path: Path) -> None:
    spec = spec_mod.load(project(tmp_path, MINIMAL + '[runtime]\narch = "arm64"\n'))
    assert spec_mod.resolve(spec, {}, environ={}).runtime.arch == "arm64"
    assert spec_mod.resolve(spec, {}, environ={"MLPACK_ARCH": "x86_64"}).runtime.arch == "x86_64"
    flagged = spec_mod.resolve(spec, {"runtime.arch": "arm64", "runtime.base": None},
                               environ={"MLPACK_ARCH": "x86_64"})
    assert flagged.runtime.arch == "arm64"
    with pytest.raises(SpecError) as info:
        spec_mod.resolve(spec, {"runtime.arch": "mips"}, environ={})
    assert "runtime.arch: must be one of 'x86_64', 'arm64' (got 'mips')" in info.value.problems


def test_schema_reference_documents_every_key() -> None:
    rows = spec_mod.schema_reference()
    keys = {r[0] for r in rows}
    assert {"model.name", "runtime.memory_mb", "api.auth", "alarms.drift", "notifications.chat[].webhook"} <= keys
    assert all(doc for *_, doc in rows)
    memory = next(r for r in rows if r[0] == "runtime.memory_mb")
    assert memory[2] == "1024" and "128-10240" in memory[3]


def test_init_writes_a_valid_commented_project(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "Fraud Model"
    assert main(["init", str(target)]) == 0
    text = (target / "mlpack.toml").read_text()
    assert text.count("#") > 10
    spec = spec_mod.load(target)
    assert spec.name == "fraud-model"
    assert main(["init", str(target)]) == 1
    assert "already exist" in capsys.readouterr().err


def test_validate_exits_non_zero_listing_problems(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    project(tmp_path, MINIMAL.replace("churn", "Bad Name") + "[runtime]\ntimeout_s = 0\n")
    assert main(["validate", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "2 problems" in err and "model.name:" in err and "runtime.timeout_s: must be 1-900 (got 0)" in err
    assert main(["validate", str(tmp_path / "nowhere")]) == 2


def test_a_public_endpoint_needs_an_explicit_decision(tmp_path: Path) -> None:
    found = problems(tmp_path, MINIMAL + '[api]\nauth = "none"\n')
    assert found == ["api.public: api.auth = 'none' lets anyone on the internet call the endpoint; confirm with "
                     "api.public = true, or choose api.auth = 'api_key' or 'iam'"]
    spec = spec_mod.load(project(tmp_path, MINIMAL + '[api]\nauth = "none"\npublic = true\n'))
    assert spec.api.public is True and spec.api.auth == "none"
    found = problems(tmp_path, MINIMAL + "[api]\npublic = true\n")
    assert found == ["api.public: true only goes with api.auth = 'none' (got api.auth = 'api_key'); remove api.public"]


@pytest.mark.parametrize("ref", ["ssm:/mlpack/churn/slack", "secretsmanager:mlpack/churn/teams",
                                 "ssm:/mlpack/churn/prod/slack-url", "secretsmanager:mlpack/churn/a.b_c-d"])
def test_webhooks_in_the_models_namespace_are_accepted(tmp_path: Path, ref: str) -> None:
    spec = spec_mod.load(project(tmp_path, MINIMAL + f'[[notifications.chat]]\nkind = "slack"\nwebhook = "{ref}"\n'))
    assert spec.notifications.chat[0].webhook == ref


@pytest.mark.parametrize("ref", [
    "ssm:/team/slack-url",  # another team's parameter
    "ssm:/mlpack/other/slack",  # another model's namespace
    "ssm:/mlpack/churner/slack",  # a prefix of the name is not the namespace
    "secretsmanager:team/teams",
    "secretsmanager:arn:aws:secretsmanager:us-east-1:123456789012:secret:mlpack/churn/x",
    "ssm:/mlpack/churn/*",  # a wildcard would widen the notifier's IAM grant
    "ssm:/mlpack/churn/../other/slack",
    "ssm:/mlpack/churn/",
    "ssm:/mlpack/churn/chat",  # the list of targets mlpack writes
])
def test_webhooks_outside_the_models_namespace_are_refused_with_the_path(tmp_path: Path, ref: str) -> None:
    text = MINIMAL + '[[notifications.chat]]\nkind = "slack"\nwebhook = "ssm:/mlpack/churn/ok"\n' + \
        f'[[notifications.chat]]\nkind = "teams"\nwebhook = "{ref}"\n'
    found = problems(tmp_path, text)
    assert len(found) == 1 and found[0].startswith("notifications.chat[1].webhook: must"), found
    assert found[0].endswith(f"(got {ref!r})")


def test_outage_alarm_datapoints_fit_in_their_window(tmp_path: Path) -> None:
    spec = spec_mod.load(project(tmp_path, MINIMAL))
    assert (spec.alarms.outage_datapoints, spec.alarms.outage_window_minutes) == (3, 5)
    assert spec.alarms.traffic_min_requests == 0  # no traffic-drop alarm unless asked for
    found = problems(tmp_path, MINIMAL + "[alarms]\noutage_datapoints = 6\n")
    assert found == ["alarms.outage_datapoints: must not exceed alarms.outage_window_minutes (6 > 5)"]
