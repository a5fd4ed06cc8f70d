"""AWS requests and time of `mlpack status` for 10, 50 and 200 models (in-process moto).

    .venv/bin/python bench/bench_status.py [--sizes 10 50 200] [--quick] [--json]

For each size, a fresh in-process moto account (moto's mock_aws, completed by the functional test's
patch_moto: percentiles, DescribeAlarmHistory) holds one environment's stacks (one per model, tagged
and described as mlpack's stacks are, created through CloudFormation with a placeholder resource), ten
alarms per model (three of the fleet in ALARM) and a day of metrics for a tenth of the models; the lock
names every model. Then `mlpack status --env prod --json` runs in-process, and every request botocore
sends is counted by wrapping botocore's BaseClient._make_api_call (so requests made outside
packager/aws.py's own counter would be counted too). Also `mlpack status MODEL` once at the largest size.

The point is the count: it must grow sub-linearly with the number of models (one DescribeStacks listing
and one DescribeAlarms query of the alarms in ALARM, paged; GetMetricData carrying 500 queries, nine per
model). Times are moto's, in-process: recorded, not targets. Prints a table; not a test.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from common import ROOT, Row, cli, parser

sys.path.insert(0, str(ROOT))

ENV, ACCOUNT, REGION = "prod", "123456789012", "us-east-1"
ALARMS = ("errors", "throttles", "duration", "concurrency", "api-5xx", "api-4xx", "api-latency",
          "validation-failures", "out-of-range", "drift")


@contextmanager
def counted() -> Iterator[Counter[str]]:
    """Every request botocore makes while inside, by operation name."""
    from botocore.client import BaseClient

    calls: Counter[str] = Counter()
    original = BaseClient._make_api_call

    def counting(self: Any, operation_name: str, api_params: Any) -> Any:
        calls[f"{self.meta.service_model.service_name}:{operation_name}"] += 1
        return original(self, operation_name, api_params)

    BaseClient._make_api_call = counting  # type: ignore[method-assign]
    try:
        yield calls
    finally:
        BaseClient._make_api_call = original  # type: ignore[method-assign]


def world(root: Path, n: int) -> list[str]:
    """A team repository with one environment and n locked models, and their stacks, alarms and metrics in moto."""
    import boto3

    from packager.config import lock as lock_mod

    names = [f"model-{i:03d}" for i in range(n)]
    (root / "mlpack-repo.toml").write_text(f'[environments.{ENV}]\naccount = "{ACCOUNT}"\nregion = "{REGION}"\n')
    entries = {m: lock_mod.LockEntry(repository=f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/mlpack/{m}",
                                     digest="sha256:" + f"{i:064x}", arch="x86_64", model_version="v1",
                                     model_sha256="0" * 64, project=f"models/{m}", pushed_at="2026-11-27T05:00:00Z")
               for i, m in enumerate(names)}
    lock_mod.update_lock(root / f"mlpack.{ENV}.lock.json", lambda _: lock_mod.Lock(models=entries, history={}))
    cfn = boto3.client("cloudformation", region_name=REGION)
    cw = boto3.client("cloudwatch", region_name=REGION)
    for m, e in entries.items():
        template = {"Description": f"mlpack model {m} in {ENV} v1 ({e.digest[:19]})",
                    "Resources": {"Placeholder": {"Type": "AWS::CloudFormation::WaitConditionHandle"}}}
        tags = {"mlpack:managed-by": "mlpack", "mlpack:environment": ENV, "mlpack:model": m,
                "mlpack:owners": "ana@example.com", "mlpack:version": "v1"}
        cfn.create_stack(StackName=f"mlpack-{ENV}-{m}", TemplateBody=json.dumps(template),
                         Tags=[{"Key": k, "Value": v} for k, v in tags.items()])
        for what in ALARMS:
            cw.put_metric_alarm(AlarmName=f"mlpack-{ENV}-{m}-{what}", Namespace="AWS/Lambda", MetricName="Errors",
                                Dimensions=[{"Name": "FunctionName", "Value": f"mlpack-{ENV}-{m}"}], Statistic="Sum",
                                Period=300, EvaluationPeriods=3, Threshold=1, ComparisonOperator="GreaterThanThreshold")
    for m in names[:3]:
        cw.set_alarm_state(AlarmName=f"mlpack-{ENV}-{m}-errors", StateValue="ALARM", StateReason="Threshold Crossed")
    at = datetime.now(UTC) - timedelta(hours=3)
    for m in names[::10]:  # a tenth of the models had traffic
        fn = [{"Name": "FunctionName", "Value": f"mlpack-{ENV}-{m}"}]
        cw.put_metric_data(Namespace="AWS/Lambda", MetricData=[
            {"MetricName": "Invocations", "Dimensions": fn, "Value": 100, "Timestamp": at},
            {"MetricName": "Duration", "Dimensions": fn, "Value": 12.5, "Timestamp": at}])
        cw.put_metric_data(Namespace=f"mlpack/{ENV}", MetricData=[
            {"MetricName": "Requests", "Dimensions": [{"Name": "Model", "Value": m}], "Value": 100, "Timestamp": at}])
    return names


def status(root: Path, *args: str) -> tuple[dict[str, Any], Counter[str], float]:
    from click.testing import CliRunner

    from packager.cli import cli as mlpack

    cwd = Path.cwd()
    os.chdir(root)
    try:
        with counted() as calls:
            t0 = time.perf_counter()
            result = CliRunner().invoke(mlpack, ["status", *args, "--env", ENV, "--json"], catch_exceptions=False)
            seconds = time.perf_counter() - t0
    finally:
        os.chdir(cwd)
    if result.exit_code != 0:
        raise RuntimeError(f"mlpack status failed: {result.output}")
    return json.loads(result.stdout), calls, seconds


def measure(n: int, detail: bool = False) -> dict[str, Any]:
    from moto import mock_aws

    from tests.functional.test_status import patch_moto

    patch_moto()
    with tempfile.TemporaryDirectory(prefix="bench-status-") as tmp, mock_aws():
        root = Path(tmp)
        names = world(root, n)
        data, calls, seconds = status(root)
        assert len(data["models"]) == n and data["counts"]["in_alarm"] == 3, data["counts"]
        out: dict[str, Any] = {"n": n, "calls": calls, "seconds": seconds, "reported": data["aws_calls"]}
        if detail:
            one, one_calls, one_seconds = status(root, names[0])
            assert one["in_alarm"] == ["errors"], one["in_alarm"]
            out |= {"detail_calls": one_calls, "detail_seconds": one_seconds}
        return out


def _calls_text(calls: Counter[str]) -> str:
    return ", ".join(f"{op.split(':', 1)[1]} {k}" for op, k in sorted(calls.items()))


def run(quick: bool, sizes: list[int] | None = None) -> list[Row]:
    os.environ.update({"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": REGION,
                       "AWS_DEFAULT_REGION": REGION})
    for k in ("AWS_PROFILE", "AWS_ENDPOINT_URL"):
        os.environ.pop(k, None)
    warnings.filterwarnings("ignore")  # moto: "Tried to parse AWS::CloudFormation::WaitConditionHandle ..."
    sizes = sizes or ([10, 50] if quick else [10, 50, 200])
    measured = [measure(n, detail=n == sizes[-1]) for n in sizes]
    rows = []
    for m in measured:
        total = sum(m["calls"].values())
        rows.append(Row("status", f"mlpack status, {m['n']} models: AWS requests", total, "requests",
                        note=f"{_calls_text(m['calls'])}; single sample"))
        rows.append(Row("status", f"mlpack status, {m['n']} models: time (in-process moto)", m["seconds"], "s",
                        note="moto's time, not AWS's; single sample"))
    if len(measured) >= 2:
        lo, hi = measured[0], measured[-1]
        growth = sum(hi["calls"].values()) / sum(lo["calls"].values())
        models = hi["n"] / lo["n"]
        before, after = sum(lo["calls"].values()), sum(hi["calls"].values())
        rows.append(Row("status", f"AWS requests, {lo['n']} -> {hi['n']} models", growth, "x",
                        f"< {models:g}x (sub-linear)", growth < models,
                        f"{before} -> {after} requests for {models:g}x the models"))
    last = measured[-1]
    if "detail_calls" in last:
        rows.append(Row("status", f"mlpack status MODEL, {last['n']} models: AWS requests",
                        sum(last["detail_calls"].values()), "requests",
                        note=f"{_calls_text(last['detail_calls'])}; single sample"))
    return rows


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--sizes", type=int, nargs="+", default=None, help="model counts (default 10 50 200, quick 10 50)")
    cli(ap, run)


if __name__ == "__main__":
    main()
