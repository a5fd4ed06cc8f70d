"""The fleet at a glance, as data: one environment's lock joined with what AWS says (its stacks, its
alarms in ALARM, its metrics), so each model becomes a `ModelStatus`: what the lock pins and what the
stack deploys (drift between them), the stack's status and last deploy, the alarms firing, the last
24 hours' figures. Stacks mlpack deployed whose model the lock no longer holds are orphans; locked models
without a stack were never deployed. `detail` adds one model's history, alarm changes and hourly series.

The deployed image is read from the stack itself, which DescribeStacks lists with every stack in pages
(no per-model call): its description (stacks/model_stack.py: "mlpack model <name>[ in <env>] <version>
(sha256:<12 hex>)") and its tags (stacks/assembly.py: mlpack:managed-by, mlpack:environment,
mlpack:model, mlpack:owners, mlpack:version).

Enters: a `Lock`, `StackFacts`, `AlarmFacts`, `Figures` (packager/fleet/facts.py, metrics.py). Leaves:
`FleetStatus` / `ModelDetail`, each with `to_json()`. No AWS, no terminal: the command line renders it.
Imports the standard library, packager.config.lock, handlers.names and packager.fleet.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from handlers.names import PREFIX, ModelNames, SharedNames
from packager.config.lock import Lock, LockEntry
from packager.fleet.facts import AlarmChange, AlarmFacts, StackFacts
from packager.fleet.metrics import NO_FIGURES, Figures, Window

TAG_MANAGED_BY, MANAGED_BY = "mlpack:managed-by", "mlpack"  # stacks/assembly.py (stacks/ is not imported here)
TAG_ENVIRONMENT, TAG_MODEL, TAG_OWNERS, TAG_VERSION = (
    "mlpack:environment", "mlpack:model", "mlpack:owners", "mlpack:version")
DESCRIPTION_RE = re.compile(r"^mlpack model (?P<model>\S+)(?: in (?P<env>\S+))? (?P<version>\S+) "
                            r"\((?P<digest>sha256:[0-9a-f]{12})\)$")
DIGEST_SHOWN = 19  # "sha256:" + 12 hex, as the stack's description holds it
ALARM = "ALARM"


def stack_health(status: str) -> str:
    """ok | deploying | rolled-back (the last deploy failed, the previous one runs) | failed | deleting."""
    if status.endswith("_IN_PROGRESS"):
        return "deleting" if status.startswith("DELETE") else "deploying"
    if status in ("CREATE_COMPLETE", "UPDATE_COMPLETE", "IMPORT_COMPLETE"):
        return "ok"
    if status in ("UPDATE_ROLLBACK_COMPLETE", "IMPORT_ROLLBACK_COMPLETE"):
        return "rolled-back"
    return "failed"  # CREATE_FAILED, ROLLBACK_COMPLETE, UPDATE_ROLLBACK_FAILED, DELETE_FAILED, ...


@dataclass(frozen=True, kw_only=True)
class Deployed:
    """What a model's stack runs, from DescribeStacks alone."""

    stack: str
    status: str
    updated: datetime | None
    version: str  # the model version (tag mlpack:version, else the description); "" when neither says
    digest: str  # "sha256:" + 12 hex from the description; "" when it does not say
    owners: tuple[str, ...]
    reason: str = ""

    @property
    def health(self) -> str:
        return stack_health(self.status)

    def to_json(self) -> dict[str, Any]:
        return {"stack": self.stack, "status": self.status, "health": self.health,
                "updated": _iso(self.updated), "version": self.version, "digest": self.digest,
                "owners": list(self.owners), "reason": self.reason}


def deployed(stack: StackFacts) -> Deployed:
    m = DESCRIPTION_RE.match(stack.description.strip())
    owners = tuple(stack.tags.get(TAG_OWNERS, "").split())
    return Deployed(stack=stack.name, status=stack.status, updated=stack.updated,
                    version=stack.tags.get(TAG_VERSION) or (m.group("version") if m else ""),
                    digest=m.group("digest") if m else "", owners=owners, reason=stack.reason)


def model_stacks(stacks: Iterable[StackFacts], environment: str | None) -> dict[str, StackFacts]:
    """The environment's model stacks by model: tagged as mlpack's, of this environment (no environment
    tag when there is no environment), naming a model. A stack named as the model's stack wins over
    another claiming the same model."""
    out: dict[str, StackFacts] = {}
    for s in stacks:
        if s.tags.get(TAG_MANAGED_BY) != MANAGED_BY or s.tags.get(TAG_ENVIRONMENT) != environment:
            continue
        model = s.tags.get(TAG_MODEL)
        if not model:
            continue
        if model not in out or s.name == ModelNames(model, environment).stack:
            out[model] = s
    return out


