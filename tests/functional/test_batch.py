"""`mlpack batch` (issue 17): the churn example built on the debian base and run isolated (its own Python
and packages under unshare): the batch event contract with good and bad rows through the image, and
`--local` over 100,000 customers agreeing with the original scikit-learn pipeline (isolated, and through the
task root); JSON Lines in and out; and against in-process moto, `mlpack batch MODEL` starting one execution
per object and following it.

What moto does not do (moto 5.2): it stores the state machine and its executions but never runs them: an
execution stays RUNNING until stopped, no Distributed Map reads S3, no Lambda is invoked, ListMapRuns is
empty and DescribeMapRun answers nothing. So the AWS half tests what mlpack asks and how it reports, and
the image half tests what the function answers to the events a Distributed Map sends.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from handlers import contract as C
from packager.local import function as local

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow
ROWS = 100_000


def _mlpack(*args: str, env: dict[str, str] | None = None, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "packager", *args], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, **(env or {})}, timeout=900)


@pytest.fixture(scope="module")
def churn(tmp_path_factory):
    """(project, image layout, export folder, the pipeline, 100,000 customers as a CSV, that frame), built once."""
    import joblib

    from tests.support.images import copy_example

    if local.isolation_problem(local.HOST_ARCH):
        pytest.skip(local.isolation_problem(local.HOST_ARCH))
    root = tmp_path_factory.mktemp("batch")
    project = copy_example("churn", root)
    built = _mlpack("build", str(project), env={"MLPACK_BASE": "debian", "MLPACK_ARCH": local.HOST_ARCH})
    assert built.returncode == 0, built.stderr[-3000:]
    # the example's own generator (customers from a fixed seed), loaded under a name of its own: a module
    # called `train` left in sys.modules would stand in for every later test project's train.py
    import importlib.util

    loader = importlib.util.spec_from_file_location("churn_example_train", project / "train.py")
    assert loader is not None and loader.loader is not None
    train = importlib.util.module_from_spec(loader)
    loader.loader.exec_module(train)
    frame, _ = train.customers(ROWS, seed=7)
    frame.insert(0, "customer_id", [f"c{i}" for i in range(ROWS)])
    csv = root / "customers.csv"
    frame.to_csv(csv, index=False)
    build = project / "build" / "churn"
    return project, build / "image", build, joblib.load(project / "model.joblib"), csv


def _expected(pipeline, csv: Path):
    import pandas as pd

    frame = pd.read_csv(csv)
    return frame, pipeline.predict_proba(frame.drop(columns=["customer_id"]))


def _check_scored(out: Path, pipeline, csv: Path) -> None:
    import pandas as pd

    frame, proba = _expected(pipeline, csv)
    got = pd.read_csv(out)
    assert len(got) == len(frame) and (got["customer_id"] == frame["customer_id"]).all()
    assert got["error"].isna().all()
    np.testing.assert_allclose(got["probabilities.churns"], proba[:, 1], rtol=1e-4, atol=1e-5)
    assert (got["label"].to_numpy() == np.array(["stays", "churns"])[proba.argmax(axis=1)]).all()


def test_local_isolated_scores_100k_customers_as_the_original_pipeline(churn, tmp_path):
    _project, image, _build, pipeline, csv = churn
    out = tmp_path / "scored.csv"
    result = _mlpack("batch", str(image), "--local", str(csv), "-o", str(out), "--isolate", "--key", "customer_id")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "unshare --root" in result.stderr and f"{ROWS:,} rows, 0 answered with an error" in result.stdout
    assert f"{ROWS:,}/{ROWS:,} rows (100%)" in result.stderr  # the progress bar's last line
    _check_scored(out, pipeline, csv)


def test_local_task_root_of_the_project_scores_the_same(churn, tmp_path):
    project, _image, _build, pipeline, csv = churn
    out = tmp_path / "scored.csv"
    result = _mlpack("batch", str(project), "--local", str(csv), "-o", str(out), "--task-root", "--key",
                     "customer_id", "--workers", "2", "--rows", "2000",
                     env={"MLPACK_BASE": "debian", "MLPACK_ARCH": local.HOST_ARCH})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "this machine's Python packages" in result.stderr
    _check_scored(out, pipeline, csv)


def test_the_batch_event_through_the_isolated_image_answers_each_row(churn, tmp_path):
    from packager.local.prepare import prepare

    _project, image, _build, pipeline, csv = churn
    frame, proba = _expected(pipeline, csv)
    text = [{k: "" if v != v else str(v) for k, v in row.items()}  # as ItemReader reads CSV: text, "" when empty
            for row in frame.iloc[:50].to_dict("records")]
    text[3]["tenure_months"] = "-4"  # below [inputs.tenure_months] min = 0
    text[7]["plan"] = ""  # every column of churn accepts missing values
    text[9]["support_calls"] = "many"
    text[11]["colour"] = "red"  # an unknown column
    logs: list[str] = []
    with prepare(image, isolate=True, memory_mb=None, timeout_s=None) as prep, \
            local.LocalFunction(prep.command, timeout_s=60, output=logs.append, name="churn") as fn:
        fn.start()
        res = fn.invoke({C.BATCH_ITEMS: text, C.BATCH_INPUT: {"source": "csv", "key_columns": ["customer_id"]}})
        assert res.ok, res.payload
        doc = res.json()
        assert doc["rows"] == 50 and doc["errors"] == 3
        assert [(e["row"], e["path"]) for e in doc["row_errors"]] == [
            (3, "rows[3].tenure_months"), (9, "rows[9].support_calls"), (11, "rows[11].colour")]
        assert doc["keys"]["customer_id"] == [f"c{i}" for i in range(50)]
        churns = doc["outputs"]["probabilities"]
        fine = [i for i in range(50) if i not in (3, 7, 9, 11)]
        np.testing.assert_allclose([churns[i]["churns"] for i in fine], proba[fine, 1], rtol=1e-4, atol=1e-5)
        assert churns[7] is not None and all(churns[i] is None for i in (3, 9, 11))
        records = json.loads(frame.iloc[:5].drop(columns=["customer_id"]).to_json(orient="records"))
        same = fn.invoke({C.BATCH_KEY: {"instances": records}}).json()
        np.testing.assert_allclose([p["churns"] for p in same["outputs"]["probabilities"]], proba[:5, 1],
                                   rtol=1e-4, atol=1e-5)
        api = fn.invoke({"instances": records[:2]}).json()  # the API's direct invoke still answers as before
        assert api["outputs"]["label"] == same["outputs"]["label"][:2]
    emf = [json.loads(line) for line in logs if '"BatchRows"' in line]
    assert [d[C.M_BATCH_ROWS] for d in emf] == [50, 5] and [d[C.M_BATCH_ROW_ERRORS] for d in emf] == [3, 0]
    assert not any(C.M_REQUESTS in d for d in emf)


def test_json_lines_in_and_out_with_row_errors(churn, tmp_path):
    _project, _image, build, pipeline, csv = churn
    frame, proba = _expected(pipeline, csv)
    records = json.loads(frame.iloc[:20].to_json(orient="records"))
    records[4]["tenure_months"] = 9000
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in records))
    out = tmp_path / "out.jsonl"
    result = _mlpack("batch", str(build), "--local", str(source), "-o", str(out), "--key", "customer_id")
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["customer_id"] for r in lines] == [f"c{i}" for i in range(20)]
    assert lines[4]["error"]["path"] == "rows[4].tenure_months" and lines[4]["label"] is None
    assert lines[5]["error"] is None and lines[5]["probabilities"]["churns"] == pytest.approx(proba[5, 1], rel=1e-4)
    assert "20 rows, 1 answered with an error" in result.stdout


# --- in AWS, against moto ----------------------------------------------------------------------------------------


@pytest.fixture
def moto_aws(monkeypatch, tmp_path):
    import boto3
    from moto import mock_aws

    from handlers.names import ModelNames
    from packager.config.spec import BatchSection
    from stacks.batch import BatchProps, definition
    from tests.support import stack_projects as sp

    for k in ("AWS_PROFILE", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", sp.REGION)
    monkeypatch.chdir(tmp_path)
    lock = sp.write_lock(tmp_path, ["churn"])
    with mock_aws():
        s3 = boto3.client("s3", region_name=sp.REGION)
        for bucket in ("scoring-in", "scoring-out"):
            s3.create_bucket(Bucket=bucket)
        s3.put_object(Bucket="scoring-in", Key="churn/2026-12/a.csv", Body=b"plan,tenure_months\npro,3\n")
        s3.put_object(Bucket="scoring-in", Key="churn/2026-12/b.jsonl", Body=b'{"plan": "pro"}\n')
        s3.put_object(Bucket="scoring-in", Key="churn/2026-12/notes.txt", Body=b"not data")
        props = BatchProps(model_name="churn", environment=None, timeout_s=29, memory_mb=1024,
                           reserved_concurrency=10, request_schema={}, label_count=2, log_retention_days=7,
                           batch=BatchSection(enabled=True, input_bucket="scoring-in", input_prefix="churn/",
                                              output_bucket="scoring-out", output_prefix="churn/"))
        sfn = boto3.client("stepfunctions", region_name=sp.REGION)
        arn = sfn.create_state_machine(name=ModelNames("churn").state_machine, roleArn=f"arn:aws:iam::{sp.ACCOUNT}:"
                                       "role/batch", definition=json.dumps(definition(props)))["stateMachineArn"]
        yield sfn, arn, lock


def _run_cli(args: list[str]):
    from click.testing import CliRunner

    from packager.cli import cli

    return CliRunner().invoke(cli, args, catch_exceptions=False)


def test_batch_starts_one_execution_per_object_and_says_where_results_go(moto_aws):
    sfn, arn, lock = moto_aws
    result = _run_cli(["batch", "churn", "--lock", str(lock), "--input", "s3://scoring-in/churn/2026-12/",
                       "--output", "s3://scoring-out/churn/"])
    assert result.exit_code == 0, result.output
    executions = sfn.list_executions(stateMachineArn=arn)["executions"]
    assert len(executions) == 2 and result.output.count("started arn:aws:states:") == 2
    inputs = sorted((json.loads(sfn.describe_execution(executionArn=e["executionArn"])["input"])
                     for e in executions), key=lambda d: d["key"])
    assert [(d["key"], d["format"]) for d in inputs] == [("churn/2026-12/a.csv", "csv"),
                                                         ("churn/2026-12/b.jsonl", "jsonl")]
    assert all(d["output_prefix"].startswith("churn/") and d["output_prefix"].endswith("/") for d in inputs)
    assert "s3://scoring-out/churn/" in result.output and "FAILED_*.json" in result.output


def test_batch_wait_follows_until_the_end_and_fails_on_an_aborted_run(moto_aws, monkeypatch):
    """moto never runs an execution: stop it from the first progress read, and --wait must see the end."""
    import time as time_mod

    sfn, arn, lock = moto_aws
    real_sleep = time_mod.sleep

    def stop_all(_s: float) -> None:
        for e in sfn.list_executions(stateMachineArn=arn)["executions"]:
            if e["status"] == "RUNNING":
                sfn.stop_execution(executionArn=e["executionArn"], error="Test", cause="stopped by the test")
        real_sleep(0)

    monkeypatch.setattr("packager.cli.batch.time.sleep", stop_all)
    result = _run_cli(["batch", "churn", "--lock", str(lock), "--input", "s3://scoring-in/churn/2026-12/a.csv",
                       "--output", "s3://scoring-out/churn", "--wait", "--poll", "0.1"])
    assert result.exit_code == 1, result.output
    assert "no map run reported yet" in result.output  # moto has no map runs
    assert "ABORTED    churn/2026-12/a.csv -> s3://scoring-out/churn/" in result.output  # moto drops error and cause


def test_batch_refuses_buckets_the_state_machine_cannot_use(moto_aws):
    _sfn, _arn, lock = moto_aws
    from click.testing import CliRunner

    from packager.cli import cli

    result = CliRunner().invoke(cli, ["batch", "churn", "--lock", str(lock), "--input", "s3://elsewhere/x/",
                                      "--output", "s3://scoring-out/churn/"])
    assert result.exit_code != 0 and "reads and writes only s3://scoring-in/" in str(result.exception)
