"""The chat notifier (handlers/notify.py) against CloudWatch alarm notifications as SNS delivers
them to Lambda, for ALARM and OK, plain and metric-math alarms; webhook URLs resolved from SSM and
Secrets Manager (moto, in-process) and posted to a local HTTP server.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from handlers import notify

TOPIC = "arn:aws:sns:eu-west-1:123456789012:mlpack-churn-v2-alarms"

# The shape CloudWatch publishes (see the AWS docs on alarm SNS notifications); values from a real alarm.
PLAIN_ALARM = {
    "AlarmName": "mlpack-churn-v2-api-latency",
    "AlarmDescription": "mlpack model churn-v2: API p99 latency above 3000 ms",
    "AWSAccountId": "123456789012",
    "AlarmConfigurationUpdatedTimestamp": "2026-11-27T04:10:31.322+0000",
    "NewStateValue": "ALARM",
    "NewStateReason": "Threshold Crossed: 3 out of the last 3 datapoints [3412.5 (27/11/26 05:00:00), "
    "3301.0 (27/11/26 04:55:00), 3205.25 (27/11/26 04:50:00)] were greater than the threshold "
    "(3000.0) (minimum 3 datapoints for OK -> ALARM transition).",
    "StateChangeTime": "2026-11-27T05:05:12.204+0000",
    "Region": "EU (Ireland)",
    "AlarmArn": "arn:aws:cloudwatch:eu-west-1:123456789012:alarm:mlpack-churn-v2-api-latency",
    "OldStateValue": "OK",
    "OKActions": [TOPIC],
    "AlarmActions": [TOPIC],
    "InsufficientDataActions": [],
    "Trigger": {
        "MetricName": "Latency",
        "Namespace": "AWS/ApiGateway",
        "StatisticType": "ExtendedStatistic",
        "ExtendedStatistic": "p99",
        "Unit": None,
        "Dimensions": [{"value": "mlpack-churn-v2", "name": "ApiName"}, {"value": "v1", "name": "Stage"}],
        "Period": 300,
        "EvaluationPeriods": 3,
        "DatapointsToAlarm": 3,
        "ComparisonOperator": "GreaterThanThreshold",
        "Threshold": 3000.0,
        "TreatMissingData": "notBreaching",
        "EvaluateLowSampleCountPercentile": "",
    },
}
MATH_OK = {
    **PLAIN_ALARM,
    "AlarmName": "mlpack-churn-v2-drift",
    "AlarmDescription": "mlpack model churn-v2: A class share (of stay, leave) moved more than 0.2",
    "AlarmArn": "arn:aws:cloudwatch:eu-west-1:123456789012:alarm:mlpack-churn-v2-drift",
    "NewStateValue": "OK",
    "OldStateValue": "ALARM",
    "NewStateReason": "Threshold Crossed: no datapoints were received for 3 periods and 3 missing datapoints "
    "were treated as [NonBreaching].",
    "Trigger": {
        "Metrics": [
            {
                "Expression": "MAX([ABS(FILL(c0, 0) / rows - 0.7)])",
                "Id": "expr_1",
                "Label": "largest class share change",
                "ReturnData": True,
            }
        ],
        "Period": 300,
        "EvaluationPeriods": 3,
        "ComparisonOperator": "GreaterThanThreshold",
        "Threshold": 0.2,
        "TreatMissingData": "notBreaching",
        "EvaluateLowSampleCountPercentile": "",
    },
}


def sns_event(*messages: dict) -> dict:
    return {
        "Records": [
            {
                "EventSource": "aws:sns",
                "EventVersion": "1.0",
                "EventSubscriptionArn": TOPIC + ":abc",
                "Sns": {
                    "Type": "Notification",
                    "MessageId": f"id-{i}",
                    "TopicArn": TOPIC,
                    "Subject": f'ALARM: "{m["AlarmName"]}" in EU (Ireland)',
                    "Message": json.dumps(m),
                    "Timestamp": "2026-11-27T05:05:12.250Z",
                },
            }
            for i, m in enumerate(messages)
        ]
    }


def test_parse_alarm_names_model_what_value_and_threshold():
    a = notify.parse(PLAIN_ALARM, TOPIC)
    assert (a.model, a.what, a.state, a.old_state) == ("churn-v2", "api-latency", "ALARM", "OK")
    assert (a.value, a.threshold, a.comparison) == (3412.5, 3000.0, ">")
    assert a.region == "eu-west-1" and a.account == "123456789012"
    assert a.console_url == (
        "https://eu-west-1.console.aws.amazon.com/cloudwatch/home?region=eu-west-1"
        "#alarmsV2:alarm/mlpack-churn-v2-api-latency"
    )


def test_parse_ok_of_a_metric_math_alarm_without_a_datapoint():
    a = notify.parse(MATH_OK, TOPIC)
    assert (a.what, a.state, a.value, a.threshold) == ("drift", "OK", None, 0.2)
    assert notify.summary(a) == "mlpack churn-v2: drift is OK again (value n/a, threshold > 0.2)"


def test_slack_message():
    msg = notify.format_slack(notify.parse(PLAIN_ALARM, TOPIC))
    assert msg["text"] == "mlpack churn-v2: api-latency is in ALARM (value 3412, threshold > 3000)"
    text = json.dumps(msg["blocks"])
    for part in (
        "*Model*\\nchurn-v2",
        "*Current value*\\n3412",
        "*Threshold*\\n> 3000",
        ":red_circle:",
        "#alarmsV2:alarm/mlpack-churn-v2-api-latency",
        "API p99 latency above 3000 ms",
    ):
        assert part in text, part
    ok = notify.format_slack(notify.parse(MATH_OK, TOPIC))
    assert ":large_green_circle:" in json.dumps(ok["blocks"])


def test_teams_message_is_an_adaptive_card():
    msg = notify.format_teams(notify.parse(PLAIN_ALARM, TOPIC))
    (attachment,) = msg["attachments"]
    assert msg["type"] == "message" and attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    card = attachment["content"]
    facts = {f["title"]: f["value"] for f in card["body"][1]["facts"]}
    assert facts["Model"] == "churn-v2" and facts["State"] == "OK -> ALARM" and facts["Threshold"] == "> 3000"
    assert card["body"][0]["color"] == "Attention"
    assert card["actions"][0]["url"].endswith("mlpack-churn-v2-api-latency")
    assert notify.format_teams(notify.parse(MATH_OK, TOPIC))["attachments"][0]["content"]["body"][0]["color"] == "Good"


def test_generic_webhook_carries_every_field():
    msg = notify.format_webhook(notify.parse(MATH_OK, TOPIC))
    assert msg["source"] == "mlpack" and msg["model"] == "churn-v2" and msg["state"] == "OK"
    assert msg["threshold"] == 0.2 and msg["value"] is None and msg["summary"].startswith("mlpack churn-v2")
    json.dumps(msg)


class FakeRefs:
    def __init__(self, targets, urls):
        self._targets, self._urls, self.asked = targets, urls, []

    def targets(self, model):
        self.asked.append(model)
        return self._targets

    def url(self, ref):
        return self._urls[ref]


def test_deliver_sends_each_alarm_to_each_target_in_its_format():
    refs = FakeRefs(
        [{"kind": "slack", "webhook": "ssm:/s"}, {"kind": "teams", "webhook": "secretsmanager:t"}],
        {"ssm:/s": "https://hooks.example/s", "secretsmanager:t": "https://hooks.example/t"},
    )
    posts = []
    sent = notify.deliver(
        sns_event(PLAIN_ALARM, MATH_OK), refs, post=lambda url, body: posts.append((url, body)) or 200
    )
    assert sent == 4 and refs.asked == ["churn-v2", "churn-v2"]
    assert [u for u, _ in posts] == ["https://hooks.example/s", "https://hooks.example/t"] * 2
    assert "blocks" in posts[0][1] and posts[1][1]["type"] == "message"


def test_deliver_tries_every_target_then_fails_loudly():
    refs = FakeRefs(
        [{"kind": "slack", "webhook": "ssm:/broken"}, {"kind": "webhook", "webhook": "ssm:/ok"}],
        {"ssm:/broken": "https://broken.example", "ssm:/ok": "https://ok.example"},
    )
    posts = []

    def post(url, body):
        if "broken" in url:
            raise OSError("connection refused")
        posts.append(url)
        return 200

    with pytest.raises(RuntimeError, match="slack ssm:/broken: connection refused"):
        notify.deliver(sns_event(PLAIN_ALARM), refs, post=post)
    assert posts == ["https://ok.example"]


def test_a_failed_delivery_never_logs_the_webhook_url(caplog):
    # A URL stored without its scheme: urllib's error repeats it, and the URL is the secret.
    secret = "hooks.example/services/T000/B000/s3cr3t-token"
    refs = FakeRefs([{"kind": "slack", "webhook": "ssm:/team/slack"}], {"ssm:/team/slack": secret})
    with pytest.raises(RuntimeError) as e:
        notify.deliver(sns_event(PLAIN_ALARM), refs)
    assert "s3cr3t-token" not in str(e.value) and "ssm:/team/slack" in str(e.value)
    assert "could not send" in caplog.text and "s3cr3t-token" not in caplog.text


def test_non_alarm_messages_are_skipped():
    event = {"Records": [{"Sns": {"TopicArn": TOPIC, "Message": "hello"}}]}
    assert notify.deliver(event, FakeRefs([], {}), post=lambda u, b: 200) == 0


@pytest.fixture
def aws(monkeypatch):
    from moto import mock_aws

    for k, v in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "eu-west-1",
    }.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        yield


class _Hook(BaseHTTPRequestHandler):
    received: list = []

    def do_POST(self):
        self.received.append((self.path, json.loads(self.rfile.read(int(self.headers["Content-Length"])))))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_handler_reads_refs_from_ssm_and_secrets_manager_and_posts(aws, monkeypatch):
    import boto3

    server = HTTPServer(("127.0.0.1", 0), _Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_port}"
    try:
        ssm, secrets = boto3.client("ssm"), boto3.client("secretsmanager")
        ssm.put_parameter(
            Name="/mlpack/churn-v2/chat",
            Type="String",
            Value=json.dumps(
                [
                    {"kind": "slack", "webhook": "ssm:/team/slack"},
                    {"kind": "teams", "webhook": "secretsmanager:team/teams"},
                    {"kind": "webhook", "webhook": "secretsmanager:team/plain"},
                ]
            ),
        )
        ssm.put_parameter(Name="/team/slack", Type="SecureString", Value=f"{base}/slack")
        secrets.create_secret(Name="team/teams", SecretString=json.dumps({"url": f"{base}/teams"}))
        secrets.create_secret(Name="team/plain", SecretString=f"{base}/plain\n")
        monkeypatch.setattr(notify, "_refs", None)
        _Hook.received.clear()
        assert notify.handler(sns_event(PLAIN_ALARM), None) == {"sent": 3}
        paths = sorted(p for p, _ in _Hook.received)
        assert paths == ["/plain", "/slack", "/teams"]
        bodies = dict(_Hook.received)
        assert bodies["/slack"]["text"].startswith("mlpack churn-v2: api-latency is in ALARM")
        assert bodies["/plain"]["alarm_name"] == "mlpack-churn-v2-api-latency"
    finally:
        server.shutdown()
