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


def test_a_thousand_classes_split_the_composite_under_cloudwatchs_quotas(tmp_path: Path) -> None:
    from stacks.model_stack import COMPOSITE_MAX_CHILDREN, COMPOSITE_RULE_MAX_CHARS

    template = synth_classes(tmp_path, 1000)  # 112 drift alarms: one composite would reference 112 (> 100)
    drift = [r for r in template["Resources"].values() if r["Type"] == "AWS::CloudWatch::Alarm"
             and r["Properties"]["AlarmName"].startswith("mlpack-c1000-drift-")]
    assert len(drift) == 112
    composites = {r["Properties"]["AlarmName"]: r["Properties"] for r in template["Resources"].values()
                  if r["Type"] == "AWS::CloudWatch::CompositeAlarm"}
    assert sorted(composites) == ["mlpack-c1000-drift-any-1", "mlpack-c1000-drift-any-2"]
    children = 0
    for props in composites.values():
        rule = json.dumps(props["AlarmRule"])
        assert rule.count("ALARM(") <= COMPOSITE_MAX_CHILDREN
        # as deployed: each child is ALARM("arn:aws:cloudwatch:<region>:<account>:alarm:<name>")
        deployed = rule.count("ALARM(") * len(f' OR ALARM("arn:aws:cloudwatch:{sp.REGION}:{sp.ACCOUNT}:alarm:")') + \
            sum(len(r["Properties"]["AlarmName"]) for r in drift) / len(drift) * rule.count("ALARM(")
        assert deployed <= COMPOSITE_RULE_MAX_CHARS
        children += rule.count("ALARM(")
    assert children == 112  # every drift alarm is in one of them (56 + 56)
    assert len(deployment_alarms(template)) == 7  # 5 service alarms + 2 composites: within CodeDeploy's 10


def test_composites_nest_when_even_the_composites_are_too_many() -> None:
    """Past 100 x the free slots (2 here), composites of composites; every rule within 100 children. (In a model
    stack that takes 500 drift alarms, and CloudFormation's 500 resources per stack come first.)"""
    from aws_cdk import App, Stack
    from aws_cdk import aws_cloudwatch as cw
    from aws_cdk.assertions import Template

    from handlers.names import ModelNames
    from stacks.model_stack import COMPOSITE_MAX_CHILDREN, fold_alarms

    stack = Stack(App(), "s")
    whats = [f"drift-{i}" for i in range(1, 251)]
    alarms = [cw.Alarm(stack, w, metric=cw.Metric(namespace="n", metric_name="m"), threshold=1,
                       evaluation_periods=1) for w in whats]
    top = fold_alarms(stack, alarms, whats, 2, names=ModelNames("m"))
    assert len(top) == 1
    composites = {r["Properties"]["AlarmName"]: json.dumps(r["Properties"]["AlarmRule"])
                  for r in Template.from_stack(stack).find_resources("AWS::CloudWatch::CompositeAlarm").values()}
    assert sorted(composites) == sorted([f"mlpack-m-drift-any-{i}" for i in range(1, 4)] + ["mlpack-m-drift-any-2-1"])
    assert all(rule.count("ALARM(") <= COMPOSITE_MAX_CHILDREN for rule in composites.values())
    assert [composites[f"mlpack-m-drift-any-{i}"].count("ALARM(") for i in range(1, 4)] == [84, 84, 82]
    assert composites["mlpack-m-drift-any-2-1"].count("ALARM(") == 3