def shared_stack(stacks: Iterable[StackFacts], environment: str | None, region: str) -> StackFacts | None:
    name = SharedNames(environment, region).stack
    return next((s for s in stacks if s.name == name and s.tags.get(TAG_MANAGED_BY) == MANAGED_BY), None)


def alarms_by_model(alarms: Iterable[AlarmFacts], models: Iterable[str],
                    environment: str | None) -> dict[str, list[AlarmFacts]]:
    """Each alarm under the model whose alarm names it carries (mlpack-[<env>-]<model>-<what>); with models
    whose names prefix one another (a, a-b) the longest match wins. Alarms of no known model are left out."""
    prefixes = sorted(((ModelNames(m, environment).alarm(""), m) for m in models), key=lambda p: -len(p[0]))
    out: dict[str, list[AlarmFacts]] = {}
    for a in alarms:
        for prefix, model in prefixes:
            if a.name.startswith(prefix) and len(a.name) > len(prefix):
                out.setdefault(model, []).append(a)
                break
    return out


def alarm_what(alarm: str, model: str, environment: str | None) -> str:
    return ModelNames(model, environment).alarm_what(alarm) or alarm


@dataclass(frozen=True, kw_only=True)
class ModelStatus:
    model: str
    environment: str | None
    locked: LockEntry | None  # None: an orphan (a stack of a model the lock does not hold)
    deployed: Deployed | None  # None: never deployed (or its stack was deleted)
    owners: tuple[str, ...]
    alarms: tuple[AlarmFacts, ...] = ()  # in ALARM (fleet), or every alarm of the model (detail)
    figures: Figures = NO_FIGURES

    @property
    def stack(self) -> str:
        return self.deployed.stack if self.deployed else ModelNames(self.model, self.environment).stack

    @property
    def firing(self) -> tuple[AlarmFacts, ...]:
        return tuple(a for a in self.alarms if a.state == ALARM)

    @property
    def firing_whats(self) -> tuple[str, ...]:
        return tuple(alarm_what(a.name, self.model, self.environment) for a in self.firing)

    @property
    def orphan(self) -> bool:
        return self.locked is None

    @property
    def never_deployed(self) -> bool:
        return self.deployed is None

    @property
    def drift(self) -> bool:
        """The stack runs another image than the lock pins (the next deploy would change it). A stack whose
        description does not name a digest counts as drift: nothing shows it runs the locked image."""
        if self.locked is None or self.deployed is None:
            return False
        return self.deployed.digest != self.locked.digest[:DIGEST_SHOWN]

    @property
    def problems(self) -> tuple[str, ...]:
        """What needs a person, most urgent first: alarm, failed, rolled-back, drift, never-deployed, orphan."""
        out = []
        if self.firing:
            out.append("alarm")
        if self.deployed is not None and self.deployed.health in ("failed", "rolled-back"):
            out.append(self.deployed.health)
        if self.drift:
            out.append("drift")
        if self.never_deployed and not self.orphan:
            out.append("never-deployed")
        if self.orphan:
            out.append("orphan")
        return tuple(out)

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model, "stack": self.stack, "owners": list(self.owners),
            "locked": _entry_json(self.locked) if self.locked else None,
            "deployed": self.deployed.to_json() if self.deployed else None,
            "drift": self.drift, "orphan": self.orphan, "never_deployed": self.never_deployed,
            "problems": list(self.problems),
            "alarms": [{"name": a.name, "what": alarm_what(a.name, self.model, self.environment), "state": a.state,
                        "reason": a.reason, "updated": _iso(a.updated)} for a in self.alarms],
            "in_alarm": list(self.firing_whats),
            "last_24h": self.figures.to_json(),
        }


def _entry_json(e: LockEntry) -> dict[str, Any]:
    return {**asdict(e), "image": e.image_uri}


def _iso(at: datetime | None) -> str | None:
    return at.isoformat().replace("+00:00", "Z") if at else None


def _order(s: ModelStatus) -> tuple[int, int, str]:
    rank = {"alarm": 0, "failed": 1, "rolled-back": 2, "drift": 3, "never-deployed": 4}
    first = min((rank.get(p, 9) for p in s.problems), default=9)
    return (first, -len(s.firing), s.model)


