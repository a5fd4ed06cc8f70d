"""Named environments (dev, staging, ...) sharing one AWS account and region: every physical name
carries the environment, so two environments' stacks can both be deployed; the one IAM name (the
notifier's role) carries the region as well, IAM names being global per account; every taggable
resource carries mlpack's tags and the team's; every published version is retained and says which
image it runs, so `live` can be pointed back at it.

One App per case, synthesised in-process with stacks.assembly.add_stacks (tests/support/env_stacks.py).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from handlers.names import ModelNames, SharedNames
from tests.support import env_stacks as es
from tests.support import stack_projects as sp

pytestmark = pytest.mark.slow


MODELS = ("iris", "houses")
TEAM_TAGS = {"cost-center": "ml-42", "team": "data science"}

# Properties ending in "Name" that are no resource's name in the account and region, each with why:
NOT_PHYSICAL = {
    "MetricName": "a CloudWatch metric's name (function and API are told apart by dimensions)",
    "DisplayName": "an SNS topic's label in emails, not an identifier",
    "FunctionName": "on anything but a Lambda::Function it refers to a function (by Ref or ARN)",
}
# names unique only inside their parent, which carries the environment
SCOPED = {
    ("AWS::Lambda::Alias", "Name"): "an alias is unique per function",
    ("AWS::ApiGateway::Model", "Name"): "a model is unique per REST API",
    ("AWS::ApiGateway::Stage", "StageName"): "a stage is unique per REST API",
}
# Types without a name that are one per account and region by design (and so may appear in each
# environment): API Gateway's account setting (see stacks/shared_stack.py).
SINGLETONS = {"AWS::ApiGateway::Account"}


def physical_names(templates: dict[str, dict]) -> set[tuple[str, str]]:
    """(type, name) of every explicit physical name in the templates: a generic walk over each
    resource's top-level properties ending in "Name" (string values), plus the stack names. An inline
    IAM policy's name is unique per role, so it is qualified by the roles it is attached to."""
    found: set[tuple[str, str]] = {("AWS::CloudFormation::Stack", name) for name in templates}
    for stack_name, template in templates.items():
        for _, type_, props in es.resources(template):
            for key, value in props.items():
                if not key.endswith("Name") or not isinstance(value, str) or (type_, key) in SCOPED:
                    continue
                if key in NOT_PHYSICAL and not (key == "FunctionName" and type_ == "AWS::Lambda::Function"):
                    continue
                if type_ == "AWS::IAM::Policy":
                    value = f"{_role_names(stack_name, template, props.get('Roles', []))}:{value}"
                found.add((type_, value))
    return found


def _role_names(stack_name: str, template: dict, roles: list) -> str:
    """The roles a policy is attached to, by name: a Ref to a role of the template is its RoleName, or
    (CloudFormation makes up the name from the stack's) stack/logical id."""
    out = []
    for role in roles:
        if isinstance(role, dict) and "Ref" in role:
            props = template["Resources"][role["Ref"]].get("Properties", {})
            role = props.get("RoleName", f"{stack_name}/{role['Ref']}")
        out.append(role if isinstance(role, str) else json.dumps(role, sort_keys=True))
    return ",".join(sorted(out))


def of_environment(templates: dict[str, dict], env: str) -> dict[str, dict]:
    return {n: t for n, t in templates.items() if n.startswith(f"mlpack-{env}-")}


@pytest.fixture(scope="module")
def two(tmp_path_factory) -> es.Synth:
    """dev and staging, one account and region, one App."""
    return es.synth(tmp_path_factory.mktemp("envs"), ["dev", "staging"], tags=TEAM_TAGS)


@pytest.fixture(scope="module")
def templates(two) -> dict[str, dict]:
    return two.templates()


def test_each_environment_has_its_own_stacks(two):
    assert sorted(two.stacks) == sorted(
        [f"mlpack-{e}-{m}" for e in ("dev", "staging") for m in MODELS] + ["mlpack-dev-shared", "mlpack-staging-shared"]
    )
    manifest = json.loads((two.out / "manifest.json").read_text())["artifacts"]
    for env in ("dev", "staging"):
        for model in MODELS:
            stacks = [d for d in manifest[f"mlpack-{env}-{model}"]["dependencies"] if not d.endswith(".assets")]
            assert stacks == [f"mlpack-{env}-shared"]


