"""handlers/names.py: the names without an environment are the ones mlpack always had; with one,
every name carries it; the notifier's role carries the region; the parsers read back exactly what
the names make, for model names with dashes too."""

from __future__ import annotations

import pytest

from handlers import names
from handlers.names import ModelNames, SharedNames


def test_no_environment_keeps_todays_names():
    n = ModelNames("churn-v2")
    assert (n.stack, n.function, n.api, n.usage_plan, n.api_key, n.dashboard) == ("mlpack-churn-v2",) * 6
    assert n.log_group == "/aws/lambda/mlpack-churn-v2"
    assert n.request_validator == "mlpack-churn-v2-body"
    assert n.topic == "mlpack-churn-v2-alarms"
    assert n.alarm("errors") == "mlpack-churn-v2-errors" and n.alarm("*") == "mlpack-churn-v2-*"
    assert n.notifier_policy == "mlpack-churn-v2-notifier"
    assert n.chat_parameter == "/mlpack/churn-v2/chat"
    assert ModelNames("churn-v2", None) == n


def test_an_environment_is_in_every_name():
    n = ModelNames("churn-v2", "dev")
    assert (n.stack, n.function, n.api, n.usage_plan, n.api_key, n.dashboard) == ("mlpack-dev-churn-v2",) * 6
    assert n.log_group == "/aws/lambda/mlpack-dev-churn-v2"
    assert n.request_validator == "mlpack-dev-churn-v2-body"
    assert n.topic == "mlpack-dev-churn-v2-alarms"
    assert n.alarm("drift-1") == "mlpack-dev-churn-v2-drift-1"
    assert n.notifier_policy == "mlpack-dev-churn-v2-notifier"
    assert n.chat_parameter == "/mlpack/dev/churn-v2/chat"


def test_shared_names_and_the_region_safe_role():
    assert SharedNames(None, "us-east-1").stack == "mlpack-shared"
    assert SharedNames("prod", "us-east-1").stack == "mlpack-prod-shared"
    assert SharedNames(None, "eu-west-1").notifier == "mlpack-notifier"
    assert SharedNames("prod", "eu-west-1").notifier == "mlpack-prod-notifier"
    assert SharedNames("prod", "eu-west-1").notifier_log_group == "/aws/lambda/mlpack-prod-notifier"
    assert SharedNames(None, "eu-west-1").notifier_role == "mlpack-notifier-eu-west-1"
    assert SharedNames("prod", "ap-southeast-2").notifier_role == "mlpack-prod-notifier-ap-southeast-2"
    assert SharedNames("prod", "us-east-1").notifier_role != SharedNames("prod", "eu-west-1").notifier_role


def test_the_longest_names_fit_aws_limits():
    """A 40-character model (spec.NAME_RE) in a 12-character environment: function names are at most
    64 characters, IAM role names 64."""
    model, env = "m" * 40, "e" * 12
    assert names.ENVIRONMENT_RE.match(env)
    assert len(ModelNames(model, env).function) <= 64
    assert len(SharedNames(env, "ap-southeast-2").notifier_role) <= 64


@pytest.mark.parametrize("env", [None, "dev", "prod2"])
@pytest.mark.parametrize("model", ["iris", "churn-v2", "a-b-c"])
def test_the_topic_parser_reads_back_the_topic(model, env):
    assert names.model_from_topic(ModelNames(model, env).topic, env) == model


def test_the_topic_parser_needs_the_right_environment():
    topic = ModelNames("churn-v2", "dev").topic
    assert names.model_from_topic(topic, "staging") is None
    assert names.model_from_topic(topic, None) == "dev-churn-v2"  # why the notifier is told its environment
    assert names.model_from_topic(ModelNames("iris").topic, "dev") is None
    for other in ("mlpack-dev--alarms", "other-dev-iris-alarms", "mlpack-dev-iris-alarm", "mlpack-dev-Iris-alarms"):
        assert names.model_from_topic(other, "dev") is None, other


def test_the_alarm_guess_and_alarm_what():
    assert names.model_from_alarm("mlpack-iris-errors") == "iris"
    assert names.model_from_alarm("mlpack-dev-iris-errors", "dev") == "iris"
    assert names.model_from_alarm("mlpack-dev-churn-v2-errors", "dev") == "churn"  # a guess: cut short
    assert names.model_from_alarm("mlpack-iris") is None
    assert names.model_from_alarm("mlpack-dev-iris", "dev") is None
    assert names.model_from_alarm("mlpack-iris-errors", "dev") is None
    assert names.model_from_alarm("something-else") is None
    n = ModelNames("churn-v2", "dev")
    assert n.alarm_what("mlpack-dev-churn-v2-api-latency") == "api-latency"
    assert n.alarm_what("mlpack-churn-v2-api-latency") is None
    assert ModelNames("churn-v2").alarm_what("mlpack-churn-v2-drift-2") == "drift-2"
