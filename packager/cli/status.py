"""`mlpack status [MODEL]` and `mlpack logs MODEL`: the fleet at a glance, and one model's log lines, read.

The edge of packager/fleet: find the lock (--env / --lock, as the release commands do), plan what to ask
(packager/fleet/metrics.py's queries, the alarm name prefix, the log filter pattern), ask it through
packager/aws.py (read only: DescribeStacks, DescribeAlarms, GetMetricData 500 queries to a request,
DescribeAlarmHistory and the live alias for one model, FilterLogEvents), join the answers
(packager/fleet/view.py) and render them for people: a table that fits 100 columns, the models needing
attention first, colours that click drops without a terminal, progress on stderr while AWS answers,
and `--json` for scripts. Changes nothing anywhere.

Enters: the command line. Leaves: text or JSON on stdout, progress on stderr. Imports the fleet
package, packager.aws, the config readers and click; nothing imports it but packager/cli.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import click

from handlers.names import ModelNames
from packager.cli import echo_json
from packager.cli.release import _lock_of
from packager.config import lock as lock_mod
from packager.config import spec as spec_mod
from packager.config.repo import Environment
from packager.errors import DeployError, MlpackError
from packager.fleet import logs as logs_mod
from packager.fleet import metrics as metrics_mod
from packager.fleet import text as tx
from packager.fleet import view as view_mod
from packager.fleet.facts import LogEvent
from packager.fleet.view import FleetStatus, ModelDetail, ModelStatus

if TYPE_CHECKING:
    from packager.aws import Aws

WIDTH = 100
LIVE_ALIAS = "live"
CHANGES_DAYS = 7  # how far back `status MODEL` reads alarm state changes

HEALTH_LABEL = {"ok": "ok", "deploying": "deploying", "rolled-back": "rollback", "failed": "failed",
                "deleting": "deleting"}
HEALTH_COLOUR = {"ok": "green", "deploying": "cyan", "rolled-back": "yellow", "failed": "red", "deleting": "yellow"}
LEVEL_COLOUR = {"ERROR": "red", "CRITICAL": "red", "WARNING": "yellow", "INFO": "green", "DEBUG": "blue"}


# --- shared ---------------------------------------------------------------------------------------------


class Progress:
    """One line on stderr, rewritten in place, while AWS answers; nothing when stderr is not a terminal."""

    def __init__(self, enabled: bool | None = None) -> None:
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.shown = False

    def __call__(self, message: str) -> None:
        if self.enabled:
            click.echo(f"\r\033[K{tx.cut(message, WIDTH - 1)}", err=True, nl=False)
            self.shown = True

    def done(self) -> None:
        if self.shown:
            click.echo("\r\033[K", err=True, nl=False)
            self.shown = False


def _where(env: str | None, lock: Path | None) -> tuple[Path, Environment | None]:
    return _lock_of(env, lock)


def _aws(environment: Environment | None, held: lock_mod.Lock | None = None) -> tuple[Aws, str]:
    """The AWS door and the region to read: the environment's; without one, the profile's or AWS_REGION, else
    the region of the ECR registry the lock's images are in."""
    from packager import aws as aws_mod  # boto3 is slow to import: only commands that reach AWS pay for it

    region = environment.region if environment else None
    aws = aws_mod.Aws(region=region)
    if not aws.region:
        hosts = [aws_mod.parse_ecr_host(e.repository.partition("/")[0]) for e in (held.models.values() if held else ())]
        aws.region = os.environ.get("AWS_REGION") or next((h.region for h in hosts if h is not None), None)
    if not aws.region:
        raise MlpackError("no AWS region is set, and no environment names one",
                          hint="set AWS_REGION, or run this in a team repository with --env")
    return aws, str(aws.region)


def _check_account(aws: Aws, environment: Environment | None) -> str:
    account = aws.account_id()
    if environment is not None and account != environment.account:
        raise MlpackError(f"--env {environment.name} is account {environment.account}, but these AWS credentials "
                          f"are for account {account}",
                          hint=f"use credentials of account {environment.account} (AWS_PROFILE, or assume its role)")
    return account


