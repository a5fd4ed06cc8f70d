"""A test-side extension of moto for the `cdk deploy` smoke test, and the way to run it.

moto's CloudFormation skips resource types it has no model for (with a warning), and its
CloudWatch alarms never notify anyone. This module, imported into the moto_server process
(`python -c 'from tests.support.moto_ext import main; main()' --port N`, from the repository
root; not `-m`: moto derives a service name from each model class's module path), adds:

1. AWS::CloudWatch::Alarm: creates a real moto alarm (describe_alarms, set_alarm_state work).
   Metric-math queries are kept as ids, labels and expressions; their metric stats are dropped.
2. AWS::SNS::Subscription: a real moto subscription (so an http subscriber receives messages).
3. AWS::Lambda::Alias as a real moto alias, and Fn::GetAtt Version on moto's AWS::Lambda::Version.
   Placeholders for the other types mlpack's stacks use that moto lacks (API Gateway stage,
   account, models, validators, gateway responses, usage plans and keys; SNS topic policy;
   CodeDeploy; CDK metadata):
   they only record their properties and answer Ref with a random id.
4. Alarm actions: when set_alarm_state changes an alarm's state, the alarm's SNS actions for the
   new state are published with the message CloudWatch itself sends (the JSON shape of
   https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/alarm-sns-notifications.html).
   THIS DELIVERY IS OURS, NOT MOTO'S AND NOT AWS'S: it shows the wiring (alarm -> its topic ->
   subscriber) as deployed, not that CloudWatch would evaluate and fire the alarm.

5. Stack updates: moto forgets a resource whose type it cannot update (a log group, say, whose tags
   changed), and every Fn::GetAtt on it then fails the update. Such a resource is kept as it was;
   so an update deploy here tests the flow and what moto does update (function code, aliases,
   versions), not what those other properties become.

Treat a deploy against this as a test of the deploy flow and the template's wiring, not of AWS.
"""

from __future__ import annotations

import argparse
import json
import uuid
from datetime import UTC, datetime
from typing import Any

from moto.awslambda import models as lambda_models
from moto.cloudformation import parsing
from moto.cloudwatch import models as cw_models
from moto.core.common_models import CloudFormationModel
from moto.sns.models import sns_backends

PLACEHOLDER_TYPES = (
    "AWS::ApiGateway::Stage",
    "AWS::ApiGateway::Account",
    "AWS::ApiGateway::Model",
    "AWS::ApiGateway::RequestValidator",
    "AWS::ApiGateway::UsagePlan",
    "AWS::ApiGateway::UsagePlanKey",
    "AWS::ApiGateway::ApiKey",
    "AWS::ApiGateway::GatewayResponse",
    "AWS::SNS::TopicPolicy",
    "AWS::CodeDeploy::Application",
    "AWS::CodeDeploy::DeploymentConfig",
    "AWS::CodeDeploy::DeploymentGroup",
    "AWS::CDK::Metadata",
)


class Placeholder:
    """Records a resource moto cannot model; Ref gives a random id. A mixin: moto
    registers only direct subclasses of CloudFormationModel, so each type is (Placeholder, CloudFormationModel)."""

    cfn_type = ""

    def __init__(self, name: str, props: dict[str, Any], account_id: str, region: str) -> None:
        self.name, self.props, self.account_id, self.region = name, props, account_id, region
        self.id = uuid.uuid4().hex[:10]

    @property
    def physical_resource_id(self) -> str:
        return self.id

    @staticmethod
    def cloudformation_name_type() -> str:
        return ""

    @classmethod
    def has_cfn_attr(cls, attr: str) -> bool:
        return True

    def get_cfn_attribute(self, attribute_name: str) -> Any:
        return self.props.get(attribute_name, self.id)

    @classmethod
    def create_from_cloudformation_json(
        cls, resource_name: str, cloudformation_json: Any, account_id: str, region_name: str, **kwargs: Any
    ) -> Placeholder:
        return cls(resource_name, cloudformation_json.get("Properties", {}), account_id, region_name)

    @classmethod
    def update_from_cloudformation_json(
        cls, original_resource: Any, new_resource_name: str, cloudformation_json: Any, account_id: str, region_name: str
    ) -> Placeholder:
        return cls.create_from_cloudformation_json(new_resource_name, cloudformation_json, account_id, region_name)

    def delete(self, account_id: str, region_name: str) -> None:
        return None


