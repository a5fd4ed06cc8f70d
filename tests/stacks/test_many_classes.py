"""A classifier with many classes and a gradual deployment: CodeDeploy takes at most 10 alarms per
deployment group, so the drift alarms (one per 9 classes) roll back through one composite alarm."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support import stack_projects as sp

pytestmark = pytest.mark.slow


def synth_classes(root: Path, n: int) -> dict:
    import aws_cdk as cdk

    from stacks.assembly import add_stacks
    from stacks.plan import plan

    name = f"c{n}"
    sp.write_project(root, name, toml_extra='[deploy]\nstrategy = "canary"\n',
                     model_json=sp.classifier_json(name, "v1", [f"k{i}" for i in range(n)]))
    sp.write_lock(root, [name])
    app = cdk.App(outdir=str(root / "cdk.out"))
    add_stacks(app, plan(root, patterns=["models/*"], lock_path=Path("mlpack.lock.json")))
    app.synth()
    return json.loads((root / "cdk.out" / f"mlpack-{name}.template.json").read_text())


def deployment_alarms(template: dict) -> list:
    (group,) = [r for r in template["Resources"].values() if r["Type"] == "AWS::CodeDeploy::DeploymentGroup"]
    return group["Properties"]["AlarmConfiguration"]["Alarms"]


def test_many_drift_alarms_roll_back_through_one_composite(tmp_path: Path) -> None:
    template = synth_classes(tmp_path, 60)  # 60 classes: 7 drift alarms + 5 service alarms > 10
    drift = [r for r in template["Resources"].values() if r["Type"] == "AWS::CloudWatch::Alarm"
             and r["Properties"]["AlarmName"].startswith("mlpack-c60-drift-")]
    assert len(drift) == 7
    (composite,) = [r for r in template["Resources"].values() if r["Type"] == "AWS::CloudWatch::CompositeAlarm"]
    assert composite["Properties"]["AlarmName"] == "mlpack-c60-drift-any"
    rule = json.dumps(composite["Properties"]["AlarmRule"])
    assert rule.count("ALARM(") == 7
    assert len(deployment_alarms(template)) == 6  # 5 service alarms + the composite


def test_few_classes_use_the_drift_alarm_directly(tmp_path: Path) -> None:
    template = synth_classes(tmp_path, 3)
    assert not [r for r in template["Resources"].values() if r["Type"] == "AWS::CloudWatch::CompositeAlarm"]
    assert len(deployment_alarms(template)) == 6  # 5 service alarms + drift