def test_two_environments_in_one_account_and_region_share_no_physical_name(templates):
    dev = physical_names(of_environment(templates, "dev"))
    staging = physical_names(of_environment(templates, "staging"))
    # the walk finds names at all (else disjointness proves nothing)
    for env, names in (("dev", dev), ("staging", staging)):
        types = {t for t, _ in names}
        assert {"AWS::Lambda::Function", "AWS::IAM::Role", "AWS::SNS::Topic", "AWS::CloudWatch::Alarm",
                "AWS::Logs::LogGroup", "AWS::ApiGateway::RestApi", "AWS::ApiGateway::ApiKey",
                "AWS::ApiGateway::UsagePlan", "AWS::ApiGateway::RequestValidator", "AWS::CloudWatch::Dashboard",
                "AWS::SSM::Parameter", "AWS::IAM::Policy", "AWS::CloudFormation::Stack"} <= types, env
        functions = {n for t, n in names if t == "AWS::Lambda::Function"}
        assert functions == {f"mlpack-{env}-iris", f"mlpack-{env}-houses", f"mlpack-{env}-notifier"}
    assert dev & staging == set()
    for env in ("dev", "staging"):  # the one thing both have: API Gateway's account setting, nameless
        found = of_environment(templates, env)[f"mlpack-{env}-shared"]
        assert {t for _, t, _ in es.resources(found)} & SINGLETONS == SINGLETONS


def test_the_name_walk_does_find_a_collision(tmp_path):
    """The control for the test above: the same environment twice (two Apps) shares every name."""
    a = physical_names(es.synth(tmp_path / "a", ["dev"]).templates())
    b = physical_names(es.synth(tmp_path / "b", ["dev"]).templates())
    assert a and a == b


def test_the_notifier_role_differs_between_regions(templates, tmp_path):
    other = es.synth(tmp_path, ["dev"], region="eu-west-1")
    roles = {}
    for region, found in ((sp.REGION, templates), ("eu-west-1", other.templates())):
        shared = found["mlpack-dev-shared"]
        (role,) = [p["RoleName"] for _, t, p in es.resources(shared) if t == "AWS::IAM::Role" and "RoleName" in p]
        assert role == SharedNames("dev", region).notifier_role == f"mlpack-dev-notifier-{region}"
        # the model stack grants that very role access to its chat references
        (policy,) = [p for _, t, p in es.resources(found["mlpack-dev-iris"]) if t == "AWS::IAM::Policy"]
        assert policy["Roles"] == [role] and policy["PolicyName"] == ModelNames("iris", "dev").notifier_policy
        roles[region] = role
    assert roles[sp.REGION] != roles["eu-west-1"]


def test_the_notifier_serves_one_environment(templates):
    from handlers import names

    for env in ("dev", "staging"):
        shared = templates[f"mlpack-{env}-shared"]
        (fn,) = [p for _, t, p in es.resources(shared) if t == "AWS::Lambda::Function"]
        assert fn["FunctionName"] == SharedNames(env, sp.REGION).notifier
        assert fn["Environment"]["Variables"] == {names.ENV_ENVIRONMENT: env}
        (logs,) = [p for _, t, p in es.resources(shared) if t == "AWS::Logs::LogGroup"]
        assert logs["LogGroupName"] == f"/aws/lambda/mlpack-{env}-notifier"
        iris = templates[f"mlpack-{env}-iris"]
        subs = [p for _, t, p in es.resources(iris) if t == "AWS::SNS::Subscription" and p["Protocol"] == "lambda"]
        assert len(subs) == 1 and f"function:mlpack-{env}-notifier" in json.dumps(subs[0]["Endpoint"])
        (param,) = [p for _, t, p in es.resources(iris) if t == "AWS::SSM::Parameter"]
        assert param["Name"] == f"/mlpack/{env}/iris/chat"


