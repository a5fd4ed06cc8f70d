"""The whole path with real parts, as a user drives it through the `mlpack` and `cdk` commands:

train iris -> export -> build on the debian base -> push (ECR control plane in moto_server, data plane
in a real local registry) -> skopeo reads it back -> umoci unpacks it -> the image pulled back from the
registry runs isolated under AWS's runtime client -> HTTP requests, good and bad, through the local API
front -> predictions equal scikit-learn's -> synth its stack -> `cdk deploy` to moto_server -> an alarm
set to ALARM reaches a subscriber of the model's topic.

Each step is a test, in order, sharing one module-scoped dict; a step whose inputs an earlier step did
not produce is skipped (the earlier failure is the one to read).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from packager.local import function as local
from tests.support import registry as registry_support
from tests.support.images import copy_example
from tests.support.inbox import inbox
from tests.support.moto_server import ACCOUNT, running
from tests.support.serving import Served
from tests.support.stack_projects import write_cdk_json

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
CDK = REPO / "node_modules" / ".bin" / "cdk"
REGION = "us-east-1"
local_registry = registry_support.local_registry


@pytest.fixture(scope="module")
def moto(tmp_path_factory):
    with running(tmp_path_factory.mktemp("moto") / "moto.log") as server:
        yield server


@pytest.fixture(scope="module")
def world(tmp_path_factory, local_registry, moto):
    root = tmp_path_factory.mktemp("repo")
    (root / "models").mkdir()
    project = copy_example("iris", root / "models")
    write_cdk_json(root, REPO, bootstrapless=True)
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("AWS_", "MLPACK_")) and k not in ("SOURCE_DATE_EPOCH",)}
    env = clean | moto.env(REGION) | {
        "AWS_CONFIG_FILE": str(root / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(root / "no-aws-credentials"),
        "MLPACK_REGISTRY_ENDPOINT": local_registry.url,  # ECR's data plane is the local registry
        "PYTHONPATH": str(REPO),
    }
    return {"root": root, "project": project, "env": env, "registry": local_registry, "moto": moto}


@pytest.fixture
def step(world):
    return world


def need(data: dict[str, Any], *keys: str) -> None:
    missing = [k for k in keys if k not in data]
    if missing:
        pytest.skip(f"an earlier step did not produce {', '.join(missing)}")


def mlpack(data: dict[str, Any], *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([sys.executable, "-m", "packager", *args], cwd=data["root"], env=data["env"],
                            capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"mlpack {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result


def test_1_export_verifies_parity(step):
    out = json.loads(mlpack(step, "export", str(step["project"]), "--json").stdout)
    assert out["parity"]["passed"]
    step["model_json"] = json.loads((step["project"] / "build" / "iris" / "model.json").read_text())


def test_2_build_on_the_debian_base(step):
    need(step, "model_json")
    built = json.loads(mlpack(step, "build", str(step["project"]), "--base", "debian", "--arch", local.HOST_ARCH,
                              "--json").stdout)
    assert built["digest"].startswith("sha256:")
    mlpack(step, "check", built["layout"])
    step["digest"] = built["digest"]


def test_3_push_to_ecr_pins_the_digest(step):
    need(step, "digest")
    pushed = json.loads(mlpack(step, "push", str(step["project"]), "--json").stdout)
    lock = json.loads((step["root"] / "mlpack.lock.json").read_text())["models"]["iris"]
    assert lock["digest"] == step["digest"] == pushed["digest"]
    assert lock["repository"] == f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/mlpack/iris"
    step["lock"] = lock


def test_4_skopeo_and_umoci_read_what_was_pushed(step, tmp_path_factory):
    need(step, "lock")
    ref = f"docker://{step['registry'].host}/mlpack/iris@{step['digest']}"
    raw = subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false", ref],
                         capture_output=True, check=True).stdout
    assert "sha256:" + hashlib.sha256(raw).hexdigest() == step["digest"]
    pulled = tmp_path_factory.mktemp("pulled") / "layout"
    subprocess.run(["skopeo", "copy", "--src-tls-verify=false", ref, f"oci:{pulled}:iris"],
                   capture_output=True, check=True)
    bundle = pulled.parent / "bundle"
    subprocess.run(["umoci", "unpack", "--rootless", "--image", f"{pulled}:iris", str(bundle)],
                   capture_output=True, check=True)
    task = bundle / "rootfs" / "var" / "task"
    assert (task / "model" / "model.onnx").is_file() and (task / "handlers" / "predict.py").is_file()
    assert json.loads((task / "model" / "model.json").read_text()) == step["model_json"]
    step["pulled"] = pulled


def test_5_the_pulled_image_serves_predictions_equal_to_sklearn(step):
    import joblib

    need(step, "pulled")
    if problem := local.isolation_problem(local.HOST_ARCH):
        pytest.skip(problem)
    served = Served([str(step["pulled"]), "--isolate"], env=step["env"], wait_s=300)
    try:
        x = np.loadtxt(step["project"] / "samples.csv", delimiter=",", skiprows=1, dtype=np.float32)
        model = joblib.load(step["project"] / "model.joblib")
        names = np.array(["setosa", "versicolor", "virginica"])
        with httpx.Client(base_url=served.url, timeout=60) as client:
            r = client.post("/predict", json={"inputs": x.tolist()})
            assert r.status_code == 200, r.text
            out = r.json()["outputs"]
            assert out["label"] == list(names[model.predict(x)])
            probs = np.array([[row[n] for n in names] for row in out["probabilities"]])
            np.testing.assert_allclose(probs, model.predict_proba(x), rtol=1e-4, atol=1e-5)

            bad = client.post("/predict", json={"inputs": [[5.1, 3.5, 1.4]]})
            assert bad.status_code == 422 and bad.json()["path"].startswith("inputs[0]")
            assert client.post("/predict", content=b"{not json", headers={"content-type": "application/json"}
                               ).status_code == 400
            assert client.post("/predict", json={"inputs": [[1, 2, 3, 4]] * 257}).status_code == 413
            assert client.get("/nowhere").status_code == 404
            health = client.get("/health").json()
            assert health["model"] == "iris" and health["version"] == step["lock"]["model_version"]
    finally:
        assert served.stop() == 0
    # every request left an EMF line with the contract's namespace
    assert any('"_aws"' in line and '"mlpack"' in line for line in served.lines)


def test_6_synth_and_deploy_to_moto(step):
    need(step, "lock")
    if not CDK.exists():
        pytest.fail(f"{CDK} is missing: run scripts/setup (npm ci installs the pinned CDK CLI)")
    env = step["env"] | {"PATH": f"{REPO / '.venv' / 'bin'}:{os.environ['PATH']}"}
    out = step["root"] / "cdk.out"
    synth = subprocess.run([str(CDK), "synth", "mlpack-iris", "--no-notices", "-q", "-o", str(out)],
                           cwd=step["root"], env=env, capture_output=True, text=True, timeout=600)
    assert synth.returncode == 0, synth.stderr
    template = json.loads((out / "mlpack-iris.template.json").read_text())
    functions = [r for r in template["Resources"].values() if r["Type"] == "AWS::Lambda::Function"
                 and "ImageUri" in json.dumps(r["Properties"].get("Code", {}))]
    assert functions and step["digest"] in json.dumps(functions[0]["Properties"]["Code"])
    deploy = subprocess.run(
        [str(CDK), "deploy", "mlpack-iris", "--require-approval", "never", "--method=direct",
         "--no-previous-parameters", "--no-notices", "--progress", "events", "-o", str(out)],
        cwd=step["root"], env=env, capture_output=True, text=True, timeout=900)
    assert deploy.returncode == 0, f"{deploy.stdout}\n{deploy.stderr}\n{step['moto'].log.read_text()[-3000:]}"
    fn = client(step, "lambda").get_function(FunctionName="mlpack-iris")
    assert fn["Code"]["ImageUri"] == f"{step['lock']['repository']}@{step['digest']}"
    step["deployed"] = True


def client(step: dict[str, Any], service: str) -> Any:
    import boto3

    return boto3.client(service, endpoint_url=step["moto"].url, region_name=REGION,
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def test_7_an_alarm_reaches_a_subscriber_of_the_model_topic(step):
    need(step, "deployed")
    with inbox() as subscriber:
        sns = client(step, "sns")
        (topic,) = [t["TopicArn"] for t in sns.list_topics()["Topics"] if t["TopicArn"].endswith(":mlpack-iris-alarms")]
        sns.subscribe(TopicArn=topic, Protocol="http", Endpoint=subscriber.url)
        alarm = client(step, "cloudwatch").describe_alarms(AlarmNames=["mlpack-iris-drift"])["MetricAlarms"][0]
        assert alarm["AlarmActions"] == [topic]
        client(step, "cloudwatch").set_alarm_state(
            AlarmName="mlpack-iris-drift", StateValue="ALARM",
            StateReason="Threshold Crossed: 1 datapoint [0.41 (27/11/26 05:00:00)] was greater than the "
                        "threshold (0.2)")
        envelope = subscriber.get(timeout=30)
        message = json.loads(envelope["Message"])
        assert envelope["TopicArn"] == topic
        assert message["AlarmName"] == "mlpack-iris-drift" and message["NewStateValue"] == "ALARM"
