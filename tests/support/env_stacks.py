"""Apps with environments, for the stack tests: fixture projects (tests/support/stack_projects.py)
planned with stacks.plan and put on one CDK App by stacks.assembly.add_stacks, once per environment,
then synthesised. Read the templates back as plain dicts.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support import stack_projects as sp

CHAT_TOML = """
[[notifications.chat]]
kind = "slack"
webhook = "ssm:/mlpack/iris/slack-url"
[deploy]
strategy = "canary"
"""


@dataclass(frozen=True)
class Synth:
    out: Path
    stacks: dict[str, Any]  # stack name -> aws_cdk.Stack, over every environment

    def template(self, stack_name: str) -> dict[str, Any]:
        return dict(json.loads((self.out / f"{stack_name}.template.json").read_text()))

    def templates(self) -> dict[str, dict[str, Any]]:
        return {name: self.template(name) for name in self.stacks}


def write_models(root: Path, *, region: str = sp.REGION) -> Path:
    """root with two models (iris with chat and a canary, houses a regressor) pushed to ECR in region."""
    sp.write_project(root, "iris", toml_extra=CHAT_TOML)
    sp.write_project(root, "houses", model_json=sp.regressor_json("houses", "v1"))
    repo = f"{sp.ACCOUNT}.dkr.ecr.{region}.amazonaws.com/mlpack/models"
    sp.write_lock(root, ["iris", "houses"], repository=repo)
    return root


def synth(
    root: Path,
    environments: Sequence[str | None],
    *,
    tags: Mapping[str, str] | None = None,
    region: str = sp.REGION,
) -> Synth:
    """One App holding every environment's stacks for the models of write_models(root, region=region)."""
    import aws_cdk as cdk

    from stacks.assembly import add_stacks
    from stacks.plan import plan

    write_models(root, region=region)
    the_plan = plan(root, patterns=["models/*"], lock_path=Path("mlpack.lock.json"))
    out = root / "cdk.out"
    app = cdk.App(outdir=str(out))
    stacks: dict[str, Any] = {}
    for env in environments:
        added = add_stacks(app, the_plan, environment=env, tags=tags or {})
        assert not set(added) & set(stacks), "two environments made a stack of the same name"
        stacks.update(added)
    app.synth()
    return Synth(out=out, stacks=stacks)


def resources(template: Mapping[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(logical id, type, properties) of every resource but CDK's metadata."""
    for logical_id, r in template.get("Resources", {}).items():
        if r["Type"] != "AWS::CDK::Metadata":
            yield logical_id, r["Type"], dict(r.get("Properties", {}))


def tags_of(properties: Mapping[str, Any]) -> dict[str, str]:
    """A resource's tags, from CloudFormation's list form ([{Key, Value}]) or map form (SSM)."""
    tags = properties.get("Tags")
    if isinstance(tags, list):
        return {t["Key"]: t["Value"] for t in tags}
    return dict(tags or {})
