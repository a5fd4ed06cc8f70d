"""mlpack-[<env>-]shared: what every model stack of one environment in one account and region shares.

- API Gateway's account-level CloudWatch Logs role (access and execution logs need it; there is
  one per account and region, so no model stack may own it);
- the chat notifier (handlers/notify.py with handlers/names.py, zip-packaged from the handlers
  folder, no Docker), only when some model has chat targets. It has deterministic names
  (mlpack-[<env>-]notifier, its role mlpack-[<env>-]notifier-<region>: handlers/names.py
  SharedNames) so model stacks subscribe it and grant it access without cross-stack exports. One
  notifier per environment: its function is told the environment (names.ENV_ENVIRONMENT) and
  parses only that environment's topic and alarm names.

Environments sharing an account and region each have their own shared stack; API Gateway's
account setting is one per account and region whatever the environments, so each of those stacks
sets it to its own role (the last deploy wins; every such role has the same managed policy, so any
of them works for every API). The setting and the role are both retained when a stack goes: the
setting may name the role of a stack that is gone, and a deleted role would stop the execution
and access logs of every API in the account and region.

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
    def __init__(
        self,
        scope: Construct,
        id: str | None = None,
        *,
        with_notifier: bool,
        environment: str | None = None,
        **kwargs: Any,
    ) -> None:
        """id: the stack's name; None (default) = mlpack-[<environment>-]shared (names.SharedNames).
        environment: the environment whose model stacks share this one; None (default) = none."""
        stack_id = id or names.SharedNames(environment, region="").stack  # the stack name has no region
        where = f" of environment {environment}" if environment else ""
        super().__init__(scope, stack_id, description=f"mlpack: shared by all model stacks{where}", **kwargs)
        self.mlpack_environment = environment
        self.shared_names = names.SharedNames(environment, self.region)
        self.api_logs_role = iam.Role(
            self,
            "ApiGatewayLogsRole",
            assumed_by=iam.ServicePrincipal("apigateway.amazonaws.com"),
            managed_policies=[
                iam.ManagedPolicy.from_aws_managed_policy_name("service-role/AmazonAPIGatewayPushToCloudWatchLogs")
            ],
        )
        nag.acknowledge(self.api_logs_role, nag.APIGW_LOGS)
        self.api_logs_role.apply_removal_policy(RemovalPolicy.RETAIN)
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
            log_group_name=self.shared_names.notifier_log_group,
            retention=logs.RetentionDays.ONE_MONTH,
            removal_policy=RemovalPolicy.DESTROY,
        )
        role = iam.Role(
            self,
            "NotifierRole",
            role_name=self.shared_names.notifier_role,
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description="mlpack chat notifier; model stacks attach read access to their webhook refs",
        )
        logs_group.grant_write(role)
        return lambda_.Function(
            self,
            "Notifier",
            function_name=self.shared_names.notifier,
            role=role,
            log_group=logs_group,
            description="mlpack: formats CloudWatch alarm notifications for Slack, Teams or a JSON webhook",
            runtime=lambda_.Runtime.PYTHON_3_14,
            architecture=lambda_.Architecture.ARM_64,
            handler="notify.handler",
            memory_size=256,
            timeout=Duration.seconds(30),
            environment={names.ENV_ENVIRONMENT: self.mlpack_environment} if self.mlpack_environment else None,
            # only notify.py and the names it parses: the rest of handlers/ belongs to the model image
            code=lambda_.Code.from_asset(str(HANDLERS_DIR), exclude=["*", "!notify.py", "!names.py"]),
        )
