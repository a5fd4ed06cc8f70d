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
        sns_event(PLAIN_ALARM, MATH_OK), refs, post=lambda url, body, timeout: posts.append((url, body)) or 200
    )
    assert sent == 4 and refs.asked == ["churn-v2", "churn-v2"]
    assert [u for u, _ in posts] == ["https://hooks.example/s", "https://hooks.example/t"] * 2
    assert "blocks" in posts[0][1] and posts[1][1]["type"] == "message"


def test_a_failed_delivery_never_logs_the_webhook_url(caplog, capsys):
    # A URL stored without its scheme: urllib's error repeats it, and the URL is the secret.
    secret = "hooks.example/services/T000/B000/s3cr3t-token"
    refs = FakeRefs([{"kind": "slack", "webhook": "ssm:/team/slack"}], {"ssm:/team/slack": secret})
    with pytest.raises(RuntimeError) as e:
        notify.deliver(sns_event(PLAIN_ALARM), refs, sleep=_no_sleep)
    assert "s3cr3t-token" not in str(e.value) and "ssm:/team/slack" in str(e.value)
    assert "could not send" in caplog.text and "s3cr3t-token" not in caplog.text
    out = capsys.readouterr().out
    assert "NotificationFailures" in out and "ssm:/team/slack" in out and "s3cr3t-token" not in out


# URLs with characters http.client refuses (it quotes the URL's path back in its error, before any
# network access), a bare host and path, and odd characters urllib escapes or percent-encodes.
ODD_URLS = [
    "https://hooks.slack.com/services/T000/B000/s3cr3t token",
    "https://hooks.example/webhook/s3cr3t-token\nX-Injected: 1",
    "https://hooks.example/a\tb/s3cr3t-token?sig=s3cr3t%20sig&x=1",
    "https://hooks.example/caf\u00e9/s3cr3t-token\x00",
    " https://hooks.example/s3cr3t-token/with space ",
    "hooks.example/services/s3cr3t-token/quote'and\"double",
]


@pytest.mark.parametrize("url", ODD_URLS)
def test_no_part_of_an_odd_webhook_url_reaches_logs_metrics_or_the_raised_error(url, caplog, capsys):
    refs = FakeRefs([{"kind": "webhook", "webhook": "ssm:/mlpack/churn-v2/hook"}], {"ssm:/mlpack/churn-v2/hook": url})
    with pytest.raises(RuntimeError) as e:  # post_json itself: the real error messages of urllib and http.client
        notify.deliver(sns_event(PLAIN_ALARM), refs, sleep=_no_sleep)
    out = capsys.readouterr().out
    for text in (str(e.value), caplog.text, out):
        assert "s3cr3t" not in text and "hooks.slack.com/services" not in text, text
        assert "ssm:/mlpack/churn-v2/hook" in text
    assert "NotificationFailures" in out


@pytest.mark.parametrize("url", ODD_URLS)
def test_scrub_removes_every_quoted_or_encoded_form_of_the_url(url):
    from urllib.parse import quote, quote_plus, urlsplit

    path = urlsplit(url.strip()).path
    forms = [url, url.strip(), repr(url), quote(url), quote(url, safe=""), quote_plus(url), path, repr(path)]
    for form in forms:
        message = f"error talking to {form} (found at least ' ')"
        assert "s3cr3t" not in notify._scrub(ValueError(message), url), form
    assert notify._scrub(ValueError("HTTP Error 404: Not Found"), url) == "HTTP Error 404: Not Found"
    assert notify._scrub(ValueError("timed out"), "") == "timed out"


def test_non_alarm_messages_are_skipped():
    event = {"Records": [{"Sns": {"TopicArn": TOPIC, "Message": "hello"}}]}
    assert notify.deliver(event, FakeRefs([], {}), post=lambda u, b, t: 200) == 0


# --- delivery failures and retries ----------------------------------------------------------------
# SNS invokes the notifier asynchronously and Lambda retries a failed event twice, re-sending to every
# target: raising after a partial delivery would send duplicates to the targets that got the message.


class _ScriptedHook(BaseHTTPRequestHandler):
    """Answers each path with the next status of its script (the last one repeats); None = close the
    connection without an answer."""

    scripts: dict = {}
    received: list = []

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append(self.path)
        script = self.scripts[self.path]
        status = script.pop(0) if len(script) > 1 else script[0]
        if status is None:
            self.close_connection = True
            return
        self.send_response(status)
        if status == 429:
            self.send_header("Retry-After", "2")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def hooks():
    """A local webhook server: hooks(path=[statuses], ...) -> (refs for deliver(), base URL)."""
    server = HTTPServer(("127.0.0.1", 0), _ScriptedHook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_port}"
    _ScriptedHook.received = []

    def make(**scripts):
        _ScriptedHook.scripts = {f"/{name}": list(statuses) for name, statuses in scripts.items()}
        targets = [{"kind": "webhook", "webhook": f"ssm:/{name}"} for name in scripts]
        return FakeRefs(targets, {f"ssm:/{name}": f"{base}/{name}" for name in scripts})

    yield make
    server.shutdown()
    server.server_close()


