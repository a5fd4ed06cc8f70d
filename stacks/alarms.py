"""Alarms as data: `alarm_specs()` turns a model's thresholds into a list of AlarmSpec (metric,
statistic, threshold, periods), and ModelAlarms renders them, each named mlpack-<model>-<what>,
with the model's topic as ALARM (and optionally OK) action. In an environment the names are
mlpack-<env>-<model>-<what> (handlers/names.py). Missing data is not breaching, so an
idle model pages nobody; the one exception is the opt-in traffic-drop alarm, for which no requests
at all is the very thing to report.

The errors and api-5xx alarms watch 1-minute periods, M out of N (alarms.outage_datapoints of
alarms.outage_window_minutes, default 3 of 5), so a total outage pages within minutes; the others
use alarms.period_minutes x alarms.evaluation_periods (default 5 min x 3), a trend rather than a blip.

Metrics are addressed by deterministic names (function and API mlpack-<model> from handlers/names.py,
the mlpack namespace of handlers/contract.py), so building the specs needs no constructs. No AWS calls.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_sns as sns
from constructs import Construct

from handlers import contract
from handlers.names import ModelNames, metric_namespace
from stacks.model_json import ClassShares, RegressionProfile

GT = cw.ComparisonOperator.GREATER_THAN_THRESHOLD
GE = cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD
LT = cw.ComparisonOperator.LESS_THAN_THRESHOLD
# CloudWatch: an alarm's metric math may reference at most 10 metrics (hard limit); one is Rows.
MAX_CLASSES_PER_DRIFT_ALARM = 9
# Below this many predictions in a period, shares and means are noise (one request of one row is a
# 100% share of one class): the drift alarms count such a period as not breaching.
DRIFT_MIN_ROWS = 30


@dataclass(frozen=True, kw_only=True)
class Thresholds:
    """The [alarms] section plus what the thresholds are relative to.

    timeout_s: the function timeout (duration alarm = pct of it).
    concurrency_limit: reserved concurrency, or the account's limit when unreserved (default 1000).
    stage_name: the API stage whose metrics are watched.
    drift_min_rows: periods with fewer predictions do not count as drift (too few to measure a share).
    Other fields: as documented in packager/config/spec.py AlarmsSection.
    """

    period_minutes: int = 5
    evaluation_periods: int = 3
    error_rate_pct: float = 1.0
    throttles: int = 1
    duration_p99_pct_of_timeout: float = 80.0
    concurrency_pct: float = 80.0
    api_5xx_rate_pct: float = 1.0
    api_4xx_rate_pct: float = 10.0
    api_latency_p99_ms: int = 3000
    validation_failure_rate_pct: float = 5.0
    out_of_range_rate_pct: float = 5.0
    unseen_category_rate_pct: float = 5.0
    drift: float = 0.2
    outage_datapoints: int = 3
    outage_window_minutes: int = 5
    traffic_min_requests: int = 0
    traffic_window_minutes: int = 15
    drift_min_rows: int = DRIFT_MIN_ROWS
    timeout_s: int = 29
    concurrency_limit: int = 1000
    stage_name: str = "v1"


@dataclass(frozen=True, kw_only=True)
class AlarmSpec:
    """One alarm: what it watches and when it fires. The alarm is named mlpack-<model>-<what>.

    evaluation_periods: the periods (of the metric's own period) looked at; datapoints_to_alarm: how many
    of them must breach (None, the default: all of them). treat_missing: how a period without data counts
    (default: not breaching, so an idle model pages nobody)."""

    what: str
    description: str
    metric: cw.IMetric
    threshold: float
    comparison: cw.ComparisonOperator = GT
    evaluation_periods: int = 3
    datapoints_to_alarm: int | None = None
    treat_missing: cw.TreatMissingData = cw.TreatMissingData.NOT_BREACHING


@dataclass(frozen=True)
class ModelMetrics:
    """One model's metrics, each over `period`, addressed by name (no constructs): what its alarms watch
    and its dashboard (dashboard.py) graphs. `labelled`: each metric is labelled (default: its name), for
    graphs; alarms' metrics carry no label."""

    names: ModelNames
    stage_name: str
    period: Duration
    labelled: bool = False

    def function(self, name: str, stat: str = "Sum", label: str | None = None) -> cw.Metric:
        return self._metric("AWS/Lambda", name, {"FunctionName": self.names.function}, stat, label)

    def api(self, name: str, stat: str = "Sum", label: str | None = None) -> cw.Metric:
        dims = {"ApiName": self.names.api, "Stage": self.stage_name}
        return self._metric("AWS/ApiGateway", name, dims, stat, label)

    def own(self, name: str, stat: str = "Sum", *, class_name: str | None = None) -> cw.Metric:
        """One of the handler's metrics (handlers/contract.py), per model or per predicted class."""
        dims = {contract.DIM_MODEL: self.names.model}
        if class_name is not None:
            dims[contract.DIM_CLASS] = class_name
        return self._metric(metric_namespace(self.names.environment), name, dims, stat, None)

    def math(self, expr: str, label: str, **using: cw.IMetric) -> cw.MathExpression:
        return cw.MathExpression(expression=expr, using_metrics=using, label=label, period=self.period)

    def _metric(self, namespace: str, name: str, dims: dict[str, str], stat: str, label: str | None) -> cw.Metric:
        return cw.Metric(
            namespace=namespace, metric_name=name, dimensions_map=dims, statistic=stat, period=self.period,
            label=label or (name if self.labelled else None),
        )


def alarm_specs(model: str, t: Thresholds, drift: ClassShares | RegressionProfile | None, *,
                chat: bool = False, categorical: bool = False, environment: str | None = None) -> list[AlarmSpec]:
    """Every alarm of one model, in a fixed order. chat: the model has chat targets, so the notifier's
    failures to reach them get an alarm too (it reaches the owners by email). categorical: the model
    takes string columns, whose categories unseen in training get an alarm like out-of-range values.
    environment: the function and API watched are the environment's (handlers/names.py)."""
    names = ModelNames(model, environment)
    m = ModelMetrics(names, t.stage_name, Duration.minutes(t.period_minutes))
    fast = ModelMetrics(names, t.stage_name, Duration.minutes(1))
    specs = [*_function_specs(m, fast, t), *_api_specs(m, fast, t), *_input_specs(m, t),
             *_drift_specs(m, t, drift)]
    if t.traffic_min_requests > 0:
        window = ModelMetrics(names, t.stage_name, Duration.minutes(t.traffic_window_minutes))
        specs.append(AlarmSpec(
            what="traffic-drop",
            description=f"Fewer than {t.traffic_min_requests} API requests in {t.traffic_window_minutes} min",
            metric=window.api("Count"),
            threshold=t.traffic_min_requests,
            comparison=LT,
            evaluation_periods=1,
            # no requests at all is no data point: the outage this alarm exists for
            treat_missing=cw.TreatMissingData.BREACHING,
        ))
    if categorical:
        specs.append(AlarmSpec(
            what="unseen-categories",
            description=f"String values of categories unseen in training above {t.unseen_category_rate_pct}%",
            metric=m.math("100 * unseen / checked", "unseen category %",
                          unseen=m.own(contract.M_UNSEEN_CATEGORIES), checked=m.own(contract.M_CATEGORY_VALUES)),
            threshold=t.unseen_category_rate_pct,
            evaluation_periods=t.evaluation_periods,
        ))
    if chat:
        specs.append(AlarmSpec(
            what="chat-delivery",
            description="The notifier could not deliver an alarm to a chat target (see its log)",
            metric=m.own(contract.M_NOTIFICATION_FAILURES),
            threshold=1,
            comparison=GE,
            evaluation_periods=1,  # each failure is one lost message: no waiting for a trend
        ))
    return specs


def _outage(t: Thresholds) -> str:
    return f"in {t.outage_datapoints} of the last {t.outage_window_minutes} minutes"


def _function_specs(m: ModelMetrics, fast: ModelMetrics, t: Thresholds) -> list[AlarmSpec]:
    n = t.evaluation_periods
    return [
        AlarmSpec(
            what="errors",
            description=f"Function errors above {t.error_rate_pct}% of invocations {_outage(t)}",
            metric=fast.math(
                "100 * errors / invocations",
                "error %",
                errors=fast.function("Errors"),
                invocations=fast.function("Invocations"),
            ),
            threshold=t.error_rate_pct,
            evaluation_periods=t.outage_window_minutes,
            datapoints_to_alarm=t.outage_datapoints,
        ),
        AlarmSpec(
            what="throttles",
            description=f"At least {max(t.throttles, 1)} throttled invocations per period",
            metric=m.function("Throttles"),
            threshold=max(t.throttles, 1),
            comparison=GE,
            evaluation_periods=n,
        ),
        AlarmSpec(
            what="duration",
            description=f"p99 duration above {t.duration_p99_pct_of_timeout}% of the {t.timeout_s} s timeout",
            metric=m.function("Duration", "p99"),
            threshold=round(t.timeout_s * 1000 * t.duration_p99_pct_of_timeout / 100, 3),
            evaluation_periods=n,
        ),
        AlarmSpec(
            what="concurrency",
            description=f"Concurrent executions above {t.concurrency_pct}% of {t.concurrency_limit}",
            metric=m.function("ConcurrentExecutions", "Maximum"),
            threshold=round(t.concurrency_limit * t.concurrency_pct / 100, 3),
            evaluation_periods=n,
        ),
    ]


def _api_specs(m: ModelMetrics, fast: ModelMetrics, t: Thresholds) -> list[AlarmSpec]:
    n = t.evaluation_periods
    return [
        AlarmSpec(
            what="api-5xx",
            description=f"API 5XX responses above {t.api_5xx_rate_pct}% of requests {_outage(t)}",
            metric=fast.math("100 * errors / requests", "5XX %", errors=fast.api("5XXError"),
                             requests=fast.api("Count")),
            threshold=t.api_5xx_rate_pct,
            evaluation_periods=t.outage_window_minutes,
            datapoints_to_alarm=t.outage_datapoints,
        ),
        AlarmSpec(
            what="api-4xx",
            description=f"API 4XX responses above {t.api_4xx_rate_pct}% of requests",
            metric=m.math("100 * errors / requests", "4XX %", errors=m.api("4XXError"), requests=m.api("Count")),
            threshold=t.api_4xx_rate_pct,
            evaluation_periods=n,
        ),
        AlarmSpec(
            what="api-latency",
            description=f"API p99 latency above {t.api_latency_p99_ms} ms",
            metric=m.api("Latency", "p99"),
            threshold=t.api_latency_p99_ms,
            evaluation_periods=n,
        ),
    ]


def _input_specs(m: ModelMetrics, t: Thresholds) -> list[AlarmSpec]:
    n = t.evaluation_periods
    return [
        AlarmSpec(
            what="validation-failures",
            description=f"Requests refused by validation above {t.validation_failure_rate_pct}%",
            metric=m.math(
                "100 * failures / requests",
                "validation failure %",
                failures=m.own(contract.M_VALIDATION_FAILURES),
                requests=m.own(contract.M_REQUESTS),
            ),
            threshold=t.validation_failure_rate_pct,
            evaluation_periods=n,
        ),
        AlarmSpec(
            what="out-of-range",
            description=f"Input values outside the training range above {t.out_of_range_rate_pct}%",
            metric=m.math(
                "100 * outside / checked",
                "out-of-range %",
                outside=m.own(contract.M_OUT_OF_RANGE),
                checked=m.own(contract.M_INPUT_VALUES),
            ),
            threshold=t.out_of_range_rate_pct,
            evaluation_periods=n,
        ),
    ]


def _drift_specs(m: ModelMetrics, t: Thresholds, drift: ClassShares | RegressionProfile | None) -> list[AlarmSpec]:
    if isinstance(drift, RegressionProfile):
        return _regression_drift_specs(m, t, drift)
    if isinstance(drift, ClassShares):
        return _class_drift_specs(m, t, drift)
    return []


def _regression_drift_specs(m: ModelMetrics, t: Thresholds, drift: RegressionProfile) -> list[AlarmSpec]:
    if drift.std <= 0:
        return []  # a constant training output has no scale to measure a shift against
    expr = _enough_rows(f"ABS(total / rows - {drift.mean!r}) / {drift.std!r}", t.drift_min_rows)
    return [
        AlarmSpec(
            what="drift",
            description=f"Mean prediction of {drift.name} moved more than {t.drift} training std "
            f"from {drift.mean:.4g}",
            metric=m.math(
                expr, "mean shift (std)", total=m.own(contract.M_PREDICTION_SUM), rows=m.own(contract.M_ROWS)
            ),
            threshold=t.drift,
            evaluation_periods=t.evaluation_periods,
        )
    ]


def _class_drift_specs(m: ModelMetrics, t: Thresholds, drift: ClassShares) -> list[AlarmSpec]:
    shares = list(drift.shares)
    # as few alarms as the limit allows, with classes spread evenly (10 classes: 5 + 5, not 9 + 1)
    size = math.ceil(len(shares) / math.ceil(len(shares) / MAX_CLASSES_PER_DRIFT_ALARM))
    chunks = [shares[i : i + size] for i in range(0, len(shares), size)]
    rows = m.own(contract.M_ROWS)
    out = []
    for k, chunk in enumerate(chunks, start=1):
        using: dict[str, cw.IMetric] = {"rows": rows}
        terms = []
        for j, (cls, share) in enumerate(chunk):
            using[f"c{j}"] = m.own(contract.M_PREDICTIONS, class_name=cls)
            # a class nobody predicted this period has no data point: count it as 0, not missing
            terms.append(f"ABS(FILL(c{j}, 0) / rows - {share!r})")
        names = ", ".join(c for c, _ in chunk)
        out.append(
            AlarmSpec(
                what="drift" if len(chunks) == 1 else f"drift-{k}",
                description=f"A class share (of {names}) moved more than {t.drift} from its training share",
                metric=m.math(
                    _enough_rows(f"MAX([{', '.join(terms)}])", t.drift_min_rows),
                    "largest class share change",
                    **using,
                ),
                threshold=t.drift,
                evaluation_periods=t.evaluation_periods,
            )
        )
    return out


def _enough_rows(expr: str, min_rows: int) -> str:
    """`expr` when the period had at least `min_rows` predictions, else 0 (below every drift threshold)."""
    return f"IF(rows >= {min_rows}, {expr}, 0)" if min_rows > 1 else expr


@dataclass(frozen=True, kw_only=True)
class ModelAlarmsProps:
    """Props of ModelAlarms.

    model_name: prefix of every alarm name (mlpack-[<environment>-]<model_name>-<what>).
    specs: the alarms to create (see alarm_specs()).
    topic: SNS topic notified on ALARM (and on OK when ok_actions).
    ok_actions: also notify when an alarm returns to OK (default True).
    """

    model_name: str
    specs: tuple[AlarmSpec, ...]
    topic: sns.ITopic
    ok_actions: bool = True
    environment: str | None = None


class ModelAlarms(Construct):
    """Renders AlarmSpecs as CloudWatch alarms."""

    def __init__(self, scope: Construct, id: str, *, props: ModelAlarmsProps) -> None:
        super().__init__(scope, id)
        action = cw_actions.SnsAction(props.topic)
        alarm_names = ModelNames(props.model_name, props.environment)
        self.alarms: dict[str, cw.Alarm] = {}
        for spec in props.specs:
            alarm = cw.Alarm(
                self,
                spec.what,
                alarm_name=alarm_names.alarm(spec.what),
                alarm_description=f"mlpack model {props.model_name}{_in(props.environment)}: {spec.description}",
                metric=spec.metric,
                threshold=spec.threshold,
                comparison_operator=spec.comparison,
                evaluation_periods=spec.evaluation_periods,
                datapoints_to_alarm=spec.datapoints_to_alarm,
                treat_missing_data=spec.treat_missing,
            )
            alarm.add_alarm_action(action)
            if props.ok_actions:
                alarm.add_ok_action(action)
            self.alarms[spec.what] = alarm


def _in(environment: str | None) -> str:
    return f" in {environment}" if environment else ""
