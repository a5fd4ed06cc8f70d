"""The one place that creates boto3 clients: the current account and region, ECR repositories
(looked up, or created with scan-on-push, immutable tags and a lifecycle rule for untagged images),
ECR's registry credentials, and a model function's published versions and `live` alias (the emergency
rollback), the batch state machine's executions and map runs and the S3 listings `mlpack batch` needs,
and, read only, what `mlpack status` and `mlpack logs` ask (stacks, alarms and their history,
metric data 500 queries to a request, log events; typed as packager/fleet/facts.py's records). botocore
failures become one clear RegistryError line each.

Enters: an ECR registry (account and region, parsed from its host name) and repository names.
Leaves: plain values: the account's registry, whether a repository exists, `Credentials` for the
registry API. Must not speak HTTP to registries (that is packager/registry/transport.py) and must not
import build code; packager/registry/destination.py and the release commands are its callers.
"""

from __future__ import annotations

import base64
import json
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import boto3
import botocore.exceptions as bce

from packager.errors import DeployError, RegistryError
from packager.fleet.facts import AlarmChange, AlarmFacts, LogEvent, MetricQuery, Series, StackFacts
from packager.registry.transport import Credentials

ECR_HOST_RE = re.compile(r"^(\d{12})\.dkr\.ecr(?:-fips)?\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?$")
UNTAGGED_EXPIRY_DAYS = 14
LIFECYCLE_POLICY = json.dumps({"rules": [{
    "rulePriority": 1,
    "description": f"mlpack: expire untagged images after {UNTAGGED_EXPIRY_DAYS} days",
    "selection": {"tagStatus": "untagged", "countType": "sinceImagePushed", "countUnit": "days",
                  "countNumber": UNTAGGED_EXPIRY_DAYS},
    "action": {"type": "expire"},
}]}, sort_keys=True)

T = TypeVar("T")


@dataclass(frozen=True)
class EcrRegistry:
    account: str
    region: str

    @property
    def host(self) -> str:
        suffix = ".cn" if self.region.startswith("cn-") else ""
        return f"{self.account}.dkr.ecr.{self.region}.amazonaws.com{suffix}"


def parse_ecr_host(registry: str) -> EcrRegistry | None:
    """The account and region of an ECR registry host name, or None for any other registry."""
    m = ECR_HOST_RE.match(registry)
    return EcrRegistry(account=m.group(1), region=m.group(2)) if m else None


