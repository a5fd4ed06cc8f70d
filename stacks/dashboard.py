"""A CloudWatch dashboard per model (mlpack-<model>): traffic, errors, latency percentiles, cold
starts, the model's own metrics and the state of its alarms. No AWS calls.
"""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cw
from constructs import Construct

from handlers import contract


@dataclass(frozen=True, kw_only=True)
class DashboardProps:
    """Props of ModelDashboard.

    model_name: the model (function and API are mlpack-<model_name>).
    stage_name: the API stage.
    alarms: alarms shown in an alarm status widget.
    period_minutes: the graphs' period (default 5).
    """

    model_name: str
    stage_name: str = "v1"
    alarms: tuple[cw.IAlarm, ...] = ()
    period_minutes: int = 5


class ModelDashboard(Construct):
    def __init__(self, scope: Construct, id: str, *, props: DashboardProps) -> None:
        super().__init__(scope, id)
        period = Duration.minutes(props.period_minutes)
        name = f"mlpack-{props.model_name}"

        fn = {"FunctionName": name}
        api = {"ApiName": name, "Stage": props.stage_name}
        own = {contract.DIM_MODEL: props.model_name}

        def metric(namespace: str, dims: dict[str, str], name: str, stat: str, label: str | None) -> cw.Metric:
            return cw.Metric(
                namespace=namespace,
                metric_name=name,
                dimensions_map=dims,
                statistic=stat,
                period=period,
                label=label or name,
            )

        def lam(metric_name: str, stat: str = "Sum", label: str | None = None) -> cw.Metric:
            return metric("AWS/Lambda", fn, metric_name, stat, label)

        def gw(metric_name: str, stat: str = "Sum", label: str | None = None) -> cw.Metric:
            return metric("AWS/ApiGateway", api, metric_name, stat, label)

        def mine(metric_name: str, stat: str = "Sum") -> cw.Metric:
            return metric(contract.METRIC_NAMESPACE, own, metric_name, stat, None)

        self.dashboard = cw.Dashboard(self, "Dashboard", dashboard_name=name, default_interval=Duration.hours(3))
        self.dashboard.add_widgets(
            cw.GraphWidget(
                title="Invocations and errors", width=8, left=[lam("Invocations"), lam("Errors"), lam("Throttles")]
            ),
            cw.GraphWidget(
                title="Function duration (ms)",
                width=8,
                left=[lam("Duration", s, f"Duration {s}") for s in ("p50", "p90", "p99")],
            ),
            cw.GraphWidget(
                title="Cold starts and concurrency",
                width=8,
                left=[mine(contract.M_COLD_START)],
                right=[lam("ConcurrentExecutions", "Maximum")],
            ),
        )
        self.dashboard.add_widgets(
            cw.GraphWidget(
                title="API requests and errors", width=8, left=[gw("Count"), gw("4XXError"), gw("5XXError")]
            ),
            cw.GraphWidget(
                title="API latency (ms)",
                width=8,
                left=[gw("Latency", s, f"Latency {s}") for s in ("p50", "p90", "p99")],
            ),
            cw.GraphWidget(
                title="Handler latency (ms)",
                width=8,
                left=[mine(contract.M_LATENCY, "p99"), mine(contract.M_INFERENCE_LATENCY, "p99")],
            ),
        )
        self.dashboard.add_widgets(
            cw.GraphWidget(
                title="Requests, rows, refused",
                width=8,
                left=[
                    mine(contract.M_REQUESTS),
                    mine(contract.M_ROWS),
                    mine(contract.M_VALIDATION_FAILURES),
                    mine(contract.M_MODEL_ERRORS),
                ],
            ),
            cw.GraphWidget(
                title="Inputs outside the training range",
                width=8,
                left=[mine(contract.M_INPUT_VALUES)],
                right=[mine(contract.M_OUT_OF_RANGE)],
            ),
            cw.GraphWidget(title="Batch size", width=8, left=[mine(contract.M_BATCH_SIZE, "Average")]),
        )
        if props.alarms:
            self.dashboard.add_widgets(cw.AlarmStatusWidget(title="Alarms", alarms=list(props.alarms), width=24))
