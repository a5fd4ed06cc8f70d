"""The model stacks, synthesized once for three fixture models that cover the variants:

- iris: classifier (3 classes), api_key auth with a quota, Slack (SSM) + Teams (Secrets Manager)
  chat, canary deployment;
- houses: regressor with two inputs, IAM auth, linear deployment, emails only;
- digits: 10 classes (drift split over two alarms), no auth, arm64, reserved + provisioned
  concurrency, no emails, no OK notifications.

Intent is asserted with aws_cdk.assertions; each stack also has one scrubbed snapshot
(MLPACK_UPDATE_SNAPSHOTS=1 rewrites them), passes cfn-lint, and passes cdk-nag's AwsSolutions pack
with only the acknowledgments listed in stacks/nag.py.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import stack_projects as sp

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
SNAPSHOTS = Path(__file__).parent / "snapshots"
STACKS = ("mlpack-iris", "mlpack-houses", "mlpack-digits", "mlpack-shared")
DIGITS = [str(i) for i in range(10)]

# cfn-lint findings accepted on CDK output, each with why (the only place they are ignored):
CFN_LINT_IGNORED = {
    "W3005": "CDK adds DependsOn on a function's role although the GetAtt already implies it (a harmless extra edge).",
    "W3694": "CDK renders ARNs with partition tokens as Fn::Join; Fn::Sub would be the same value.",
}

IRIS_TOML = """
[api]
quota_per_day = 10000
throttle_rate = 20
throttle_burst = 40
[alarms]
drift = 0.15
error_rate_pct = 2.5
[[notifications.chat]]
kind = "slack"
webhook = "ssm:/mlpack/iris/slack-url"
[[notifications.chat]]
kind = "teams"
webhook = "secretsmanager:mlpack/iris/teams-url"
[deploy]
strategy = "canary"
percent = 20
interval_minutes = 10
[batch]
enabled = true
rows_per_invocation = 500
max_concurrency = 4
tolerated_failure_pct = 5
input_bucket = "scoring-in"
input_prefix = "iris/"
output_bucket = "scoring-out"
output_prefix = "iris/results/"
key_columns = ["customer_id"]
"""
HOUSES_TOML = """
[api]
auth = "iam"
[runtime]
timeout_s = 10
memory_mb = 2048
log_retention_days = 7
[alarms]
traffic_min_requests = 100
[deploy]
strategy = "linear"
"""
DIGITS_TOML = """
[api]
auth = "none"
public = true
max_batch_size = 32
[runtime]
arch = "arm64"
reserved_concurrency = 20
provisioned_concurrency = 2
[notifications]
email = false
ok_actions = false
"""


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    """One app, one synth (with the cdk-nag plugin): (stacks by name, assembly dir, validation error)."""
    import aws_cdk as cdk
    from cdk_nag import AwsSolutionsChecks

    from stacks.assembly import add_stacks
    from stacks.plan import plan

    root = tmp_path_factory.mktemp("stacks")
    sp.write_project(root, "iris", toml_extra=IRIS_TOML)
    sp.write_project(root, "houses", toml_extra=HOUSES_TOML, model_json=sp.regressor_json("houses", "v1"))
    sp.write_project(
        root, "digits", toml_extra=DIGITS_TOML, model_json=sp.classifier_json("digits", "v1", DIGITS, width=64)
    )
    sp.write_lock(root, ["iris", "houses", "digits"], arch={"digits": "arm64"})
    out = root / "cdk.out"
    app = cdk.App(outdir=str(out))
    stacks = add_stacks(app, plan(root, patterns=["models/*"], lock_path=Path("mlpack.lock.json")))
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    error = None
    try:
        app.synth()
    except Exception as e:  # ValidationFailed: reported by test_cdk_nag, not as a fixture error
        error = e
    return stacks, out, error


@pytest.fixture(scope="module")
def templates(synth):
    from aws_cdk.assertions import Template

    _, out, _ = synth
    return {name: Template.from_json(json.loads((out / f"{name}.template.json").read_text())) for name in STACKS}


def _one(template, type_: str, props: dict | None = None) -> dict:
    found = template.find_resources(type_, {"Properties": props} if props else None)
    assert len(found) == 1, f"expected one {type_} matching {props}, found {len(found)}"
    return next(iter(found.values()))


# --- the app -----------------------------------------------------------------------------------


def test_one_stack_per_model_plus_one_shared(synth):
    stacks, out, _ = synth
    assert sorted(stacks) == sorted(STACKS)
    manifest = json.loads((out / "manifest.json").read_text())
    for name in ("mlpack-iris", "mlpack-houses", "mlpack-digits"):
        assert "mlpack-shared" in manifest["artifacts"][name]["dependencies"]
        assert manifest["artifacts"][name]["environment"] == f"aws://{sp.ACCOUNT}/{sp.REGION}"


# --- function ----------------------------------------------------------------------------------


def test_function_runs_the_locked_digest_with_the_contract_env(templates):
    from handlers import contract

    fn = _one(templates["mlpack-iris"], "AWS::Lambda::Function")["Properties"]
    uri = json.dumps(fn["Code"]["ImageUri"])
    assert f"/mlpack/iris@{sp.digest_for('iris')}" in uri and f"{sp.ACCOUNT}.dkr.ecr.{sp.REGION}." in uri
    assert fn["PackageType"] == "Image" and fn["FunctionName"] == "mlpack-iris"
    assert fn["Architectures"] == ["x86_64"] and fn["MemorySize"] == 1024 and fn["Timeout"] == 29
    assert fn["Environment"]["Variables"] == {
        contract.ENV_MODEL_NAME: "iris",
        contract.ENV_MODEL_DIR: contract.MODEL_DIR,
        contract.ENV_MAX_BATCH: "256",
        contract.ENV_METRICS_NAMESPACE: contract.METRIC_NAMESPACE,
        contract.ENV_METRICS: "on",
        contract.ENV_CAPTURE_RATE: "0.01",  # [monitoring] capture_rate's default (docs/MONITORING.md)
    }
    # the default share: (the budget, half of 1000, - digits' 20 - the notifier's 5) / 2 models
    assert fn["ReservedConcurrentExecutions"] == 237


def test_function_settings_follow_the_runtime_section(templates):
    houses = _one(templates["mlpack-houses"], "AWS::Lambda::Function")["Properties"]
    assert houses["MemorySize"] == 2048 and houses["Timeout"] == 10
    templates["mlpack-houses"].has_resource_properties(
        "AWS::Logs::LogGroup", {"LogGroupName": "/aws/lambda/mlpack-houses", "RetentionInDays": 7}
    )
    digits = templates["mlpack-digits"]
    fn = _one(digits, "AWS::Lambda::Function")["Properties"]
    assert fn["Architectures"] == ["arm64"] and fn["ReservedConcurrentExecutions"] == 20
    assert fn["Environment"]["Variables"]["MLPACK_MAX_BATCH_SIZE"] == "32"
    digits.has_resource_properties(
        "AWS::Lambda::Alias", {"Name": "live", "ProvisionedConcurrencyConfig": {"ProvisionedConcurrentExecutions": 2}}
    )
    iris_alias = _one(templates["mlpack-iris"], "AWS::Lambda::Alias")["Properties"]
    assert iris_alias["Name"] == "live" and "ProvisionedConcurrencyConfig" not in iris_alias
    templates["mlpack-iris"].resource_count_is("AWS::Lambda::Version", 1)


def test_gradual_deployment_rolls_back_on_the_model_alarms(templates):
    from aws_cdk.assertions import Match

    iris = templates["mlpack-iris"]
    iris.has_resource_properties(
        "AWS::CodeDeploy::DeploymentConfig",
        {
            "ComputePlatform": "Lambda",
            "TrafficRoutingConfig": {
                "Type": "TimeBasedCanary",
                "TimeBasedCanary": {"CanaryInterval": 10, "CanaryPercentage": 20},
            },
        },
    )
    group = _one(iris, "AWS::CodeDeploy::DeploymentGroup")["Properties"]
    assert group["AutoRollbackConfiguration"]["Enabled"] is True
    assert set(group["AutoRollbackConfiguration"]["Events"]) >= {"DEPLOYMENT_FAILURE", "DEPLOYMENT_STOP_ON_ALARM"}
    names = {json.dumps(a["Name"]) for a in group["AlarmConfiguration"]["Alarms"]}
    assert len(names) == 6  # errors, duration, api-5xx, validation-failures, out-of-range, drift
    alias = _one(iris, "AWS::Lambda::Alias")
    assert "CodeDeployLambdaAliasUpdate" in alias["UpdatePolicy"]
    templates["mlpack-houses"].has_resource_properties(
        "AWS::CodeDeploy::DeploymentConfig", {"TrafficRoutingConfig": Match.object_like({"Type": "TimeBasedLinear"})}
    )
    templates["mlpack-digits"].resource_count_is("AWS::CodeDeploy::DeploymentGroup", 0)


# --- API ---------------------------------------------------------------------------------------


def test_api_routes_are_the_contract_routes(templates):
    from handlers import contract

    for name in ("mlpack-iris", "mlpack-houses", "mlpack-digits"):
        t = templates[name]
        methods = t.find_resources("AWS::ApiGateway::Method")
        want = sorted(m for m, _ in contract.API_ROUTES)
        assert sorted(m["Properties"]["HttpMethod"] for m in methods.values()) == want
        paths = {r["Properties"]["PathPart"] for r in t.find_resources("AWS::ApiGateway::Resource").values()}
        assert paths == {"predict", "v2", "models", "{model}", "infer", "health", "openapi.json", "{proxy+}"}
        for m in methods.values():
            uri = json.dumps(m["Properties"]["Integration"]["Uri"])
            assert "Live" in uri, "every route invokes the live alias"


def test_api_auth_by_key_with_usage_plan(templates):
    iris = templates["mlpack-iris"]
    for m in iris.find_resources("AWS::ApiGateway::Method").values():
        assert m["Properties"]["ApiKeyRequired"] is True and m["Properties"]["AuthorizationType"] == "NONE"
    iris.has_resource_properties(
        "AWS::ApiGateway::UsagePlan",
        {"Quota": {"Limit": 10000, "Period": "DAY"}, "Throttle": {"BurstLimit": 40, "RateLimit": 20}},
    )
    iris.resource_count_is("AWS::ApiGateway::ApiKey", 1)
    iris.resource_count_is("AWS::ApiGateway::UsagePlanKey", 1)
    outputs = iris.to_json()["Outputs"]
    assert any(k.startswith("ApiApiKeyId") for k in outputs) and any(k.startswith("ApiEndpoint") for k in outputs)


def test_api_auth_iam_and_none(templates):
    for m in templates["mlpack-houses"].find_resources("AWS::ApiGateway::Method").values():
        assert m["Properties"]["AuthorizationType"] == "AWS_IAM" and not m["Properties"].get("ApiKeyRequired")
    for m in templates["mlpack-digits"].find_resources("AWS::ApiGateway::Method").values():
        assert m["Properties"]["AuthorizationType"] == "NONE" and not m["Properties"].get("ApiKeyRequired")
    for name in ("mlpack-houses", "mlpack-digits"):
        templates[name].resource_count_is("AWS::ApiGateway::ApiKey", 0)
        templates[name].resource_count_is("AWS::ApiGateway::UsagePlan", 0)
        assert not any(k.startswith("ApiApiKeyId") for k in templates[name].to_json()["Outputs"])


def _schema(template, name: str) -> dict:
    return _one(template, "AWS::ApiGateway::Model", {"Name": name})["Properties"]["Schema"]


def test_predict_requests_are_validated_against_the_signature(templates):
    import jsonschema

    iris = _schema(templates["mlpack-iris"], "PredictRequest")
    ok = [{"inputs": [[5.1, 3.5, 1.4, 0.2]]}, {"inputs": {"input": [[1, 2, 3, 4], [4, 3, 2, 1]]}}]
    bad = [
        {},
        {"inputs": [[1, 2, 3]]},
        {"inputs": [["a", 2, 3, 4]]},
        {"inputs": []},
        {"inputs": [[1, 2, 3, 4]], "extra": 1},
        {"inputs": {"other": [[1, 2, 3, 4]]}},
        {"inputs": [[1, 2, 3, 4]] * 257},
    ]
    for body in ok:
        jsonschema.validate(body, iris)
    for body in bad:
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(body, iris)
    houses = _schema(templates["mlpack-houses"], "PredictRequest")  # two inputs: named form only
    jsonschema.validate({"inputs": {"x": [[0.5] * 10], "mask": [[1, 0]]}}, houses)
    for body in (
        {"inputs": [[0.5] * 10]},
        {"inputs": {"x": [[0.5] * 10]}},
        {"inputs": {"x": [[0.5] * 10], "mask": [[1.5, 0]]}},
    ):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(body, houses)
    digits = _schema(templates["mlpack-digits"], "PredictRequest")
    with pytest.raises(jsonschema.ValidationError):  # max_batch_size = 32
        jsonschema.validate({"inputs": [[0.0] * 64] * 33}, digits)


def test_body_validator_is_attached_to_the_json_routes(templates):
    t = templates["mlpack-iris"]
    _one(t, "AWS::ApiGateway::RequestValidator", {"ValidateRequestBody": True})
    validated = [
        m["Properties"]
        for m in t.find_resources("AWS::ApiGateway::Method").values()
        if "RequestValidatorId" in m["Properties"]
    ]
    assert len(validated) == 2 and all("application/json" in m["RequestModels"] for m in validated)
    binary = _one(t, "AWS::ApiGateway::RestApi")["Properties"]["BinaryMediaTypes"]
    assert binary == ["application/x-npy", "application/octet-stream"]

    response = _one(t, "AWS::ApiGateway::GatewayResponse")["Properties"]
    assert response["ResponseType"] == "BAD_REQUEST_BODY" and response["StatusCode"] == "400"
    assert '"code": "bad_request"' in response["ResponseTemplates"]["application/json"]


def test_stage_has_access_logs_throttling_and_metrics(templates):
    stage = _one(templates["mlpack-iris"], "AWS::ApiGateway::Stage")["Properties"]
    assert stage["StageName"] == "v1"
    fmt = json.loads(stage["AccessLogSetting"]["Format"])
    assert {"requestId", "status", "ip"} <= set(fmt)
    settings = stage["MethodSettings"][0]
    assert settings["MetricsEnabled"] is True and settings["LoggingLevel"] == "ERROR"
    assert settings["ThrottlingRateLimit"] == 20 and settings["ThrottlingBurstLimit"] == 40


# --- alarms --------------------------------------------------------------------------------------

SERVICE = [
    "errors",
    "throttles",
    "duration",
    "concurrency",
    "api-5xx",
    "api-4xx",
    "api-latency",
    "validation-failures",
    "out-of-range",
]


def _alarms(template) -> dict[str, dict]:
    return {
        a["Properties"]["AlarmName"]: a["Properties"]
        for a in template.find_resources("AWS::CloudWatch::Alarm").values()
    }


def test_every_alarm_is_named_and_wired_to_the_topic(templates):
    expected = {
        "mlpack-iris": [*SERVICE, "drift", "chat-delivery", "batch-failed"],  # iris has chat targets and [batch]
        "mlpack-houses": [*SERVICE, "drift", "traffic-drop"],
        "mlpack-digits": [*SERVICE, "drift-1", "drift-2"],
    }
    for name, whats in expected.items():
        alarms = _alarms(templates[name])
        assert sorted(alarms) == sorted(f"{name}-{w}" for w in whats)
        for props in alarms.values():
            if props["AlarmName"].endswith("-traffic-drop"):  # opt-in: no requests at all is what it reports
                assert props["TreatMissingData"] == "breaching"
                continue
            assert props["TreatMissingData"] == "notBreaching", "an idle model must not page"
            assert [json.dumps(a) for a in props["AlarmActions"]] == [json.dumps({"Ref": _topic_id(templates[name])})]
            if name == "mlpack-digits":
                assert "OKActions" not in props
            else:
                assert props["OKActions"] == props["AlarmActions"]


def _topic_id(template) -> str:
    return next(iter(template.find_resources("AWS::SNS::Topic")))


def test_alarm_thresholds_come_from_the_config(templates):
    iris, houses, digits = (_alarms(templates[n]) for n in ("mlpack-iris", "mlpack-houses", "mlpack-digits"))
    assert iris["mlpack-iris-errors"]["Threshold"] == 2.5
    assert "100 * errors / invocations" in json.dumps(iris["mlpack-iris-errors"]["Metrics"])
    assert iris["mlpack-iris-duration"]["Threshold"] == 29 * 1000 * 0.8
    assert iris["mlpack-iris-duration"]["ExtendedStatistic"] == "p99"
    assert houses["mlpack-houses-duration"]["Threshold"] == 10 * 1000 * 0.8
    assert iris["mlpack-iris-concurrency"]["Threshold"] == 189.6  # 80% of its default reservation, 237
    assert digits["mlpack-digits-concurrency"]["Threshold"] == 16  # 80% of the reserved 20
    assert iris["mlpack-iris-throttles"]["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    assert iris["mlpack-iris-api-latency"]["Threshold"] == 3000
    assert iris["mlpack-iris-api-latency"]["Dimensions"] == [
        {"Name": "ApiName", "Value": "mlpack-iris"},
        {"Name": "Stage", "Value": "v1"},
    ]
    for what, metric in (("validation-failures", "ValidationFailures"), ("out-of-range", "OutOfRangeValues")):
        text = json.dumps(iris[f"mlpack-iris-{what}"]["Metrics"])
        assert f'"MetricName": "{metric}"' in text and '"Namespace": "mlpack"' in text
        assert '{"Name": "Model", "Value": "iris"}' in text
    fast = ("mlpack-iris-errors", "mlpack-iris-api-5xx")  # a total outage pages within minutes: 3 of 5 x 1 min
    for name, a in iris.items():
        one = ("mlpack-iris-chat-delivery", "mlpack-iris-batch-failed")  # a failed delivery or batch run: at once
        assert a["EvaluationPeriods"] == (1 if name in one else 5 if name in fast else 3)
        assert a.get("DatapointsToAlarm") == (3 if name in fast else None), name
        periods = {m["MetricStat"]["Period"] for m in a.get("Metrics", []) if "MetricStat" in m} | \
            ({a["Period"]} if "Period" in a else set())
        assert periods == ({60} if name in fast else {300}), name
    delivery = iris["mlpack-iris-chat-delivery"]  # one lost chat message is enough
    assert (delivery["MetricName"], delivery["Namespace"], delivery["Threshold"]) == \
        ("NotificationFailures", "mlpack", 1)
    assert delivery["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    assert not [n for n in digits if n.endswith("chat-delivery")]  # digits has no chat targets


def test_traffic_drop_is_a_floor_of_requests_and_off_by_default(templates):
    drop = _alarms(templates["mlpack-houses"])["mlpack-houses-traffic-drop"]
    assert (drop["MetricName"], drop["Namespace"], drop["Statistic"]) == ("Count", "AWS/ApiGateway", "Sum")
    assert drop["Dimensions"] == [{"Name": "ApiName", "Value": "mlpack-houses"}, {"Name": "Stage", "Value": "v1"}]
    assert (drop["Threshold"], drop["ComparisonOperator"]) == (100, "LessThanThreshold")
    assert (drop["Period"], drop["EvaluationPeriods"]) == (900, 1)
    for name in ("mlpack-iris", "mlpack-digits"):
        assert not [n for n in _alarms(templates[name]) if n.endswith("traffic-drop")]


def test_classifier_drift_compares_each_class_share_with_training(templates):
    drift = _alarms(templates["mlpack-iris"])["mlpack-iris-drift"]
    assert drift["Threshold"] == 0.15 and drift["ComparisonOperator"] == "GreaterThanThreshold"
    expr = next(m["Expression"] for m in drift["Metrics"] if "Expression" in m)
    assert expr.count("ABS(FILL(") == 3 and "0.333333" in expr
    # a period with a handful of predictions is not drift: one row is a 100% share of one class
    assert expr.startswith("IF(rows >= 30, MAX([") and expr.endswith("]), 0)")
    classes = sorted(
        d["Value"]
        for m in drift["Metrics"]
        if "MetricStat" in m
        for d in m["MetricStat"]["Metric"]["Dimensions"]
        if d["Name"] == "Class"
    )
    assert classes == ["setosa", "versicolor", "virginica"]


def test_ten_classes_are_split_to_respect_the_ten_metric_limit(templates):
    alarms = _alarms(templates["mlpack-digits"])
    seen = []
    for what in ("drift-1", "drift-2"):
        metrics = alarms[f"mlpack-digits-{what}"]["Metrics"]
        stats = [m for m in metrics if "MetricStat" in m]
        assert len(stats) == 6  # Rows + 5 classes: CloudWatch allows at most 10 metrics per alarm
        seen += [d["Value"] for m in stats for d in m["MetricStat"]["Metric"]["Dimensions"] if d["Name"] == "Class"]
    assert sorted(seen) == sorted(DIGITS)


def test_regressor_drift_is_the_mean_shift_in_training_std(templates):
    drift = _alarms(templates["mlpack-houses"])["mlpack-houses-drift"]
    expr = next(m["Expression"] for m in drift["Metrics"] if "Expression" in m)
    assert expr == "IF(rows >= 30, ABS(total / rows - 150.0) / 75.0, 0)"
    names = sorted(m["MetricStat"]["Metric"]["MetricName"] for m in drift["Metrics"] if "MetricStat" in m)
    assert names == ["PredictionSum", "Rows"]


# --- notifications -------------------------------------------------------------------------------


def test_topic_with_owner_emails(templates):
    iris = templates["mlpack-iris"]
    iris.has_resource_properties("AWS::SNS::Topic", {"TopicName": "mlpack-iris-alarms"})
    emails = sorted(
        s["Properties"]["Endpoint"]
        for s in iris.find_resources("AWS::SNS::Subscription", {"Properties": {"Protocol": "email"}}).values()
    )
    assert emails == ["ana@example.com", "bo@example.com"]
    templates["mlpack-digits"].resource_count_is("AWS::SNS::Subscription", 0)  # email = false, no chat
    policy = _one(iris, "AWS::SNS::TopicPolicy")["Properties"]["PolicyDocument"]["Statement"]
    assert any(s.get("Principal") == {"Service": "cloudwatch.amazonaws.com"} for s in policy)


def test_chat_targets_are_references_and_the_notifier_may_read_exactly_them(templates):
    iris = templates["mlpack-iris"]
    param = _one(iris, "AWS::SSM::Parameter")["Properties"]
    assert param["Name"] == "/mlpack/iris/chat"
    assert json.loads(param["Value"]) == [
        {"kind": "slack", "webhook": "ssm:/mlpack/iris/slack-url"},
        {"kind": "teams", "webhook": "secretsmanager:mlpack/iris/teams-url"},
    ]
    assert "https://" not in json.dumps(iris.to_json()["Resources"]), "no webhook URL in the template"
    sub = _one(iris, "AWS::SNS::Subscription", {"Protocol": "lambda"})["Properties"]
    assert "function:mlpack-notifier" in json.dumps(sub["Endpoint"])
    policy = _one(iris, "AWS::IAM::Policy", {"PolicyName": "mlpack-iris-notifier"})["Properties"]
    assert policy["Roles"] == [f"mlpack-notifier-{sp.REGION}"]  # IAM names are per account: the region too
    text = json.dumps(policy["PolicyDocument"])
    assert "parameter/mlpack/iris/slack-url" in text and "secret:mlpack/iris/teams-url-??????" in text
    assert '"ssm:GetParameter"' in text and "secretsmanager:GetSecretValue" in text
    for name in ("mlpack-houses", "mlpack-digits"):
        templates[name].resource_count_is("AWS::SSM::Parameter", 0)
        roles = {"Roles": [f"mlpack-notifier-{sp.REGION}"]}
        assert not templates[name].find_resources("AWS::IAM::Policy", {"Properties": roles})
        assert "mlpack-notifier" not in json.dumps(templates[name].to_json()["Resources"])


def test_shared_stack_holds_the_notifier_and_the_api_logging_role(synth, templates):
    shared = templates["mlpack-shared"]
    fn = _one(shared, "AWS::Lambda::Function")["Properties"]
    assert fn["FunctionName"] == "mlpack-notifier" and fn["Handler"] == "notify.handler"
    assert fn["Runtime"].startswith("python3.")
    shared.has_resource_properties("AWS::IAM::Role", {"RoleName": f"mlpack-notifier-{sp.REGION}"})
    assert "Environment" not in fn, "without an environment the notifier parses the names without one"
    shared.resource_count_is("AWS::ApiGateway::Account", 1)
    for name in ("mlpack-iris", "mlpack-houses", "mlpack-digits"):
        templates[name].resource_count_is("AWS::ApiGateway::Account", 0)
    _, out, _ = synth
    assets = [p for p in out.iterdir() if p.name.startswith("asset.") and p.is_dir()]
    assert len(assets) == 1 and sorted(f.name for f in assets[0].iterdir()) == ["names.py", "notify.py"]
    # the zip alone is enough: Lambda imports notify as a top-level module, with no mlpack beside it
    probe = "import sys; sys.path.insert(0, '.'); import notify; print(notify.names.ModelNames('iris').topic)"
    result = subprocess.run([sys.executable, "-I", "-c", probe], cwd=assets[0], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "mlpack-iris-alarms"


def test_the_notifier_is_reserved_has_a_failure_queue_and_a_bounded_role(templates):
    shared = templates["mlpack-shared"]
    fn = _one(shared, "AWS::Lambda::Function")["Properties"]
    assert fn["ReservedConcurrentExecutions"] == 5
    queue_id, queue = next(iter(shared.find_resources("AWS::SQS::Queue").items()))
    assert queue["Properties"]["QueueName"] == "mlpack-notifier-failures"
    assert queue["Properties"]["SqsManagedSseEnabled"] is True
    assert queue["Properties"]["MessageRetentionPeriod"] == 14 * 24 * 3600
    policy = _one(shared, "AWS::SQS::QueuePolicy")["Properties"]["PolicyDocument"]["Statement"]
    assert any(s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
               for s in policy)
    invoke = _one(shared, "AWS::Lambda::EventInvokeConfig")["Properties"]
    assert invoke["MaximumRetryAttempts"] == 2
    assert queue_id in json.dumps(invoke["DestinationConfig"]["OnFailure"]["Destination"])
    role = _one(shared, "AWS::IAM::Role", {"RoleName": f"mlpack-notifier-{sp.REGION}"})["Properties"]
    boundary_id = role["PermissionsBoundary"]["Ref"]
    boundary = json.dumps(shared.to_json()["Resources"][boundary_id]["Properties"]["PolicyDocument"])
    assert "parameter/mlpack/*" in boundary and "secret:mlpack/*" in boundary
    assert "team/" not in boundary and '"ssm:GetParameter"' in boundary and '"sqs:SendMessage"' in boundary


def _shared_alarms(template) -> dict[str, dict]:
    return {a["Properties"]["AlarmName"]: a["Properties"]
            for a in template.find_resources("AWS::CloudWatch::Alarm").values()}


def test_platform_alarms_go_to_the_platform_topic_not_to_chat(templates):
    shared = templates["mlpack-shared"]
    topic_id, topic = next(iter(shared.find_resources("AWS::SNS::Topic").items()))
    assert topic["Properties"]["TopicName"] == "mlpack-shared-alarms"
    alarms = _shared_alarms(shared)
    assert sorted(alarms) == ["mlpack-shared-account-concurrency", "mlpack-shared-notifier-errors",
                              "mlpack-shared-notifier-failures"]
    for props in alarms.values():
        assert props["AlarmActions"] == [{"Ref": topic_id}] and props["OKActions"] == [{"Ref": topic_id}]
        assert props["TreatMissingData"] == "notBreaching"
    errors, depth = alarms["mlpack-shared-notifier-errors"], alarms["mlpack-shared-notifier-failures"]
    assert (errors["MetricName"], errors["Period"], errors["Threshold"]) == ("Errors", 60, 1)
    assert errors["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": next(iter(
        shared.find_resources("AWS::Lambda::Function")))}}]
    assert (depth["MetricName"], depth["Namespace"], depth["Threshold"]) == \
        ("ApproximateNumberOfMessagesVisible", "AWS/SQS", 1)
    claimed = alarms["mlpack-shared-account-concurrency"]
    assert (claimed["MetricName"], claimed["Statistic"], "Dimensions" in claimed) == \
        ("ClaimedAccountConcurrency", "Maximum", False)
    assert (claimed["Threshold"], claimed["Period"], claimed["EvaluationPeriods"], claimed["DatapointsToAlarm"]) \
        == (900, 60, 5, 3)
    # no subscription: no mlpack:platform_email given, and never the notifier (its failures are reported here)
    shared.resource_count_is("AWS::SNS::Subscription", 0)
    statement = _one(shared, "AWS::SNS::TopicPolicy")["Properties"]["PolicyDocument"]["Statement"]
    assert "alarm:mlpack-shared-*" in json.dumps(statement)


def test_dashboard_per_model(templates):
    for model in ("iris", "houses", "digits"):
        dash = _one(templates[f"mlpack-{model}"], "AWS::CloudWatch::Dashboard")["Properties"]
        assert dash["DashboardName"] == f"mlpack-{model}"
        body = json.dumps(dash["DashboardBody"])
        for metric in (
            "Invocations",
            "Errors",
            "p99",
            "ColdStart",
            "ValidationFailures",
            "OutOfRangeValues",
            "Rows",
            "NonFiniteOutputs",
            "5XXError",
        ):
            assert metric in body, metric


# --- linters and snapshots -------------------------------------------------------------------------


def test_cdk_nag_aws_solutions_has_no_unacknowledged_finding(synth):
    _, out, error = synth
    report = json.loads((out / "validation-report.json").read_text())
    violations = [
        (v["ruleName"], [c["constructPath"] for c in v.get("violatingConstructs", [])])
        for r in report["pluginReports"]
        for v in r.get("violations", [])
    ]
    assert violations == [] and error is None, violations


def test_cdk_nag_setup_does_report_an_unacknowledged_finding(tmp_path):
    """The control for the test above: the same plugin setup fails on a role nobody acknowledged."""
    import aws_cdk as cdk
    from aws_cdk import aws_iam as iam
    from cdk_nag import AwsSolutionsChecks

    from stacks import nag

    app = cdk.App(outdir=str(tmp_path))
    stack = cdk.Stack(app, "control")
    policy = iam.ManagedPolicy.from_aws_managed_policy_name("service-role/AWSLambdaBasicExecutionRole")
    iam.Role(stack, "Plain", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"), managed_policies=[policy])
    ok = iam.Role(stack, "Accepted", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"), managed_policies=[policy])
    nag.acknowledge(ok, nag.LAMBDA_BASIC)
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    with pytest.raises(Exception, match="ValidationFailed"):
        app.synth()
    report = json.loads((tmp_path / "validation-report.json").read_text())
    paths = [
        c["constructPath"] for r in report["pluginReports"] for v in r["violations"] for c in v["violatingConstructs"]
    ]
    assert paths == ["control/Plain/Resource"]


def test_cfn_lint_passes_every_template(synth):
    _, out, _ = synth
    files = [str(out / f"{n}.template.json") for n in STACKS]
    cmd = [
        str(Path(sys.executable).parent / "cfn-lint"),
        "--format",
        "parseable",
        "--ignore-checks",
        *CFN_LINT_IGNORED,
        "--",
        *files,
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


HEX64 = re.compile(r"[0-9a-f]{64}")
VERSION_ID = re.compile(r"CurrentVersion[0-9A-Fa-f]{8,}")


def _scrub(template: dict) -> dict:
    template = {
        **template,
        "Resources": {k: v for k, v in template["Resources"].items() if v["Type"] != "AWS::CDK::Metadata"},
    }
    template.pop("Conditions", None)  # only CDK::Metadata's region condition
    text = json.dumps(template, indent=1, sort_keys=True)
    return json.loads(VERSION_ID.sub("CurrentVersion<hash>", HEX64.sub("<sha256>", text)))


@pytest.mark.parametrize("name", STACKS)
def test_snapshot(synth, name):
    _, out, _ = synth
    actual = _scrub(json.loads((out / f"{name}.template.json").read_text()))
    path = SNAPSHOTS / f"{name}.json"
    if os.environ.get("MLPACK_UPDATE_SNAPSHOTS") == "1":
        path.write_text(json.dumps(actual, indent=1, sort_keys=True) + "\n")
    assert path.is_file(), f"no snapshot {path}; create it with MLPACK_UPDATE_SNAPSHOTS=1"
    assert actual == json.loads(path.read_text()), f"{name} changed; review and re-run with MLPACK_UPDATE_SNAPSHOTS=1"
