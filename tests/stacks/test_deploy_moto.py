"""Deploy smoke test: the pinned CDK CLI runs `cdk deploy mlpack-<model>` against moto_server on
127.0.0.1 (with tests/support/moto_ext.py loaded, see its docstring for what it adds and what that
means). Checks that the stacks are created, the function runs the lock's digest, the alarms exist
with the model's topic as action, and that an alarm state change reaches a subscriber of that topic
in the shape handlers/notify.py parses. The alarm -> SNS publish is done by our moto extension, not
by moto or AWS: this tests the deploy flow and the wiring, not CloudWatch.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import stack_projects as sp
from tests.support.inbox import inbox
from tests.support.moto_server import MotoServer, running

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
CDK = REPO / "node_modules" / ".bin" / "cdk"


@pytest.fixture(scope="module")
def moto(tmp_path_factory):
    """moto_server + extension on a free loopback port; stopped by its pid."""
    with running(tmp_path_factory.mktemp("moto") / "moto.log") as server:
        yield server.url, server.port, server.log


def _aws_env(port: int) -> dict[str, str]:
    return MotoServer(port=port, log=Path()).env(sp.REGION)


@pytest.fixture(scope="module")
def deployed(moto, tmp_path_factory):
    """`cdk deploy mlpack-iris` from a project folder that has cdk.json, mlpack.lock.json and models/iris."""
    if not CDK.exists():
        pytest.fail(f"{CDK} is missing: run scripts/setup (npm ci installs the pinned CDK CLI)")
    endpoint, port, log = moto
    root = tmp_path_factory.mktemp("deploy")
    sp.write_project(root, "iris")
    sp.write_lock(root, ["iris"])
    sp.write_cdk_json(root, REPO, bootstrapless=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")} | _aws_env(port)
    env["PYTHONPATH"] = str(REPO)
    cmd = [
        str(CDK),
        "deploy",
        "mlpack-iris",
        "--require-approval",
        "never",
        "--method=direct",
        "--no-previous-parameters",
        "--no-notices",
        "--progress",
        "events",
        "-o",
        str(root / "cdk.out"),
    ]
    result = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        pytest.fail(
            f"cdk deploy failed ({result.returncode}):\n{result.stdout}\n{result.stderr}\n"
            f"--- moto log ---\n{log.read_text()[-4000:]}"
        )
    return endpoint, result


def _client(endpoint: str, service: str):
    import boto3

    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name=sp.REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def test_deploy_creates_the_model_stack_and_its_dependency(deployed):
    endpoint, _ = deployed
    cfn = _client(endpoint, "cloudformation")
    for name in ("mlpack-shared", "mlpack-iris"):
        (stack,) = cfn.describe_stacks(StackName=name)["Stacks"]
        assert stack["StackStatus"] == "CREATE_COMPLETE", name
    outputs = {
        o["OutputKey"]: o["OutputValue"]
        for o in cfn.describe_stacks(StackName="mlpack-iris")["Stacks"][0].get("Outputs", [])
    }
    assert any(k.startswith("ApiEndpoint") for k in outputs), outputs


def test_deployed_function_runs_the_locked_digest(deployed):
    endpoint, _ = deployed
    fn = _client(endpoint, "lambda").get_function(FunctionName="mlpack-iris")
    assert fn["Code"]["ImageUri"].endswith(f"/mlpack/iris@{sp.digest_for('iris')}")
    assert fn["Configuration"]["Environment"]["Variables"]["MLPACK_MODEL_NAME"] == "iris"


def test_deployed_alarms_notify_the_model_topic(deployed):
    endpoint, _ = deployed
    topics = [t["TopicArn"] for t in _client(endpoint, "sns").list_topics()["Topics"]]
    (topic,) = [t for t in topics if t.endswith(":mlpack-iris-alarms")]
    alarms = _client(endpoint, "cloudwatch").describe_alarms(AlarmNamePrefix="mlpack-iris-")["MetricAlarms"]
    names = sorted(a["AlarmName"] for a in alarms)
    assert "mlpack-iris-errors" in names and "mlpack-iris-drift" in names and len(names) == 10
    for a in alarms:
        assert a["AlarmActions"] == [topic] and a["OKActions"] == [topic], a["AlarmName"]
        assert a["TreatMissingData"] == "notBreaching"


def test_alarm_state_change_reaches_a_topic_subscriber(deployed):
    """Through moto_ext's publishing (not CloudWatch's): alarm -> model topic -> http subscriber."""
    from handlers import notify

    endpoint, _ = deployed
    with inbox() as subscriber:
        sns = _client(endpoint, "sns")
        (topic,) = [t["TopicArn"] for t in sns.list_topics()["Topics"] if t["TopicArn"].endswith("-iris-alarms")]
        sns.subscribe(TopicArn=topic, Protocol="http", Endpoint=subscriber.url)
        cw = _client(endpoint, "cloudwatch")
        seen = []
        for state in ("ALARM", "OK"):
            cw.set_alarm_state(
                AlarmName="mlpack-iris-errors",
                StateValue=state,
                StateReason="Threshold Crossed: 1 out of the last 3 datapoints [7.5 (27/11/26 05:00:00)] "
                "was greater than the threshold (1.0)",
            )
            envelope = subscriber.get(timeout=20)
            assert envelope["TopicArn"] == topic
            event = notify.parse(json.loads(envelope["Message"]), envelope["TopicArn"])
            seen.append((event.model, event.what, event.state, event.value, event.threshold))
        assert seen == [("iris", "errors", "ALARM", 7.5, 1.0), ("iris", "errors", "OK", 7.5, 1.0)]


def test_moto_ext_covers_every_resource_type_the_stacks_use():
    """If a stack starts using a type moto cannot model, the deploy test would silently skip it.
    (In a subprocess: install() patches moto, which other tests use in-process.)"""
    code = (
        "import json; from tests.support import moto_ext; moto_ext.install(); "
        "from moto.cloudformation import parsing; print(json.dumps(sorted(parsing.get_model_map())))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    known = set(json.loads(out.stdout))
    snapshots = Path(__file__).parent / "snapshots"
    used = {r["Type"] for f in snapshots.glob("*.json") for r in json.loads(f.read_text())["Resources"].values()}
    assert used and sorted(used - known - set(NOTIFIER_ONLY)) == []
    assert set(NOTIFIER_ONLY) <= used, "a type listed here that no stack uses any more"


# Types moto cannot model that only the chat notifier's part of the shared stack uses: the deploy test never
# creates it (a bootstrapless deploy cannot have the notifier's file asset), so it cannot skip them silently.
NOTIFIER_ONLY = {
    "AWS::Lambda::EventInvokeConfig": "the notifier's on-failure destination",
    "AWS::SQS::QueuePolicy": "the notifier's failure queue's TLS-only policy",
}
