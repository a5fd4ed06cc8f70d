"""The model's notifications: one SNS topic (mlpack-[<env>-]<model>-alarms) with the owners' emails
subscribed, and optional chat delivery through the shared notifier function of the same
environment and region (handlers/names.py SharedNames).

Chat targets are written to an SSM parameter (/mlpack/[<env>/]<model>/chat) as references
(ssm:/... or secretsmanager:...), never URLs; the notifier resolves them at run time and this
construct grants it read access to exactly those references. No AWS calls at synth.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from aws_cdk import ArnFormat, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subs
from aws_cdk import aws_ssm as ssm
from constructs import Construct

from handlers import names


@dataclass(frozen=True, kw_only=True)
class ChatRef:
    """A chat target: kind (slack, teams, webhook) and where its URL is kept (ssm:/x or secretsmanager:y)."""

    kind: str
    webhook: str


@dataclass(frozen=True, kw_only=True)
class NotificationsProps:
    """Props of ModelNotifications.

    model_name: names the topic mlpack-[<environment>-]<model_name>-alarms.
    environment: the environment (dev, prod, ...); None (default) = none.
    emails: owners subscribed by email (each confirms once); () = none.
    chat: chat targets; () (default) = no chat, no dependency on the shared notifier.
    notifier_function_name, notifier_role_name: the shared notifier (deterministic names, so no
        cross-stack exports that would pin the shared stack); None (default) = the environment's
        notifier in the stack's region (names.SharedNames).
    """

    model_name: str
    environment: str | None = None
    emails: tuple[str, ...] = ()
    chat: tuple[ChatRef, ...] = ()
    notifier_function_name: str | None = None
    notifier_role_name: str | None = None


class ModelNotifications(Construct):
    """SNS topic + email subscriptions + optional chat wiring."""

    def __init__(self, scope: Construct, id: str, *, props: NotificationsProps) -> None:
        super().__init__(scope, id)
        stack = Stack.of(self)
        model_names = names.ModelNames(props.model_name, props.environment)
        shared = names.SharedNames(props.environment, stack.region)
        label = f"{props.model_name} ({props.environment})" if props.environment else props.model_name
        self.topic = sns.Topic(
            self,
            "Topic",
            topic_name=model_names.topic,
            display_name=f"mlpack {label} alarms",
            enforce_ssl=True,
        )
        # CloudWatch may publish alarm changes to the topic (this is what makes alarm actions work).
        self.topic.add_to_resource_policy(
            iam.PolicyStatement(
                sid="CloudWatchAlarms",
                actions=["sns:Publish"],
                resources=[self.topic.topic_arn],
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                conditions={
                    "ArnLike": {
                        "aws:SourceArn": stack.format_arn(
                            service="cloudwatch",
                            resource="alarm",
                            resource_name=model_names.alarm("*"),
                            arn_format=ArnFormat.COLON_RESOURCE_NAME,
                        )
                    }
                },
            )
        )
        for email in props.emails:
            self.topic.add_subscription(subs.EmailSubscription(email))
        if not props.chat:
            return
        param = ssm.StringParameter(
            self,
            "ChatTargets",
            parameter_name=model_names.chat_parameter,
            description=f"mlpack {label}: chat targets (references, not URLs) for the notifier",
            string_value=json.dumps(
                [{"kind": c.kind, "webhook": c.webhook} for c in props.chat], separators=(",", ":")
            ),
        )
        notifier = lambda_.Function.from_function_attributes(
            self,
            "Notifier",
            same_environment=True,
            function_arn=stack.format_arn(
                service="lambda",
                resource="function",
                resource_name=props.notifier_function_name or shared.notifier,
                arn_format=ArnFormat.COLON_RESOURCE_NAME,
            ),
        )
        self.topic.add_subscription(subs.LambdaSubscription(notifier))
        role = iam.Role.from_role_name(self, "NotifierRole", props.notifier_role_name or shared.notifier_role)
        statements = [iam.PolicyStatement(actions=["ssm:GetParameter"], resources=[param.parameter_arn])]
        for ref in props.chat:
            kind, where = ref.webhook.split(":", 1)
            if kind == "ssm":
                action = "ssm:GetParameter"
                arn = stack.format_arn(service="ssm", resource="parameter", resource_name=where.lstrip("/"))
            else:
                action = "secretsmanager:GetSecretValue"
                # Secrets Manager appends a random 6-character suffix to a secret's ARN.
                arn = where if where.startswith("arn:") else stack.format_arn(
                    service="secretsmanager",
                    resource="secret",
                    resource_name=f"{where}-??????",
                    arn_format=ArnFormat.COLON_RESOURCE_NAME,
                )
            statements.append(iam.PolicyStatement(actions=[action], resources=[arn]))
        iam.Policy(
            self,
            "NotifierAccess",
            policy_name=model_names.notifier_policy,
            roles=[role],
            statements=statements,
        )
