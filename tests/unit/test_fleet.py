"""packager/fleet: the pure parts of `mlpack status` and `mlpack logs` (queries, figures, the join of the
lock with stacks and alarms, log lines, sparklines), without AWS."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from packager.config.lock import Lock, LockEntry
from packager.errors import MlpackError
from packager.fleet import logs, metrics, text, view
from packager.fleet.facts import AlarmFacts, LogEvent, Series, StackFacts

T0 = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)
D1, D2 = "sha256:" + "1" * 64, "sha256:" + "2" * 64


def entry(name: str, digest: str = D1, version: str = "v1") -> LockEntry:
    return LockEntry(repository=f"123456789012.dkr.ecr.eu-west-1.amazonaws.com/mlpack/{name}", digest=digest,
                     arch="x86_64", model_version=version, model_sha256="0" * 64, project=f"models/{name}",
                     pushed_at="2026-11-27T05:00:00Z")


def stack(model: str, env: str | None = "dev", digest: str = D1, version: str = "v1", status: str = "UPDATE_COMPLETE",
          managed: bool = True) -> StackFacts:
    where = f" in {env}" if env else ""
    tags = {"mlpack:managed-by": "mlpack" if managed else "someone", "mlpack:model": model,
            "mlpack:owners": "ana@example.com bo@example.com", "mlpack:version": version}
    if env:
        tags["mlpack:environment"] = env
    prefix = f"mlpack-{env}" if env else "mlpack"
    return StackFacts(name=f"{prefix}-{model}", status=status, tags=tags, updated=T0,
                      description=f"mlpack model {model}{where} {version} ({digest[:19]})")


# --- metrics ---------------------------------------------------------------------------------------------


def test_queries_are_nine_per_model_with_unique_ids_and_the_environment_s_namespace():
    qs, index = metrics.queries(["iris", "houses"], "dev", metrics.DAY)
    assert len(qs) == 18 == len({q.id for q in qs}) == len(index)
    own = [q for q in qs if q.namespace != "AWS/Lambda"]
    assert {q.namespace for q in own} == {"mlpack/dev"} and ("Model", "iris") in {q.dimensions[0] for q in own}
    lam = [q for q in qs if q.namespace == "AWS/Lambda"]
    assert {q.dimensions for q in lam} == {(("FunctionName", "mlpack-dev-iris"),),
                                           (("FunctionName", "mlpack-dev-houses"),)}
    p99 = next(q for q in qs if q.metric == "Duration")
    assert p99.stat == "p99" and p99.to_api()["MetricStat"]["Period"] == 86400
    assert metrics.queries(["iris"], None, metrics.HOUR)[0][3].namespace == "mlpack"


def test_two_hundred_models_take_four_requests():
    qs, _ = metrics.queries([f"m{i}" for i in range(200)], "prod", metrics.DAY)
    assert metrics.requests_needed(len(qs)) == 4  # 1,800 queries, 500 to a request


def test_figures_from_series():
    s = {"invocations": Series(((T0, 150.0), (T0 + timedelta(hours=1), 50.0))),
         "errors": Series(((T0, 1.0),)), "model_errors": Series(((T0, 1.0),)),
         "duration_p99": Series(((T0, 80.0), (T0 + timedelta(hours=1), 120.0))),
         "requests": Series(((T0, 100.0),)), "validation_failures": Series(((T0, 5.0),)),
         "input_values": Series(((T0, 400.0),)), "out_of_range": Series(((T0, 4.0),)),
         "cold_starts": Series(((T0, 2.0),))}
    f = metrics.figures(s)
    assert (f.requests, f.error_pct, f.p99_ms, f.cold_starts) == (200.0, 1.0, 120.0, 2.0)
    assert (f.validation_pct, f.out_of_range_pct) == (5.0, 1.0)
    idle = metrics.figures({})
    assert idle == metrics.NO_FIGURES and idle.to_json()["requests"] is None


def test_hourly_buckets_fill_the_window_oldest_first():
    win = metrics.window(T0 + timedelta(seconds=30))
    assert win.end == T0 and win.hours == 24
    s = {"invocations": Series(((T0 - timedelta(hours=1), 10.0), (T0 - timedelta(hours=24), 4.0))),
         "errors": Series(((T0 - timedelta(hours=1), 1.0),))}
    h = metrics.hourly(s, win)
    assert h["requests"][0] == 4.0 and h["requests"][23] == 10.0 and h["requests"][5] is None
    assert h["error_pct"][23] == 10.0 and h["error_pct"][0] == 0.0 and h["error_pct"][5] is None


# --- view ------------------------------------------------------------------------------------------------


def test_deployed_reads_version_and_digest_from_the_stack():
    d = view.deployed(stack("iris", digest=D2, version="3f2a9c01b7d4"))
    assert (d.version, d.digest, d.owners, d.health) == ("3f2a9c01b7d4", D2[:19], ("ana@example.com", "bo@example.com"),
                                                         "ok")
    bare = view.deployed(StackFacts(name="x", status="UPDATE_ROLLBACK_COMPLETE", description="", tags={}, updated=None))
    assert (bare.version, bare.digest, bare.health) == ("", "", "rolled-back")


@pytest.mark.parametrize(("status", "health"), [
    ("CREATE_COMPLETE", "ok"), ("UPDATE_IN_PROGRESS", "deploying"), ("ROLLBACK_COMPLETE", "failed"),
    ("UPDATE_ROLLBACK_FAILED", "failed"), ("DELETE_IN_PROGRESS", "deleting"), ("CREATE_FAILED", "failed")])
def test_stack_health(status, health):
    assert view.stack_health(status) == health


def test_model_stacks_are_mlpack_s_of_this_environment():
    stacks = [stack("iris"), stack("iris", env="prod"), stack("iris", env=None), stack("other", managed=False),
              StackFacts(name="mlpack-dev-shared", status="CREATE_COMPLETE", description="",
                         tags={"mlpack:managed-by": "mlpack", "mlpack:environment": "dev"}, updated=T0)]
    assert {m: s.name for m, s in view.model_stacks(stacks, "dev").items()} == {"iris": "mlpack-dev-iris"}
    assert {m: s.name for m, s in view.model_stacks(stacks, None).items()} == {"iris": "mlpack-iris"}
    assert view.shared_stack(stacks, "dev", "eu-west-1") is stacks[-1]


def test_alarms_go_to_the_longest_model_name_they_start_with():
    alarms = [AlarmFacts(name=n, state="ALARM", reason="", updated=T0)
              for n in ("mlpack-dev-a-errors", "mlpack-dev-a-b-errors", "mlpack-dev-zzz-errors")]
    got = view.alarms_by_model(alarms, ["a", "a-b"], "dev")
    assert {m: [a.name for a in v] for m, v in got.items()} == {"a": ["mlpack-dev-a-errors"],
                                                               "a-b": ["mlpack-dev-a-b-errors"]}


def _fleet(**kw):
    lock = Lock(models={"iris": entry("iris", D2, "v2"), "wine": entry("wine"), "houses": entry("houses"),
                        "zeta": entry("zeta")}, history={})
    stacks = [stack("iris"), stack("houses"), stack("zeta"), stack("old"),
              StackFacts(name="mlpack-dev-shared", status="CREATE_COMPLETE", description="",
                         tags={"mlpack:managed-by": "mlpack", "mlpack:environment": "dev"}, updated=T0)]
    alarms = [AlarmFacts(name="mlpack-dev-houses-errors", state="ALARM", reason="7.5 > 1", updated=T0),
              AlarmFacts(name="mlpack-dev-zeta-errors", state="OK", reason="", updated=T0),
              AlarmFacts(name="mlpack-dev-shared-notifier-errors", state="ALARM", reason="", updated=T0)]
    return view.fleet(lock=lock, stacks=stacks, alarms=alarms, figures={}, environment="dev", region="eu-west-1",
                      account="123456789012", lock_name="mlpack.dev.lock.json", win=metrics.window(T0),
                      owners_of=lambda m, e: ("owner@example.com",), **kw)


def test_the_fleet_puts_alarms_first_then_drift_then_never_deployed():
    f = _fleet()
    assert [m.model for m in f.models] == ["houses", "iris", "wine", "zeta"]
    houses, iris, wine, zeta = f.models
    assert houses.firing_whats == ("errors",) and houses.problems == ("alarm",)
    assert iris.drift and iris.problems == ("drift",)
    assert wine.never_deployed and wine.owners == ("owner@example.com",) and wine.problems == ("never-deployed",)
    assert zeta.problems == () and zeta.alarms == ()  # alarms not in ALARM are left out of the fleet view
    assert [o.model for o in f.orphans] == ["old"] and f.orphans[0].orphan and f.orphans[0].problems == ("orphan",)
    assert f.shared is not None and f.shared_alarms == ("notifier-errors",)
    assert f.counts() == {"models": 4, "in_alarm": 1, "drift": 1, "never_deployed": 1, "failed": 0, "orphans": 1}


def test_the_fleet_as_json():
    data = json.loads(json.dumps(_fleet(calls={"cloudwatch:GetMetricData": 1}).to_json()))
    iris = next(m for m in data["models"] if m["model"] == "iris")
    assert iris["locked"]["digest"] == D2 and iris["deployed"]["digest"] == D1[:19] and iris["drift"] is True
    assert iris["locked"]["image"].endswith(f"/mlpack/iris@{D2}")
    assert data["window"]["end"] == "2026-12-02T10:00:00Z" and data["aws_calls"] == {"cloudwatch:GetMetricData": 1}


def test_a_stack_without_a_digest_in_its_description_counts_as_drift():
    s = view.ModelStatus(model="iris", environment=None, locked=entry("iris"), owners=(),
                         deployed=view.deployed(StackFacts(name="mlpack-iris", status="CREATE_COMPLETE",
                                                           description="something else", tags={}, updated=T0)))
    assert s.drift


def test_since_changed_keeps_alarms_whose_state_changed_in_the_window():
    alarms = [AlarmFacts(name="a", state="OK", reason="", updated=T0 - timedelta(days=8)),
              AlarmFacts(name="b", state="OK", reason="", updated=T0 - timedelta(days=1)),
              AlarmFacts(name="c", state="OK", reason="", updated=None)]
    assert view.since_changed(alarms, T0 - timedelta(days=7)) == ["b"]


def test_live_digest():
    assert view.Live(version="3", description=f"mlpack iris v1 {D2}").digest == D2[:19]
    assert view.Live(version="3", description="").digest == ""


# --- logs ------------------------------------------------------------------------------------------------


def ev(message: str, ms: int = int(T0.timestamp() * 1000), event_id: str = "") -> LogEvent:
    return LogEvent(timestamp=ms, message=message + "\n", event_id=event_id)


def test_the_handler_s_json_line():
    line = logs.parse(ev(json.dumps({"level": "INFO", "message": "request refused", "model": "iris",
                                     "request_id": "r1", "timestamp": "x", "status": 422, "kind": "bad_input",
                                     "path": "inputs", "detail": "bad"})))
    assert (line.kind, line.level, line.request_id, line.message) == (logs.HANDLER, "INFO", "r1", "request refused")
    assert line.fields == {"status": 422, "kind": "bad_input", "path": "inputs", "detail": "bad"}
    assert not line.error and line.at == datetime(2026, 12, 2, 10, 0, tzinfo=UTC)
    failed = logs.parse(ev(json.dumps({"level": "ERROR", "message": "request failed", "status": 500})))
    assert failed.error


def test_metrics_platform_and_text_lines():
    emf = logs.parse(ev(json.dumps({"Model": "iris", "Requests": 1, "_aws": {"Timestamp": 1}})))
    assert emf.kind == logs.METRICS and emf.fields == {"Model": "iris", "Requests": 1}
    report = logs.parse(ev("REPORT RequestId: abc-1\tDuration: 4.10 ms\tBilled Duration: 5 ms\tMemory Size: 1024 MB\t"
                           "Max Memory Used: 180 MB\tInit Duration: 812.33 ms"))
    assert (report.kind, report.message, report.request_id) == (logs.PLATFORM, "REPORT", "abc-1")
    assert report.fields["Init Duration"] == 812.33 and report.fields["Max Memory Used"] == 180
    timeout = logs.parse(ev("2026-12-02T10:00:00.000Z 0f0e0d0c-0b0a-4909-8807-060504030201 Task timed out after "
                            "30.03 seconds"))
    assert timeout.level == "ERROR" and timeout.request_id.startswith("0f0e0d0c") and timeout.error
    runtime = logs.parse(ev(json.dumps({"errorMessage": "boom", "errorType": "ValueError", "requestId": "r9"})))
    assert runtime.error and runtime.message == "ValueError: boom" and runtime.request_id == "r9"
    plain = logs.parse(ev("hello {not json"))
    assert plain.kind == logs.TEXT and plain.message == "hello {not json" and not plain.error


def test_keep():
    start = logs.parse(ev("START RequestId: r1 Version: 1"))
    emf = logs.parse(ev(json.dumps({"Requests": 1, "_aws": {}})))
    info = logs.parse(ev(json.dumps({"level": "INFO", "message": "m", "request_id": "r2"})))
    assert not logs.keep(start) and logs.keep(start, request_id="r1") and not logs.keep(start, request_id="r2")
    assert not logs.keep(emf) and logs.keep(emf, metrics=True) and not logs.keep(emf, metrics=True, errors=True)
    assert logs.keep(info) and not logs.keep(info, errors=True) and not logs.keep(info, request_id="r1")


def test_since_and_pattern():
    now = T0
    assert logs.since("90m", now) == now - timedelta(minutes=90)
    assert logs.since("2d", now) == now - timedelta(days=2)
    assert logs.since("2026-12-01T00:00:00Z", now) == datetime(2026, 12, 1, tzinfo=UTC)
    with pytest.raises(MlpackError, match="not a duration or a time"):
        logs.since("yesterday", now)
    assert logs.pattern("abc-1", errors=True) == '"abc-1"'
    assert logs.pattern(None, errors=True).startswith("?ERROR") and logs.pattern(None, errors=False) == ""
    with pytest.raises(MlpackError):
        logs.pattern('a"b', errors=False)


def test_tail_follows_without_repeating_events():
    batches = [[ev("a", 1, "e1"), ev("b", 2, "e2")], [ev("b", 2, "e2"), ev("c", 3, "e3")], [ev("c", 3, "e3")]]
    asked: list[int] = []

    def fetch(start_ms: int) -> list[LogEvent]:
        asked.append(start_ms)
        return batches[len(asked) - 1]

    got = [e.message.strip() for e in logs.tail(fetch, 0, follow=True, sleep=lambda _s: None, polls=3)]
    assert got == ["a", "b", "c"] and asked == [0, 2, 3]
    once = list(logs.tail(lambda _ms: [ev("x", 5)], 0))
    assert len(once) == 1


# --- text ------------------------------------------------------------------------------------------------


def test_sparkline_age_and_numbers():
    assert text.sparkline([0, 5, 10, None]) == "▁▅█·"
    assert text.sparkline([None, None]) == "··" and text.sparkline([0, 0]) == "▁▁"
    assert text.age(T0 - timedelta(hours=3, minutes=5), T0) == "3h ago" and text.age(None) == "-"
    assert text.age(T0 - timedelta(days=15), T0) == "2w ago"
    assert (text.count(None), text.count(950), text.count(12_345), text.count(2_500_000)) == ("-", "950", "12k", "2.5M")
    assert (text.pct(0), text.pct(2.0), text.pct(12.34), text.pct(None)) == ("0", "2.00", "12.3", "-")
    assert text.cut("abcdef", 4) == "abc…" and text.cut("abc", 4) == "abc"
    assert text.short_digest(D2) == "22222222" and text.short_digest("") == "-"
