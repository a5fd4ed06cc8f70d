"""The figures of `mlpack status`: which CloudWatch metrics make them, the GetMetricData queries that
ask for them (plain data, as many models per request as the API takes), and the figures computed from
the answers.

Per model, nine metrics over the window (the last 24 hours): Lambda's Invocations, Errors and p99
Duration (dimension FunctionName), and the handler's own Requests, ModelErrors, ColdStart,
ValidationFailures, OutOfRangeValues and InputValues (namespace mlpack or mlpack/<env>, dimension Model;
handlers/contract.py). Cold starts are the handler's ColdStart count (1 on the first inference request of
an execution environment), not Lambda's REPORT lines, which only a log query could count. The error rate
is (Lambda Errors + the handler's ModelErrors, its 500s) over Invocations, the validation rate
ValidationFailures over Requests, the out-of-range rate OutOfRangeValues over InputValues.

Enters: model names, the environment, a window. Leaves: `MetricQuery`s (ids unique across the whole
fleet, so one request can carry any 500 of them), and per model `Figures` (totals) or hourly series for
sparklines. Imports the standard library, handlers.contract/names and packager.fleet.facts; no AWS.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from handlers import contract as C
from handlers.names import ModelNames, metric_namespace
from packager.fleet.facts import MetricQuery, Series

MAX_QUERIES_PER_REQUEST = 500  # GetMetricData's limit on MetricDataQueries
DAY = 86400
HOUR = 3600
LAMBDA = "AWS/Lambda"
OWN = "own"  # the handler's namespace of the environment


@dataclass(frozen=True)
class Wanted:
    key: str
    source: str  # LAMBDA or OWN
    metric: str
    stat: str


WANTED = (
    Wanted("invocations", LAMBDA, "Invocations", "Sum"),
    Wanted("errors", LAMBDA, "Errors", "Sum"),
    Wanted("duration_p99", LAMBDA, "Duration", "p99"),
    Wanted("requests", OWN, C.M_REQUESTS, "Sum"),
    Wanted("model_errors", OWN, C.M_MODEL_ERRORS, "Sum"),
    Wanted("cold_starts", OWN, C.M_COLD_START, "Sum"),
    Wanted("validation_failures", OWN, C.M_VALIDATION_FAILURES, "Sum"),
    Wanted("out_of_range", OWN, C.M_OUT_OF_RANGE, "Sum"),
    Wanted("input_values", OWN, C.M_INPUT_VALUES, "Sum"),
)


@dataclass(frozen=True)
class Window:
    start: datetime
    end: datetime

    @property
    def hours(self) -> int:
        return round((self.end - self.start).total_seconds() / HOUR)


def window(now: datetime | None = None, hours: int = 24) -> Window:
    """The last `hours` up to the current minute (UTC): whole minutes, so two calls a second apart ask the same."""
    end = (now or datetime.now(UTC)).astimezone(UTC).replace(second=0, microsecond=0)
    return Window(start=end - timedelta(hours=hours), end=end)


def queries(models: Sequence[str], environment: str | None, period: int,
            prefix: str = "q") -> tuple[list[MetricQuery], dict[str, tuple[str, str]]]:
    """Every model's queries at one period, and what each id answers: id -> (model, key)."""
    out: list[MetricQuery] = []
    index: dict[str, tuple[str, str]] = {}
    own = metric_namespace(environment)
    for i, model in enumerate(models):
        function = ModelNames(model, environment).function
        for j, w in enumerate(WANTED):
            qid = f"{prefix}{i}_{j}"
            if w.source == LAMBDA:
                ns, dims = LAMBDA, (("FunctionName", function),)
            else:
                ns, dims = own, ((C.DIM_MODEL, model),)
            out.append(MetricQuery(id=qid, namespace=ns, metric=w.metric, dimensions=dims, stat=w.stat, period=period))
            index[qid] = (model, w.key)
    return out, index


