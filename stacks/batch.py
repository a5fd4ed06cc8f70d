"""Batch scoring of one model: a Step Functions state machine whose Distributed Map reads one S3 object
(CSV with a header, or JSON Lines), batches its rows (ItemBatcher), invokes the model's `live` alias
with each batch (handlers/batch.py answers it row by row) and writes the answers under an output prefix
(ResultWriter); an alarm on failed executions to the model's topic.

In: the model's [batch] section, its `live` alias, topic and reserved concurrency, and the model's
request schema (for the size of a row). Out: the state machine (named ModelNames.state_machine), its
role (S3 read under the input prefix, write under the output prefix, invoke the alias, run its own
child executions), its log group and alarm. `definition` builds the Amazon States Language document as
plain data (tests validate it with asl-validator); sizing is checked here, at synth, so a batch that
could not fit a child execution's payload or the function's timeout fails before a deploy, with the
figures.

An execution's input: {"key": "<object key under the input prefix>", "format": "csv" | "jsonl",
"output_prefix": "<prefix under the output prefix>/"} (`mlpack batch` starts one per object).

Never calls AWS.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from aws_cdk import ArnFormat, Duration, RemovalPolicy, Stack, Token
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sns as sns
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from handlers import contract
from handlers.names import ModelNames
from packager.config.spec import BatchSection
from packager.errors import DeployError
from stacks import nag
from stacks.function import retention

# Step Functions' limit on a state's input and output (a child execution's batch and its answer)
STATE_PAYLOAD_BYTES = 256 * 1024
BATCH_INPUT_OVERHEAD_BYTES = 2 * 1024  # {"Items": [...], "BatchInput": {...}} around the rows
# handler time per row assumed when checking a batch against the timeout: bench/bench_batch.py measures
# ~0.01-0.02 ms on one vCPU for the examples; this leaves room for wide models and JSON work
ASSUMED_MS_PER_ROW = 0.5
TIMEOUT_SHARE = 0.5  # a batch must fit in half the function's timeout
FUNCTION_ARN = "${FunctionArn}"  # substituted by CloudFormation (definition_substitutions)
INPUT_TYPES = {"csv": "CSV", "jsonl": "JSONL"}


@dataclass(frozen=True, kw_only=True)
class BatchProps:
    model_name: str
    environment: str | None
    batch: BatchSection
    timeout_s: int
    memory_mb: int
    reserved_concurrency: int | None
    request_schema: dict[str, Any]
    label_count: int
    log_retention_days: int
    ok_actions: bool = True  # notifications.ok_actions: also notify when the alarm returns to OK


def _widest(schema: Any) -> tuple[int, int]:
    """(values per row, characters of their column names) from the request schema: the record with the most
    properties, or the longest fixed row of numbers (names of 8 characters, as a CSV header would give them),
    anywhere in it."""
    best = (1, 8)
    if isinstance(schema, dict):
        props = schema.get("properties")
        if isinstance(props, dict) and props and "instances" not in props and "inputs" not in props:
            best = max(best, (len(props), sum(len(k) for k in props)))
        if isinstance(schema.get("maxItems"), int) and schema.get("minItems") == schema.get("maxItems"):
            best = max(best, (int(schema["maxItems"]), 8 * int(schema["maxItems"])))
        children: list[Any] = list(schema.values())
    else:
        children = list(schema) if isinstance(schema, list) else []
    for v in children:
        best = max(best, _widest(v))
    return best


def row_bytes(props: BatchProps) -> tuple[int, int]:
    """(bytes of one row in a batch event, bytes of its answer), estimated generously: a row as a record of
    text, as ItemReader reads CSV ("<column>":"<12 characters>", each), each key column 40 bytes more;
    an answer as a label and one score per class."""
    values, names = _widest(props.request_schema)
    keys = len(props.batch.key_columns) * 40
    given = names + values * 18 + keys + 4
    answer = 48 + max(props.label_count, 1) * 40 + keys
    return given, answer


def check(props: BatchProps) -> list[str]:
    """What makes the [batch] section impossible to run, with the figures; [] when it fits."""
    b = props.batch
    where = f"models/{props.model_name}/mlpack.toml"
    problems = []
    given, answer = row_bytes(props)
    room = STATE_PAYLOAD_BYTES - BATCH_INPUT_OVERHEAD_BYTES
    for what, per in (("input", given), ("answer", answer)):
        if b.rows_per_invocation * per > room:
            problems.append(
                f"{where}: batch.rows_per_invocation = {b.rows_per_invocation}: a batch's {what} would be about "
                f"{b.rows_per_invocation * per // 1024} KB ({per} bytes a row), over Step Functions' "
                f"{STATE_PAYLOAD_BYTES // 1024} KB per state; use at most {room // per}")
    cpus = max(props.memory_mb / contract.MB_PER_VCPU, 0.1)
    ms = b.rows_per_invocation * ASSUMED_MS_PER_ROW / min(cpus, 1.0)
    if ms > props.timeout_s * 1000 * TIMEOUT_SHARE:
        problems.append(
            f"{where}: batch.rows_per_invocation = {b.rows_per_invocation}: about {ms / 1000:.1f} s a batch at "
            f"{ASSUMED_MS_PER_ROW} ms a row on {props.memory_mb} MB, over half of runtime.timeout_s = "
            f"{props.timeout_s}; use fewer rows or a longer timeout")
    rc = props.reserved_concurrency
    if rc is not None and b.max_concurrency >= rc:
        problems.append(
            f"{where}: batch.max_concurrency = {b.max_concurrency} must be below the function's reserved "
            f"concurrency ({rc}), so the API keeps at least one environment; lower it or raise "
            "runtime.reserved_concurrency")
    return problems


def _map_state(props: BatchProps, fmt: str, name: str) -> dict[str, Any]:
    """One Distributed Map; state names are unique across the whole machine, children included."""
    b = props.batch
    reader: dict[str, Any] = {"InputType": INPUT_TYPES[fmt]}
    if fmt == "csv":
        reader["CSVHeaderLocation"] = "FIRST_ROW"
    return {
        "Type": "Map",
        "Comment": f"score the rows of a {fmt.upper()} object, {b.rows_per_invocation} rows an invocation",
        "ItemReader": {
            "Resource": "arn:aws:states:::s3:getObject",
            "ReaderConfig": reader,
            "Parameters": {"Bucket": b.input_bucket, "Key.$": "$.key"},
        },
        "ItemBatcher": {
            "MaxItemsPerBatch": b.rows_per_invocation,
            "MaxInputBytesPerBatch": STATE_PAYLOAD_BYTES - BATCH_INPUT_OVERHEAD_BYTES,
            "BatchInput": {"source": "csv" if fmt == "csv" else "json", "key_columns": list(b.key_columns)},
        },
        "ItemProcessor": {
            "ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "EXPRESS"},
            "StartAt": f"{name}Batch",
            "States": {
                f"{name}Batch": {
                    "Type": "Task",
                    "Resource": "arn:aws:states:::lambda:invoke",
                    "Parameters": {"FunctionName": FUNCTION_ARN, "Payload.$": "$"},
                    "OutputPath": "$.Payload",
                    "Retry": [{
                        "ErrorEquals": ["Lambda.TooManyRequestsException", "Lambda.ServiceException",
                                        "Lambda.SdkClientException", "Lambda.AWSLambdaException"],
                        "IntervalSeconds": 2, "MaxAttempts": 5, "BackoffRate": 2.0,
                    }],
                    "End": True,
                },
            },
        },
        "MaxConcurrency": b.max_concurrency,
        "ToleratedFailurePercentage": b.tolerated_failure_pct,
        "ResultWriter": {
            "Resource": "arn:aws:states:::s3:putObject",
            "Parameters": {"Bucket": b.output_bucket, "Prefix.$": "$.output_prefix"},
        },
        "End": True,
    }


def definition(props: BatchProps) -> dict[str, Any]:
    """The state machine's Amazon States Language document (FunctionArn left to substitute)."""
    return {
        "Comment": f"mlpack batch scoring of {props.model_name} (mlpack batch)",
        "StartAt": "Format",
        "States": {
            "Format": {
                "Type": "Choice",
                "Choices": [{"Variable": "$.format", "StringEquals": "jsonl", "Next": "ScoreJsonLines"}],
                "Default": "ScoreCsv",
            },
            "ScoreCsv": _map_state(props, "csv", "ScoreCsv"),
            "ScoreJsonLines": _map_state(props, "jsonl", "ScoreJsonLines"),
        },
    }


