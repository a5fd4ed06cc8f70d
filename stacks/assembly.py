"""Turn an AppPlan into stacks on a CDK App: one mlpack-[<env>-]<model> per model plus
mlpack-[<env>-]shared (handlers/names.py), all in the plan's account and region, and tag them.

Environments (dev, staging, prod, ...) may share one account and region: every physical name
carries the environment, so their stacks never collide. Tags go on every taggable resource of every
stack (aws_cdk.Tags; CloudFormation also gets them as stack tags): mlpack:managed-by = mlpack,
mlpack:environment (when there is one), and on a model's stack mlpack:model, mlpack:owners (the
owners, space-separated) and mlpack:version (the lock's model version), plus the team's `tags`
(cost-center, ...), which never override an mlpack: tag (a team tag named mlpack:... is left out).
Values are made valid tag values (tag_value).

No AWS calls; the synthesizer is a parameter so tests can deploy without a bootstrapped account.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from types import MappingProxyType

from aws_cdk import App, Environment, IStackSynthesizer, Stack, Tags

from stacks.model_stack import ModelStack
from stacks.plan import AppPlan, ModelPlan
from stacks.shared_stack import SharedStack

TAG_PREFIX = "mlpack:"
TAG_MODEL = "mlpack:model"
TAG_OWNERS = "mlpack:owners"
TAG_VERSION = "mlpack:version"
TAG_ENVIRONMENT = "mlpack:environment"
TAG_MANAGED_BY = "mlpack:managed-by"
MANAGED_BY = "mlpack"
TAG_VALUE_MAX = 256
# what every service taking tags accepts in a value (letters and digits in any script, spaces, _.:/=+-@)
_TAG_VALUE_BAD = re.compile(r"[^\w .:/=+\-@]")
_NO_TAGS: Mapping[str, str] = MappingProxyType({})


def add_stacks(
    app: App,
    plan: AppPlan,
    *,
    environment: str | None = None,
    tags: Mapping[str, str] = _NO_TAGS,
    account_concurrency: int = 1000,
    synthesizer: Callable[[], IStackSynthesizer] | None = None,
) -> dict[str, Stack]:
    """Add the plan's stacks to app; returns them by stack name. Nothing when the plan has no model.

    environment: the environment every stack and resource name carries (None: the names without
    one). tags: the team's tags for every resource (the mlpack: tags win over them)."""
    if plan.env is None:  # no model
        return {}
    account, region = plan.env
    env = Environment(account=account, region=region)

    def synth() -> IStackSynthesizer | None:
        return synthesizer() if synthesizer else None

    shared = SharedStack(
        app,
        with_notifier=any(m.spec.notifications.chat for m in plan.models),
        environment=environment,
        env=env,
        synthesizer=synth(),
    )
    _tag(shared, stack_tags(None, environment, tags))
    stacks: dict[str, Stack] = {shared.stack_name: shared}
    for m in plan.models:
        stack = ModelStack(
            app,
            spec=m.spec,
            lock=m.lock,
            info=m.info,
            image=m.image,
            account_concurrency=account_concurrency,
            environment=environment,
            env=env,
            synthesizer=synth(),
        )
        # deterministic names instead of exports: only an ordering dependency on the shared stack
        stack.add_stack_dependency(shared, "API Gateway logging role and the chat notifier come first")
        _tag(stack, stack_tags(m, environment, tags))
        stacks[stack.stack_name] = stack
    return stacks


def stack_tags(model: ModelPlan | None, environment: str | None, team: Mapping[str, str]) -> dict[str, str]:
    """The tags of one stack: the team's, then mlpack's (which win), every value a valid tag value.
    model None: the shared stack (no model, owners or version)."""
    ours = {TAG_MANAGED_BY: MANAGED_BY}
    if environment:
        ours[TAG_ENVIRONMENT] = environment
    if model is not None:
        ours[TAG_MODEL] = model.spec.name
        ours[TAG_OWNERS] = " ".join(model.spec.model.owners)
        ours[TAG_VERSION] = model.lock.model_version
    merged = {k: v for k, v in team.items() if not k.startswith(TAG_PREFIX)}  # mlpack:* is mlpack's
    merged.update(ours)
    return {k: tag_value(v) for k, v in merged.items()}


def tag_value(value: str) -> str:
    """value as a tag value: letters, digits, spaces and `_ . : / = + - @` kept, anything else `_`,
    cut to 256 characters."""
    return _TAG_VALUE_BAD.sub("_", str(value))[:TAG_VALUE_MAX]


def _tag(stack: Stack, tags: Mapping[str, str]) -> None:
    for key, value in tags.items():
        Tags.of(stack).add(key, value)
