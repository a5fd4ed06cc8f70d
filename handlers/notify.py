"""The chat notifier: turns CloudWatch alarm notifications (delivered by SNS) into Slack, Microsoft
Teams or generic JSON webhook messages.

Runs in Lambda's managed Python runtime (zip package built from this file and names.py by
stacks/shared_stack.py). One notifier serves one environment (names.ENV_ENVIRONMENT, set by its stack;
unset = no environment): it parses that environment's names, mlpack-[<env>-]<model>-alarms and
mlpack-[<env>-]<model>-<what>. Which targets a model has is read from SSM
(/mlpack/[<env>/]<model>/chat, written by the model's stack as references); each webhook URL is read
at run time from SSM Parameter Store or Secrets Manager and never appears in a template. Formatting
is pure functions over the message; AWS access goes through boto3, which the runtime provides and
which is imported only when the handler runs. Delivery retries what a retry can fix and fails the
invocation only when nothing was delivered (see deliver).

Imports only the standard library, handlers/names.py (and boto3 lazily); never packager/ or stacks/.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import os
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO
from urllib.parse import quote

# the notifier's zip holds names.py as a top-level module; in the repository it is handlers.names
if __package__:
    from . import names
else:
    import names  # type: ignore[no-redef]

log = logging.getLogger("mlpack.notify")
log.setLevel(logging.INFO)

VALUE_RE = re.compile(r"\[(-?[0-9.eE+-]+) \(")
COMPARISONS = {
    "GreaterThanThreshold": ">",
    "GreaterThanOrEqualToThreshold": ">=",
    "LessThanThreshold": "<",
    "LessThanOrEqualToThreshold": "<=",
}
STATE_EMOJI = {"ALARM": ":red_circle:", "OK": ":large_green_circle:", "INSUFFICIENT_DATA": ":white_circle:"}
TEAMS_COLOR = {"ALARM": "Attention", "OK": "Good", "INSUFFICIENT_DATA": "Default"}


@dataclass(frozen=True)
class AlarmEvent:
    """What a chat message says about one alarm state change."""

    model: str
    what: str  # the part of the alarm name after mlpack-[<env>-]<model>- (see names.ModelNames.alarm)
    alarm_name: str
    state: str  # ALARM, OK or INSUFFICIENT_DATA
    old_state: str
    reason: str
    description: str
    threshold: float | None
    comparison: str  # ">", ">=", ...
    value: float | None  # the datapoint that triggered, parsed from the reason
    region: str
    account: str
    time: str
    console_url: str


def served_environment() -> str | None:
    """The environment this notifier serves (names.ENV_ENVIRONMENT); None when unset or empty."""
    return os.environ.get(names.ENV_ENVIRONMENT) or None


def parse(message: dict[str, Any], topic_arn: str, environment: str | None = None) -> AlarmEvent:
    """One CloudWatch alarm notification (the JSON in an SNS record's Message), from a topic of
    `environment` (None: no environment)."""
    name = str(message["AlarmName"])
    arn = str(message.get("AlarmArn", ""))
    parts = arn.split(":")
    region = parts[3] if len(parts) > 5 else ""
    account = str(message.get("AWSAccountId", parts[4] if len(parts) > 5 else ""))
    # from a topic not made by a model stack: a guess from the alarm name
    topic = topic_arn.rsplit(":", 1)[-1]
    model = (names.model_from_topic(topic, environment) or names.model_from_alarm(name, environment)
             or name)
    what = names.ModelNames(model, environment).alarm_what(name)
    trigger = message.get("Trigger") or {}
    threshold = trigger.get("Threshold")
    reason = str(message.get("NewStateReason", ""))
    vm = VALUE_RE.search(reason)
    console = (
        (
            f"https://{region}.console.aws.amazon.com/cloudwatch/home?region={region}"
            f"#alarmsV2:alarm/{quote(name, safe='')}"
        )
        if region
        else ""
    )
    return AlarmEvent(
        model=model,
        what=name if what is None else what,
        alarm_name=name,
        state=str(message.get("NewStateValue", "")),
        old_state=str(message.get("OldStateValue", "")),
        reason=reason,
        description=str(message.get("AlarmDescription") or ""),
        threshold=float(threshold) if threshold is not None else None,
        comparison=COMPARISONS.get(str(trigger.get("ComparisonOperator", "")), "?"),
        value=float(vm.group(1)) if vm else None,
        region=region,
        account=account,
        time=str(message.get("StateChangeTime", "")),
        console_url=console,
    )


def _num(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4g}"


def summary(a: AlarmEvent) -> str:
    """One line every format starts with."""
    verb = {"ALARM": "is in ALARM", "OK": "is OK again"}.get(a.state, f"is {a.state}")
    return f"mlpack {a.model}: {a.what} {verb} (value {_num(a.value)}, threshold {a.comparison} {_num(a.threshold)})"


def format_slack(a: AlarmEvent) -> dict[str, Any]:
    """Slack incoming-webhook payload: text fallback + blocks."""
    fields = [
        f"*Model*\n{a.model}",
        f"*Alarm*\n{a.alarm_name}",
        f"*Current value*\n{_num(a.value)}",
        f"*Threshold*\n{a.comparison} {_num(a.threshold)}",
    ]
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": f"{STATE_EMOJI.get(a.state, '')} *{summary(a)}*"}},
        {"type": "section", "fields": [{"type": "mrkdwn", "text": f} for f in fields]},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": (a.description or a.reason)[:2000]}]},
    ]
    if a.console_url:
        blocks.append(
            {
                "type": "actions",
                "elements": [
                    {
                        "type": "button",
                        "text": {"type": "plain_text", "text": "Open in CloudWatch"},
                        "url": a.console_url,
                    }
                ],
            }
        )
    return {"text": summary(a), "blocks": blocks}


def format_teams(a: AlarmEvent) -> dict[str, Any]:
    """Microsoft Teams (Workflows / incoming webhook) payload: one Adaptive Card."""
    card: dict[str, Any] = {
        "type": "AdaptiveCard",
        "version": "1.4",
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "body": [
            {
                "type": "TextBlock",
                "text": summary(a),
                "weight": "Bolder",
                "wrap": True,
                "color": TEAMS_COLOR.get(a.state, "Default"),
            },
            {
                "type": "FactSet",
                "facts": [
                    {"title": "Model", "value": a.model},
                    {"title": "Alarm", "value": a.alarm_name},
                    {"title": "State", "value": f"{a.old_state} -> {a.state}"},
                    {"title": "Current value", "value": _num(a.value)},
                    {"title": "Threshold", "value": f"{a.comparison} {_num(a.threshold)}"},
                    {"title": "Time", "value": a.time},
                ],
            },
            {"type": "TextBlock", "text": a.description or a.reason, "wrap": True, "isSubtle": True},
        ],
    }
    if a.console_url:
        card["actions"] = [{"type": "Action.OpenUrl", "title": "Open in CloudWatch", "url": a.console_url}]
    return {
        "type": "message",
        "attachments": [
            {"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None, "content": card}
        ],
    }


def format_webhook(a: AlarmEvent) -> dict[str, Any]:
    """Generic JSON: every parsed field plus the summary line."""
    return {"source": "mlpack", "summary": summary(a), **a.__dict__}


FORMATTERS: dict[str, Callable[[AlarmEvent], dict[str, Any]]] = {
    "slack": format_slack,
    "teams": format_teams,
    "webhook": format_webhook,
}


# Delivery and its retries. SNS invokes this function asynchronously, and Lambda retries a failed
# event twice, re-sending to every target: a target that already got the message would get it again.
# So a failing target is retried here (only for errors a retry can fix), and the event fails only
# when nothing at all was delivered. Every wait and request fits in the invocation's budget: what
# Lambda has left (the stack sets a 30 s timeout) minus RESERVE_S.
ATTEMPTS = 3  # per target, the first included
BACKOFF_S = (0.5, 1.5)  # wait before the 2nd and the 3rd attempt
MAX_RETRY_AFTER_S = 5.0  # a 429's Retry-After is honoured up to this
ATTEMPT_TIMEOUT_S = 5.0  # one HTTP request (worst case per target: 3 x 5 s + 5 s + 5 s)
MIN_ATTEMPT_S = 1.0  # with less time left, an attempt is not started
RESERVE_S = 3.0  # kept free before the function's timeout for the log and metric lines
DEFAULT_BUDGET_S = 20.0  # without a Lambda context (tests, local runs)

# The metric that shows targets a message did not reach. The same names as in handlers/contract.py (a
# test checks): the notifier's zip holds only this file and names.py, not contract.py.
DIM_MODEL = "Model"
M_NOTIFICATION_FAILURES = "NotificationFailures"

Post = Callable[[str, dict[str, Any], float], int]


def post_json(url: str, payload: dict[str, Any], timeout: float = ATTEMPT_TIMEOUT_S) -> int:
    req = urllib.request.Request(
        url, data=json.dumps(payload).encode(), method="POST", headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as e:
        e.close()  # its body is never read: free the connection now
        raise


def retryable(e: BaseException) -> bool:
    """Worth another attempt: network errors, timeouts, HTTP 429 and 5xx. Not other 4xx (the same
    request would be refused the same way) nor anything else (a malformed URL, a formatting bug)."""
    if isinstance(e, urllib.error.HTTPError):
        return e.code == 429 or e.code >= 500
    return isinstance(e, (OSError, http.client.HTTPException))  # URLError, TimeoutError, resets


def _wait_s(e: BaseException, attempt: int) -> float:
    wait = BACKOFF_S[min(attempt, len(BACKOFF_S)) - 1]
    if isinstance(e, urllib.error.HTTPError) and e.code == 429 and e.headers is not None:
        with contextlib.suppress(ValueError):  # absent, or an HTTP date: keep the backoff
            wait = max(wait, min(float(e.headers.get("Retry-After", "")), MAX_RETRY_AFTER_S))
    return wait


def _post_with_retries(
    post: Post,
    url: str,
    payload: dict[str, Any],
    *,
    label: str,
    deadline: float,
    sleep: Callable[[float], None],
    clock: Callable[[], float],
) -> int:
    """post() until it succeeds, the error is not worth retrying, ATTEMPTS are used up or the next
    attempt would not fit before deadline; then the last error is raised."""
    attempt = 1
    while True:
        left = deadline - clock()
        if left < MIN_ATTEMPT_S:
            raise TimeoutError(f"no time left in this invocation for attempt {attempt}")
        try:
            return post(url, payload, min(ATTEMPT_TIMEOUT_S, left))
        except Exception as e:
            wait = _wait_s(e, attempt)
            if attempt >= ATTEMPTS or not retryable(e) or clock() + wait + MIN_ATTEMPT_S > deadline:
                raise
            log.warning("%s: attempt %d failed (%s), retrying in %.1f s", label, attempt, _scrub(e, url), wait)
        sleep(wait)
        attempt += 1


REDACTED = "<webhook url>"
# path segments and query values at least this long are treated as secret on their own (Slack's
# T.../B.../token, Teams' GUIDs and signatures); shorter ones (v1, api, hooks) are not
SECRET_PART_MIN = 8


def _secret_forms(url: str) -> list[str]:
    """Every form in which an error message may quote the webhook URL or a part of it: as it is, stripped,
    repr-escaped, percent-encoded (as urllib and http.client encode it, or re-encode it), host + path,
    path + query, and each long run of URL-safe characters after the host (a token on its own). Longest
    first."""
    forms = {url, url.strip()}
    # split by hand as well: urlsplit drops tabs and newlines, which http.client then quotes back
    rest = url.strip().split("://", 1)[-1]
    host_path = rest.split("#", 1)[0]
    forms |= {rest, host_path, "/" + host_path.partition("/")[2]}
    try:
        parts = urllib.parse.urlsplit(url.strip())
    except ValueError:  # a malformed netloc: the whole URL and its escapes are all we can name
        parts = None
    if parts is not None:
        tail = parts.path + (f"?{parts.query}" if parts.query else "")
        forms |= {parts.netloc + parts.path, tail, parts.path, parts.query}
    # each long run of URL-safe characters after the host, wherever it turns up (tokens, GUIDs, signatures)
    forms |= {c for c in re.split(r"[^A-Za-z0-9_.~-]+", host_path.partition("/")[2]) if len(c) >= SECRET_PART_MIN}
    for form in list(forms):
        forms |= {
            urllib.parse.quote(form),
            urllib.parse.quote(form, safe="/:?&=#%"),
            urllib.parse.quote(form, safe=""),
            urllib.parse.quote_plus(form),
            urllib.parse.unquote(form),
            repr(form)[1:-1],
            form.encode("unicode_escape").decode("ascii"),
        }
    return sorted((f for f in forms if len(f) >= SECRET_PART_MIN or (f == url.strip() and f)), key=len, reverse=True)


def _scrub(e: BaseException | str, url: str) -> str:
    """The error's text with the webhook URL, in any of its forms or parts, replaced: the URL is the secret,
    and urllib and http.client quote it (or its path) in their messages ("unknown url type: '...'",
    "URL can't contain control characters. '/services/...'"); the result goes to logs and metrics."""
    text = str(e)
    if not url or not url.strip():
        return text
    for form in _secret_forms(url):
        text = text.replace(form, REDACTED)
    return text


def emit_failures(model: str, failed: list[str], out: TextIO | None = None, environment: str | None = None) -> None:
    """One CloudWatch Embedded Metric Format line: NotificationFailures (targets not reached) for
    [Model], in the environment's namespace (names.metric_namespace), with the failed targets (references
    and errors, never URLs) as a searchable field."""
    doc = {
        "_aws": {
            "Timestamp": int(time.time() * 1000),
            "CloudWatchMetrics": [
                {
                    "Namespace": names.metric_namespace(environment),
                    "Dimensions": [[DIM_MODEL]],
                    "Metrics": [{"Name": M_NOTIFICATION_FAILURES, "Unit": "Count"}],
                }
            ],
        },
        DIM_MODEL: model,
        M_NOTIFICATION_FAILURES: len(failed),
        "failedTargets": failed,
    }
    # stdout, not logging: Lambda's log formatter would prefix the line and CloudWatch would not parse it
    print(json.dumps(doc), file=out or sys.stdout, flush=True)


class AwsRefs:
    """Reads chat targets (the chat parameters of `environment`'s models) and webhook URLs; the only
    code here that touches AWS."""

    def __init__(self, ssm: Any = None, secrets: Any = None, *, environment: str | None = None) -> None:
        self.environment = environment
        if ssm is None or secrets is None:
            import boto3  # provided by Lambda's Python runtime

            ssm = ssm or boto3.client("ssm")
            secrets = secrets or boto3.client("secretsmanager")
        self.ssm, self.secrets = ssm, secrets

    def targets(self, model: str) -> list[dict[str, str]]:
        parameter = names.ModelNames(model, self.environment).chat_parameter
        value = self.ssm.get_parameter(Name=parameter)["Parameter"]["Value"]
        return list(json.loads(value))

    def url(self, ref: str) -> str:
        kind, where = ref.split(":", 1)
        if kind == "ssm":
            return str(self.ssm.get_parameter(Name=where, WithDecryption=True)["Parameter"]["Value"]).strip()
        secret = str(self.secrets.get_secret_value(SecretId=where)["SecretString"]).strip()
        if secret.startswith("{"):  # a JSON secret: {"url": "..."} (or "webhook")
            data = json.loads(secret)
            secret = str(data.get("url") or data.get("webhook") or "")
        return secret


def deliver(
    event: dict[str, Any],
    refs: Any,
    post: Post = post_json,
    *,
    budget_s: float = DEFAULT_BUDGET_S,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    out: TextIO | None = None,
    environment: str | None = None,
) -> int:
    """Send every alarm in an SNS event to its model's chat targets; returns the number of messages sent.
    environment: the one whose names the topics and alarms carry (None: no environment).

    A target failing with an error worth retrying is tried again (ATTEMPTS, BACKOFF_S) within
    budget_s. A target that still fails is logged by its reference (never its URL) and counted in
    the NotificationFailures metric. Raises only when something failed and nothing at all was
    delivered: then Lambda's retry of the event cannot send anyone a duplicate.
    """
    deadline = clock() + budget_s
    sent, failures = 0, []
    for record in event.get("Records", []):
        sns = record.get("Sns") or {}
        try:
            alarm = parse(json.loads(sns["Message"]), str(sns.get("TopicArn", "")), environment)
        except (KeyError, ValueError, TypeError) as e:
            log.warning("not a CloudWatch alarm message, skipped: %s", e)
            continue
        failed: list[str] = []
        try:
            targets = refs.targets(alarm.model)
        except Exception as e:  # an SSM error: boto3 has retried already
            log.error("could not read the chat targets of %s: %s", alarm.model, e)
            targets, failed = [], [f"chat targets of {alarm.model}: {e}"]
        for target in targets:
            kind = target.get("kind", "webhook")
            ref = str(target.get("webhook", ""))
            url = ""
            try:
                url = refs.url(ref)
                status = _post_with_retries(
                    post,
                    url,
                    FORMATTERS[kind](alarm),
                    label=f"{alarm.alarm_name} to {kind} target {ref}",
                    deadline=deadline,
                    sleep=sleep,
                    clock=clock,
                )
                log.info("sent %s %s to %s target %s (HTTP %s)", alarm.alarm_name, alarm.state, kind, ref, status)
                sent += 1
            except Exception as e:  # one broken target must not stop the others
                detail = _scrub(e, url)
                log.error("could not send %s to %s target %s: %s", alarm.alarm_name, kind, ref, detail)
                failed.append(f"{kind} {ref}: {detail}")
        if failed:
            emit_failures(alarm.model, failed, out, environment)
            failures.extend(failed)
    # Per event, not per record: SNS puts one record in each event, and were there several, raising
    # for one would re-send the others.
    if failures and not sent:
        raise RuntimeError("chat delivery failed for every target: " + "; ".join(failures))
    if failures:
        log.error(
            "chat delivery incomplete: %d sent, %d failed (%s); not raising, as a retry would re-send to the "
            "targets that got it",
            sent,
            len(failures),
            "; ".join(failures),
        )
    return sent


def budget(context: Any) -> float:
    """Seconds an invocation may spend delivering: what Lambda has left minus RESERVE_S."""
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    if remaining is None:
        return DEFAULT_BUDGET_S
    return max(float(remaining()) / 1000 - RESERVE_S, 0.0)


_refs: AwsRefs | None = None


def handler(event: dict[str, Any], context: Any) -> dict[str, int]:
    global _refs
    env = served_environment()
    if _refs is None or _refs.environment != env:
        _refs = AwsRefs(environment=env)
    return {"sent": deliver(event, _refs, budget_s=budget(context), environment=env)}
