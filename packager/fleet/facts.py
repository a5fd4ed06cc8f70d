"""What `mlpack status` and `mlpack logs` ask AWS and what they get back, as plain typed records: the
questions (`MetricQuery`, one GetMetricData query) and the answers (`StackFacts` from DescribeStacks,
`AlarmFacts` from DescribeAlarms, `AlarmChange` from DescribeAlarmHistory, `LogEvent` from
FilterLogEvents, a metric's points as `Series`).

packager/aws.py fills these in; the rest of packager/fleet reads them. Enters and leaves: nothing but
these records. Imports only the standard library: no boto3, no click, no other mlpack module.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True, kw_only=True)
class StackFacts:
    """One CloudFormation stack, as DescribeStacks lists it (no resource is read)."""

    name: str
    status: str  # CREATE_COMPLETE, UPDATE_ROLLBACK_COMPLETE, ...
    description: str
    tags: Mapping[str, str]
    updated: datetime | None  # the last update, else the creation (UTC)
    reason: str = ""  # StackStatusReason, when CloudFormation gave one


@dataclass(frozen=True, kw_only=True)
class AlarmFacts:
    name: str
    state: str  # OK | ALARM | INSUFFICIENT_DATA
    reason: str
    updated: datetime | None  # when the state last changed (UTC)


@dataclass(frozen=True, kw_only=True)
class AlarmChange:
    """One state change of an alarm (DescribeAlarmHistory, HistoryItemType StateUpdate)."""

    alarm: str
    at: datetime
    old: str  # the state before ("" when the history did not say)
    new: str
    reason: str = ""


@dataclass(frozen=True, kw_only=True)
class MetricQuery:
    """One MetricStat query of GetMetricData. `id` is unique in one request and matches [a-z][A-Za-z0-9_]*."""

    id: str
    namespace: str
    metric: str
    dimensions: tuple[tuple[str, str], ...]
    stat: str  # Sum, Maximum, p99, ...
    period: int  # seconds

    def to_api(self) -> dict[str, object]:
        """The query as GetMetricData's MetricDataQueries takes it."""
        return {"Id": self.id, "ReturnData": True, "MetricStat": {
            "Metric": {"Namespace": self.namespace, "MetricName": self.metric,
                       "Dimensions": [{"Name": k, "Value": v} for k, v in self.dimensions]},
            "Period": self.period, "Stat": self.stat}}


@dataclass(frozen=True)
class Series:
    """A metric's points, oldest first (UTC); empty when the metric had no data in the window."""

    points: tuple[tuple[datetime, float], ...] = field(default=())

    @property
    def values(self) -> tuple[float, ...]:
        return tuple(v for _, v in self.points)


@dataclass(frozen=True, kw_only=True)
class LogEvent:
    timestamp: int  # ms since the epoch
    message: str
    stream: str = ""
    event_id: str = ""