class Aws:
    """boto3 behind one door. `session` is the seam (tests hand in a moto-backed session)."""

    def __init__(self, session: boto3.Session | None = None, *, region: str | None = None) -> None:
        if session is None:
            try:
                session = boto3.Session()
            except bce.ProfileNotFound as e:
                raise RegistryError(f"cannot use AWS: {e}",
                                    hint="set AWS_PROFILE to a profile in ~/.aws/config, or unset it") from e
        self.session = session
        self.region = region or self.session.region_name
        self.calls: dict[str, int] = {}  # requests made by the status and logs methods, by action
        self._calls_lock = threading.Lock()

    def _client(self, service: str, region: str | None = None) -> Any:
        region = region or self.region
        if not region:
            raise RegistryError("no AWS region is set",
                                hint="set AWS_REGION (or AWS_DEFAULT_REGION, or region in ~/.aws/config), "
                                     "or push to an explicit registry with --to")
        # every partition botocore knows (aws, aws-cn, aws-us-gov, ...), not only the commercial ones
        known = [r for p in self.session.get_available_partitions()
                 for r in self.session.get_available_regions(service, partition_name=p)]
        if known and region not in known:
            raise RegistryError(f"AWS region {region!r} does not exist for {service}",
                                hint=f"check AWS_REGION / --to (regions look like eu-west-1, us-east-1); "
                                     f"known: {', '.join(sorted(known)[:6])}, ...")
        return self.session.client(service, region_name=region)

    def default_registry(self) -> EcrRegistry:
        """ECR of the current account and region."""
        sts = self._client("sts")
        ident = _call("sts:GetCallerIdentity", "find the current AWS account", sts.get_caller_identity)
        return EcrRegistry(account=str(ident["Account"]), region=str(sts.meta.region_name))

    def repository_exists(self, registry: EcrRegistry, name: str) -> bool:
        """Whether the repository exists (ecr:DescribeRepositories: asks, changes nothing)."""
        ecr = self._client("ecr", registry.region)
        target = f"repository {name} in {registry.host}"
        try:
            ecr.describe_repositories(registryId=registry.account, repositoryNames=[name])
            return True
        except bce.ClientError as e:
            if _code(e) != "RepositoryNotFoundException":
                raise _translate(e, "ecr:DescribeRepositories", f"look up {target}") from e
            return False
        except bce.BotoCoreError as e:
            raise _translate(e, "ecr:DescribeRepositories", f"look up {target}") from e

    def ensure_repository(self, registry: EcrRegistry, name: str) -> bool:
        """Create the repository when missing (scan on push, immutable tags, untagged images expire).
        Returns True when it was created."""
        return not self.repository_exists(registry, name) and self.create_repository(registry, name)

    def create_repository(self, registry: EcrRegistry, name: str) -> bool:
        """Create the repository (scan on push, immutable tags, untagged images expire) without looking
        it up first. Returns False when it already exists (another push created it meanwhile)."""
        ecr = self._client("ecr", registry.region)
        target = f"repository {name} in {registry.host}"
        try:
            ecr.create_repository(
                registryId=registry.account,
                repositoryName=name,
                imageTagMutability="IMMUTABLE",
                imageScanningConfiguration={"scanOnPush": True},
                tags=[{"Key": "managed-by", "Value": "mlpack"}],
            )
        except bce.ClientError as e:
            if _code(e) == "RepositoryAlreadyExistsException":  # another push created it meanwhile
                return False
            raise _translate(e, "ecr:CreateRepository", f"create {target}") from e
        except bce.BotoCoreError as e:
            raise _translate(e, "ecr:CreateRepository", f"create {target}") from e
        _call("ecr:PutLifecyclePolicy", f"set the lifecycle policy of {target}", ecr.put_lifecycle_policy,
              registryId=registry.account, repositoryName=name, lifecyclePolicyText=LIFECYCLE_POLICY)
        return True

    def registry_credentials(self, registry: EcrRegistry) -> Credentials:
        """Basic-auth credentials for ECR's registry API, from GetAuthorizationToken."""
        ecr = self._client("ecr", registry.region)
        out = _call("ecr:GetAuthorizationToken", f"get a login token for {registry.host}",
                    ecr.get_authorization_token, registryIds=[registry.account])
        try:
            token = out["authorizationData"][0]["authorizationToken"]
            user, _, password = base64.b64decode(token).decode().partition(":")
        except (KeyError, IndexError, ValueError) as e:
            raise RegistryError(f"{registry.host}: ECR returned an authorization token mlpack cannot read") from e
        if not password:
            raise RegistryError(f"{registry.host}: ECR returned an authorization token without a password")
        return Credentials(username=user, password=password)

    # --- Lambda: the live alias (`mlpack rollback --live`) ---------------------------------------------

    def function_versions(self, function: str, region: str) -> list[tuple[str, str]]:
        """(version, description) of every published version of the function (lambda:ListVersionsByFunction)."""
        client = self._client("lambda", region)
        out: list[tuple[str, str]] = []
        marker: str | None = None
        while True:
            page = _call("lambda:ListVersionsByFunction", f"list the versions of {function}",
                         client.list_versions_by_function, FunctionName=function, **({"Marker": marker} if marker
                                                                                     else {}))
            out += [(str(v["Version"]), str(v.get("Description", ""))) for v in page.get("Versions", [])
                    if v.get("Version") != "$LATEST"]
            marker = page.get("NextMarker")
            if not marker:
                return out

    def alias_version(self, function: str, alias: str, region: str) -> str:
        client = self._client("lambda", region)
        got = _call("lambda:GetAlias", f"read alias {alias} of {function}", client.get_alias,
                    FunctionName=function, Name=alias)
        return str(got["FunctionVersion"])

    def point_alias(self, function: str, alias: str, version: str, region: str) -> None:
        """Send all of the alias's traffic to `version` (lambda:UpdateAlias; any weighted routing is cleared)."""
        client = self._client("lambda", region)
        _call("lambda:UpdateAlias", f"point alias {alias} of {function} at version {version}", client.update_alias,
              FunctionName=function, Name=alias, FunctionVersion=version,
              RoutingConfig={"AdditionalVersionWeights": {}})

    # --- batch scoring: S3 listings and the model's state machine (`mlpack batch`) -------------------------

    def list_keys(self, bucket: str, prefix: str, region: str) -> list[tuple[str, int]]:
        """(key, size) of every object under the prefix (s3:ListBucket), folder markers left out."""
        s3 = self._client("s3", region)
        out: list[tuple[str, int]] = []
        token: str | None = None
        while True:
            page = _call("s3:ListBucket", f"list s3://{bucket}/{prefix}", s3.list_objects_v2, Bucket=bucket,
                         Prefix=prefix, **({"ContinuationToken": token} if token else {}))
            out += [(str(o["Key"]), int(o.get("Size", 0))) for o in page.get("Contents", [])
                    if not str(o["Key"]).endswith("/")]
            token = page.get("NextContinuationToken")
            if not token:
                return out

    def state_machine_definition(self, arn: str, region: str) -> dict[str, Any]:
        """The state machine's Amazon States Language document (states:DescribeStateMachine)."""
        sfn = self._client("stepfunctions", region)
        got = _call("states:DescribeStateMachine", f"read state machine {arn}", sfn.describe_state_machine,
                    stateMachineArn=arn)
        try:
            doc = json.loads(got["definition"])
        except (KeyError, ValueError) as e:
            raise DeployError(f"state machine {arn}: its definition is not JSON") from e
        return doc if isinstance(doc, dict) else {}

    def start_execution(self, arn: str, name: str, payload: dict[str, Any], region: str) -> str:
        """Start an execution (states:StartExecution); its ARN."""
        sfn = self._client("stepfunctions", region)
        got = _call("states:StartExecution", f"start an execution of {arn}", sfn.start_execution,
                    stateMachineArn=arn, name=name, input=json.dumps(payload))
        return str(got["executionArn"])

    def execution(self, arn: str, region: str) -> dict[str, Any]:
        """status, startDate, stopDate, error, cause, output of an execution (states:DescribeExecution)."""
        sfn = self._client("stepfunctions", region)
        got = _call("states:DescribeExecution", f"read execution {arn}", sfn.describe_execution, executionArn=arn)
        return {k: got.get(k) for k in ("status", "startDate", "stopDate", "error", "cause", "output")}

    def map_runs(self, execution_arn: str, region: str) -> list[dict[str, Any]]:
        """Each map run of an execution with its item and execution counts (states:ListMapRuns, DescribeMapRun)."""
        sfn = self._client("stepfunctions", region)
        runs = _call("states:ListMapRuns", f"list the map runs of {execution_arn}", sfn.list_map_runs,
                     executionArn=execution_arn).get("mapRuns") or []
        out = []
        for run in runs:
            got = _call("states:DescribeMapRun", f"read map run {run['mapRunArn']}", sfn.describe_map_run,
                        mapRunArn=run["mapRunArn"])
            out.append({"arn": run["mapRunArn"], "status": got.get("status"), "items": got.get("itemCounts") or {},
                        "executions": got.get("executionCounts") or {}})
        return out

    # --- status and logs: CloudFormation, CloudWatch and CloudWatch Logs, read only (packager/fleet) -------
    # Each request made through these is counted in `self.calls` by action, which `mlpack status --json`
    # reports and bench/bench_status.py checks.

    def _ask(self, action: str, what: str, fn: Callable[..., T], **kwargs: Any) -> T:
        with self._calls_lock:
            self.calls[action] = self.calls.get(action, 0) + 1
        return _call(action, what, fn, **kwargs)

    def account_id(self) -> str:
        """The account the credentials belong to (sts:GetCallerIdentity)."""
        sts = self._client("sts")
        ident = self._ask("sts:GetCallerIdentity", "find the current AWS account", sts.get_caller_identity)
        return str(ident["Account"])

    def stacks(self, region: str, progress: Callable[[str], None] | None = None) -> list[StackFacts]:
        """Every stack of the account and region, tags and description included (cloudformation:DescribeStacks,
        all pages: one request per page, not one per stack)."""
        cfn = self._client("cloudformation", region)
        out: list[StackFacts] = []
        token: str | None = None
        while True:
            page = self._ask("cloudformation:DescribeStacks", f"list the stacks in {region}", cfn.describe_stacks,
                             **({"NextToken": token} if token else {}))
            out += [_stack_facts(s) for s in page.get("Stacks", [])]
            if progress:
                progress(f"{len(out)} stacks")
            token = page.get("NextToken")
            if not token:
                return out

    def stack(self, name: str, region: str) -> StackFacts | None:
        """One stack by name; None when there is none (cloudformation:DescribeStacks)."""
        cfn = self._client("cloudformation", region)
        self.calls["cloudformation:DescribeStacks"] = self.calls.get("cloudformation:DescribeStacks", 0) + 1
        try:
            got = cfn.describe_stacks(StackName=name)
        except bce.ClientError as e:
            if _code(e) == "ValidationError" and "does not exist" in str(e):
                return None
            raise _translate(e, "cloudformation:DescribeStacks", f"describe stack {name}") from e
        except bce.BotoCoreError as e:
            raise _translate(e, "cloudformation:DescribeStacks", f"describe stack {name}") from e
        found = got.get("Stacks", [])
        return _stack_facts(found[0]) if found else None

    def alarms(self, region: str, *, prefix: str, state: str | None = None) -> list[AlarmFacts]:
        """The metric alarms whose names start with `prefix`, only those in `state` when given
        (cloudwatch:DescribeAlarms, 100 to a page)."""
        cw = self._client("cloudwatch", region)
        out: list[AlarmFacts] = []
        token: str | None = None
        args: dict[str, Any] = {"AlarmNamePrefix": prefix, "MaxRecords": 100}
        if state:
            args["StateValue"] = state
        while True:
            page = self._ask("cloudwatch:DescribeAlarms", f"list the alarms {prefix}* in {region}", cw.describe_alarms,
                             **args, **({"NextToken": token} if token else {}))
            out += [AlarmFacts(name=str(a["AlarmName"]), state=str(a.get("StateValue", "")),
                               reason=str(a.get("StateReason", "")), updated=_utc(a.get("StateUpdatedTimestamp")))
                    for a in page.get("MetricAlarms", [])]
            token = page.get("NextToken")
            if not token:
                return out

    def alarm_changes(self, alarm: str, region: str, start: datetime, end: datetime) -> list[AlarmChange]:
        """The alarm's state changes between start and end, newest first (cloudwatch:DescribeAlarmHistory)."""
        cw = self._client("cloudwatch", region)
        out: list[AlarmChange] = []
        token: str | None = None
        while True:
            page = self._ask("cloudwatch:DescribeAlarmHistory", f"read the history of alarm {alarm}",
                             cw.describe_alarm_history, AlarmName=alarm, HistoryItemType="StateUpdate",
                             StartDate=start, EndDate=end, ScanBy="TimestampDescending", MaxRecords=100,
                             **({"NextToken": token} if token else {}))
            for item in page.get("AlarmHistoryItems", []):
                out.append(_alarm_change(item, alarm))
            token = page.get("NextToken")
            if not token:
                return sorted(out, key=lambda c: c.at, reverse=True)

    def metric_data(self, queries: Sequence[MetricQuery], start: datetime, end: datetime, region: str,
                    progress: Callable[[str], None] | None = None) -> dict[str, Series]:
        """Every query's points (cloudwatch:GetMetricData): 500 queries to a request, the most it takes, the
        requests sent side by side (up to METRIC_REQUESTS_AT_ONCE; boto3 clients are thread-safe), each
        followed through its further pages. Returns id -> Series, oldest point first."""
        cw = self._client("cloudwatch", region)
        chunks = [queries[i : i + METRIC_QUERIES_MAX] for i in range(0, len(queries), METRIC_QUERIES_MAX)]
        if progress:
            progress(f"reading metrics: {len(queries)} queries in {len(chunks)} request(s)")

        def ask(chunk: Sequence[MetricQuery]) -> list[tuple[str, list[tuple[datetime, float]]]]:
            out: list[tuple[str, list[tuple[datetime, float]]]] = []
            token: str | None = None
            while True:
                page = self._ask("cloudwatch:GetMetricData", f"read the metrics in {region}", cw.get_metric_data,
                                 MetricDataQueries=[q.to_api() for q in chunk], StartTime=start, EndTime=end,
                                 ScanBy="TimestampAscending", **({"NextToken": token} if token else {}))
                for r in page.get("MetricDataResults", []):
                    at = [_utc(t) for t in r.get("Timestamps", [])]
                    out.append((str(r["Id"]), [(t, float(v)) for t, v in zip(at, r.get("Values", []), strict=False)
                                               if t is not None and v is not None]))
                token = page.get("NextToken")
                if not token:
                    return out

        points: dict[str, list[tuple[datetime, float]]] = {q.id: [] for q in queries}
        if len(chunks) == 1:
            answers = [ask(chunks[0])]
        else:
            with ThreadPoolExecutor(max_workers=min(METRIC_REQUESTS_AT_ONCE, len(chunks))) as pool:
                answers = list(pool.map(ask, chunks))
        for answer in answers:
            for qid, got in answer:
                points.setdefault(qid, []).extend(got)
        return {qid: Series(tuple(sorted(p))) for qid, p in points.items()}

    def log_events(self, group: str, region: str, *, start_ms: int, end_ms: int | None = None, pattern: str = "",
                   limit: int | None = None) -> Iterator[LogEvent]:
        """The group's events from start_ms (to end_ms), matching the filter pattern, oldest first, page by page
        (logs:FilterLogEvents); stops after `limit` events. A group that does not exist is a DeployError."""
        client = self._client("logs", region)
        token: str | None = None
        seen = 0
        while True:
            args: dict[str, Any] = {"logGroupName": group, "startTime": start_ms, "interleaved": True}
            if end_ms is not None:
                args["endTime"] = end_ms
            if pattern:
                args["filterPattern"] = pattern
            if token:
                args["nextToken"] = token
            self.calls["logs:FilterLogEvents"] = self.calls.get("logs:FilterLogEvents", 0) + 1
            try:
                page = client.filter_log_events(**args)
            except bce.ClientError as e:
                if _code(e) == "ResourceNotFoundException":
                    raise DeployError(f"log group {group} does not exist in {region}",
                                      hint="the model's stack creates it: deploy the stack (and check --env)") from e
                raise _translate(e, "logs:FilterLogEvents", f"read the log group {group}") from e
            except bce.BotoCoreError as e:
                raise _translate(e, "logs:FilterLogEvents", f"read the log group {group}") from e
            for ev in page.get("events", []):
                yield LogEvent(timestamp=int(ev.get("timestamp", 0)), message=str(ev.get("message", "")),
                               stream=str(ev.get("logStreamName", "")), event_id=str(ev.get("eventId", "")))
                seen += 1
                if limit is not None and seen >= limit:
                    return
            token = page.get("nextToken")
            if not token:
                return