def test_alarms_watch_their_own_environments_function_and_api(templates):
    iris = templates["mlpack-dev-iris"]
    alarms = {p["AlarmName"]: p for _, t, p in es.resources(iris) if t == "AWS::CloudWatch::Alarm"}
    assert "mlpack-dev-iris-errors" in alarms and all(n.startswith("mlpack-dev-iris-") for n in alarms)
    assert alarms["mlpack-dev-iris-api-latency"]["Dimensions"] == [
        {"Name": "ApiName", "Value": "mlpack-dev-iris"},
        {"Name": "Stage", "Value": "v1"},
    ]
    text = json.dumps(alarms["mlpack-dev-iris-errors"]["Metrics"])
    assert '"Value": "mlpack-dev-iris"' in text and '"Value": "mlpack-iris"' not in text
    (policy,) = [p for _, t, p in es.resources(iris) if t == "AWS::SNS::TopicPolicy"]
    assert "alarm:mlpack-dev-iris-*" in json.dumps(policy["PolicyDocument"])
    (dash,) = [p for _, t, p in es.resources(iris) if t == "AWS::CloudWatch::Dashboard"]
    body = json.dumps(dash["DashboardBody"])
    assert dash["DashboardName"] == "mlpack-dev-iris" and "mlpack-dev-iris" in body


def test_the_models_own_metrics_are_kept_apart_per_environment(templates):
    """Their dimensions name only the model, so the namespace carries the environment: the function writes
    to mlpack/<env> and the model-quality alarms read from there, never from the other environment's."""
    from handlers import contract

    for env, other in (("dev", "staging"), ("staging", "dev")):
        iris = templates[f"mlpack-{env}-iris"]
        (fn,) = [p for _, t, p in es.resources(iris) if t == "AWS::Lambda::Function"]
        assert fn["Environment"]["Variables"][contract.ENV_METRICS_NAMESPACE] == f"mlpack/{env}"
        alarms = {p["AlarmName"]: json.dumps(p) for _, t, p in es.resources(iris) if t == "AWS::CloudWatch::Alarm"}
        own = [a for a in alarms.values() if contract.M_VALIDATION_FAILURES in a]
        assert own, "no alarm on the handler's own metrics found"
        assert all(f'"mlpack/{env}"' in a and f'"mlpack/{other}"' not in a for a in own)


def _taggable(type_: str) -> bool:
    """Whether CloudFormation's schema of the type (as cfn-lint ships it) has a Tags property."""
    from cfnlint.schema import PROVIDER_SCHEMA_MANAGER

    schema = PROVIDER_SCHEMA_MANAGER.get_resource_schema(sp.REGION, type_).schema
    return "Tags" in schema.get("properties", {})


def test_every_taggable_resource_carries_the_mlpack_and_team_tags(templates):
    seen: set[str] = set()
    for stack_name, template in templates.items():
        env = stack_name.split("-")[1]
        model = stack_name.split("-", 2)[2]
        want = {**TEAM_TAGS, "mlpack:managed-by": "mlpack", "mlpack:environment": env}
        if model != "shared":
            want |= {"mlpack:model": model, "mlpack:owners": "ana@example.com bo@example.com", "mlpack:version": "v1"}
        for logical_id, type_, props in es.resources(template):
            if not _taggable(type_):
                continue
            tags = es.tags_of(props)
            assert tags.items() >= want.items(), f"{stack_name} {logical_id} ({type_}): {tags}"
            if model == "shared":
                assert "mlpack:model" not in tags, logical_id
            seen.add(type_)
    assert {"AWS::Lambda::Function", "AWS::SNS::Topic", "AWS::Logs::LogGroup", "AWS::ApiGateway::RestApi",
            "AWS::IAM::Role", "AWS::CloudWatch::Alarm", "AWS::SSM::Parameter", "AWS::ApiGateway::Stage"} <= seen


