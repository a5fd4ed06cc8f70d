"""mlpack-[<env>-]shared: what every model stack of one environment in one account and region shares.

- API Gateway's account-level CloudWatch Logs role (access and execution logs need it; there is
  one per account and region, so no model stack may own it);
- the chat notifier (handlers/notify.py with handlers/names.py, zip-packaged from the handlers
  folder, no Docker), only when some model has chat targets. It has deterministic names
  (mlpack-[<env>-]notifier, its role mlpack-[<env>-]notifier-<region>: handlers/names.py
  SharedNames) so model stacks subscribe it and grant it access without cross-stack exports. One
  notifier per environment: its function is told the environment (names.ENV_ENVIRONMENT) and
  parses only that environment's topic and alarm names. SNS invokes it asynchronously: an event that
  fails every attempt goes to its on-failure destination, an encrypted SQS queue
  (mlpack-[<env>-]notifier-failures, kept 14 days), instead of vanishing. Its concurrency is reserved
  (NOTIFIER_RESERVED_CONCURRENCY: no model can starve it, and it cannot starve a model; events that
  find it busy wait in Lambda's asynchronous queue). Its role has a permissions boundary: whatever
  model stacks attach to it, it can read only SSM parameters under /mlpack/ and secrets under
  mlpack/ (the models' namespaces, packager/config/spec.py), write its own logs and its failure queue.
- the platform's alarms, on their own topic mlpack-[<env>-]shared-alarms (never through the notifier,
  whose failures they report; emails from the context key mlpack:platform_email): the notifier's errors
  and failure queue, when there is a notifier, and the account's claimed concurrency (AWS/Lambda
  ClaimedAccountConcurrency above ACCOUNT_CONCURRENCY_ALARM_PCT of the account's limit), always.

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

from aws_cdk import ArnFormat, Duration, RemovalPolicy, Stack, Token
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_destinations as destinations
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subs
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from handlers import names
from stacks import nag

HANDLERS_DIR = Path(__file__).resolve().parent.parent / "handlers"
# Alarm notifications are few and wait in Lambda's asynchronous queue when the notifier is busy (up to 6 h,
# 2 retries), so a handful of executions is enough; stacks/assembly.py counts it in the reservations.
NOTIFIER_RESERVED_CONCURRENCY = 5
ACCOUNT_CONCURRENCY_ALARM_PCT = 90.0


class SharedStack(Stack):
    def __init__(
        self,
        scope: Construct,
        id: str | None = None,
        *,
        with_notifier: bool,
        environment: str | None = None,
        account_concurrency: int = 1000,
        platform_emails: tuple[str, ...] = (),
        **kwargs: Any,
    ) -> None:
        """id: the stack's name; None (default) = mlpack-[<environment>-]shared (names.SharedNames).
        environment: the environment whose model stacks share this one; None (default) = none.
        account_concurrency: the account's Lambda concurrency limit, for its alarm (default 1000).
        platform_emails: subscribed to the platform topic (each confirms once); () (default) = none."""
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
        self.platform_topic = self._platform_topic(platform_emails)
        self.alarms: dict[str, cw.Alarm] = {}
        self.notifier: lambda_.Function | None = None
        self.notifier_failures: sqs.Queue | None = None
        if with_notifier:
            self.notifier = self._notifier()
        self._add_alarm(
            "account-concurrency",
            f"Lambda concurrency claimed in the account above {ACCOUNT_CONCURRENCY_ALARM_PCT:g}% of its "
            f"{account_concurrency} (reservations included): unreserved functions are about to be throttled",
            cw.Metric(namespace="AWS/Lambda", metric_name="ClaimedAccountConcurrency", statistic="Maximum",
                      period=Duration.minutes(1)),
            threshold=round(account_concurrency * ACCOUNT_CONCURRENCY_ALARM_PCT / 100, 3),
            evaluation_periods=5,
            datapoints_to_alarm=3,
        )

    def _platform_topic(self, emails: tuple[str, ...]) -> sns.Topic:
        """The topic of the shared stack's alarms, which CloudWatch may publish to for those alarms only."""
        where = f" ({self.mlpack_environment})" if self.mlpack_environment else ""
        topic = sns.Topic(self, "PlatformAlarms", topic_name=self.shared_names.platform_topic,
                          display_name=f"mlpack platform alarms{where}", enforce_ssl=True)
        topic.add_to_resource_policy(iam.PolicyStatement(
            sid="CloudWatchAlarms",
            actions=["sns:Publish"],
            resources=[topic.topic_arn],
            principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
            conditions={"ArnLike": {"aws:SourceArn": self.format_arn(
                service="cloudwatch", resource="alarm", resource_name=self.shared_names.alarm("*"),
                arn_format=ArnFormat.COLON_RESOURCE_NAME)}},
        ))
        for email in emails:
            topic.add_subscription(subs.EmailSubscription(email))
        return topic

    def _add_alarm(self, what: str, description: str, metric: cw.IMetric, *, threshold: float,
                   evaluation_periods: int = 1, datapoints_to_alarm: int | None = None) -> cw.Alarm:
        """One platform alarm, mlpack-[<env>-]shared-<what>, to the platform topic on ALARM and OK; a period
        without data is not breaching."""
        where = f" in {self.mlpack_environment}" if self.mlpack_environment else ""
        alarm = cw.Alarm(
            self, f"Alarm-{what}", alarm_name=self.shared_names.alarm(what),
            alarm_description=f"mlpack platform{where}: {description}", metric=metric, threshold=threshold,
            comparison_operator=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD
            if threshold == 1 else cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
            evaluation_periods=evaluation_periods, datapoints_to_alarm=datapoints_to_alarm,
            treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
        )
        action = cw_actions.SnsAction(self.platform_topic)
        alarm.add_alarm_action(action)
        alarm.add_ok_action(action)
        self.alarms[what] = alarm
        return alarm

    def _notifier(self) -> lambda_.Function:
        logs_group = logs.LogGroup(
            self,
            "NotifierLogs",
            log_group_name=self.shared_names.notifier_log_group,
            retention=logs.RetentionDays.ONE_MONTH,
            removal_policy=RemovalPolicy.DESTROY,
        )
        failures = sqs.Queue(
            self,
            "NotifierFailures",
            queue_name=self.shared_names.notifier_failures,
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=Duration.days(14),
        )
        nag.acknowledge(failures, "AwsSolutions-SQS3")
        self.notifier_failures = failures
        role = iam.Role(
            self,
            "NotifierRole",
            role_name=self.shared_names.notifier_role,
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description="mlpack chat notifier; model stacks attach read access to their webhook refs",
            permissions_boundary=self._notifier_boundary(logs_group, failures),
        )
        logs_group.grant_write(role)
        function = lambda_.Function(
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
            reserved_concurrent_executions=NOTIFIER_RESERVED_CONCURRENCY,
            retry_attempts=2,
            on_failure=destinations.SqsDestination(failures),
        )
        self._add_alarm(
            "notifier-errors",
            "The chat notifier failed an invocation (no chat target got an alarm; see its log)",
            function.metric_errors(period=Duration.minutes(1), statistic="Sum"),
            threshold=1,
        )
        self._add_alarm(
            "notifier-failures",
            f"Alarm notifications the chat notifier gave up on wait in SQS queue {self.shared_names.notifier_failures}",
            failures.metric_approximate_number_of_messages_visible(period=Duration.minutes(1), statistic="Maximum"),
            threshold=1,
        )
        return function

    def _notifier_boundary(self, logs_group: logs.LogGroup, failures: sqs.Queue) -> iam.ManagedPolicy:
        """The most the notifier's role may ever do, whatever model stacks attach to it: read SSM parameters
        under /mlpack/ and secrets under mlpack/ (every model's chat parameter and webhook namespace),
        decrypt them through those services, write its logs and its failure queue."""
        def arn(service: str, resource: str, name: str, fmt: ArnFormat = ArnFormat.SLASH_RESOURCE_NAME) -> str:
            return self.format_arn(service=service, resource=resource, resource_name=name, arn_format=fmt)

        policy = iam.ManagedPolicy(
            self,
            "NotifierBoundary",
            description="mlpack chat notifier: the most its role may do (a permissions boundary)",
            statements=[
                iam.PolicyStatement(sid="ChatReferences", actions=["ssm:GetParameter"],
                                    resources=[arn("ssm", "parameter", f"{names.PREFIX}/*")]),
                iam.PolicyStatement(sid="Webhooks", actions=["secretsmanager:GetSecretValue"],
                                    resources=[arn("secretsmanager", "secret", f"{names.PREFIX}/*",
                                                   ArnFormat.COLON_RESOURCE_NAME)]),
                iam.PolicyStatement(sid="DecryptThroughThem", actions=["kms:Decrypt"], resources=["*"],
                                    conditions={"StringEquals": {"kms:ViaService": [
                                        f"ssm.{self.region}.amazonaws.com",
                                        f"secretsmanager.{self.region}.amazonaws.com"]}}),
                iam.PolicyStatement(sid="OwnLogs", actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                                    resources=[logs_group.log_group_arn]),
                iam.PolicyStatement(sid="FailureQueue",
                                    actions=["sqs:SendMessage", "sqs:GetQueueAttributes", "sqs:GetQueueUrl"],
                                    resources=[failures.queue_arn]),
            ],
        )
        # cdk-nag names each wildcard resource in its finding, with CloudFormation's pseudo parameters as <AWS::...>
        region = "<AWS::Region>" if Token.is_unresolved(self.region) else self.region
        account = "<AWS::AccountId>" if Token.is_unresolved(self.account) else self.account
        where = f"arn:<AWS::Partition>:{{}}:{region}:{account}:{{}}{names.PREFIX}/*"
        nag.acknowledge(policy, "AwsSolutions-IAM5#boundary", "Resource::*",
                        f"Resource::{where.format('ssm', 'parameter/')}",
                        f"Resource::{where.format('secretsmanager', 'secret:')}")
        return policy
