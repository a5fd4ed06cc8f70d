"""Turn an AppPlan into stacks on a CDK App: one mlpack-<model> per model plus mlpack-shared.
No AWS calls; the synthesizer is a parameter so tests can deploy without a bootstrapped account.
"""

from __future__ import annotations

from collections.abc import Callable

from aws_cdk import App, Environment, IStackSynthesizer, Stack

from stacks.model_stack import ModelStack
from stacks.plan import AppPlan
from stacks.shared_stack import SharedStack


def add_stacks(
    app: App,
    plan: AppPlan,
    *,
    account_concurrency: int = 1000,
    synthesizer: Callable[[], IStackSynthesizer] | None = None,
) -> dict[str, Stack]:
    """Add the plan's stacks to app; returns them by stack name. Nothing when the plan has no model."""
    if plan.env is None:  # no model
        return {}
    account, region = plan.env
    env = Environment(account=account, region=region)

    def synth() -> IStackSynthesizer | None:
        return synthesizer() if synthesizer else None

    shared = SharedStack(
        app, with_notifier=any(m.spec.notifications.chat for m in plan.models), env=env, synthesizer=synth()
    )
    stacks: dict[str, Stack] = {shared.stack_name: shared}
    for m in plan.models:
        stack = ModelStack(
            app,
            spec=m.spec,
            lock=m.lock,
            info=m.info,
            image=m.image,
            account_concurrency=account_concurrency,
            env=env,
            synthesizer=synth(),
        )
        # deterministic names instead of exports: only an ordering dependency on the shared stack
        stack.add_stack_dependency(shared, "API Gateway logging role and the chat notifier come first")
        stacks[stack.stack_name] = stack
    return stacks
