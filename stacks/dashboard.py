"""A CloudWatch dashboard per model (mlpack-<model>): traffic, errors, latency percentiles, cold
starts, the model's own metrics and the state of its alarms. No AWS calls.
"""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cw
from constructs import Construct

from handlers import contract
from handlers.names import ModelNames
from stacks.alarms import ModelMetrics


@dataclass(frozen=True, kw_only=True)
class DashboardProps:
    """Props of ModelDashboard.

    model_name: the model (function, API and dashboard are mlpack-[<environment>-]<model_name>, see
        handlers/names.py).
    environment: the environment (dev, prod, ...); None (default) = none.
    stage_name: the API stage.
    alarms: alarms shown in an alarm status widget.
    period_minutes: the graphs' period (default 5).
    """

    model_name: str
    stage_name: str = "v1"
    alarms: tuple[cw.IAlarm, ...] = ()
    period_minutes: int = 5
    environment: str | None = None


class ModelDashboard(Construct):
    """Three rows of graphs (function, API, the model's own metrics) and the alarms' states."""

    def __init__(self, scope: Construct, id: str, *, props: DashboardProps) -> None:
        super().__init__(scope, id)
        names = ModelNames(props.model_name, props.environment)
        m = ModelMetrics(names, props.stage_name, Duration.minutes(props.period_minutes), labelled=True)
        self.dashboard = cw.Dashboard(
            self, "Dashboard", dashboard_name=names.dashboard, default_interval=Duration.hours(3)
        )
        self.dashboard.add_widgets(*_function_row(m))
        self.dashboard.add_widgets(*_api_row(m))
        self.dashboard.add_widgets(*_model_row(m))
        if props.alarms:
            self.dashboard.add_widgets(cw.AlarmStatusWidget(title="Alarms", alarms=list(props.alarms), width=24))


def _function_row(m: ModelMetrics) -> list[cw.IWidget]:
    return [
        cw.GraphWidget(
            title="Invocations and errors",
            width=8,
            left=[m.function("Invocations"), m.function("Errors"), m.function("Throttles")],
        ),
        cw.GraphWidget(
            title="Function duration (ms)",
            width=8,
            left=[m.function("Duration", s, f"Duration {s}") for s in ("p50", "p90", "p99")],
        ),
        cw.GraphWidget(
            title="Cold starts and concurrency",
            width=8,
            left=[m.own(contract.M_COLD_START)],
            right=[m.function("ConcurrentExecutions", "Maximum")],
        ),
    ]


def _api_row(m: ModelMetrics) -> list[cw.IWidget]:
    return [
        cw.GraphWidget(
            title="API requests and errors", width=8, left=[m.api("Count"), m.api("4XXError"), m.api("5XXError")]
        ),
        cw.GraphWidget(
            title="API latency (ms)",
            width=8,
            left=[m.api("Latency", s, f"Latency {s}") for s in ("p50", "p90", "p99")],
        ),
        cw.GraphWidget(
            title="Handler latency (ms)",
            width=8,
            left=[m.own(contract.M_LATENCY, "p99"), m.own(contract.M_INFERENCE_LATENCY, "p99")],
        ),
    ]


def _model_row(m: ModelMetrics) -> list[cw.IWidget]:
    return [
        cw.GraphWidget(
            title="Requests, rows, refused",
            width=8,
            left=[
                m.own(contract.M_REQUESTS),
                m.own(contract.M_ROWS),
                m.own(contract.M_VALIDATION_FAILURES),
                m.own(contract.M_MODEL_ERRORS),
            ],
            # rows refused because the model's outputs were NaN or infinite: a model answering nonsense
            right=[m.own(contract.M_NON_FINITE_OUTPUTS)],
        ),
        cw.GraphWidget(
            title="Inputs outside the training range",
            width=8,
            left=[m.own(contract.M_INPUT_VALUES)],
            right=[m.own(contract.M_OUT_OF_RANGE)],
        ),
        cw.GraphWidget(title="Batch size", width=8, left=[m.own(contract.M_BATCH_SIZE, "Average")]),
    ]
