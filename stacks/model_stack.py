"""mlpack-[<env>-]<model>: one model's function, API, alarms, notifications and dashboard, composed
from the constructs in stacks/. Takes resolved data (ModelSpec, lock entry, model.json info) and
optionally an environment (dev, prod, ...) that every resource name carries (handlers/names.py);
never reads files, builds, or calls AWS.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

from aws_cdk import Stack
from aws_cdk import aws_cloudwatch as cw
from constructs import Construct

from handlers.names import ModelNames
from packager.config.lock import LockEntry
from packager.config.spec import ModelSpec
from packager.errors import DeployError
from stacks import alarms as alarms_mod
from stacks.api import STAGE_NAME, ModelApi, ModelApiProps
from stacks.batch import BatchProps, ModelBatch
from stacks.dashboard import DashboardProps, ModelDashboard
from stacks.function import EcrImage, GradualDeployment, GradualDeploymentProps, ModelFunction, ModelFunctionProps
from stacks.model_json import ClassShares, ModelInfo
from stacks.notifications import ChatRef, ModelNotifications, NotificationsProps

# Model-quality alarms roll back a gradual deployment; service alarms too, except the API's 4XX
# rate, which clients drive.
ROLLBACK_ALARMS = ("errors", "duration", "api-5xx", "validation-failures", "out-of-range")
CODEDEPLOY_MAX_ALARMS = 10  # alarms per CodeDeploy deployment group
# CloudWatch quotas of a composite alarm: the alarms its rule references, and the rule's length
COMPOSITE_MAX_CHILDREN = 100
COMPOSITE_RULE_MAX_CHARS = 10240
# the most one child can add to a rule besides its alarm name, once deployed:
# ` OR ALARM("arn:<partition>:cloudwatch:<region>:<account>:alarm:<name>")`, the longest partition and region
_CHILD_OVERHEAD_CHARS = len(' OR ALARM("arn:aws-iso-b:cloudwatch:ap-southeast-7:123456789012:alarm:")')


class ModelStack(Stack):
    """mlpack-[<env>-]<model>: built in the order the pieces depend on each other (function, API, topic, alarms
    on both, a gradual deployment watching the alarms, a dashboard showing everything)."""

    def __init__(
        self,
        scope: Construct,
        *,
        spec: ModelSpec,
        lock: LockEntry,
        info: ModelInfo,
        image: EcrImage,
        account_concurrency: int = 1000,
        reserved_concurrency: int | None = None,
        environment: str | None = None,
        **kwargs: Any,
    ) -> None:
        """reserved_concurrency: the function's reserved concurrency as stacks/assembly.py allots it
        (runtime.reserved_concurrency, or the model's default share); None (default) = runtime.reserved_concurrency
        as it is. account_concurrency: the concurrency alarm's limit when nothing is reserved."""
        self.mlpack_environment = environment
        self.reserved_concurrency = (spec.runtime.reserved_concurrency if reserved_concurrency is None
                                     else reserved_concurrency)
        self.model_names = ModelNames(spec.name, environment)
        where = f" in {environment}" if environment else ""
        super().__init__(
            scope,
            self.model_names.stack,
            description=f"mlpack model {spec.name}{where} {lock.model_version} ({lock.digest[:19]})",
            **kwargs,
        )
        self.function = self._function(spec, lock, image)
        self.api = self._api(spec, info)
        self.notifications = ModelNotifications(
            self,
            "Notifications",
            props=NotificationsProps(
                model_name=spec.name,
                environment=environment,
                emails=tuple(spec.model.owners) if spec.notifications.email else (),
                chat=tuple(ChatRef(kind=c.kind, webhook=c.webhook) for c in spec.notifications.chat),
            ),
        )
        self.alarms = self._alarms(spec, info, account_concurrency)
        self.batch = self._batch(spec, info) if spec.batch.enabled else None  # [batch]: stacks/batch.py
        self.deployment = self._deployment(spec) if spec.deploy.strategy != "all_at_once" else None
        self.dashboard = ModelDashboard(
            self,
            "Dashboard",
            props=DashboardProps(
                model_name=spec.name,
                environment=self.mlpack_environment,
                stage_name=STAGE_NAME,
                alarms=tuple(self.alarms.alarms.values()),
                period_minutes=spec.alarms.period_minutes,
            ),
        )

    def _function(self, spec: ModelSpec, lock: LockEntry, image: EcrImage) -> ModelFunction:
        rt = spec.runtime
        return ModelFunction(
            self,
            "Model",
            props=ModelFunctionProps(
                model_name=spec.name,
                environment=self.mlpack_environment,
                image=image,
                model_version=lock.model_version,
                arch=lock.arch,
                memory_mb=rt.memory_mb,
                timeout_s=rt.timeout_s,
                max_batch_size=spec.api.max_batch_size,
                log_retention_days=rt.log_retention_days,
                reserved_concurrency=self.reserved_concurrency,
                provisioned_concurrency=rt.provisioned_concurrency,
                capture_rate=spec.monitoring.capture_rate,
                capture_exclude=tuple(spec.monitoring.capture_exclude),
            ),
        )

    def _api(self, spec: ModelSpec, info: ModelInfo) -> ModelApi:
        api_cfg = spec.api
        return ModelApi(
            self,
            "Api",
            props=ModelApiProps(
                model_name=spec.name,
                environment=self.mlpack_environment,
                handler=self.function.alias,
                request_schema=info.request_schema,
                auth=api_cfg.auth,
                public=api_cfg.public,
                throttle_rate=api_cfg.throttle_rate,
                throttle_burst=api_cfg.throttle_burst,
                quota_per_day=api_cfg.quota_per_day,
                log_retention_days=spec.runtime.log_retention_days,
                description=spec.model.description,
            ),
        )

    def _alarms(self, spec: ModelSpec, info: ModelInfo, account_concurrency: int) -> alarms_mod.ModelAlarms:
        rt = spec.runtime
        # [alarms] as it is, plus what its thresholds are relative to
        thresholds = alarms_mod.Thresholds(
            **dataclasses.asdict(spec.alarms),
            timeout_s=rt.timeout_s,
            concurrency_limit=self.reserved_concurrency or account_concurrency,
            stage_name=STAGE_NAME,
        )
        return alarms_mod.ModelAlarms(
            self,
            "Alarms",
            props=alarms_mod.ModelAlarmsProps(
                model_name=spec.name,
                environment=self.mlpack_environment,
                specs=tuple(alarms_mod.alarm_specs(spec.name, thresholds, info.drift,
                                                   chat=bool(spec.notifications.chat),
                                                   categorical=info.categorical,
                                                   environment=self.mlpack_environment)),
                topic=self.notifications.topic,
                ok_actions=spec.notifications.ok_actions,
            ),
        )

    def _batch(self, spec: ModelSpec, info: ModelInfo) -> ModelBatch:
        classes = len(info.drift.shares) if isinstance(info.drift, ClassShares) else len(spec.model.label_names)
        return ModelBatch(self, "Batch", alias=self.function.alias, topic=self.notifications.topic, props=BatchProps(
            model_name=spec.name, environment=self.mlpack_environment, batch=spec.batch,
            timeout_s=spec.runtime.timeout_s, memory_mb=spec.runtime.memory_mb,
            reserved_concurrency=self.reserved_concurrency, request_schema=info.request_schema,
            label_count=classes, log_retention_days=spec.runtime.log_retention_days,
            ok_actions=spec.notifications.ok_actions))

    def _deployment(self, spec: ModelSpec) -> GradualDeployment:
        """Canary or linear shifting on the alias, rolled back by the service and model alarms."""
        alarms = self.alarms.alarms
        rollback: tuple[cw.IAlarm, ...] = tuple(a for w, a in alarms.items() if w in ROLLBACK_ALARMS)
        drift = fold_alarms(self, [a for w, a in alarms.items() if w.startswith("drift")],
                            [w for w in alarms if w.startswith("drift")], CODEDEPLOY_MAX_ALARMS - len(rollback),
                            names=self.model_names)
        return GradualDeployment(
            self,
            "Deployment",
            alias=self.function.alias,
            props=GradualDeploymentProps(
                strategy=spec.deploy.strategy,
                percent=spec.deploy.percent,
                interval_minutes=spec.deploy.interval_minutes,
                alarms=rollback + tuple(drift),
            ),
        )


def fold_alarms(scope: Construct, alarms: Sequence[cw.IAlarm], whats: Sequence[str], slots: int, *,
                names: ModelNames, level: int = 1) -> list[cw.IAlarm]:
    """At most `slots` alarms that are in ALARM when any of `alarms` (named names.alarm(what)) is:
    CodeDeploy takes 10 alarms per deployment group, so many classes' drift alarms roll back through
    composite alarms (drift-any, or drift-any-1, -2, ... when one would pass CloudWatch's quotas: 100
    alarms and 10240 characters per rule; composites of composites, drift-any-<level>-<i>, past 100 x the
    free slots). Checked here, at synth: a composite over the quotas would only fail at deploy."""
    if len(alarms) <= slots:
        return list(alarms)
    longest = max(len(names.alarm(w)) for w in whats)
    per = min(COMPOSITE_MAX_CHILDREN, COMPOSITE_RULE_MAX_CHARS // (_CHILD_OVERHEAD_CHARS + longest))
    count = math.ceil(len(alarms) / per)
    size = math.ceil(len(alarms) / count)  # spread evenly: 112 alarms are 56 + 56, not 100 + 12
    out: list[cw.IAlarm] = []
    made: list[str] = []
    for i in range(count):
        children = list(alarms[i * size : (i + 1) * size])
        what = "drift-any" if count == 1 and level == 1 else (
            f"drift-any-{i + 1}" if level == 1 else f"drift-any-{level}-{i + 1}")
        rule_chars = len(children) * (_CHILD_OVERHEAD_CHARS + longest)
        if len(children) > COMPOSITE_MAX_CHILDREN or rule_chars > COMPOSITE_RULE_MAX_CHARS:
            raise DeployError(f"composite alarm {names.alarm(what)} would reference {len(children)} alarms in "
                              f"about {rule_chars} characters; CloudWatch allows {COMPOSITE_MAX_CHILDREN} and "
                              f"{COMPOSITE_RULE_MAX_CHARS}")
        out.append(cw.CompositeAlarm(
            scope, "DriftAny" + what[len("drift-any"):],
            composite_alarm_name=names.alarm(what),
            alarm_description="Any of the model's drift alarms (rolls back gradual deployments)",
            alarm_rule=cw.AlarmRule.any_of(*children), actions_enabled=False))
        made.append(what)
    return fold_alarms(scope, out, made, slots, names=names, level=level + 1)