def _code(e: bce.ClientError) -> str:
    return str(e.response.get("Error", {}).get("Code", ""))


def _call(action: str, what: str, fn: Callable[..., T], **kwargs: Any) -> T:
    try:
        return fn(**kwargs)
    except (bce.ClientError, bce.BotoCoreError) as e:
        raise _translate(e, action, what) from e


def _translate(e: Exception, action: str, what: str) -> RegistryError:
    """One clear line per kind of AWS failure, naming the IAM action when access was denied."""
    if isinstance(e, bce.NoCredentialsError | bce.PartialCredentialsError):
        return RegistryError(f"cannot {what}: no AWS credentials found",
                             hint="configure credentials (aws configure, AWS_PROFILE, or AWS_ACCESS_KEY_ID/"
                                  "AWS_SECRET_ACCESS_KEY), or push to another registry with --to")
    if isinstance(e, bce.NoRegionError):
        return RegistryError(f"cannot {what}: no AWS region is set", hint="set AWS_REGION or AWS_DEFAULT_REGION")
    if isinstance(e, bce.EndpointConnectionError):
        return RegistryError(f"cannot {what}: AWS endpoint unreachable ({e})",
                             hint="check the region name and your network connection")
    if isinstance(e, bce.ClientError):
        code, message = _code(e), str(e.response.get("Error", {}).get("Message", ""))
        if code in ("AccessDenied", "AccessDeniedException") or "not authorized to perform" in message:
            return RegistryError(f"cannot {what}: AWS denied {action} ({message or code})",
                                 hint=f"ask for an IAM policy that allows {action} on this resource")
        if code in ("UnrecognizedClientException", "InvalidClientTokenId", "InvalidSignatureException",
                    "ExpiredToken", "ExpiredTokenException", "AuthFailure"):
            return RegistryError(f"cannot {what}: AWS rejected the credentials ({code})",
                                 hint="refresh them (aws sso login, or new access keys) and check the profile")
        return RegistryError(f"cannot {what}: {action} failed: {code}: {message}")
    return RegistryError(f"cannot {what}: {type(e).__name__}: {e}")


