"""The model's Lambda function: a container image pinned by digest, its log group, a `live` alias
on a published version, optional concurrency settings and optional gradual deployment.

Old versions stay, for rollback. Every deploy of a new image publishes a new version (the
function's current_version) and moves `live` to it. The version resource is retained
(RemovalPolicy.RETAIN): when the next deploy replaces it, CloudFormation drops it from the stack
but does not delete it, so Lambda keeps it and an emergency rollback can point `live` back at it
(`aws lambda update-alias --function-name mlpack-[<env>-]<model> --name live --function-version N`),
without a build or a deploy. Each version's description says which image and model version it runs
(`mlpack <model> <model_version> [env <env>] image sha256:<64 hex>`), so the version to go back to
is found through the Lambda API (list-versions-by-function) by digest or model version. Such a
flip is drift the stack does not know about: it lasts until a deploy changes the alias (a new
digest publishes a new version and `live` moves to it); a deploy that changes nothing about the
alias leaves it where the flip put it.

What "the last N versions" means in practice: nothing here prunes, and nothing counts. CloudFormation
retains every replaced version and Lambda keeps each until someone deletes it (`aws lambda
delete-function --function-name F --qualifier N`; never the version `live` points at), so N is
"every version deployed since the function was created". Retained versions cost storage: Lambda's
code storage quota (75 GB per region by default) counts every version of a .zip function; for an
image function like this one the bytes are the image in ECR, so each retained version is only
worth keeping while its digest is still in ECR (an ECR lifecycle rule that expires old images
takes the rollback target away; the version then fails to run). Prune old versions (and their
images) from time to time. `cdk destroy` deletes the function and with it every version.

Never builds or pulls an image (DockerImageCode.from_ecr only names it) and never calls AWS.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from aws_cdk import Duration, RemovalPolicy, Stack, Token
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_codedeploy as codedeploy
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from handlers import contract
from handlers.names import ModelNames, metric_namespace
from packager.errors import DeployError
from stacks import nag

ECR_URI_RE = re.compile(
    r"^(?P<account>\d{12})\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(?:\.cn)?/(?P<repo>.+)$"
)
LIVE_ALIAS = "live"


@dataclass(frozen=True, kw_only=True)
class EcrImage:
    """An image in ECR, pinned by digest (from mlpack.lock.json)."""

    account: str
    region: str
    repository_name: str
    digest: str

    @classmethod
    def parse(cls, repository: str, digest: str, *, origin: str) -> EcrImage:
        m = ECR_URI_RE.match(repository)
        if not m:
            raise DeployError(
                f"{origin}: repository {repository!r} is not an ECR repository; Lambda only runs images from ECR",
                hint="push the model to ECR: `mlpack push PROJECT` without --to (or with [registry].repository "
                "= '<account>.dkr.ecr.<region>.amazonaws.com/<repo>')",
            )
        return cls(account=m["account"], region=m["region"], repository_name=m["repo"], digest=digest)


@dataclass(frozen=True, kw_only=True)
class ModelFunctionProps:
    """Props of ModelFunction.

    model_name: the model's name; the function is named mlpack-[<environment>-]<model_name>.
    image: the ECR image (repository + digest) to run.
    model_version: the model version the image holds (mlpack.lock.json); in the version's description.
    environment: the environment (dev, prod, ...) the function belongs to; None (default) = none.
    arch: "x86_64" or "arm64"; must match the image.
    memory_mb, timeout_s: Lambda memory and timeout.
    max_batch_size: largest batch the handler accepts (env MLPACK_MAX_BATCH_SIZE).
    log_retention_days: retention of the function's log group.
    reserved_concurrency: reserved concurrency; None (default) = unreserved.
    provisioned_concurrency: provisioned concurrency on the live alias; 0 (default) = none.
    capture_rate, capture_exclude: drift capture (env MLPACK_CAPTURE_RATE, MLPACK_CAPTURE_EXCLUDE); 0 = off.
    """

    model_name: str
    image: EcrImage
    model_version: str = ""
    environment: str | None = None
    arch: str = "x86_64"
    memory_mb: int = 1024
    timeout_s: int = 29
    max_batch_size: int = contract.DEFAULT_MAX_BATCH
    log_retention_days: int = 30
    reserved_concurrency: int | None = None
    provisioned_concurrency: int = 0
    capture_rate: float = 0.0
    capture_exclude: tuple[str, ...] = ()


class ModelFunction(Construct):
    """DockerImageFunction + log group + `live` alias."""

    def __init__(self, scope: Construct, id: str, *, props: ModelFunctionProps) -> None:
        super().__init__(scope, id)
        self.props = props
        names = ModelNames(props.model_name, props.environment)
        # The stack's environment is the image's account and region (stacks/plan.py), so the name is enough
        # and the URI stays partition-correct. Lambda only pulls from ECR in its own region.
        stack = Stack.of(self)
        for have, want in ((stack.account, props.image.account), (stack.region, props.image.region)):
            if not Token.is_unresolved(have) and have != want:
                raise DeployError(
                    f"stack {stack.stack_name}: environment {stack.account}/{stack.region} differs from the image's "
                    f"{props.image.account}/{props.image.region}",
                    hint="deploy the model stack to the account and region of its ECR repository",
                )
        repo = ecr.Repository.from_repository_name(self, "Repository", props.image.repository_name)
        self.log_group = logs.LogGroup(
            self,
            "Logs",
            log_group_name=names.log_group,
            retention=retention(props.log_retention_days),
            removal_policy=RemovalPolicy.DESTROY,
        )
        self.function = lambda_.DockerImageFunction(
            self,
            "Function",
            function_name=names.function,
            description=function_description(props),
            code=lambda_.DockerImageCode.from_ecr(repo, tag_or_digest=props.image.digest),
            architecture=lambda_.Architecture.ARM_64 if props.arch == "arm64" else lambda_.Architecture.X86_64,
            memory_size=props.memory_mb,
            timeout=Duration.seconds(props.timeout_s),
            reserved_concurrent_executions=props.reserved_concurrency,
            log_group=self.log_group,
            # each published version outlives its replacement: `live` can be pointed back at it
            current_version_options=lambda_.VersionOptions(
                removal_policy=RemovalPolicy.RETAIN, description=version_description(props)
            ),
            environment={
                contract.ENV_MODEL_NAME: props.model_name,
                contract.ENV_MODEL_DIR: contract.MODEL_DIR,
                contract.ENV_MAX_BATCH: str(props.max_batch_size),
                contract.ENV_METRICS_NAMESPACE: metric_namespace(props.environment),
                contract.ENV_METRICS: "on",
                **({contract.ENV_CAPTURE_RATE: f"{props.capture_rate:g}"} if props.capture_rate else {}),
                **({contract.ENV_CAPTURE_EXCLUDE: ",".join(props.capture_exclude)} if props.capture_exclude else {}),
            },
        )
        nag.acknowledge(self.function, nag.LAMBDA_BASIC)
        # A new digest changes the function's code, so current_version publishes a new version and
        # the alias (and CodeDeploy, when configured) moves traffic to it.
        self.alias = lambda_.Alias(
            self,
            "Live",
            alias_name=LIVE_ALIAS,
            version=self.function.current_version,
            provisioned_concurrent_executions=props.provisioned_concurrency or None,
        )


LAMBDA_DESCRIPTION_MAX = 256  # characters, for a function's and a version's description


def function_description(props: ModelFunctionProps) -> str:
    env = f" in {props.environment}" if props.environment else ""
    return f"mlpack model {props.model_name}{env} (image {props.image.digest[:19]})"[:LAMBDA_DESCRIPTION_MAX]


def version_description(props: ModelFunctionProps) -> str:
    """`mlpack <model> <model_version> [env <env>] image sha256:<64 hex>`: which image a published
    version runs, readable back through the Lambda API. The digest is never cut: what does not fit in
    Lambda's 256 characters is cut from the model version."""
    env = f" env {props.environment}" if props.environment else ""
    tail = f"{env} image {props.image.digest}"
    head = f"mlpack {props.model_name} {props.model_version or '?'}"
    return head[: max(LAMBDA_DESCRIPTION_MAX - len(tail), 0)] + tail


