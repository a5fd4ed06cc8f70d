"""The names of mlpack's AWS resources, in one place: the model stacks (stacks/) create resources under
these names and the chat notifier (handlers/notify.py) parses them back.

In: a model name. Out: every name derived from it (ModelNames), the names every model stack shares
(SHARED_STACK, NOTIFIER), and the parsers the notifier needs (model_from_topic, model_from_alarm,
ModelNames.alarm_what). A name that gains a part (an environment, say) gains it here and nowhere else.

Standard library only, and no other mlpack module: it ships in the notifier's zip next to notify.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

PREFIX = "mlpack"
SHARED_STACK = f"{PREFIX}-shared"
# the shared notifier's function and role: deterministic, so model stacks reach it without exports
NOTIFIER = f"{PREFIX}-notifier"
NOTIFIER_LOG_GROUP = f"/aws/lambda/{NOTIFIER}"

_TOPIC_SUFFIX = "alarms"
_TOPIC_RE = re.compile(rf"^{PREFIX}-(?P<model>[a-z][a-z0-9-]*)-{_TOPIC_SUFFIX}$")


@dataclass(frozen=True)
class ModelNames:
    """Every resource name of one model's stack."""

    model: str

    @property
    def _base(self) -> str:
        return f"{PREFIX}-{self.model}"

    @property
    def stack(self) -> str:
        return self._base

    @property
    def function(self) -> str:
        """The Lambda function; also the FunctionName dimension of its metrics."""
        return self._base

    @property
    def log_group(self) -> str:
        """The function's log group (Lambda's default name, so the stack owns the group it writes to)."""
        return f"/aws/lambda/{self.function}"

    @property
    def api(self) -> str:
        """The REST API; also the ApiName dimension of its metrics."""
        return self._base

    @property
    def request_validator(self) -> str:
        return f"{self._base}-body"

    @property
    def usage_plan(self) -> str:
        return self._base

    @property
    def api_key(self) -> str:
        return self._base

    @property
    def dashboard(self) -> str:
        return self._base

    @property
    def topic(self) -> str:
        """The SNS topic every alarm of the model notifies."""
        return f"{self._base}-{_TOPIC_SUFFIX}"

    def alarm(self, what: str) -> str:
        """The alarm watching `what` (errors, drift-1, ...); alarm("*") is the pattern matching them all."""
        return f"{self._base}-{what}"

    def alarm_what(self, alarm_name: str) -> str | None:
        """The `what` of one of this model's alarm names; None when the name is not one of them."""
        prefix = self.alarm("")
        return alarm_name[len(prefix) :] if alarm_name.startswith(prefix) else None

    @property
    def notifier_policy(self) -> str:
        """The policy giving the shared notifier read access to this model's chat references."""
        return f"{self._base}-notifier"

    @property
    def chat_parameter(self) -> str:
        """The SSM parameter holding the model's chat targets (references, never URLs)."""
        return f"/{PREFIX}/{self.model}/chat"


def model_from_topic(topic_name: str) -> str | None:
    """The model whose alarm topic this is (a topic name, not an ARN); None when it is not such a topic."""
    m = _TOPIC_RE.match(topic_name)
    return m["model"] if m else None


def model_from_alarm(alarm_name: str) -> str | None:
    """A guess at the model from an alarm name alone: its second dash-separated word (a model name
    with dashes is cut short). None when the name is not an mlpack alarm name."""
    if alarm_name.startswith(f"{PREFIX}-") and alarm_name.count("-") >= 2:
        return alarm_name.split("-")[1]
    return None