METRIC_QUERIES_MAX = 500  # GetMetricData's MetricDataQueries limit
METRIC_REQUESTS_AT_ONCE = 4  # GetMetricData requests in flight together (its default quota: 50 per second)


def _utc(at: Any) -> datetime | None:
    if not isinstance(at, datetime):
        return None
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def _stack_facts(s: dict[str, Any]) -> StackFacts:
    return StackFacts(name=str(s["StackName"]), status=str(s.get("StackStatus", "")),
                      description=str(s.get("Description") or ""),
                      tags={str(t["Key"]): str(t["Value"]) for t in s.get("Tags", [])},
                      updated=_utc(s.get("LastUpdatedTime") or s.get("CreationTime")),
                      reason=str(s.get("StackStatusReason") or ""))


def _alarm_change(item: dict[str, Any], alarm: str) -> AlarmChange:
    """A StateUpdate history item: HistoryData is JSON with oldState/newState; the summary reads
    "Alarm updated from OK to ALARM" when it is not."""
    old = new = reason = ""
    try:
        data = json.loads(item.get("HistoryData") or "{}")
        old = str(data.get("oldState", {}).get("stateValue", ""))
        new = str(data.get("newState", {}).get("stateValue", ""))
        reason = str(data.get("newState", {}).get("stateReason", ""))
    except (ValueError, AttributeError):
        pass
    if not new:
        m = re.search(r"from (\w+) to (\w+)", str(item.get("HistorySummary", "")))
        if m:
            old, new = m.group(1), m.group(2)
    return AlarmChange(alarm=str(item.get("AlarmName") or alarm), at=_utc(item.get("Timestamp")) or datetime.now(UTC),
                       old=old, new=new, reason=reason or str(item.get("HistorySummary", "")))