@dataclass(frozen=True, kw_only=True)
class GradualDeploymentProps:
    """Props of GradualDeployment.

    strategy: "canary" (percent first, the rest after interval) or "linear" (percent every interval).
    percent, interval_minutes: traffic step and wait.
    alarms: alarms that roll the deployment back when they fire.
    """

    strategy: str
    percent: int = 10
    interval_minutes: int = 5
    alarms: tuple[cw.IAlarm, ...] = ()


class GradualDeployment(Construct):
    """A CodeDeploy deployment group that shifts the live alias to a new version step by step."""

    def __init__(self, scope: Construct, id: str, *, alias: lambda_.Alias, props: GradualDeploymentProps) -> None:
        super().__init__(scope, id)
        interval = Duration.minutes(props.interval_minutes)
        routing: codedeploy.TrafficRouting
        if props.strategy == "canary":
            routing = codedeploy.TrafficRouting.time_based_canary(interval=interval, percentage=props.percent)
        else:
            routing = codedeploy.TrafficRouting.time_based_linear(interval=interval, percentage=props.percent)
        config = codedeploy.LambdaDeploymentConfig(self, "Config", traffic_routing=routing)
        self.group = codedeploy.LambdaDeploymentGroup(
            self,
            "Group",
            alias=alias,
            deployment_config=config,
            alarms=list(props.alarms),
            auto_rollback=codedeploy.AutoRollbackConfig(failed_deployment=True, deployment_in_alarm=True),
        )
        nag.acknowledge(self, nag.CODEDEPLOY_LAMBDA)


def retention(days: int) -> logs.RetentionDays:
    """The RetentionDays member for a day count (one of packager/config/spec.py's log_retention_days choices).
    jsii's Python enum is keyed by member name, not by days, hence the table."""
    names = {
        1: "ONE_DAY",
        3: "THREE_DAYS",
        5: "FIVE_DAYS",
        7: "ONE_WEEK",
        14: "TWO_WEEKS",
        30: "ONE_MONTH",
        60: "TWO_MONTHS",
        90: "THREE_MONTHS",
        120: "FOUR_MONTHS",
        150: "FIVE_MONTHS",
        180: "SIX_MONTHS",
        365: "ONE_YEAR",
        400: "THIRTEEN_MONTHS",
        545: "EIGHTEEN_MONTHS",
        731: "TWO_YEARS",
        1096: "THREE_YEARS",
        1827: "FIVE_YEARS",
        2192: "SIX_YEARS",
        2557: "SEVEN_YEARS",
        2922: "EIGHT_YEARS",
        3288: "NINE_YEARS",
        3653: "TEN_YEARS",
    }
    return logs.RetentionDays(names[days])
