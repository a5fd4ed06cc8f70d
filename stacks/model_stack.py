"""mlpack-<model>: one model's function, API, alarms, notifications and dashboard, composed from
the constructs in stacks/. Takes resolved data (ModelSpec, lock entry, model.json info); never
reads files, builds, or calls AWS.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from aws_cdk import Stack
from aws_cdk import aws_cloudwatch as cw
from constructs import Construct

from handlers.names import ModelNames

from packager.config.lock import LockEntry
from packager.config.spec import ModelSpec
from stacks import alarms as alarms_mod
from stacks.api import STAGE_NAME, ModelApi, ModelApiProps
from stacks.dashboard import DashboardProps, ModelDashboard
from stacks.function import EcrImage, GradualDeployment, GradualDeploymentProps, ModelFunction, ModelFunctionProps
from stacks.model_json import ModelInfo
from stacks.notifications import ChatRef, ModelNotifications, NotificationsProps

# Model-quality alarms roll back a gradual deployment; service alarms too, except the API's 4XX
# rate, which clients drive.
ROLLBACK_ALARMS = ("errors", "duration", "api-5xx", "validation-failures", "out-of-range")
CODEDEPLOY_MAX_ALARMS = 10  # alarms per CodeDeploy deployment group


class ModelStack(Stack):
    def __init__(
        self,
        scope: Construct,
        *,
        spec: ModelSpec,
        lock: LockEntry,
        info: ModelInfo,
        image: EcrImage,
        account_concurrency: int = 1000,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            scope,
            spec.stack_name,
            description=f"mlpack model {spec.name} {lock.model_version} ({lock.digest[:19]})",
            **kwargs,
        )
        rt, api_cfg, al = spec.runtime, spec.api, spec.alarms
        self.function = ModelFunction(
            self,
            "Model",
            props=ModelFunctionProps(
                model_name=spec.name,
                image=image,
                arch=lock.arch,
                memory_mb=rt.memory_mb,
                timeout_s=rt.timeout_s,
                max_batch_size=api_cfg.max_batch_size,
                log_retention_days=rt.log_retention_days,
                reserved_concurrency=rt.reserved_concurrency,
                provisioned_concurrency=rt.provisioned_concurrency,
            ),
        )
        self.api = ModelApi(
            self,
            "Api",
            props=ModelApiProps(
                model_name=spec.name,
                handler=self.function.alias,
                request_schema=info.request_schema,
                auth=api_cfg.auth,
                throttle_rate=api_cfg.throttle_rate,
                throttle_burst=api_cfg.throttle_burst,
                quota_per_day=api_cfg.quota_per_day,
                log_retention_days=rt.log_retention_days,
                description=spec.model.description,
            ),
        )
        self.notifications = ModelNotifications(
            self,
            "Notifications",
            props=NotificationsProps(
                model_name=spec.name,
                emails=tuple(spec.model.owners) if spec.notifications.email else (),
                chat=tuple(ChatRef(kind=c.kind, webhook=c.webhook) for c in spec.notifications.chat),
            ),
        )
        # [alarms] as it is, plus what its thresholds are relative to
        thresholds = alarms_mod.Thresholds(
            **dataclasses.asdict(al),
            timeout_s=rt.timeout_s,
            concurrency_limit=rt.reserved_concurrency or account_concurrency,
            stage_name=STAGE_NAME,
        )
        self.alarms = alarms_mod.ModelAlarms(
            self,
            "Alarms",
            props=alarms_mod.ModelAlarmsProps(
                model_name=spec.name,
                specs=tuple(alarms_mod.alarm_specs(spec.name, thresholds, info.drift,
                                                   chat=bool(spec.notifications.chat))),
                topic=self.notifications.topic,
                ok_actions=spec.notifications.ok_actions,
            ),
        )
        self.deployment: GradualDeployment | None = None
        if spec.deploy.strategy != "all_at_once":
            rollback: tuple[cw.IAlarm, ...] = tuple(a for w, a in self.alarms.alarms.items() if w in ROLLBACK_ALARMS)
            drift: list[cw.IAlarm] = [a for w, a in self.alarms.alarms.items() if w.startswith("drift")]
            if len(rollback) + len(drift) > CODEDEPLOY_MAX_ALARMS:
                # a deployment group takes at most 10 alarms: many classes' drift alarms become one composite
                drift = [cw.CompositeAlarm(
                    self, "DriftAny", composite_alarm_name=ModelNames(spec.name).alarm("drift-any"),
                    alarm_description="Any of the model's drift alarms (rolls back gradual deployments)",
                    alarm_rule=cw.AlarmRule.any_of(*drift), actions_enabled=False)]
            rollback += tuple(drift)
            self.deployment = GradualDeployment(
                self,
                "Deployment",
                alias=self.function.alias,
                props=GradualDeploymentProps(
                    strategy=spec.deploy.strategy,
                    percent=spec.deploy.percent,
                    interval_minutes=spec.deploy.interval_minutes,
                    alarms=rollback,
                ),
            )
        self.dashboard = ModelDashboard(
            self,
            "Dashboard",
            props=DashboardProps(
                model_name=spec.name,
                stage_name=STAGE_NAME,
                alarms=tuple(self.alarms.alarms.values()),
                period_minutes=al.period_minutes,
            ),
        )