def _no_sleep(seconds):
    pass


def _received(path):
    return _ScriptedHook.received.count(path)


def _failure_metrics(capsys):
    """The NotificationFailures EMF lines printed so far."""
    docs = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    return [d for d in docs if "NotificationFailures" in json.dumps(d.get("_aws", {}))]


def test_a_target_failing_twice_with_503_is_retried_and_gets_the_message_once(hooks, capsys):
    refs = hooks(flaky=[503, 503, 200], steady=[200])
    waits = []
    assert notify.deliver(sns_event(PLAIN_ALARM), refs, sleep=waits.append) == 2
    assert _received("/flaky") == 3 and _received("/steady") == 1
    assert len(waits) == 2 and all(0 < w <= notify.MAX_RETRY_AFTER_S for w in waits)
    assert _failure_metrics(capsys) == []


def test_a_dropped_connection_is_retried(hooks):
    refs = hooks(flaky=[None, 200])
    assert notify.deliver(sns_event(PLAIN_ALARM), refs, sleep=_no_sleep) == 1
    assert _received("/flaky") == 2


def test_429_waits_as_long_as_the_server_asks(hooks):
    refs = hooks(limited=[429, 200])
    waits = []
    assert notify.deliver(sns_event(PLAIN_ALARM), refs, sleep=waits.append) == 1
    assert waits == [2.0]


