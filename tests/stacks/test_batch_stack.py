"""The batch state machine ([batch] in mlpack.toml, stacks/batch.py): its definition passes asl-validator
(installed by package.json, npm ci), as written into the template; a Distributed Map per input format
with the configured batching, concurrency and failure tolerance; IAM scoped to the named prefixes; the
failed-executions alarm on the model's topic; sizing refused at synth with the figures. cfn-lint,
cdk-nag, checkov and the snapshot cover it through tests/stacks/test_model_stacks.py's iris, which has
[batch] enabled."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from handlers.names import ModelNames
from packager.config import spec as spec_mod
from packager.errors import DeployError
from tests.stacks.test_model_stacks import IRIS_TOML
from tests.support import stack_projects as sp

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
ASL_VALIDATOR = REPO / "node_modules" / ".bin" / "asl-validator"


def _synth(root: Path, toml: str) -> dict:
    import aws_cdk as cdk

    from stacks.assembly import add_stacks
    from stacks.plan import plan

    sp.write_project(root, "iris", toml_extra=toml)
    sp.write_lock(root, ["iris"])
    app = cdk.App(outdir=str(root / "cdk.out"))
    add_stacks(app, plan(root, patterns=["models/*"], lock_path=Path("mlpack.lock.json")))
    app.synth()
    return json.loads((root / "cdk.out" / "mlpack-iris.template.json").read_text())


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    return _synth(tmp_path_factory.mktemp("batch"), IRIS_TOML)


def _of(template: dict, type_: str) -> list[dict]:
    return [r for r in template["Resources"].values() if r["Type"] == type_]


def _definition(template: dict) -> dict:
    (machine,) = _of(template, "AWS::StepFunctions::StateMachine")
    body = machine["Properties"]["DefinitionString"]
    text = body if isinstance(body, str) else "".join(p if isinstance(p, str) else "" for p in body["Fn::Join"][1])
    arn = "arn:aws:lambda:us-east-1:123456789012:function:mlpack-iris:live"
    return json.loads(text.replace("${FunctionArn}", arn))


def _validate(definition: dict, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    assert ASL_VALIDATOR.is_file(), "asl-validator is not installed: run scripts/setup (npm ci)"
    path = tmp_path / "definition.json"
    path.write_text(json.dumps(definition))
    return subprocess.run([str(ASL_VALIDATOR), "--json-path", str(path)], capture_output=True, text=True, timeout=120)


def test_the_definition_in_the_template_is_valid_states_language(template, tmp_path):
    result = _validate(_definition(template), tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_validator_does_refuse_a_broken_definition(template, tmp_path):
    """The control: the same call fails on a definition with a state that goes nowhere."""
    broken = _definition(template)
    broken["States"]["Format"]["Default"] = "Nowhere"
    assert _validate(broken, tmp_path).returncode != 0


def test_a_distributed_map_per_format_batches_and_writes_results(template):
    states = _definition(template)["States"]
    assert states["Format"]["Choices"][0]["Next"] == "ScoreJsonLines"
    for name, kind in (("ScoreCsv", "CSV"), ("ScoreJsonLines", "JSONL")):
        m = states[name]
        assert m["ItemReader"]["ReaderConfig"]["InputType"] == kind
        assert m["ItemReader"]["Parameters"]["Bucket"] == "scoring-in"
        assert m["ItemBatcher"]["MaxItemsPerBatch"] == 500
        assert m["ItemBatcher"]["MaxInputBytesPerBatch"] <= 256 * 1024
        assert m["ItemBatcher"]["BatchInput"]["key_columns"] == ["customer_id"]
        assert m["MaxConcurrency"] == 4 and m["ToleratedFailurePercentage"] == 5
        assert m["ItemProcessor"]["ProcessorConfig"]["Mode"] == "DISTRIBUTED"
        assert m["ResultWriter"]["Parameters"]["Bucket"] == "scoring-out"
        task = m["ItemProcessor"]["States"][f"{name}Batch"]
        assert task["Parameters"]["FunctionName"].endswith(":function:mlpack-iris:live")
    assert states["ScoreCsv"]["ItemReader"]["ReaderConfig"]["CSVHeaderLocation"] == "FIRST_ROW"
    assert states["ScoreCsv"]["ItemBatcher"]["BatchInput"]["source"] == "csv"


def test_the_role_reads_and_writes_only_the_named_prefixes(template):
    (machine,) = _of(template, "AWS::StepFunctions::StateMachine")
    assert machine["Properties"]["StateMachineName"] == ModelNames("iris").state_machine
    text = json.dumps([p for p in _of(template, "AWS::IAM::Policy") if "Batch" in json.dumps(p["Properties"]["Roles"])])
    assert ":s3:::scoring-in/iris/*" in text and ":s3:::scoring-out/iris/results/*" in text
    assert '"s3:*"' not in text and "s3:DeleteObject" not in text
    assert "lambda:InvokeFunction" in text


def test_failed_executions_alarm_the_models_topic(template):
    alarms = [a for a in _of(template, "AWS::CloudWatch::Alarm")
              if a["Properties"].get("AlarmName") == ModelNames("iris").alarm("batch-failed")]
    assert len(alarms) == 1
    assert "Topic" in json.dumps(alarms[0]["Properties"]["AlarmActions"])
    metrics = {q.get("MetricStat", {}).get("Metric", {}).get("MetricName") for q in alarms[0]["Properties"]["Metrics"]}
    assert {"ExecutionsFailed", "ExecutionsTimedOut", "ExecutionsAborted"} <= metrics


def test_no_batch_section_no_state_machine(tmp_path):
    assert _of(_synth(tmp_path, ""), "AWS::StepFunctions::StateMachine") == []


@pytest.mark.parametrize("change, says", [
    ("rows_per_invocation = 5000", "256 KB"),
    ("max_concurrency = 600", "reserved concurrency"),
])
def test_sizing_is_checked_at_synth_with_the_figures(tmp_path, change, says):
    toml = IRIS_TOML.replace("rows_per_invocation = 500" if "rows" in change else "max_concurrency = 4", change)
    with pytest.raises(DeployError, match=says):
        _synth(tmp_path, toml)


def test_a_batch_over_the_timeout_is_refused(tmp_path):
    toml = IRIS_TOML.replace("rows_per_invocation = 500", "rows_per_invocation = 2000") + \
        "[runtime]\ntimeout_s = 1\nmemory_mb = 512\n"
    toml = toml.replace("key_columns = [\"customer_id\"]", "")
    with pytest.raises(DeployError, match="timeout"):
        _synth(tmp_path, toml)


def test_the_batch_section_is_validated_all_at_once(tmp_path):
    raw = {"model": {"name": "m", "owners": ["a@b.co"], "source": "m.onnx"}, "samples": {"source": "s.npy"},
           "runtime": {"reserved_concurrency": 3},
           "batch": {"enabled": True, "max_concurrency": 4, "output_prefix": "no-slash", "input_bucket": "s3://x"}}
    with pytest.raises(Exception) as info:
        spec_mod.parse(raw, tmp_path, files=False)
    text = str(info.value)
    for path in ("batch.output_prefix", "batch.input_bucket"):
        assert path in text
    raw["batch"] = {"enabled": True, "max_concurrency": 4}
    with pytest.raises(Exception) as info:
        spec_mod.parse(raw, tmp_path, files=False)
    text = str(info.value)
    for path in ("batch.input_bucket: required", "batch.output_bucket: required", "batch.max_concurrency"):
        assert path in text


def test_rows_are_sized_from_the_request_schema():
    from stacks.batch import STATE_PAYLOAD_BYTES, BatchProps, check, row_bytes

    churn = {"properties": {"instances": {"items": {"properties": {n: {} for n in (
        "plan", "region", "contract", "tenure_months", "monthly_charges", "support_calls", "autopay")}}}}}
    props = BatchProps(model_name="churn", environment=None, timeout_s=29, memory_mb=1024, reserved_concurrency=10,
                       request_schema=churn, label_count=2, log_retention_days=7,
                       batch=spec_mod.BatchSection(enabled=True, rows_per_invocation=1000, input_bucket="b",
                                                   output_bucket="c", key_columns=["customer_id"]))
    given, answer = row_bytes(props)
    # a real CSV row of churn as ItemReader gives it is about 150 bytes; the estimate stays above it
    assert 150 < given < 300 and 1000 * max(given, answer) < STATE_PAYLOAD_BYTES and check(props) == []