class ModelBatch(Construct):
    """The state machine, its role, log group and failed-executions alarm."""

    def __init__(self, scope: Construct, id: str, *, props: BatchProps, alias: lambda_.IFunction,
                 topic: sns.ITopic) -> None:
        super().__init__(scope, id)
        problems = check(props)
        if problems:
            raise DeployError(problems[0] if len(problems) == 1 else "; ".join(problems),
                              hint="see docs/BATCH.md (sizing)")
        b = props.batch
        names = ModelNames(props.model_name, props.environment)
        stack = Stack.of(self)
        self.log_group = logs.LogGroup(self, "Logs", log_group_name=f"/aws/vendedlogs/states/{names.state_machine}",
                                       retention=retention(props.log_retention_days),
                                       removal_policy=RemovalPolicy.DESTROY)
        self.role = iam.Role(self, "Role", assumed_by=iam.ServicePrincipal("states.amazonaws.com"),
                             description=f"mlpack batch scoring of {props.model_name}")
        colon = ArnFormat.COLON_RESOURCE_NAME
        own = stack.format_arn(service="states", resource="stateMachine", resource_name=names.state_machine,
                               arn_format=colon)
        executions = stack.format_arn(service="states", resource="execution",
                                      resource_name=f"{names.state_machine}:*", arn_format=colon)
        express = stack.format_arn(service="states", resource="express",
                                   resource_name=f"{names.state_machine}/*", arn_format=colon)
        inputs = f"arn:{stack.partition}:s3:::{b.input_bucket}/{b.input_prefix}*"
        outputs = f"arn:{stack.partition}:s3:::{b.output_bucket}/{b.output_prefix}*"
        for actions, resources in (
            (["s3:GetObject"], [inputs]),
            (["s3:PutObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"], [outputs]),
            (["lambda:InvokeFunction"], [alias.function_arn]),
            (["states:StartExecution"], [own]),
            (["states:DescribeExecution", "states:StopExecution"], [executions, express]),
        ):
            self.role.add_to_policy(iam.PolicyStatement(actions=actions, resources=resources))
        self.state_machine = sfn.StateMachine(
            self, "StateMachine",
            state_machine_name=names.state_machine,
            definition_body=sfn.DefinitionBody.from_string(json.dumps(definition(props), sort_keys=True)),
            definition_substitutions={"FunctionArn": alias.function_arn},
            role=self.role,
            logs=sfn.LogOptions(destination=self.log_group, level=sfn.LogLevel.ALL, include_execution_data=False),
            tracing_enabled=True,
        )
        self.state_machine.node.add_dependency(self.role)
        # cdk-nag names a finding by the resource as the template spells it, pseudo parameters in <>
        region = "<AWS::Region>" if Token.is_unresolved(stack.region) else stack.region
        account = "<AWS::AccountId>" if Token.is_unresolved(stack.account) else stack.account
        states = f"arn:<AWS::Partition>:states:{region}:{account}"
        nag.acknowledge(self.role, "AwsSolutions-IAM5#batch",
                        f"Resource::arn:<AWS::Partition>:s3:::{b.input_bucket}/{b.input_prefix}*",
                        f"Resource::arn:<AWS::Partition>:s3:::{b.output_bucket}/{b.output_prefix}*",
                        f"Resource::{states}:execution:{names.state_machine}:*",
                        f"Resource::{states}:express:{names.state_machine}/*", "Resource::*")
        self.alarm = cw.Alarm(
            self, "FailedAlarm",
            alarm_name=names.alarm("batch-failed"),
            alarm_description=f"A batch-scoring execution of {props.model_name} failed, timed out or was aborted "
                              "(mlpack batch; see the execution's map run for the failed batches)",
            metric=cw.MathExpression(
                expression="failed + timedout + aborted",
                using_metrics={w: self.state_machine.metric(m, statistic="Sum", period=Duration.minutes(5))
                               for w, m in (("failed", "ExecutionsFailed"), ("timedout", "ExecutionsTimedOut"),
                                            ("aborted", "ExecutionsAborted"))},
                label="failed executions", period=Duration.minutes(5)),
            threshold=1,
            evaluation_periods=1,
            comparison_operator=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
        )
        self.alarm.add_alarm_action(cw_actions.SnsAction(topic))
        if props.ok_actions:
            self.alarm.add_ok_action(cw_actions.SnsAction(topic))