@dataclass(frozen=True, kw_only=True)
class FleetStatus:
    environment: str | None
    region: str
    account: str
    lock: str  # the lock file's path, as shown
    window: Window
    models: tuple[ModelStatus, ...]  # locked models: those needing attention first (alarms, failures, drift)
    orphans: tuple[ModelStatus, ...]
    shared: Deployed | None
    shared_alarms: tuple[str, ...] = ()  # the shared stack's alarms in ALARM (the notifier's, ...), by what
    calls: Mapping[str, int] = field(default_factory=dict)  # AWS requests made, by action

    def counts(self) -> dict[str, int]:
        return {"models": len(self.models), "in_alarm": sum(1 for m in self.models if m.firing),
                "drift": sum(1 for m in self.models if m.drift),
                "never_deployed": sum(1 for m in self.models if m.never_deployed),
                "failed": sum(1 for m in self.models if m.deployed and m.deployed.health in ("failed", "rolled-back")),
                "orphans": len(self.orphans)}

    def to_json(self) -> dict[str, Any]:
        return {"environment": self.environment, "region": self.region, "account": self.account, "lock": self.lock,
                "window": {"start": _iso(self.window.start), "end": _iso(self.window.end)},
                "counts": self.counts(), "models": [m.to_json() for m in self.models],
                "orphans": [m.to_json() for m in self.orphans],
                "shared": self.shared.to_json() if self.shared else None, "shared_in_alarm": list(self.shared_alarms),
                "aws_calls": dict(self.calls)}


def fleet(*, lock: Lock, stacks: Sequence[StackFacts], alarms: Sequence[AlarmFacts],
          figures: Mapping[str, Figures], environment: str | None, region: str, account: str, lock_name: str,
          win: Window, owners_of: Callable[[str, LockEntry], tuple[str, ...]] = lambda _m, _e: (),
          calls: Mapping[str, int] | None = None) -> FleetStatus:
    """Join the lock with what AWS said. owners_of(model, entry): the owners of a model that has no stack
    (its project's mlpack.toml); a deployed model's come from its stack's tags."""
    found = model_stacks(stacks, environment)
    firing = alarms_by_model((a for a in alarms if a.state == ALARM), {*lock.models, *found}, environment)

    def status(model: str, entry: LockEntry | None) -> ModelStatus:
        s = found.get(model)
        d = deployed(s) if s else None
        owners = d.owners if d and d.owners else (owners_of(model, entry) if entry else ())
        return ModelStatus(model=model, environment=environment, locked=entry, deployed=d, owners=owners,
                           alarms=tuple(firing.get(model, ())), figures=figures.get(model, NO_FIGURES))

    models = sorted((status(m, e) for m, e in lock.models.items()), key=_order)
    orphans = sorted((status(m, None) for m in found if m not in lock.models), key=lambda s: s.model)
    shared = shared_stack(stacks, environment, region)
    shared_prefix = f"{SharedNames(environment, region).stack}-"
    shared_firing = tuple(a.name[len(shared_prefix):] for a in alarms
                          if a.state == ALARM and a.name.startswith(shared_prefix))
    return FleetStatus(environment=environment, region=region, account=account, lock=lock_name, window=win,
                       models=tuple(models), orphans=tuple(orphans), shared=deployed(shared) if shared else None,
                       shared_alarms=shared_firing, calls=dict(calls or {}))


@dataclass(frozen=True, kw_only=True)
class Live:
    """What the function's `live` alias serves (it can differ from the stack after `rollback --live`)."""

    version: str
    description: str  # the published version's description: its image digest and model version

    @property
    def digest(self) -> str:
        m = re.search(r"sha256:[0-9a-f]{12,64}", self.description)
        return m.group(0)[:DIGEST_SHOWN] if m else ""


@dataclass(frozen=True, kw_only=True)
class ModelDetail:
    status: ModelStatus  # with every alarm of the model, not only those in ALARM
    history: tuple[LockEntry, ...]  # the lock's entries, the current one first
    changes: tuple[AlarmChange, ...]  # alarm state changes, newest first
    hourly: Mapping[str, tuple[float | None, ...]]
    window: Window
    live: Live | None = None
    notes: tuple[str, ...] = ()  # what could not be read, in a sentence each
    calls: Mapping[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {**self.status.to_json(),
                "window": {"start": _iso(self.window.start), "end": _iso(self.window.end)},
                "history": [_entry_json(e) for e in self.history],
                "alarm_changes": [{"alarm": c.alarm, "what": alarm_what(c.alarm, self.status.model,
                                                                         self.status.environment),
                                   "at": _iso(c.at), "old": c.old, "new": c.new, "reason": c.reason}
                                  for c in self.changes],
                "hourly": {k: list(v) for k, v in self.hourly.items()},
                "live": {"version": self.live.version, "digest": self.live.digest,
                         "description": self.live.description} if self.live else None,
                "notes": list(self.notes), "aws_calls": dict(self.calls)}


def since_changed(alarms: Iterable[AlarmFacts], start: datetime) -> list[str]:
    """The alarms whose state changed at or after `start`: only their history can hold changes since then."""
    return [a.name for a in alarms if a.updated is not None and a.updated >= start]


def alarm_prefix(environment: str | None) -> str:
    """The start of every model alarm name of the environment (mlpack-<env>-, or mlpack- without one)."""
    return f"{PREFIX}-{environment}-" if environment else f"{PREFIX}-"
