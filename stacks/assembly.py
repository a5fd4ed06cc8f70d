"""Turn an AppPlan into stacks on a CDK App: one mlpack-[<env>-]<model> per model plus
mlpack-[<env>-]shared (handlers/names.py), all in the plan's account and region, and tag them.

Environments (dev, staging, prod, ...) may share one account and region: every physical name
carries the environment, so their stacks never collide. Tags go on every taggable resource of every
stack (aws_cdk.Tags; CloudFormation also gets them as stack tags): mlpack:managed-by = mlpack,
mlpack:environment (when there is one), and on a model's stack mlpack:model, mlpack:owners (the
owners, space-separated) and mlpack:version (the lock's model version), plus the team's `tags`
(cost-center, ...), which never override an mlpack: tag (a team tag named mlpack:... is left out).
Values are made valid tag values (tag_value).

Concurrency (reserve_concurrency): every function's concurrency is reserved, so one slow model can
neither starve the others nor the notifier. The app may reserve `concurrency_budget` in all (context
mlpack:concurrency_budget; default half of mlpack:account_concurrency, leaving the rest to other
environments and functions of the account). A model's runtime.reserved_concurrency is reserved as it
is; the notifier gets NOTIFIER_RESERVED_CONCURRENCY; every other model gets an equal share of what
is left, rounded down. Lambda refuses any reservation that leaves fewer than 100 of the account's
concurrency unreserved, so synth fails, naming the figures, when the reservations exceed the budget,
when the budget leaves fewer than 100 unreserved, or when a share is below 1 or below the model's
provisioned concurrency.

No AWS calls; the synthesizer is a parameter so tests can deploy without a bootstrapped account.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from types import MappingProxyType

from aws_cdk import App, Environment, IStackSynthesizer, Stack, Tags

from packager.errors import DeployError
from stacks.model_stack import ModelStack
from stacks.plan import AppPlan, ModelPlan
from stacks.shared_stack import NOTIFIER_RESERVED_CONCURRENCY, SharedStack

LAMBDA_MIN_UNRESERVED = 100  # Lambda keeps at least this much of the account's concurrency unreserved

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
    concurrency_budget: int | None = None,
    platform_emails: tuple[str, ...] = (),
    synthesizer: Callable[[], IStackSynthesizer] | None = None,
) -> dict[str, Stack]:
    """Add the plan's stacks to app; returns them by stack name. Nothing when the plan has no model.

    environment: the environment every stack and resource name carries (None: the names without
    one). tags: the team's tags for every resource (the mlpack: tags win over them).
    account_concurrency, concurrency_budget: see reserve_concurrency (None: half the account's).
    platform_emails: subscribed to the shared stack's platform topic. Raises DeployError when the
    reservations do not fit (before any stack is added)."""
    if plan.env is None:  # no model
        return {}
    with_notifier = any(m.spec.notifications.chat for m in plan.models)
    reserved = reserve_concurrency(plan.models, account_concurrency=account_concurrency,
                                   budget=concurrency_budget,
                                   notifier=NOTIFIER_RESERVED_CONCURRENCY if with_notifier else 0)
    account, region = plan.env
    env = Environment(account=account, region=region)

    def synth() -> IStackSynthesizer | None:
        return synthesizer() if synthesizer else None

    shared = SharedStack(
        app,
        with_notifier=with_notifier,
        environment=environment,
        account_concurrency=account_concurrency,
        platform_emails=platform_emails,
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
            reserved_concurrency=reserved[m.spec.name],
            environment=environment,
            env=env,
            synthesizer=synth(),
        )
        # deterministic names instead of exports: only an ordering dependency on the shared stack
        stack.add_stack_dependency(shared, "API Gateway logging role and the chat notifier come first")
        _tag(stack, stack_tags(m, environment, tags))
        stacks[stack.stack_name] = stack
    return stacks


def reserve_concurrency(models: tuple[ModelPlan, ...] | list[ModelPlan], *, account_concurrency: int,
                        budget: int | None = None, notifier: int = 0) -> dict[str, int]:
    """Each model's reserved concurrency, by model name (the rule is in this module's docstring).
    budget None: half of account_concurrency. notifier: the notifier's reservation (0: no notifier)."""
    budget = account_concurrency // 2 if budget is None else budget
    fix = "lower runtime.reserved_concurrency, or raise -c mlpack:concurrency_budget / mlpack:account_concurrency"
    if budget > account_concurrency - LAMBDA_MIN_UNRESERVED:
        raise DeployError(
            f"context mlpack:concurrency_budget={budget} leaves {account_concurrency - budget} of the account's "
            f"{account_concurrency} (mlpack:account_concurrency) unreserved; Lambda requires {LAMBDA_MIN_UNRESERVED}",
            hint=f"set -c mlpack:concurrency_budget={account_concurrency - LAMBDA_MIN_UNRESERVED} or less")
    explicit = {m.spec.name: m.spec.runtime.reserved_concurrency for m in models
                if m.spec.runtime.reserved_concurrency is not None}
    shared = [m for m in models if m.spec.runtime.reserved_concurrency is None]
    fixed = sum(v for v in explicit.values() if v is not None) + notifier
    figures = ", ".join([*(f"{k} {v}" for k, v in sorted(explicit.items())), *([f"notifier {notifier}"]
                                                                                  if notifier else [])])
    if fixed > budget or (shared and fixed + len(shared) > budget):
        need = f" plus at least 1 for each of {len(shared)} other model(s)" if shared else ""
        raise DeployError(
            f"reserved concurrency {fixed} ({figures or 'nothing'}){need} exceeds the budget of {budget} of the "
            f"account's {account_concurrency} (mlpack:concurrency_budget; Lambda keeps {LAMBDA_MIN_UNRESERVED} "
            "unreserved)", hint=fix)
    out: dict[str, int] = {k: v for k, v in explicit.items() if v is not None}
    if shared:
        share = (budget - fixed) // len(shared)
        for m in shared:
            if m.spec.runtime.provisioned_concurrency > share:
                raise DeployError(
                    f"model {m.spec.name}: its default reserved concurrency, {share} (an equal share of the "
                    f"{budget - fixed} left of the budget {budget} for {len(shared)} model(s)), is below its "
                    f"runtime.provisioned_concurrency {m.spec.runtime.provisioned_concurrency}",
                    hint="set runtime.reserved_concurrency for it, or raise -c mlpack:concurrency_budget")
            out[m.spec.name] = share
    return out


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