def _placeholder(type_name: str) -> type[CloudFormationModel]:
    return type(
        type_name.replace(":", ""),
        (Placeholder, CloudFormationModel),
        {"cfn_type": type_name, "cloudformation_type": staticmethod(lambda: type_name)},
    )


class AlarmResource(CloudFormationModel):
    """AWS::CloudWatch::Alarm as a real moto alarm."""

    def __init__(self, alarm: Any) -> None:
        self.alarm = alarm

    @property
    def physical_resource_id(self) -> str:
        return str(self.alarm.name)

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::CloudWatch::Alarm"

    @staticmethod
    def cloudformation_name_type() -> str:
        return "AlarmName"

    @classmethod
    def has_cfn_attr(cls, attr: str) -> bool:
        return attr == "Arn"

    def get_cfn_attribute(self, attribute_name: str) -> Any:
        return self.alarm.alarm_arn

    @classmethod
    def create_from_cloudformation_json(
        cls, resource_name: str, cloudformation_json: Any, account_id: str, region_name: str, **kwargs: Any
    ) -> AlarmResource:
        p = cloudformation_json["Properties"]
        queries = [
            cw_models.MetricDataQuery(
                query_id=m["Id"],
                label=m.get("Label", ""),
                period=m.get("Period"),
                return_data=m.get("ReturnData", True),
                expression=m.get("Expression"),
            )
            for m in p.get("Metrics", [])
        ] or None
        backend = cw_models.cloudwatch_backends[account_id][region_name]
        alarm = backend.put_metric_alarm(
            name=p.get("AlarmName", resource_name),
            namespace=p.get("Namespace"),
            metric_name=p.get("MetricName"),
            comparison_operator=p["ComparisonOperator"],
            evaluation_periods=int(p["EvaluationPeriods"]),
            period=p.get("Period"),
            threshold=float(p["Threshold"]),
            statistic=p.get("Statistic"),
            description=p.get("AlarmDescription", ""),
            dimensions=p.get("Dimensions", []),
            alarm_actions=p.get("AlarmActions", []),
            ok_actions=p.get("OKActions", []),
            insufficient_data_actions=p.get("InsufficientDataActions", []),
            metric_data_queries=queries,
            extended_statistic=p.get("ExtendedStatistic"),
            treat_missing_data=p.get("TreatMissingData"),
            actions_enabled=p.get("ActionsEnabled", True) in (True, "true"),
        )
        return cls(alarm)

    @classmethod
    def update_from_cloudformation_json(
        cls, original_resource: Any, new_resource_name: str, cloudformation_json: Any, account_id: str, region_name: str
    ) -> AlarmResource:
        return cls.create_from_cloudformation_json(new_resource_name, cloudformation_json, account_id, region_name)

    def delete(self, account_id: str, region_name: str) -> None:
        cw_models.cloudwatch_backends[account_id][region_name].delete_alarms([self.alarm.name])


class _Wrapper:
    """One moto object behind a CloudFormation resource whose Ref is that object's ARN. A mixin, like
    Placeholder (moto registers only direct subclasses of CloudFormationModel)."""

    def __init__(self, obj: Any) -> None:
        self.obj = obj

    @property
    def physical_resource_id(self) -> str:
        return str(self.obj.arn)

    @staticmethod
    def cloudformation_name_type() -> str:
        return ""


class SubscriptionResource(_Wrapper, CloudFormationModel):
    """AWS::SNS::Subscription as a real moto subscription."""

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::SNS::Subscription"

    @classmethod
    def create_from_cloudformation_json(
        cls, resource_name: str, cloudformation_json: Any, account_id: str, region_name: str, **kwargs: Any
    ) -> SubscriptionResource:
        p = cloudformation_json["Properties"]
        backend = sns_backends[account_id][region_name]
        return cls(backend.subscribe(p["TopicArn"], p["Endpoint"], p["Protocol"]))

    def delete(self, account_id: str, region_name: str) -> None:
        sns_backends[account_id][region_name].unsubscribe(self.obj.arn)


class AliasResource(_Wrapper, CloudFormationModel):
    """AWS::Lambda::Alias as a real moto alias (Ref = its ARN, which permissions and integrations use)."""

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::Lambda::Alias"

    @classmethod
    def create_from_cloudformation_json(
        cls, resource_name: str, cloudformation_json: Any, account_id: str, region_name: str, **kwargs: Any
    ) -> AliasResource:
        p = cloudformation_json["Properties"]
        backend = lambda_models.lambda_backends[account_id][region_name]
        # a name, or a (partial) ARN: moto keys aliases by the bare function name
        fn = str(p["FunctionName"]).split(":function:")[-1].split(":")[0]
        return cls(backend.create_alias(p["Name"], fn, str(p["FunctionVersion"]), p.get("Description", ""), None))