def requests_needed(n_queries: int) -> int:
    """How many GetMetricData requests n queries take (pages of one request aside)."""
    return math.ceil(n_queries / MAX_QUERIES_PER_REQUEST)


def by_model(results: Mapping[str, Series], index: Mapping[str, tuple[str, str]]) -> dict[str, dict[str, Series]]:
    out: dict[str, dict[str, Series]] = {}
    for qid, (model, key) in index.items():
        out.setdefault(model, {})[key] = results.get(qid, Series())
    return out


@dataclass(frozen=True, kw_only=True)
class Figures:
    """One model's figures over the window; None where there was no data to compute one from."""

    requests: float | None  # Lambda invocations
    error_pct: float | None
    p99_ms: float | None
    cold_starts: float | None
    validation_pct: float | None
    out_of_range_pct: float | None

    def to_json(self) -> dict[str, float | None]:
        return {"requests": self.requests, "error_pct": _round(self.error_pct), "p99_ms": _round(self.p99_ms),
                "cold_starts": self.cold_starts, "validation_pct": _round(self.validation_pct),
                "out_of_range_pct": _round(self.out_of_range_pct)}


NO_FIGURES = Figures(requests=None, error_pct=None, p99_ms=None, cold_starts=None, validation_pct=None,
                     out_of_range_pct=None)


def _round(v: float | None) -> float | None:
    return None if v is None else round(v, 3)


def _total(s: Series | None) -> float | None:
    return sum(s.values) if s is not None and s.points else None


def _pct(part: float | None, whole: float | None) -> float | None:
    if whole is None or whole <= 0:
        return None
    return 100.0 * (part or 0.0) / whole


def figures(series: Mapping[str, Series]) -> Figures:
    """Totals over the window from one model's series (any period): sums added up; p99 the largest point's
    (with a one-day period over a 24 h window there are one or two points; the largest is the cautious one)."""
    invocations = _total(series.get("invocations"))
    errors = _total(series.get("errors"))
    model_errors = _total(series.get("model_errors"))
    failed = None if errors is None and model_errors is None else (errors or 0.0) + (model_errors or 0.0)
    p99 = series.get("duration_p99")
    return Figures(
        requests=invocations,
        error_pct=_pct(failed, invocations),
        p99_ms=max(p99.values) if p99 is not None and p99.points else None,
        cold_starts=_total(series.get("cold_starts")),
        validation_pct=_pct(_total(series.get("validation_failures")), _total(series.get("requests"))),
        out_of_range_pct=_pct(_total(series.get("out_of_range")), _total(series.get("input_values"))),
    )


def hourly(series: Mapping[str, Series], win: Window) -> dict[str, tuple[float | None, ...]]:
    """One value per hour of the window (None: no data that hour) for the sparklines: requests, error %,
    p99 ms, cold starts, validation %, out-of-range %."""
    n = max(win.hours, 1)

    def buckets(key: str) -> list[float | None]:
        out: list[float | None] = [None] * n
        for at, v in series.get(key, Series()).points:
            i = int((at.astimezone(UTC) - win.start).total_seconds() // HOUR)
            if 0 <= i < n:
                out[i] = (out[i] or 0.0) + v if key != "duration_p99" else max(out[i] or 0.0, v)
        return out

    b = {w.key: buckets(w.key) for w in WANTED}

    def ratio(part: str, *more: str, whole: str) -> tuple[float | None, ...]:
        out: list[float | None] = []
        for i in range(n):
            parts = [b[k][i] for k in (part, *more)]
            total = None if all(p is None for p in parts) else sum(p or 0.0 for p in parts)
            out.append(_pct(total, b[whole][i]))
        return tuple(out)

    return {
        "requests": tuple(b["invocations"]),
        "error_pct": ratio("errors", "model_errors", whole="invocations"),
        "p99_ms": tuple(b["duration_p99"]),
        "cold_starts": tuple(b["cold_starts"]),
        "validation_pct": ratio("validation_failures", whole="requests"),
        "out_of_range_pct": ratio("out_of_range", whole="input_values"),
    }
