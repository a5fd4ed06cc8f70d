"""packager/aws.py's reads for `mlpack status` and `mlpack logs`, against in-process moto: GetMetricData in
requests of 500 queries, answers mapped back by id, every request counted; a missing log group."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import boto3
import pytest
from moto import mock_aws

from packager.aws import Aws
from packager.errors import DeployError
from packager.fleet import metrics
from packager.fleet.facts import MetricQuery

REGION = "us-east-1"


@pytest.fixture
def aws(monkeypatch):
    for k in ("AWS_PROFILE", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        yield Aws(boto3.Session(region_name=REGION))


def test_metric_data_sends_500_queries_a_request_and_maps_answers_back(aws):
    now = datetime.now(UTC).replace(microsecond=0)
    cw = boto3.client("cloudwatch", region_name=REGION)
    cw.put_metric_data(Namespace="AWS/Lambda", MetricData=[
        {"MetricName": "Invocations", "Dimensions": [{"Name": "FunctionName", "Value": "f7"}], "Value": 3.0,
         "Timestamp": now - timedelta(hours=1)}])
    queries = [MetricQuery(id=f"q{i}", namespace="AWS/Lambda", metric="Invocations",
                           dimensions=(("FunctionName", f"f{i}"),), stat="Sum", period=metrics.DAY)
               for i in range(1200)]
    got = aws.metric_data(queries, now - timedelta(hours=24), now, REGION)
    assert aws.calls == {"cloudwatch:GetMetricData": 3}
    assert len(got) == 1200 and got["q7"].values == (3.0,) and got["q8"].points == ()


def test_stacks_and_alarms_are_listed_and_counted(aws):
    cfn = boto3.client("cloudformation", region_name=REGION)
    cfn.create_stack(StackName="mlpack-dev-iris", TemplateBody='{"Description": "mlpack model iris in dev v1 '
                     '(sha256:0123456789ab)", "Resources": {"T": {"Type": "AWS::SNS::Topic"}}}',
                     Tags=[{"Key": "mlpack:model", "Value": "iris"}])
    (s,) = aws.stacks(REGION)
    assert s.name == "mlpack-dev-iris" and s.tags == {"mlpack:model": "iris"} and s.status == "CREATE_COMPLETE"
    assert s.description.endswith("(sha256:0123456789ab)") and s.updated is not None
    assert aws.stack("mlpack-dev-iris", REGION) == s and aws.stack("nope", REGION) is None
    cw = boto3.client("cloudwatch", region_name=REGION)
    cw.put_metric_alarm(AlarmName="mlpack-dev-iris-errors", Namespace="AWS/Lambda", MetricName="Errors",
                        Statistic="Sum", Period=300, EvaluationPeriods=1, Threshold=1,
                        ComparisonOperator="GreaterThanThreshold")
    cw.set_alarm_state(AlarmName="mlpack-dev-iris-errors", StateValue="ALARM", StateReason="7 > 1")
    (a,) = aws.alarms(REGION, prefix="mlpack-dev-")
    assert (a.name, a.state, a.reason) == ("mlpack-dev-iris-errors", "ALARM", "7 > 1")
    assert aws.calls == {"cloudformation:DescribeStacks": 3, "cloudwatch:DescribeAlarms": 1}


def test_log_events_of_a_missing_group(aws):
    with pytest.raises(DeployError, match="log group /aws/lambda/x does not exist") as e:
        list(aws.log_events("/aws/lambda/x", REGION, start_ms=0))
    assert "deploy the stack" in str(e.value.hint)
    logs = boto3.client("logs", region_name=REGION)
    logs.create_log_group(logGroupName="/aws/lambda/y")
    logs.create_log_stream(logGroupName="/aws/lambda/y", logStreamName="s")
    t = int(datetime.now(UTC).timestamp() * 1000)
    logs.put_log_events(logGroupName="/aws/lambda/y", logStreamName="s",
                        logEvents=[{"timestamp": t + i, "message": f"line {i} {'needle' if i % 2 else ''}"}
                                   for i in range(5)])
    got = list(aws.log_events("/aws/lambda/y", REGION, start_ms=t - 1, pattern='"needle"'))
    assert [e.message.split()[1] for e in got] == ["1", "3"] and got[0].stream == "s"
    assert len(list(aws.log_events("/aws/lambda/y", REGION, start_ms=t - 1, limit=2))) == 2


def _cli(*args: str):
    from click.testing import CliRunner

    from packager.cli import cli

    return CliRunner().invoke(cli, list(args))


def test_status_without_a_team_repository_reads_mlpack_lock_json(aws, tmp_path, monkeypatch):
    from tests.support import stack_projects as sp

    monkeypatch.setenv("AWS_REGION", REGION)
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".git").mkdir()
    sp.write_project(tmp_path, "iris")
    sp.write_lock(tmp_path, ["iris"])
    result = _cli("status")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"(no environment) · 123456789012 {REGION} · mlpack.lock.json")
    assert "never deployed; deploy: cdk deploy mlpack-iris" in result.stdout


def test_status_refuses_credentials_of_another_account(aws, tmp_path, monkeypatch):
    from packager.errors import MlpackError

    monkeypatch.chdir(tmp_path)
    (tmp_path / "mlpack-repo.toml").write_text('[environments.prod]\naccount = "222222222222"\nregion = "eu-west-1"\n')
    result = _cli("status")
    assert isinstance(result.exception, MlpackError)
    assert "--env prod is account 222222222222, but these AWS credentials are for account 123456789012" in str(
        result.exception)