def _version_attribute(self: Any, attribute_name: str) -> Any:
    return self.version  # the only attribute of AWS::Lambda::Version CDK reads (for aliases)


def _iso(value: Any) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%S.000+0000") if isinstance(value, datetime) else str(value)


def alarm_message(alarm: Any, old_state: str, account_id: str, region: str) -> dict[str, Any]:
    """The JSON CloudWatch publishes to an alarm's SNS actions."""
    return {
        "AlarmName": alarm.name,
        "AlarmDescription": alarm.description,
        "AWSAccountId": account_id,
        "AlarmConfigurationUpdatedTimestamp": _iso(alarm.configuration_updated_timestamp),
        "NewStateValue": alarm.state_value,
        "NewStateReason": alarm.state_reason,
        "StateChangeTime": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000+0000"),
        "Region": region,
        "AlarmArn": alarm.alarm_arn,
        "OldStateValue": old_state,
        "OKActions": alarm.ok_actions,
        "AlarmActions": alarm.alarm_actions,
        "InsufficientDataActions": alarm.insufficient_data_actions,
        "Trigger": {
            "MetricName": alarm.metric_name,
            "Namespace": alarm.namespace,
            "StatisticType": "ExtendedStatistic" if alarm.extended_statistic else "Statistic",
            "Statistic": (alarm.statistic or "").upper(),
            "Unit": None,
            "Dimensions": [],
            "Period": alarm.period,
            "EvaluationPeriods": alarm.evaluation_periods,
            "ComparisonOperator": alarm.comparison_operator,
            "Threshold": alarm.threshold,
            "TreatMissingData": alarm.treat_missing_data,
            "EvaluateLowSampleCountPercentile": "",
        },
    }


def _publishing_set_alarm_state(original: Any) -> Any:
    def set_alarm_state(self: Any, alarm_name: str, reason: str, reason_data: str, state_value: str) -> None:
        old = self.alarms[alarm_name].state_value if alarm_name in self.alarms else None
        original(self, alarm_name, reason, reason_data, state_value)
        alarm = self.alarms[alarm_name]
        if old == state_value or not alarm.actions_enabled:
            return
        actions = {
            "ALARM": alarm.alarm_actions,
            "OK": alarm.ok_actions,
            "INSUFFICIENT_DATA": alarm.insufficient_data_actions,
        }[state_value]
        for arn in actions or []:
            if arn.startswith("arn:aws:sns:"):
                _, _, _, region, account, _ = arn.split(":", 5)
                message = alarm_message(alarm, str(old), account, region)
                subject = f'{state_value}: "{alarm_name}" in {region}'[:99]
                sns_backends[account][region].publish(json.dumps(message), arn=arn, subject=subject)

    return set_alarm_state


def _keeping_unupdatable(original: Any) -> Any:
    def parse_and_update_resource(logical_id: str, resource_json: dict[str, Any], resources_map: Any,
                                  account_id: str, region_name: str) -> Any:
        updated = original(logical_id, resource_json, resources_map, account_id, region_name)
        return updated if updated is not None else resources_map[logical_id]

    return parse_and_update_resource


def install() -> None:
    """Register the extra models and the alarm publishing. Idempotent."""
    if getattr(install, "done", False):
        return
    parsing.parse_and_update_resource = _keeping_unupdatable(parsing.parse_and_update_resource)
    # moto's Lambda version model cannot answer Fn::GetAtt [..., "Version"]
    lambda_models.LambdaVersion.get_cfn_attribute = _version_attribute  # type: ignore[attr-defined]
    lambda_models.LambdaVersion.has_cfn_attr = classmethod(lambda cls, attr: attr == "Version")  # type: ignore
    for t in PLACEHOLDER_TYPES:
        _placeholder(t)
    cw_models.CloudWatchBackend.set_alarm_state = _publishing_set_alarm_state(  # type: ignore[method-assign]
        cw_models.CloudWatchBackend.set_alarm_state
    )
    for cache in (parsing.get_model_list, parsing.get_model_map, parsing.get_name_type_map):
        cache.cache_clear()
    install.done = True  # type: ignore[attr-defined]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="moto_server with mlpack's test extension")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    install()
    from moto.server import main as moto_main

    moto_main(["-H", "127.0.0.1", "-p", str(args.port)])