def test_stacks_carry_the_tags_too(two):
    """CloudFormation gets them as stack tags (the manifest's), for what the templates cannot tag."""
    manifest = json.loads((two.out / "manifest.json").read_text())["artifacts"]
    tags = manifest["mlpack-dev-iris"]["properties"]["tags"]
    assert tags["mlpack:model"] == "iris" and tags["cost-center"] == "ml-42" and tags["mlpack:environment"] == "dev"


def test_the_mlpack_tags_win_and_values_are_made_valid():
    from stacks.assembly import stack_tags, tag_value

    assert tag_value("ana@example.com bo@example.com") == "ana@example.com bo@example.com"
    assert tag_value("a,b;c#d<é>") == "a_b_c_d_é_"
    assert tag_value("x" * 300) == "x" * 256
    team = {"mlpack:model": "evil", "mlpack:other": "x", "cost-center": "a&b"}
    assert stack_tags(None, "dev", team) == {
        "cost-center": "a_b", "mlpack:managed-by": "mlpack", "mlpack:environment": "dev",
    }
    assert stack_tags(None, None, {}) == {"mlpack:managed-by": "mlpack"}


def test_the_model_tag_survives_a_team_tag_of_the_same_key(tmp_path):
    found = es.synth(tmp_path, ["dev"], tags={"mlpack:model": "evil", "owner": "x"}).templates()
    (fn,) = [p for _, t, p in es.resources(found["mlpack-dev-iris"]) if t == "AWS::Lambda::Function"]
    tags = es.tags_of(fn)
    assert tags["mlpack:model"] == "iris" and tags["owner"] == "x"


DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


def test_published_versions_are_retained_and_say_which_image_they_run(templates):
    for model in MODELS:
        template = templates[f"mlpack-dev-{model}"]
        (version,) = [r for r in template["Resources"].values() if r["Type"] == "AWS::Lambda::Version"]
        assert version["DeletionPolicy"] == "Retain" and version["UpdateReplacePolicy"] == "Retain"
        description = version["Properties"]["Description"]
        assert DIGEST.search(description) and sp.digest_for(model) in description
        assert description == f"mlpack {model} v1 env dev image {sp.digest_for(model)}"
        (fn,) = [p for _, t, p in es.resources(template) if t == "AWS::Lambda::Function"]
        assert "in dev" in fn["Description"]


def test_a_long_model_version_is_cut_but_never_the_digest():
    from stacks.function import EcrImage, ModelFunctionProps, version_description

    image = EcrImage(account=sp.ACCOUNT, region=sp.REGION, repository_name="r", digest=sp.digest_for("x"))
    text = version_description(ModelFunctionProps(model_name="m", image=image, model_version="v" * 300,
                                                  environment="prod"))
    assert len(text) == 256 and text.endswith(f" env prod image {sp.digest_for('x')}")


def test_no_environment_keeps_the_old_names(tmp_path):
    found = es.synth(tmp_path, [None], tags=TEAM_TAGS).templates()
    assert sorted(found) == ["mlpack-houses", "mlpack-iris", "mlpack-shared"]
    names = {n for _, n in physical_names(found)}
    assert {"mlpack-iris", "mlpack-iris-alarms", "/mlpack/iris/chat", "mlpack-iris-errors", "mlpack-notifier",
            "/aws/lambda/mlpack-notifier", f"mlpack-notifier-{sp.REGION}",
            f"mlpack-notifier-{sp.REGION}:mlpack-iris-notifier"} <= names
    (fn,) = [p for _, t, p in es.resources(found["mlpack-shared"]) if t == "AWS::Lambda::Function"]
    assert "Environment" not in fn
    (iris,) = [p for _, t, p in es.resources(found["mlpack-iris"]) if t == "AWS::Lambda::Function"]
    assert "mlpack:environment" not in es.tags_of(iris) and es.tags_of(iris)["cost-center"] == "ml-42"


def test_cfn_lint_passes_the_environments_templates(two):
    files = [str(two.out / f"{n}.template.json") for n in two.stacks]
    cmd = [str(Path(sys.executable).parent / "cfn-lint"), "--format", "parseable",
           "--ignore-checks", "W3005", "W3694", "--", *files]  # the same as test_model_stacks.CFN_LINT_IGNORED
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
