"""Drift end to end on this machine: `mlpack serve --capture FILE` writes the capture lines, `mlpack drift
--capture FILE` scores them against the export's reference and names exactly the shifted features."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from handlers import contract as C
from handlers import model_json as mj
from packager.cli import cli, main
from packager.export import describe
from tests.support import handler_models as hm
from tests.support.serving import Served


@pytest.fixture(scope="module")
def iris(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The iris test model with the reference export computes from its training rows."""
    folder, clf, X = hm.iris(tmp_path_factory.mktemp("iris"))
    import onnxruntime as ort

    session = ort.InferenceSession(str(folder / C.MODEL_FILE), providers=["CPUExecutionProvider"])
    doc = mj.read(folder / C.MODEL_JSON)
    got = dict(zip([o.name for o in session.get_outputs()], session.run(None, {"X": X}), strict=True))
    meta = {"feature_names": {"X": list((doc.feature_names or {})["X"])}, "task": "classification",
            "roles": {"scores": "probabilities"}, "label_names": list(doc.label_names or ())}
    data = mj.as_dict(doc)
    data["reference"] = describe.reference({"X": X}, got, meta)
    (folder / C.MODEL_JSON).write_bytes(mj.dumps(mj.from_dict(data, "test")))
    return folder, clf, X


def test_drift_injected_through_serve_shows_on_exactly_the_shifted_features(iris: Any, tmp_path: Path) -> None:
    folder, _clf, X = iris
    capture = tmp_path / "capture.jsonl"
    shifted = X.copy()
    shifted[:, 1] += 0.8  # sepal width
    shifted[:, 3] *= 1.6  # petal width
    served = Served([str(folder), "--capture", str(capture)])
    try:
        for i in range(0, len(X), 10):
            r = httpx.post(served.url + "/predict", json={"inputs": shifted[i:i + 10].tolist()}, timeout=30)
            assert r.status_code == 200
    finally:
        served.stop()
    assert len(capture.read_text().splitlines()) == 15
    result = CliRunner().invoke(cli, ["drift", str(folder), "--capture", str(capture), "--json"])
    assert result.exit_code == 1, result.output
    rows = {r["feature"]: r for r in json.loads(result.stdout)}
    inputs = {k: v for k, v in rows.items() if k != "prediction"}
    assert {k for k, v in inputs.items() if v["status"] == "drift"} == {"sepal width (cm)", "petal width (cm)"}
    assert {k for k, v in inputs.items() if v["status"] == "ok"} == {"sepal length (cm)", "petal length (cm)"}
    assert rows["sepal length (cm)"]["psi"] == 0 and rows["sepal length (cm)"]["rows"] == 150
    text = CliRunner().invoke(cli, ["drift", str(folder), "--capture", str(capture)])
    assert "sepal width (cm)" in text.stdout and "drift" in text.stdout


def test_no_drift_exits_0_and_a_model_without_reference_says_what_to_do(iris: Any, tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    folder, _clf, X = iris
    from handlers import drift

    capture = tmp_path / "c.jsonl"
    names = (mj.read(folder / C.MODEL_JSON).feature_names or {})["X"]
    cols = {name: X[:, i].tolist() for i, name in enumerate(names)}
    capture.write_text(drift.capture_line("iris", "r1", cols, 1) + "\n")
    assert CliRunner().invoke(cli, ["drift", str(folder), "--capture", str(capture)]).exit_code == 0
    bare, _, _ = hm.iris(tmp_path / "bare")
    assert main(["drift", str(bare), "--capture", str(capture)]) == 1
    err = capsys.readouterr().err
    assert "no drift reference" in err and "mlpack export --force" in err


def test_drift_of_a_locked_model_reads_its_log_group(iris: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """`mlpack drift MODEL --lock`: the reference from the locked image's deploy record, the capture lines from
    the function's log group (FilterLogEvents through packager/aws.py; in-process moto)."""
    import time

    import boto3
    from moto import mock_aws

    from handlers import drift
    from handlers.names import ModelNames
    from packager.config import lock as lock_mod
    from packager.config import records

    folder, _clf, X = iris
    for k in ("AWS_PROFILE", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    lock_path = tmp_path / lock_mod.LOCK_FILE
    digest = "sha256:" + "ab" * 32
    entry = lock_mod.LockEntry(repository="123456789012.dkr.ecr.us-east-1.amazonaws.com/mlpack/iris", digest=digest,
                               arch="x86_64", model_version="1", model_sha256="0" * 64, project="iris",
                               pushed_at="2026-12-08T00:00:00Z")
    lock_mod.record(lock_path, "iris", entry)
    records.write(lock_path, "iris", digest, "x86_64", json.loads((folder / C.MODEL_JSON).read_text()))
    names = (mj.read(folder / C.MODEL_JSON).feature_names or {})["X"]
    shifted = X.copy()
    shifted[:, 2] += 2.0  # petal length
    now = int(time.time() * 1000)
    with mock_aws():
        logs = boto3.client("logs", region_name="us-east-1")
        group = ModelNames("iris", None).log_group
        logs.create_log_group(logGroupName=group)
        logs.create_log_stream(logGroupName=group, logStreamName="s")
        events = [{"timestamp": now - 1000 + i, "message": drift.capture_line(
            "iris", f"r{i}", {n: shifted[i:i + 10, j].tolist() for j, n in enumerate(names)}, now)}
            for i in range(0, 150, 10)]
        events.append({"timestamp": now, "message": '{"level": "INFO", "message": "request refused"}'})
        logs.put_log_events(logGroupName=group, logStreamName="s", logEvents=events)
        code = main(["drift", "iris", "--lock", str(lock_path), "--since", "1h", "--json"])
    assert code == 1
    rows = {r["feature"]: r for r in json.loads(capsys.readouterr().out)}
    assert {k for k, v in rows.items() if v["status"] == "drift"} == {"petal length (cm)"}
    assert rows["sepal length (cm)"]["rows"] == 150 and rows["sepal length (cm)"]["psi"] == 0
