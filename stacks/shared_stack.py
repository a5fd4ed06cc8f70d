"""mlpack-shared: what every model stack in one account and region shares.

- API Gateway's account-level CloudWatch Logs role (access and execution logs need it; there is
  one per account and region, so no model stack may own it);
- the chat notifier (handlers/notify.py with handlers/names.py, zip-packaged from the handlers
  folder, no Docker), only when some model has chat targets. It has deterministic names
  (mlpack-notifier, handlers/names.py) so model stacks subscribe it and grant it access without
  cross-stack exports.

Never calls AWS.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from handlers import names
from stacks import nag

HANDLERS_DIR = Path(__file__).resolve().parent.parent / "handlers"


class SharedStack(Stack):
    def __init__(self, scope: Construct, id: str = names.SHARED_STACK, *, with_notifier: bool, **kwargs: Any) -> None:
        super().__init__(scope, id, description="mlpack: shared by all model stacks", **kwargs)
        self.api_logs_role = iam.Role(
            self,
            "ApiGatewayLogsRole",
            assumed_by=iam.ServicePrincipal("apigateway.amazonaws.com"),
            managed_policies=[
                iam.ManagedPolicy.from_aws_managed_policy_name("service-role/AmazonAPIGatewayPushToCloudWatchLogs")
            ],
        )
        nag.acknowledge(self.api_logs_role, nag.APIGW_LOGS)
        account = apigw.CfnAccount(self, "ApiGatewayAccount", cloud_watch_role_arn=self.api_logs_role.role_arn)
        # Keep the account setting when this stack goes: other APIs in the account may rely on it.
        account.apply_removal_policy(RemovalPolicy.RETAIN)
        self.notifier: lambda_.Function | None = None
        if with_notifier:
            self.notifier = self._notifier()

    def _notifier(self) -> lambda_.Function:
        logs_group = logs.LogGroup(
            self,
            "NotifierLogs",
            log_group_name=names.NOTIFIER_LOG_GROUP,
            retention=logs.RetentionDays.ONE_MONTH,
            removal_policy=RemovalPolicy.DESTROY,
        )
        role = iam.Role(
            self,
            "NotifierRole",
            role_name=names.NOTIFIER,
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description="mlpack chat notifier; model stacks attach read access to their webhook refs",
        )
        logs_group.grant_write(role)
        return lambda_.Function(
            self,
            "Notifier",
            function_name=names.NOTIFIER,
            role=role,
            log_group=logs_group,
            description="mlpack: formats CloudWatch alarm notifications for Slack, Teams or a JSON webhook",
            runtime=lambda_.Runtime.PYTHON_3_14,
            architecture=lambda_.Architecture.ARM_64,
            handler="notify.handler",
            memory_size=256,
            timeout=Duration.seconds(30),
            # only notify.py and the names it parses: the rest of handlers/ belongs to the model image
            code=lambda_.Code.from_asset(str(HANDLERS_DIR), exclude=["*", "!notify.py", "!names.py"]),
        )
