"""The chat notifier: turns CloudWatch alarm notifications (delivered by SNS) into Slack, Microsoft
Teams or generic JSON webhook messages.

Runs in Lambda's managed Python runtime (zip package built from this one file by stacks/shared_stack.py).
Which targets a model has is read from SSM (/mlpack/<model>/chat, written by the model's stack as
references); each webhook URL is read at run time from SSM Parameter Store or Secrets Manager and
never appears in a template. Formatting is pure functions over the message; AWS access goes through
boto3, which the runtime provides and which is imported only when the handler runs.

Imports only the standard library (and boto3 lazily); never packager/ or stacks/.
"""

from __future__ import annotations

import json
import logging
import re
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

log = logging.getLogger("mlpack.notify")
log.setLevel(logging.INFO)

TOPIC_RE = re.compile(r"^mlpack-(?P<model>[a-z][a-z0-9-]*)-alarms$")
VALUE_RE = re.compile(r"\[(-?[0-9.eE+-]+) \(")
COMPARISONS = {
    "GreaterThanThreshold": ">",
    "GreaterThanOrEqualToThreshold": ">=",
    "LessThanThreshold": "<",
    "LessThanOrEqualToThreshold": "<=",
}
STATE_EMOJI = {"ALARM": ":red_circle:", "OK": ":large_green_circle:", "INSUFFICIENT_DATA": ":white_circle:"}
STATE_COLOR = {"ALARM": "#d62728", "OK": "#2ca02c", "INSUFFICIENT_DATA": "#7f7f7f"}
TEAMS_COLOR = {"ALARM": "Attention", "OK": "Good", "INSUFFICIENT_DATA": "Default"}


@dataclass(frozen=True)
class AlarmEvent:
    """What a chat message says about one alarm state change."""

    model: str
    what: str  # the part of the alarm name after mlpack-<model>-
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


def parse(message: dict[str, Any], topic_arn: str) -> AlarmEvent:
    """One CloudWatch alarm notification (the JSON in an SNS record's Message)."""
    name = str(message["AlarmName"])
    arn = str(message.get("AlarmArn", ""))
    parts = arn.split(":")
    region = parts[3] if len(parts) > 5 else ""
    account = str(message.get("AWSAccountId", parts[4] if len(parts) > 5 else ""))
    topic = topic_arn.rsplit(":", 1)[-1]
    m = TOPIC_RE.match(topic)
    model = m["model"] if m else ""
    if not model:  # not one of ours: fall back to the alarm name's second word
        model = name.split("-")[1] if name.startswith("mlpack-") and name.count("-") >= 2 else name
    prefix = f"mlpack-{model}-"
    what = name[len(prefix) :] if name.startswith(prefix) else name
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
        what=what,
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


def post_json(url: str, payload: dict[str, Any], timeout: float = 10.0) -> int:
    req = urllib.request.Request(
        url, data=json.dumps(payload).encode(), method="POST", headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return int(resp.status)


class AwsRefs:
    """Reads chat targets and webhook URLs; the only code here that touches AWS."""

    def __init__(self, ssm: Any = None, secrets: Any = None) -> None:
        if ssm is None or secrets is None:
            import boto3  # provided by Lambda's Python runtime

            ssm = ssm or boto3.client("ssm")
            secrets = secrets or boto3.client("secretsmanager")
        self.ssm, self.secrets = ssm, secrets

    def targets(self, model: str) -> list[dict[str, str]]:
        value = self.ssm.get_parameter(Name=f"/mlpack/{model}/chat")["Parameter"]["Value"]
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


def deliver(event: dict[str, Any], refs: Any, post: Callable[[str, dict[str, Any]], int] = post_json) -> int:
    """Send every alarm in an SNS event to its model's chat targets. Returns the number of messages
    sent; raises after trying every target if any failed (so the failure shows in the Errors metric)."""
    sent, failures = 0, []
    for record in event.get("Records", []):
        sns = record.get("Sns") or {}
        try:
            alarm = parse(json.loads(sns["Message"]), str(sns.get("TopicArn", "")))
        except (KeyError, ValueError, TypeError) as e:
            log.warning("not a CloudWatch alarm message, skipped: %s", e)
            continue
        for target in refs.targets(alarm.model):
            kind = target.get("kind", "webhook")
            url = ""
            try:
                url = refs.url(target["webhook"])
                status = post(url, FORMATTERS[kind](alarm))
                log.info("sent %s %s to %s (HTTP %s)", alarm.alarm_name, alarm.state, kind, status)
                sent += 1
            except Exception as e:  # one broken target must not stop the others
                # urllib names the URL in some errors ("unknown url type: '...'"); the URL is the secret
                detail = str(e).replace(url, "<webhook url>") if url else str(e)
                log.error("could not send %s to %s target %s: %s", alarm.alarm_name, kind, target["webhook"], detail)
                failures.append(f"{kind} {target['webhook']}: {detail}")
    if failures:
        raise RuntimeError("chat delivery failed: " + "; ".join(failures))
    return sent


_refs: AwsRefs | None = None


def handler(event: dict[str, Any], context: Any) -> dict[str, int]:
    global _refs
    if _refs is None:
        _refs = AwsRefs()
    return {"sent": deliver(event, _refs)}
