"""The names of mlpack's AWS resources, in one place: the stacks (stacks/) create resources under
these names and the chat notifier (handlers/notify.py) parses them back.

In: a model name and, optionally, an environment (dev, staging, prod, ...). Out: every name derived
from them (ModelNames), the names of the stack every model stack of one environment shares
(SharedNames), and the parsers the notifier needs (model_from_topic, model_from_alarm,
ModelNames.alarm_what). A name that gains a part gains it here and nowhere else.

Environments: several can share one AWS account and region, so every physical name carries the
environment right after the prefix: mlpack-<env>-<model>..., /mlpack/<env>/<model>/chat,
mlpack-<env>-shared, mlpack-<env>-notifier. Without an environment the names are the ones mlpack
always had (mlpack-<model>, ...). An environment name is `ENVIRONMENT_RE` (no dash: the model name,
which may have dashes, is then what follows the environment's dash); validating it is the
configuration's job, the parsers only rely on being told the environment.

IAM names are global to the account (not per region), so the one IAM name here, the notifier's
role, also carries the region.

Standard library only, and no other mlpack module: it ships in the notifier's zip next to notify.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

PREFIX = "mlpack"
ENVIRONMENT_RE = re.compile(r"^[a-z][a-z0-9]{0,11}$")
# Set on the shared notifier's function by its stack: the environment it serves ("" or unset = none).
# Here and not in handlers/contract.py: the notifier's zip holds only notify.py and this file.
ENV_ENVIRONMENT = "MLPACK_ENVIRONMENT"

_TOPIC_SUFFIX = "alarms"


def metric_namespace(environment: str | None) -> str:
    """The CloudWatch namespace of the handler's and the notifier's own metrics: mlpack, or mlpack/<env>,
    so two environments of one model in one account and region never add up each other's counts (their
    dimensions name only the model)."""
    return f"{PREFIX}/{environment}" if environment else PREFIX


def _prefix(environment: str | None) -> str:
    """mlpack, or mlpack-<environment>: the start of every dash-separated name."""
    return f"{PREFIX}-{environment}" if environment else PREFIX


@dataclass(frozen=True)
class ModelNames:
    """Every resource name of one model's stack, in one environment (None: no environment)."""

    model: str
    environment: str | None = None

    @property
    def _base(self) -> str:
        return f"{_prefix(self.environment)}-{self.model}"

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
    def state_machine(self) -> str:
        """The batch-scoring state machine (`mlpack batch`; [batch] enabled in mlpack.toml)."""
        return f"{self._base}-batch"

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
    def chat_namespace(self) -> str:
        """Where the model's webhook URLs are kept: SSM parameters /<this>/... and secrets <this>/...
        (mlpack/<model>). The same in every environment, as one mlpack.toml serves them all; the shared
        notifier's role may read nothing outside the models' namespaces."""
        return f"{PREFIX}/{self.model}"

    @property
    def chat_parameter(self) -> str:
        """The SSM parameter holding the model's chat targets (references, never URLs)."""
        env = f"/{self.environment}" if self.environment else ""
        return f"/{PREFIX}{env}/{self.model}/chat"


@dataclass(frozen=True)
class SharedNames:
    """The names of the shared stack of one environment in one region. Deterministic, so model stacks
    reach the notifier (subscribe it, grant its role access) without cross-stack exports."""

    environment: str | None
    region: str

    @property
    def stack(self) -> str:
        return f"{_prefix(self.environment)}-shared"

    @property
    def notifier(self) -> str:
        """The chat notifier function (names are per region, so no region in it)."""
        return f"{_prefix(self.environment)}-notifier"

    @property
    def notifier_log_group(self) -> str:
        return f"/aws/lambda/{self.notifier}"

    @property
    def notifier_failures(self) -> str:
        """The SQS queue receiving the notifier's events that failed every attempt (its on-failure destination)."""
        return f"{self.notifier}-failures"

    @property
    def platform_topic(self) -> str:
        """The SNS topic of the shared stack's own alarms (the notifier, the account's concurrency): they
        concern the platform, not one model, and must not depend on the notifier to be heard."""
        return f"{self.stack}-alarms"

    def alarm(self, what: str) -> str:
        """One of the shared stack's alarms (notifier-errors, ...); alarm("*") matches them all."""
        return f"{self.stack}-{what}"

    @property
    def notifier_role(self) -> str:
        """The notifier's IAM role: IAM names are global per account, so a second region deploying the
        same environment needs another name (else CloudFormation fails with EntityAlreadyExists)."""
        return f"{self.notifier}-{self.region}"


def model_from_topic(topic_name: str, environment: str | None = None) -> str | None:
    """The model whose alarm topic this is (a topic name, not an ARN) in `environment`; None when it
    is not such a topic."""
    start, end = f"{_prefix(environment)}-", f"-{_TOPIC_SUFFIX}"
    if not (topic_name.startswith(start) and topic_name.endswith(end)):
        return None
    model = topic_name[len(start) : -len(end)]
    return model if re.fullmatch(r"[a-z][a-z0-9-]*", model) else None


def model_from_alarm(alarm_name: str, environment: str | None = None) -> str | None:
    """A guess at the model from an alarm name alone: the first dash-separated word after
    mlpack-[<environment>-] (a model name with dashes is cut short). None when the name is not an
    mlpack alarm name of that environment."""
    start = f"{_prefix(environment)}-"
    if not alarm_name.startswith(start):
        return None
    rest = alarm_name[len(start) :]
    return rest.split("-")[0] if rest.count("-") >= 1 and rest.split("-")[0] else None