def _show(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _deploy_command(model: str, environment: str | None) -> str:
    ctx = f"-c mlpack:env={environment} " if environment else ""
    return f"cdk deploy {ctx}{ModelNames(model, environment).stack}"


def _delete_command(stack: str, region: str) -> str:
    return f"aws cloudformation delete-stack --stack-name {stack} --region {region}"


def _owners_reader(lock_path: Path) -> Callable[[str, lock_mod.LockEntry], tuple[str, ...]]:
    def owners(_model: str, entry: lock_mod.LockEntry) -> tuple[str, ...]:
        try:
            return tuple(spec_mod.load(lock_path.parent / entry.project, files=False).model.owners)
        except (MlpackError, OSError):
            return ()

    return owners


def _style(text: str, colour: str | None = None, *, bold: bool = False, dim: bool = False) -> str:
    return click.style(text, fg=colour, bold=bold, dim=dim) if (colour or bold or dim) else text


def _cell(text: str, width: int, *, right: bool = False, colour: str | None = None, bold: bool = False) -> str:
    """Pad on the plain text, then colour: escape codes take no room on screen."""
    plain = tx.cut(text, width)
    padded = plain.rjust(width) if right else plain.ljust(width)
    if plain == tx.DASH:
        return _style(padded, dim=True)
    return _style(padded, colour, bold=bold)


def _owner(owners: Sequence[str]) -> str:
    if not owners:
        return tx.DASH
    first = owners[0].partition("@")[0]
    return first + (f"+{len(owners) - 1}" if len(owners) > 1 else "")


# --- status ---------------------------------------------------------------------------------------------


@click.command()
@click.argument("model", required=False)
@click.option("--env", "env", metavar="ENV", help="Environment (default: the only one).")
@click.option("--lock", "lock", type=click.Path(dir_okay=False, path_type=Path), help="Lock file instead of --env's.")
@click.option("--json", "as_json", is_flag=True, help="Print everything as JSON (for scripts).")
def status(model: str | None, env: str | None, lock: Path | None, as_json: bool) -> None:
    """Every model of the environment at a glance; with MODEL, that one in detail.

    \b
    Per model: owner, the version and digest the lock pins and the stack deploys (drift between them is
    flagged), the stack's status and last deploy, alarms in ALARM (those models first), and the last
    24 h of requests, error rate, p99 latency, cold starts and validation / out-of-range rates. Stacks
    mlpack deployed whose model the lock no longer holds (orphans) and locked models never deployed are
    listed. MODEL adds its lock history, recent alarm state changes and hourly sparklines.

    Read only, from CloudFormation, CloudWatch and the lock; a few requests whatever the number of models
    (GetMetricData takes 500 queries per request)."""
    lock_path, environment = _where(env, lock)
    held = lock_mod.read_lock(lock_path)
    progress = Progress()
    try:
        if model is None:
            fleet = _fleet(held, lock_path, environment, progress)
            progress.done()
            echo_json(fleet.to_json()) if as_json else _print_fleet(fleet)
        else:
            detail = _detail(model, held, lock_path, environment, progress)
            progress.done()
            echo_json(detail.to_json()) if as_json else _print_detail(detail)
    finally:
        progress.done()


def _fleet(held: lock_mod.Lock, lock_path: Path, environment: Environment | None, progress: Progress) -> FleetStatus:
    aws, region = _aws(environment, held)
    name = environment.name if environment else None
    progress("checking the AWS account")
    account = _check_account(aws, environment)
    progress("reading stacks")
    stacks = aws.stacks(region, progress=lambda m: progress(f"reading stacks: {m}"))
    progress("reading alarms in ALARM")
    firing = aws.alarms(region, prefix=view_mod.alarm_prefix(name), state=view_mod.ALARM)
    win = metrics_mod.window()
    models = sorted({*held.models, *view_mod.model_stacks(stacks, name)})
    queries, index = metrics_mod.queries(models, name, metrics_mod.DAY)
    results = aws.metric_data(queries, win.start, win.end, region, progress=progress)
    figures = {m: metrics_mod.figures(s) for m, s in metrics_mod.by_model(results, index).items()}
    return view_mod.fleet(lock=held, stacks=stacks, alarms=firing, figures=figures, environment=name, region=region,
                          account=account, lock_name=_show(lock_path), win=win, owners_of=_owners_reader(lock_path),
                          calls=aws.calls)


def _detail(model: str, held: lock_mod.Lock, lock_path: Path, environment: Environment | None,
            progress: Progress) -> ModelDetail:
    aws, region = _aws(environment, held)
    name = environment.name if environment else None
    names = ModelNames(model, name)
    progress("checking the AWS account")
    _check_account(aws, environment)
    progress(f"reading stack {names.stack}")
    stack = aws.stack(names.stack, region)
    entry = held.models.get(model)
    if stack is None and entry is None and not held.entries(model):
        raise DeployError(f"{_show(lock_path)} holds no model {model!r} and there is no stack {names.stack} "
                          f"in {region}", hint=f"models there: {', '.join(sorted(held.models)) or 'none'}")
    progress("reading alarms")
    found = aws.alarms(region, prefix=names.alarm(""))
    mine = view_mod.alarms_by_model(found, {*held.models, model}, name).get(model, [])
    win = metrics_mod.window()
    notes: list[str] = []
    changes = []
    since = win.end - timedelta(days=CHANGES_DAYS)
    for alarm in view_mod.since_changed(mine, since):
        progress(f"reading the history of {alarm}")
        try:
            changes += aws.alarm_changes(alarm, region, since, win.end)
        except MlpackError as e:
            notes.append(f"alarm history unavailable: {e.message}")
            break
    daily, daily_index = metrics_mod.queries([model], name, metrics_mod.DAY, prefix="d")
    hours, hourly_index = metrics_mod.queries([model], name, metrics_mod.HOUR, prefix="h")
    results = aws.metric_data([*daily, *hours], win.start, win.end, region, progress=progress)
    totals = metrics_mod.figures(metrics_mod.by_model(results, daily_index).get(model, {}))
    hourly = metrics_mod.hourly(metrics_mod.by_model(results, hourly_index).get(model, {}), win)
    live = None
    if stack is not None:
        progress(f"reading the {LIVE_ALIAS} alias of {names.function}")
        try:
            version = aws.alias_version(names.function, LIVE_ALIAS, region)
            described = dict(aws.function_versions(names.function, region))
            live = view_mod.Live(version=version, description=described.get(version, ""))
        except MlpackError as e:
            notes.append(f"{LIVE_ALIAS} alias unreadable: {e.message}")
    d = view_mod.deployed(stack) if stack else None
    owners = d.owners if d and d.owners else (_owners_reader(lock_path)(model, entry) if entry else ())
    st = ModelStatus(model=model, environment=name, locked=entry, deployed=d, owners=owners, alarms=tuple(mine),
                     figures=totals)
    return ModelDetail(status=st, history=held.entries(model), changes=tuple(sorted(changes, key=lambda c: c.at,
                                                                                      reverse=True)),
                       hourly=hourly, window=win, live=live, notes=tuple(notes), calls=aws.calls)


# --- rendering: the fleet -------------------------------------------------------------------------------

# (header, width, right-aligned); MODEL's width follows the names, up to MODEL_MAX
COLUMNS = (("OWNER", 8, False), ("VERSION", 8, False), ("DIGEST", 8, False), ("STACK", 9, False),
           ("DEPLOYED", 8, False), ("REQ 24H", 7, True), ("ERR%", 5, True), ("P99 MS", 6, True), ("COLD", 4, True),
           ("VAL%", 5, True), ("OOR%", 5, True))
MODEL_MAX = 100 - 2 - sum(w + 1 for _, w, _ in COLUMNS)  # 15: the table never passes 100 columns


def _title(fleet: FleetStatus) -> str:
    env = fleet.environment or "(no environment)"
    end = fleet.window.end.strftime("%Y-%m-%d %H:%M UTC")
    rest = tx.cut(f" · {fleet.account} {fleet.region} · {fleet.lock} · 24 h to {end}", WIDTH - len(env))
    return _style(env, bold=True) + rest


def _summary(fleet: FleetStatus) -> str:
    c = fleet.counts()
    parts = [f"{c['models']} model{'s' if c['models'] != 1 else ''}"]
    for key, label, colour in (("in_alarm", "in ALARM", "red"), ("failed", "stack failed", "red"),
                               ("drift", "drifting", "yellow"), ("never_deployed", "never deployed", "yellow"),
                               ("orphans", "orphan stack", "yellow")):
        if c[key]:
            plural = "s" if key == "orphans" and c[key] != 1 else ""
            parts.append(_style(f"{c[key]} {label}{plural}", colour))
    return " · ".join(parts)


def _row(s: ModelStatus, model_width: int) -> str:
    f = s.figures
    d = s.deployed
    version = (s.locked.model_version if s.locked else d.version if d else "") or tx.DASH
    digest = tx.short_digest(s.locked.digest if s.locked else d.digest if d else "")
    health = d.health if d else ""
    marker = _style("!", "red", bold=True) if s.firing or health == "failed" else (
        _style("~", "yellow") if s.problems else " ")
    cells = [
        marker + " " + _cell(s.model, model_width, bold=True),
        _cell(_owner(s.owners), 8),
        _cell(version, 8, colour="yellow" if s.drift else None),
        _cell(digest, 8, colour="yellow" if s.drift else None),
        _cell(HEALTH_LABEL.get(health, tx.DASH) if d else "never", 9,
              colour=HEALTH_COLOUR.get(health, "yellow") if d else "yellow"),
        _cell(tx.age(d.updated) if d else tx.DASH, 8),
        _cell(tx.count(f.requests), 7, right=True),
        _cell(tx.pct(f.error_pct), 5, right=True, colour="red" if (f.error_pct or 0) >= 1 else None),
        _cell(tx.ms(f.p99_ms), 6, right=True),
        _cell(tx.count(f.cold_starts), 4, right=True),
        _cell(tx.pct(f.validation_pct), 5, right=True, colour="yellow" if (f.validation_pct or 0) >= 5 else None),
        _cell(tx.pct(f.out_of_range_pct), 5, right=True,
              colour="yellow" if (f.out_of_range_pct or 0) >= 5 else None),
    ]
    return " ".join(cells).rstrip()


def _notes(s: ModelStatus, region: str) -> list[str]:
    """The lines under a model's row: what fires, what differs, what to run."""
    out = []
    pad = "    "
    if s.firing:
        out.append(pad + _style("ALARM: " + ", ".join(s.firing_whats), "red", bold=True))
    d = s.deployed
    if d is not None and d.health in ("failed", "rolled-back", "deploying", "deleting"):
        reason = f": {d.reason}" if d.reason else ""
        out.append(pad + _style(tx.cut(f"stack {d.status}{reason}", WIDTH - len(pad)),
                                HEALTH_COLOUR.get(d.health)))
    if s.drift and s.locked is not None and d is not None:
        runs = f"{d.version or '?'} {tx.short_digest(d.digest)}"
        out.append(pad + _style(f"drift: the lock pins {s.locked.model_version} {tx.short_digest(s.locked.digest)}, "
                                f"the stack runs {runs}", "yellow"))
        out.append(pad + f"  deploy: {_deploy_command(s.model, s.environment)}")
    if s.never_deployed and not s.orphan:
        out.append(pad + _style("never deployed", "yellow") + f"; deploy: {_deploy_command(s.model, s.environment)}")
    return out


def _print_fleet(fleet: FleetStatus) -> None:
    click.echo(_title(fleet))
    click.echo(_summary(fleet))
    if fleet.shared is not None and fleet.shared.health != "ok":
        click.echo(_style(f"shared stack {fleet.shared.stack}: {fleet.shared.status}", "yellow"))
    if fleet.shared_alarms:
        click.echo(_style("shared stack in ALARM: " + ", ".join(fleet.shared_alarms), "red", bold=True))
    click.echo()
    everyone = [*fleet.models, *fleet.orphans]
    if not everyone:
        click.echo(f"no models: {fleet.lock} is empty and no stack of mlpack's is in {fleet.region}")
        return
    model_width = max(5, min(MODEL_MAX, max(len(s.model) for s in everyone)))
    header = "  " + " ".join([_cell("MODEL", model_width), *(
        (h.rjust(w) if right else h.ljust(w)) for h, w, right in COLUMNS)])
    click.echo(_style(header.rstrip(), bold=True))
    for s in fleet.models:
        click.echo(_row(s, model_width))
        for line in _notes(s, fleet.region):
            click.echo(line)
    if fleet.orphans:
        click.echo()
        click.echo(_style("orphans", bold=True) + ": stacks mlpack deployed whose model is no longer in the lock")
        for s in fleet.orphans:
            click.echo(_row(s, model_width))
            for line in _notes(s, fleet.region):
                click.echo(line)
            click.echo(f"    delete: {_delete_command(s.stack, fleet.region)}")


# --- rendering: one model -------------------------------------------------------------------------------

SPARKS = (("requests", "requests", tx.count), ("error_pct", "error %", tx.pct), ("p99_ms", "p99 ms", tx.ms),
          ("cold_starts", "cold starts", tx.count), ("validation_pct", "validation %", tx.pct),
          ("out_of_range_pct", "out of range %", tx.pct))


def _label(text: str) -> str:
    return _style(f"  {text:<10}", dim=True)


def _print_detail(detail: ModelDetail) -> None:
    s = detail.status
    env = f" in {s.environment}" if s.environment else ""
    click.echo(_style(f"{s.model}{env}", bold=True) + f"  (stack {s.stack})")
    click.echo(_label("owners") + (", ".join(s.owners) or tx.DASH))
    if s.locked:
        e = s.locked
        click.echo(_label("locked") + f"{e.model_version}  {e.digest[:view_mod.DIGEST_SHOWN]}  {e.arch}  "
                   f"{e.how} {e.pushed_at}" + (f" by {e.pushed_by}" if e.pushed_by else ""))
    else:
        click.echo(_label("locked") + _style("not in the lock (an orphan stack)", "yellow"))
    d = s.deployed
    if d:
        health = _style(d.status, HEALTH_COLOUR.get(d.health))
        drift = "  " + _style("drift: the next deploy changes it", "yellow") if s.drift else ""
        click.echo(_label("deployed") + f"{d.version or '?'}  {d.digest or '?'}  {health} {tx.age(d.updated)}{drift}")
        if d.reason and d.health != "ok":
            click.echo(_label("") + tx.cut(d.reason, WIDTH - 12))
    else:
        deploy = _deploy_command(s.model, s.environment)
        click.echo(_label("deployed") + _style("never", "yellow") + f"; deploy: {deploy}")
    if detail.live:
        other = d is not None and detail.live.digest and detail.live.digest != d.digest
        note = "  " + _style("differs from the stack (rollback --live?)", "yellow") if other else ""
        click.echo(_label("live") + f"version {detail.live.version}  {detail.live.digest or '?'}{note}")
    firing = s.firing
    if s.alarms:
        head = _style(f"{len(firing)} of {len(s.alarms)} in ALARM", "red", bold=True) if firing else \
            _style(f"{len(s.alarms)}, none in ALARM", "green")
        click.echo(_label("alarms") + head)
        for a in sorted(s.alarms, key=lambda a: (a.state != view_mod.ALARM, a.name)):
            what = view_mod.alarm_what(a.name, s.model, s.environment)
            colour = "red" if a.state == view_mod.ALARM else ("yellow" if a.state == "INSUFFICIENT_DATA" else None)
            if a.state == view_mod.ALARM:
                click.echo(_label("") + _style(f"{what:<22}", colour) + " " + tx.cut(a.reason, WIDTH - 35))
        quiet = [view_mod.alarm_what(a.name, s.model, s.environment) for a in s.alarms if a.state != view_mod.ALARM]
        if quiet:
            click.echo(_label("") + _style(tx.cut("ok: " + ", ".join(quiet), WIDTH - 12), dim=True))
    else:
        click.echo(_label("alarms") + tx.DASH)
    click.echo()
    click.echo(_style("last 24 h", bold=True) + _style(" (one mark per hour, oldest first; · no data)", dim=True))
    f = s.figures.to_json()
    for key, label, fmt in SPARKS:
        values = detail.hourly.get(key, ())
        click.echo(f"  {label:<15} {tx.sparkline(values)}  {fmt(f.get(key))}")
    if detail.changes:
        click.echo()
        click.echo(_style(f"alarm state changes (last {CHANGES_DAYS} days)", bold=True))
        for c in detail.changes[:20]:
            what = view_mod.alarm_what(c.alarm, s.model, s.environment)
            new = _style(c.new, "red" if c.new == view_mod.ALARM else "green" if c.new == "OK" else "yellow")
            line = f"  {c.at.strftime('%m-%d %H:%M')}  {what:<20} {c.old or '?'} -> {new}"
            click.echo(line + "  " + _style(tx.cut(c.reason, max(WIDTH - 50, 10)), dim=True))
    if detail.history:
        click.echo()
        click.echo(_style("lock history", bold=True) + _style(" (current first; mlpack rollback --to VERSION)",
                                                              dim=True))
        for i, e in enumerate(detail.history[:10]):
            mark = "*" if i == 0 and s.locked else " "
            click.echo(f"  {mark} {e.model_version:<14} {tx.short_digest(e.digest)}  {e.arch:<7} {e.pushed_at}  "
                       f"{tx.cut(e.pushed_by or '-', 12):<12} {e.how}")
    for note in detail.notes:
        click.echo(_style(f"note: {note}", "yellow"), err=True)


# --- logs -----------------------------------------------------------------------------------------------


@click.command()
@click.argument("model")
@click.option("--env", "env", metavar="ENV", help="Environment (default: the only one).")
@click.option("--lock", "lock", type=click.Path(dir_okay=False, path_type=Path), help="Lock file instead of --env's.")
@click.option("--since", "since", default="1h", show_default=True, metavar="DURATION|TIME",
              help="How far back: 30s, 15m, 1h, 2d, or a time (2026-11-27T05:00:00Z).")
@click.option("--follow", "-f", is_flag=True, help="Keep printing new lines as they arrive (Ctrl-C stops).")
@click.option("--request-id", "request_id", metavar="ID", help="Only the lines of this request.")
@click.option("--errors", is_flag=True, help="Only failures: ERROR lines, 5xx, tracebacks, timeouts.")
@click.option("--metrics", is_flag=True, help="Also show the metrics documents (EMF lines), hidden by default.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line (JSON Lines).")
def logs(model: str, env: str | None, lock: Path | None, since: str, follow: bool, request_id: str | None,
         errors: bool, metrics: bool, as_json: bool) -> None:
    """MODEL's function log (its CloudWatch log group), the handler's JSON lines shown readably.

    \b
    Each line: time, level, request id, what happened (refused, failed), status, the error's code and
    message. Lambda's START/END lines are left out (shown with --request-id); REPORT lines show duration,
    memory and init time (a cold start)."""
    lock_path, environment = _where(env, lock)
    aws, region = _aws(environment, lock_mod.read_lock(lock_path) if environment is None else None)
    name = environment.name if environment else None
    group = ModelNames(model, name).log_group
    start = logs_mod.since(since)
    filter_pattern = logs_mod.pattern(request_id, errors)
    progress = Progress()
    progress(f"reading {group}")

    def fetch(start_ms: int) -> list[LogEvent]:
        return list(aws.log_events(group, region, start_ms=start_ms, pattern=filter_pattern))

    shown = 0
    try:
        for event in logs_mod.tail(fetch, int(start.timestamp() * 1000), follow=follow):
            line = logs_mod.parse(event)
            if not logs_mod.keep(line, request_id=request_id, errors=errors, metrics=metrics):
                continue
            progress.done()
            shown += 1
            if as_json:
                click.echo(json.dumps(line.to_json(), sort_keys=True))
            else:
                for text in _log_lines(line, full=bool(request_id)):
                    click.echo(text)
    except KeyboardInterrupt:
        pass
    finally:
        progress.done()
    if not shown and not as_json:
        what = f" of request {request_id}" if request_id else " with errors" if errors else ""
        click.echo(f"no log lines{what} in {group} since {start.strftime('%Y-%m-%d %H:%M:%S UTC')}", err=True)


def _when(at: datetime) -> str:
    local = at.astimezone(UTC)
    return local.strftime("%m-%d %H:%M:%S.") + f"{local.microsecond // 1000:03d}"


def _rid(request_id: str) -> str:
    return (request_id[:8] if request_id else tx.DASH).ljust(8)


def _log_lines(line: logs_mod.LogLine, *, full: bool = False) -> list[str]:
    """A log line as text: the handler's fields in a fixed order, a traceback's last line (all of it for one
    request), Lambda's REPORT as figures, a metrics document as name=value."""
    when = _style(_when(line.at), dim=True)
    if line.kind == logs_mod.METRICS:
        figures = " ".join(f"{k}={v}" for k, v in line.fields.items() if isinstance(v, int | float))
        labels = " ".join(f"{k}={v}" for k, v in line.fields.items() if isinstance(v, str))
        return [f"{when} {_style('METRIC', 'blue'):<7}          {labels} {figures}".rstrip()]
    if line.kind == logs_mod.PLATFORM:
        if line.message == "REPORT":
            f = line.fields
            parts = [f"duration {f.get('Duration', 0):.1f} ms"]
            if "Max Memory Used" in f:
                parts.append(f"memory {f['Max Memory Used']:.0f}/{f.get('Memory Size', 0):.0f} MB")
            if "Init Duration" in f:
                parts.append(_style(f"init {f['Init Duration']:.0f} ms (cold start)", "cyan"))
            return [f"{when} {_style('REPORT', dim=True)}  {_rid(line.request_id)} " + ", ".join(parts)]
        level = _style(f"{line.level or line.message:<7}", "red" if line.level == "ERROR" else None, dim=not line.level)
        rest = line.message if line.level else line.text.replace(line.message, "", 1).replace(
            f"RequestId: {line.request_id}", "", 1).strip()
        return [f"{when} {level} {_rid(line.request_id)} {rest}".rstrip()]
    if line.kind == logs_mod.HANDLER:
        f = dict(line.fields)
        level = _style(f"{line.level or '-':<7}", LEVEL_COLOUR.get(line.level))
        bits = [line.message]
        route = f.pop("route", None)
        if route:
            bits.append(str(route))
        status_code = f.pop("status", None)
        if status_code is not None:
            bits.append(_style(str(status_code), "red" if int(status_code) >= 500 else "yellow"
                               if int(status_code) >= 400 else "green"))
        for key in ("latency_ms", "latency"):
            if key in f:
                bits.append(f"{float(f.pop(key)):.1f} ms")
        code = f.pop("kind", None) or f.pop("code", None)
        if code:
            bits.append(_style(str(code), "yellow"))
        path = f.pop("path", None)
        detail = f.pop("detail", None) or f.pop("error", None)
        if detail:
            bits.append((f"{path}: " if path else "") + str(detail))
        elif path:
            bits.append(str(path))
        trace = f.pop("traceback", None)
        out_lines = [f"{when} {level} {_rid(line.request_id)} " + "  ".join(bits)]
        if trace:
            trace_lines = str(trace).rstrip().splitlines()
            shown = trace_lines if full else trace_lines[-1:]
            out_lines += [_style(f"      {t}", "red") for t in shown]
        others = {k: v for k, v in f.items() if v is not None}
        if others:
            out_lines.append(_style("      " + json.dumps(others, sort_keys=True, default=str), dim=True))
        return out_lines
    level = _style(f"{line.level:<7}", "red") if line.level else " " * 7
    return [f"{when} {level} {_rid(line.request_id)} {line.text}"]


commands = [status, logs]