def test_a_4xx_target_is_not_retried_and_a_partial_failure_does_not_raise(hooks, caplog, capsys):
    refs = hooks(gone=[404], steady=[200])
    assert notify.deliver(sns_event(PLAIN_ALARM), refs, sleep=_no_sleep) == 1
    assert _received("/gone") == 1 and _received("/steady") == 1
    (line,) = _failure_metrics(capsys)
    (directive,) = line["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == "mlpack" and directive["Dimensions"] == [["Model"]]
    assert directive["Metrics"] == [{"Name": "NotificationFailures", "Unit": "Count"}]
    assert line["Model"] == "churn-v2" and line["NotificationFailures"] == 1
    assert line["failedTargets"] == ["webhook ssm:/gone: HTTP Error 404: Not Found"]
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert any("ssm:/gone" in m and "HTTP Error 404" in m for m in errors)
    assert "127.0.0.1" not in caplog.text  # the URLs are secrets


def test_a_target_that_keeps_failing_is_given_up_after_the_last_attempt(hooks, capsys):
    refs = hooks(down=[500], steady=[200])
    assert notify.deliver(sns_event(PLAIN_ALARM), refs, sleep=_no_sleep) == 1
    assert _received("/down") == notify.ATTEMPTS and _received("/steady") == 1
    assert [m["NotificationFailures"] for m in _failure_metrics(capsys)] == [1]


def test_when_nothing_is_delivered_the_event_fails_so_lambda_retries_it(hooks, capsys):
    refs = hooks(down=[502], gone=[410])
    with pytest.raises(RuntimeError, match="failed for every target") as e:
        notify.deliver(sns_event(PLAIN_ALARM), refs, sleep=_no_sleep)
    assert "webhook ssm:/down: HTTP Error 502" in str(e.value) and "webhook ssm:/gone: HTTP Error 410" in str(e.value)
    assert _received("/down") == notify.ATTEMPTS and _received("/gone") == 1
    assert [m["NotificationFailures"] for m in _failure_metrics(capsys)] == [2]


def test_a_target_list_that_cannot_be_read_fails_the_event():
    class NoTargets(FakeRefs):
        def targets(self, model):
            raise OSError("SSM unavailable")

    with pytest.raises(RuntimeError, match="chat targets of churn-v2: SSM unavailable"):
        notify.deliver(sns_event(PLAIN_ALARM), NoTargets([], {}), post=lambda u, b, t: 200)


class _FakeClock:
    """Time that passes only when the code under test waits or a request takes its whole timeout."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


def test_retries_stop_before_the_invocation_runs_out_of_time():
    clock = _FakeClock()
    timeouts = []

    def hanging(url, body, timeout):  # every request times out after its full timeout
        timeouts.append(timeout)
        clock.now += timeout
        raise TimeoutError("timed out")

    targets = [{"kind": "webhook", "webhook": f"ssm:/{i}"} for i in range(4)]
    refs = FakeRefs(targets, {t["webhook"]: f"https://hooks.example/{i}" for i, t in enumerate(targets)})
    budget = notify.budget(_LambdaContext(remaining_ms=30_000))  # the stack's timeout
    with pytest.raises(RuntimeError, match="no time left"):
        notify.deliver(sns_event(PLAIN_ALARM), refs, post=hanging, budget_s=budget, sleep=clock.sleep, clock=clock)
    assert clock.now <= budget < 30
    assert len(timeouts) > notify.ATTEMPTS  # the first target was retried, then the budget ran out
    assert all(0 < t <= notify.ATTEMPT_TIMEOUT_S for t in timeouts)


class _LambdaContext:
    def __init__(self, remaining_ms):
        self.remaining_ms = remaining_ms

    def get_remaining_time_in_millis(self):
        return self.remaining_ms


def test_the_budget_is_what_lambda_has_left_minus_a_reserve():
    assert notify.budget(_LambdaContext(30_000)) == 30 - notify.RESERVE_S
    assert notify.budget(_LambdaContext(1_000)) == 0.0
    assert notify.budget(None) == notify.DEFAULT_BUDGET_S


def test_the_metric_names_match_the_contract():
    # notify.py ships alone in the notifier's zip, so it cannot import handlers/contract.py
    from handlers import contract

    assert notify.names.metric_namespace(None) == contract.METRIC_NAMESPACE
    assert notify.DIM_MODEL == contract.DIM_MODEL
    assert notify.M_NOTIFICATION_FAILURES == contract.M_NOTIFICATION_FAILURES


def test_only_network_errors_429_and_5xx_are_worth_retrying():
    import http.client
    import urllib.error

    def http_error(code):
        return urllib.error.HTTPError("https://x", code, "status", None, None)

    for e in (
        http_error(429),
        http_error(500),
        http_error(503),
        TimeoutError(),
        ConnectionResetError(),
        urllib.error.URLError("refused"),
        http.client.RemoteDisconnected("closed"),
    ):
        assert notify.retryable(e), e
    for e in (http_error(400), http_error(403), http_error(404), ValueError("unknown url type"), KeyError("kind")):
        assert not notify.retryable(e), e


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
        server.server_close()


# --- environments: one notifier per environment, told which by MLPACK_ENVIRONMENT ----------------------

DEV_TOPIC = "arn:aws:sns:eu-west-1:123456789012:mlpack-dev-churn-v2-alarms"
DEV_ALARM = {
    **PLAIN_ALARM,
    "AlarmName": "mlpack-dev-churn-v2-api-latency",
    "AlarmArn": "arn:aws:cloudwatch:eu-west-1:123456789012:alarm:mlpack-dev-churn-v2-api-latency",
}


def dev_event(*messages: dict) -> dict:
    event = sns_event(*messages)
    for record in event["Records"]:
        record["Sns"]["TopicArn"] = DEV_TOPIC
    return event


def test_parse_an_environments_alarm():
    a = notify.parse(DEV_ALARM, DEV_TOPIC, "dev")
    assert (a.model, a.what, a.alarm_name) == ("churn-v2", "api-latency", "mlpack-dev-churn-v2-api-latency")
    # without the topic, the alarm name alone gives a guess, in the right environment
    assert notify.parse(DEV_ALARM, "", "dev").model == "churn"
    # a notifier not told the environment would read the environment as part of the model
    assert notify.parse(DEV_ALARM, DEV_TOPIC).model == "dev-churn-v2"


def test_deliver_reads_the_environments_targets():
    asked = []

    class Refs:
        def targets(self, model):
            asked.append(model)
            return [{"kind": "webhook", "webhook": "ssm:/x"}]

        def url(self, ref):
            return "http://example.invalid/hook"

    posted = []
    sent = notify.deliver(dev_event(DEV_ALARM), Refs(), lambda u, p, t: posted.append(p) or 200,
                          environment="dev")
    assert sent == 1 and asked == ["churn-v2"] and posted[0]["what"] == "api-latency"


def test_the_handler_serves_the_environment_it_is_told(aws, monkeypatch):
    import boto3

    from handlers import names

    server = HTTPServer(("127.0.0.1", 0), _Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        ssm = boto3.client("ssm")
        # the model without an environment has other targets: the notifier must not read them
        ssm.put_parameter(Name="/mlpack/churn-v2/chat", Type="String", Value="[]")
        ssm.put_parameter(Name="/mlpack/dev/churn-v2/chat", Type="String",
                          Value=json.dumps([{"kind": "slack", "webhook": "ssm:/team/dev-slack"}]))
        ssm.put_parameter(Name="/team/dev-slack", Type="SecureString",
                          Value=f"http://127.0.0.1:{server.server_port}/dev")
        monkeypatch.setenv(names.ENV_ENVIRONMENT, "dev")
        monkeypatch.setattr(notify, "_refs", None)
        _Hook.received.clear()
        assert notify.handler(dev_event(DEV_ALARM), None) == {"sent": 1}
        ((path, body),) = _Hook.received
        assert path == "/dev" and body["text"].startswith("mlpack churn-v2: api-latency is in ALARM")
    finally:
        server.shutdown()
        server.server_close()
