"""`mlpack status` and `mlpack logs` against stacks the CDK CLI deployed to moto_server.

A team repository with two environments in one account and region (dev and staging): in dev, iris,
houses and old are deployed in one `cdk deploy`, then old leaves the lock (an orphan), iris's lock entry
moves on to a new image (drift) and wine is locked but never deployed; staging deploys iris alone.
houses' errors alarm is set into ALARM; metrics are put for iris in both environments (different
figures, so a mix-up shows); log events shaped like the handler's are put into dev iris's log group.

moto lacks what a few reads need: percentile statistics, DescribeAlarmHistory, and GetMetricData
keeping namespaces apart when dimensions are named. `patch_moto` adds them (to moto_server here, and to
in-process moto in bench/bench_status.py); it is test scaffolding, not a claim about CloudWatch.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, suppress
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from packager.config import lock as lock_mod
from packager.config import records as records_mod
from tests.support import stack_projects as sp
from tests.support.moto_server import MotoServer, running

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
CDK = REPO / "node_modules" / ".bin" / "cdk"
ACCOUNT, REGION = sp.ACCOUNT, sp.REGION
V2 = "sha256:" + "ab" * 32  # iris's next image in dev: locked, not deployed


# --- moto, completed for the reads `mlpack status` makes ---------------------------------------------------


def patch_moto() -> None:
    """What moto 5.2's CloudWatch lacks for `mlpack status`: percentile statistics (pNN of the raw values
    put), DescribeAlarmHistory (the state changes set_alarm_state makes, shaped like CloudWatch's items),
    and GetMetricData matching a query's namespace when it names dimensions. Idempotent; in-process or in
    moto_server."""
    from moto.cloudwatch import models as cwm
    from moto.cloudwatch import responses as cwr
    from moto.core.responses import ActionResult

    if getattr(cwm, "_mlpack_status_patched", False):
        return
    statistic = cwm.Statistics.get_statistics_for_type

    def get_statistics_for_type(self: Any, stat: str) -> Any:
        if stat.startswith("p") and stat[1:].replace(".", "", 1).isdigit():
            values = sorted(self.metric_single_values_list)
            return values[min(len(values) - 1, int(len(values) * float(stat[1:]) / 100))] if values else None
        return statistic(self, stat)

    cwm.Statistics.get_statistics_for_type = get_statistics_for_type
    set_state = cwm.CloudWatchBackend.set_alarm_state

    def set_alarm_state(self: Any, alarm_name: str, reason: str, reason_data: str, state_value: str) -> None:
        old = self.alarms[alarm_name].state_value if alarm_name in self.alarms else None
        set_state(self, alarm_name, reason, reason_data, state_value)
        if old != state_value:
            self.alarms[alarm_name].__dict__.setdefault("mlpack_history", []).append({
                "AlarmName": alarm_name, "AlarmType": "MetricAlarm", "Timestamp": datetime.now(UTC),
                "HistoryItemType": "StateUpdate", "HistorySummary": f"Alarm updated from {old} to {state_value}",
                "HistoryData": json.dumps({"version": "1.0", "oldState": {"stateValue": old},
                                           "newState": {"stateValue": state_value, "stateReason": reason}})})

    cwm.CloudWatchBackend.set_alarm_state = set_alarm_state

    def describe_alarm_history(self: Any) -> Any:
        params = self._get_params()
        name = params.get("AlarmName")
        items = [i for a in self.cloudwatch_backend.alarms.values() if not name or a.name == name
                 for i in a.__dict__.get("mlpack_history", [])]
        items.sort(key=lambda i: i["Timestamp"], reverse=params.get("ScanBy") != "TimestampAscending")
        return ActionResult({"AlarmHistoryItems": items})

    cwr.CloudWatchResponse.describe_alarm_history = describe_alarm_history
    get_metric_data = cwm.CloudWatchBackend.get_metric_data
    one_at_a_time = threading.Lock()

    def per_namespace(self: Any, queries: list[dict[str, Any]], start_time: Any, end_time: Any,
                      scan_by: str = "TimestampAscending") -> Any:
        groups: dict[str, list[dict[str, Any]]] = {}
        for q in queries:
            groups.setdefault(q.get("MetricStat", {}).get("Metric", {}).get("Namespace", ""), []).append(q)
        everything = type(self).get_all_metrics
        out: dict[str, Any] = {}
        with one_at_a_time:  # the backend's method is swapped per namespace: requests in parallel take turns
            for namespace, group in groups.items():
                self.get_all_metrics = lambda ns=namespace: [m for m in everything(self) if m.namespace == ns]
                try:
                    out.update((r["id"], r) for r in get_metric_data(self, group, start_time, end_time, scan_by))
                finally:
                    del self.get_all_metrics
        return [out[q["Id"]] for q in queries if q["Id"] in out]

    cwm.CloudWatchBackend.get_metric_data = per_namespace
    cwm._mlpack_status_patched = True


def serve() -> None:
    """moto_server with mlpack's extension and patch_moto (`python -c '...serve()' --port N`)."""
    patch_moto()
    from tests.support.moto_ext import main

    main()


def moto_server(log: Path) -> AbstractContextManager[MotoServer]:
    """tests/support/moto_server.running, with patch_moto in the server process."""
    return running(log, "from tests.functional.test_status import serve; serve()")


# --- the world -------------------------------------------------------------------------------------------


def _entry(name: str, digest: str, version: str = "v1") -> lock_mod.LockEntry:
    return lock_mod.LockEntry(repository=f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/mlpack/{name}", digest=digest,
                              arch="x86_64", model_version=version, model_sha256="0" * 64, project=f"models/{name}",
                              pushed_at="2026-11-27T05:00:00Z", pushed_by="ana", how="push")


def _record(lock: Path, name: str, digest: str, version: str = "v1", regressor: bool = False) -> None:
    data = sp.regressor_json(name, version) if regressor else sp.classifier_json(name, version, ["a", "b", "c"])
    records_mod.write(lock, name, digest, "x86_64", data)
    lock_mod.update_lock(lock, lambda held: lock_mod.put(held, name, _entry(name, digest, version)))


def _cdk(root: Path, env: dict[str, str], environment: str, *stacks: str) -> None:
    cmd = [str(CDK), "deploy", "-c", f"mlpack:env={environment}", "-c", "mlpack:bootstrapless=true", *stacks,
           "--require-approval", "never", "--method=direct", "--no-previous-parameters", "--no-notices",
           "--progress", "events", "-o", str(root / f"cdk.out.{environment}")]
    result = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, f"cdk deploy failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"


def _client(server: MotoServer, service: str) -> Any:
    import boto3

    return boto3.client(service, endpoint_url=server.url, region_name=REGION, aws_access_key_id="testing",
                        aws_secret_access_key="testing")


NOW = datetime.now(UTC)
REQUEST_OK, REQUEST_REFUSED, REQUEST_FAILED = (
    "11111111-1111-4111-8111-111111111111", "22222222-2222-4222-8222-222222222222",
    "33333333-3333-4333-8333-333333333333")


def _log_lines() -> list[tuple[datetime, str]]:
    """What the handler and Lambda write for three requests (one answered, one refused, one failed)."""
    at = NOW - timedelta(minutes=10)

    def emf(rid_latency: float, cold: int, failed: int = 0) -> str:
        return json.dumps({"Model": "iris", "Requests": 1, "Latency": rid_latency, "ColdStart": cold,
                           "ModelErrors": failed, "_aws": {"Timestamp": int(at.timestamp() * 1000),
                                                           "CloudWatchMetrics": [{"Namespace": "mlpack/dev"}]}})

    refused = {"level": "INFO", "message": "request refused", "model": "iris", "request_id": REQUEST_REFUSED,
               "timestamp": "2026-12-02T10:00:00Z", "status": 422, "kind": "bad_input", "path": "inputs",
               "detail": "expected 4 values per row, got 3"}
    failed = {"level": "ERROR", "message": "request failed", "model": "iris", "request_id": REQUEST_FAILED,
              "timestamp": "2026-12-02T10:00:01Z", "status": 500,
              "traceback": "Traceback (most recent call last):\n  File \"x.py\", line 1\nValueError: boom"}
    lines = [
        f"START RequestId: {REQUEST_OK} Version: 1",
        emf(3.2, 1),
        f"END RequestId: {REQUEST_OK}",
        f"REPORT RequestId: {REQUEST_OK}\tDuration: 4.10 ms\tBilled Duration: 5 ms\tMemory Size: 1024 MB\t"
        f"Max Memory Used: 180 MB\tInit Duration: 812.33 ms",
        f"START RequestId: {REQUEST_REFUSED} Version: 1",
        json.dumps(refused),
        emf(1.1, 0),
        f"REPORT RequestId: {REQUEST_REFUSED}\tDuration: 1.50 ms\tBilled Duration: 2 ms\tMemory Size: 1024 MB\t"
        f"Max Memory Used: 180 MB",
        f"START RequestId: {REQUEST_FAILED} Version: 1",
        json.dumps(failed),
        emf(2.0, 0, failed=1),
        f"REPORT RequestId: {REQUEST_FAILED}\tDuration: 2.50 ms\tBilled Duration: 3 ms\tMemory Size: 1024 MB\t"
        f"Max Memory Used: 181 MB",
    ]
    return [(at + timedelta(milliseconds=i * 10), line) for i, line in enumerate(lines)]


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Iterator[dict[str, Any]]:
    if not CDK.exists():
        pytest.fail(f"{CDK} is missing: run scripts/setup (npm ci installs the pinned CDK CLI)")
    patch_moto()
    root = tmp_path_factory.mktemp("team")
    (root / "mlpack-repo.toml").write_text(
        'projects = ["models/*"]\n'
        f'[environments.dev]\naccount = "{ACCOUNT}"\nregion = "{REGION}"\n'
        f'[environments.staging]\naccount = "{ACCOUNT}"\nregion = "{REGION}"\n')
    (root / "cdk.json").write_text(json.dumps({"app": f"{REPO / '.venv/bin/python'} -m stacks.app"}))
    for name in ("iris", "wine", "old"):
        sp.write_project(root, name)
    sp.write_project(root, "houses", model_json=sp.regressor_json("houses", "v1"))
    dev, staging = root / "mlpack.dev.lock.json", root / "mlpack.staging.lock.json"
    for name in ("iris", "houses", "old"):
        _record(dev, name, sp.digest_for(name), regressor=name == "houses")
    _record(staging, "iris", sp.digest_for("iris"))
    with moto_server(tmp_path_factory.mktemp("moto") / "moto.log") as server:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")} | server.env(REGION)
        env["PYTHONPATH"] = str(REPO)
        _cdk(root, env, "dev", "mlpack-dev-iris", "mlpack-dev-houses", "mlpack-dev-old")
        _cdk(root, env, "staging", "mlpack-staging-iris")
        # after the deploys: old leaves the lock, iris moves on to v2, wine is locked and never deployed
        lock_mod.update_lock(dev, lambda held: lock_mod.Lock(
            models={k: v for k, v in held.models.items() if k != "old"}, history=held.history))
        _record(dev, "iris", V2, version="v2")
        _record(dev, "wine", sp.digest_for("wine"))
        cw = _client(server, "cloudwatch")
        cw.set_alarm_state(AlarmName="mlpack-dev-houses-errors", StateValue="ALARM",
                           StateReason="Threshold Crossed: 1 datapoint [12.5] was greater than the threshold (1.0)")
        at = NOW - timedelta(hours=2)
        for environment, invocations, errors in (("dev", 200, 4), ("staging", 50, 0)):
            fn = [{"Name": "FunctionName", "Value": f"mlpack-{environment}-iris"}]
            own = [{"Name": "Model", "Value": "iris"}]
            cw.put_metric_data(Namespace="AWS/Lambda", MetricData=[
                {"MetricName": "Invocations", "Dimensions": fn, "Value": invocations, "Timestamp": at},
                {"MetricName": "Errors", "Dimensions": fn, "Value": errors, "Timestamp": at},
                *({"MetricName": "Duration", "Dimensions": fn, "Value": v, "Timestamp": at} for v in (10, 20, 95))])
            cw.put_metric_data(Namespace=f"mlpack/{environment}", MetricData=[
                {"MetricName": "Requests", "Dimensions": own, "Value": invocations, "Timestamp": at},
                {"MetricName": "ValidationFailures", "Dimensions": own, "Value": invocations / 10, "Timestamp": at},
                {"MetricName": "ColdStart", "Dimensions": own, "Value": 3, "Timestamp": at},
                {"MetricName": "InputValues", "Dimensions": own, "Value": invocations * 4, "Timestamp": at},
                {"MetricName": "OutOfRangeValues", "Dimensions": own, "Value": invocations / 5, "Timestamp": at}])
        logs = _client(server, "logs")
        group = "/aws/lambda/mlpack-dev-iris"
        with suppress(logs.exceptions.ResourceAlreadyExistsException):
            logs.create_log_group(logGroupName=group)
        logs.create_log_stream(logGroupName=group, logStreamName="2026/12/02/[1]abc")
        logs.put_log_events(logGroupName=group, logStreamName="2026/12/02/[1]abc", logEvents=[
            {"timestamp": int(t.timestamp() * 1000), "message": m} for t, m in _log_lines()])
        yield {"root": root, "server": server, "env": env}


@pytest.fixture
def mlpack(world, monkeypatch):
    """Run `mlpack ARGS` in-process in the team repository, against moto_server; (exit code, stdout, stderr)."""
    monkeypatch.chdir(world["root"])
    for k in [k for k in os.environ if k.startswith("AWS_")]:
        monkeypatch.delenv(k)
    for k, v in world["server"].env(REGION).items():
        monkeypatch.setenv(k, v)

    def run(*args: str) -> tuple[int, str, str]:
        from packager.cli import cli

        result = CliRunner().invoke(cli, list(args))
        if result.exception and not isinstance(result.exception, SystemExit):
            raise result.exception
        return result.exit_code, result.stdout, result.stderr

    return run


def _json(mlpack: Any, *args: str) -> Any:
    code, out, err = mlpack(*args, "--json")
    assert code == 0, err
    return json.loads(out)


# --- status ----------------------------------------------------------------------------------------------


def test_the_table_lists_every_model_alarms_first_and_fits_100_columns(mlpack):
    code, out, _ = mlpack("status", "--env", "dev")
    assert code == 0
    lines = out.splitlines()
    assert all(len(line) <= 100 for line in lines), [line for line in lines if len(line) > 100]
    assert "\x1b[" not in out  # no terminal: click leaves the colours out
    assert lines[0].startswith("dev · 123456789012 us-east-1 · mlpack.dev.lock.json · 24 h to ")
    assert "3 models · 1 in ALARM · 1 drifting · 1 never deployed · 1 orphan stack" in lines[1]
    rows = [line for line in lines if line[:2] in ("! ", "~ ", "  ") and line[2:3].isalpha()]
    assert [r.split()[1] for r in rows[1:4]] == ["houses", "iris", "wine"]  # header, then alarm, drift, never
    houses = next(i for i, line in enumerate(lines) if line.startswith("! houses"))
    assert "ok" in lines[houses].split() and lines[houses + 1].strip() == "ALARM: errors"
    iris = next(line for line in lines if line.startswith("~ iris"))
    assert iris.split()[2:5] == ["ana+1", "v2", "abababab"] and "200" in iris.split() and "2.00" in iris.split()
    assert "drift: the lock pins v2 abababab, the stack runs v1" in out
    assert "deploy: cdk deploy -c mlpack:env=dev mlpack-dev-iris" in out
    assert "never deployed; deploy: cdk deploy -c mlpack:env=dev mlpack-dev-wine" in out


def test_orphans_and_never_deployed_models_are_listed(mlpack):
    _code, out, _ = mlpack("status", "--env", "dev")
    orphans = out[out.index("orphans"):]
    assert "old" in orphans and "delete: aws cloudformation delete-stack --stack-name mlpack-dev-old" in orphans
    data = _json(mlpack, "status", "--env", "dev")
    assert [m["model"] for m in data["orphans"]] == ["old"]
    assert data["orphans"][0]["deployed"]["status"] == "CREATE_COMPLETE" and data["orphans"][0]["locked"] is None
    wine = next(m for m in data["models"] if m["model"] == "wine")
    assert wine["never_deployed"] and wine["deployed"] is None and wine["problems"] == ["never-deployed"]
    assert wine["owners"] == ["ana@example.com", "bo@example.com"]  # from its mlpack.toml: no stack to tag


def test_json_output_holds_versions_digests_alarms_and_figures(mlpack):
    data = _json(mlpack, "status", "--env", "dev")
    assert data["environment"] == "dev" and data["counts"] == {
        "models": 3, "in_alarm": 1, "drift": 1, "never_deployed": 1, "failed": 0, "orphans": 1}
    by = {m["model"]: m for m in data["models"]}
    assert [m["model"] for m in data["models"]] == ["houses", "iris", "wine"]
    iris = by["iris"]
    assert iris["drift"] and iris["locked"]["digest"] == V2 and iris["locked"]["model_version"] == "v2"
    assert iris["deployed"]["digest"] == sp.digest_for("iris")[:19] and iris["deployed"]["version"] == "v1"
    assert iris["last_24h"] == {"requests": 200.0, "error_pct": 2.0, "p99_ms": 95.0, "cold_starts": 3.0,
                                "validation_pct": 10.0, "out_of_range_pct": 5.0}
    assert by["houses"]["in_alarm"] == ["errors"] and by["houses"]["problems"] == ["alarm"]
    assert by["houses"]["last_24h"]["requests"] is None  # no traffic: no figure, not zero
    assert data["shared"]["stack"] == "mlpack-dev-shared"
    # one listing, one alarm query, one metrics request for the whole environment
    assert data["aws_calls"] == {"sts:GetCallerIdentity": 1, "cloudformation:DescribeStacks": 1,
                                 "cloudwatch:DescribeAlarms": 1, "cloudwatch:GetMetricData": 1}


def test_the_other_environment_sees_only_its_own(mlpack):
    data = _json(mlpack, "status", "--env", "staging")
    assert [m["model"] for m in data["models"]] == ["iris"] and data["orphans"] == []
    iris = data["models"][0]
    assert not iris["drift"] and iris["problems"] == [] and iris["in_alarm"] == []
    assert iris["last_24h"]["requests"] == 50.0 and iris["last_24h"]["error_pct"] == 0.0
    assert iris["last_24h"]["validation_pct"] == 10.0 and iris["last_24h"]["cold_starts"] == 3.0


def test_one_model_in_detail(mlpack):
    code, out, _ = mlpack("status", "houses", "--env", "dev")
    assert code == 0
    assert all(len(line) <= 100 for line in out.splitlines())
    assert "houses in dev  (stack mlpack-dev-houses)" in out
    assert "1 of " in out and "in ALARM" in out and "Threshold Crossed" in out
    assert "alarm state changes (last 7 days)" in out and "OK -> ALARM" in out
    assert "lock history" in out
    code, out, _ = mlpack("status", "iris", "--env", "dev")
    assert "drift: the next deploy changes it" in out
    spark = next(line for line in out.splitlines() if line.strip().startswith("requests"))
    assert spark.split()[-1] == "200" and "█" in spark
    data = _json(mlpack, "status", "iris", "--env", "dev")
    assert [e["digest"] for e in data["history"]] == [V2, sp.digest_for("iris")]
    hourly = data["hourly"]["requests"]
    assert len(hourly) == 24 and [v for v in hourly if v is not None] == [200.0]
    assert data["live"]["version"] and data["aws_calls"]["cloudwatch:GetMetricData"] == 1
    houses = _json(mlpack, "status", "houses", "--env", "dev")
    (change,) = houses["alarm_changes"]
    assert change["what"] == "errors" and (change["old"], change["new"]) == ("OK", "ALARM")


def test_an_unknown_model_is_an_error_naming_the_models(mlpack):
    from packager.errors import DeployError

    with pytest.raises(DeployError, match="holds no model 'nope'") as e:
        mlpack("status", "nope", "--env", "dev")
    assert "houses, iris, wine" in str(e.value.hint)


# --- logs ------------------------------------------------------------------------------------------------


def test_logs_show_the_handler_lines_readably_and_hide_metrics(mlpack):
    code, out, _ = mlpack("logs", "iris", "--env", "dev", "--since", "1h")
    assert code == 0
    assert '"_aws"' not in out and "METRIC" not in out and "START" not in out
    refused = next(line for line in out.splitlines() if "request refused" in line)
    assert "INFO" in refused and REQUEST_REFUSED[:8] in refused
    assert "422" in refused and "bad_input" in refused and "inputs: expected 4 values per row, got 3" in refused
    failed = out.splitlines()[next(i for i, line in enumerate(out.splitlines()) if "request failed" in line) + 1]
    assert failed.strip() == "ValueError: boom"  # a traceback's last line
    assert "init 812 ms (cold start)" in out and "memory 180/1024 MB" in out
    _, with_metrics, _ = mlpack("logs", "iris", "--env", "dev", "--metrics")
    assert with_metrics.count("METRIC") == 3 and "Latency=3.2" in with_metrics


def test_logs_of_one_request(mlpack):
    code, out, _ = mlpack("logs", "iris", "--env", "dev", "--request-id", REQUEST_FAILED)
    assert code == 0
    lines = out.splitlines()
    assert lines and all(REQUEST_FAILED[:8] in line or line.startswith("      ") for line in lines)
    assert [line.split()[2] for line in lines if not line.startswith(" ")] == ["START", "ERROR", "REPORT"]
    assert "Traceback (most recent call last):" in out  # the whole traceback for one request
    assert REQUEST_REFUSED[:8] not in out and REQUEST_OK[:8] not in out
    events = [json.loads(line) for line in mlpack("logs", "iris", "--env", "dev", "--request-id", REQUEST_REFUSED,
                                                   "--json")[1].splitlines()]
    handler = [e for e in events if e["kind"] == "handler"]
    assert handler[0]["fields"]["kind"] == "bad_input" and handler[0]["request_id"] == REQUEST_REFUSED


def test_logs_errors_only(mlpack):
    _, out, _ = mlpack("logs", "iris", "--env", "dev", "--errors")
    assert "request failed" in out and "request refused" not in out and "REPORT" not in out


def test_logs_of_a_model_never_deployed_say_what_to_do(mlpack):
    from packager.errors import DeployError

    with pytest.raises(DeployError, match="log group /aws/lambda/mlpack-dev-wine does not exist"):
        mlpack("logs", "wine", "--env", "dev")
