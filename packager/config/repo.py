"""mlpack-repo.toml: a team's models repository (written by `mlpack init --repo`).

    projects = ["models/*"]            # model project folders, globs relative to this file
    [tags]                             # optional; added to every AWS resource
    cost-center = "ml-platform"
    [environments.dev]
    account = "111111111111"
    region = "eu-west-1"
    # lock = "mlpack.dev.lock.json"    (the default)
    [environments.prod]
    account = "222222222222"
    region = "eu-west-1"

Environments are data: a name, an AWS account, a region and a lock file of their own. Enters: a folder
(`find` looks upwards from it for mlpack-repo.toml) or the file's path. Leaves: a `Repo` with its
validated `Environment`s, or a `SpecError` listing every problem with its dotted path. `environment()`
picks one by name (the only environment when there is one and none is named). No AWS, no network.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packager.config import lock as lock_mod
from packager.config.spec import read_toml
from packager.errors import MlpackError, SpecError

REPO_FILE = "mlpack-repo.toml"
ENV_NAME_RE = re.compile(r"^[a-z][a-z0-9]{0,11}$")  # no dashes: names are parsed back out of resource names
ACCOUNT_RE = re.compile(r"^[0-9]{12}$")
REGION_RE = re.compile(r"^[a-z]{2}(-[a-z]+)+-[0-9]$")
TAG_KEY_RE = re.compile(r"^[A-Za-z0-9 _.:/=+@-]{1,128}$")
TAG_VALUE_RE = re.compile(r"^[A-Za-z0-9 _.:/=+@-]{0,256}$")
ENV_KEYS = ("account", "region", "lock")
TOP_KEYS = ("projects", "tags", "environments")


@dataclass(frozen=True, kw_only=True)
class Environment:
    name: str
    account: str
    region: str
    lock: Path  # absolute

    @property
    def registry(self) -> str:
        """The environment's ECR registry host."""
        return f"{self.account}.dkr.ecr.{self.region}.amazonaws.com"


@dataclass(frozen=True, kw_only=True)
class Repo:
    path: Path  # the mlpack-repo.toml file, absolute
    projects: tuple[str, ...]
    tags: Mapping[str, str]
    environments: Mapping[str, Environment]

    @property
    def root(self) -> Path:
        return self.path.parent

    def environment(self, name: str | None) -> Environment:
        """The environment called `name`; with no name, the only one. Raises MlpackError naming the choices."""
        names = ", ".join(self.environments)
        if name is None:
            if len(self.environments) == 1:
                return next(iter(self.environments.values()))
            raise MlpackError(f"{self.path}: {len(self.environments)} environments ({names}); say which one",
                              hint="pass --env NAME (cdk: -c mlpack:env=NAME)")
        if name not in self.environments:
            raise MlpackError(f"{self.path}: no environment {name!r} (environments: {names})",
                              hint=f"declare [environments.{name}] there, or use one of: {names}")
        return self.environments[name]


def find(start: Path) -> Path | None:
    """The mlpack-repo.toml in `start` or the nearest folder above it; None when there is none."""
    start = start.resolve()
    for folder in (start, *start.parents):
        if (folder / REPO_FILE).is_file():
            return folder / REPO_FILE
    return None


def load(path: Path) -> Repo:
    path = path.resolve()
    return parse(read_toml(path), path)


def parse(raw: Mapping[str, Any], path: Path) -> Repo:
    """Validate the file's contents; SpecError lists every problem, each with its dotted path."""
    problems: list[str] = []
    for key in sorted(set(raw) - set(TOP_KEYS)):
        problems.append(f"{key}: unknown key; allowed: {', '.join(TOP_KEYS)}")
    projects = raw.get("projects", ["models/*"])
    if not (isinstance(projects, list) and projects and all(isinstance(p, str) and p.strip() for p in projects)):
        problems.append(f"projects: must be a non-empty list of globs like [\"models/*\"] (got {projects!r})")
        projects = []
    tags = raw.get("tags", {})
    if not isinstance(tags, dict):
        problems.append(f"tags: must be a table of key = \"value\" (got {tags!r})")
        tags = {}
    for key, value in tags.items():
        if not TAG_KEY_RE.match(key) or key.lower().startswith(("aws:", "mlpack:")):
            problems.append(f"tags.{key}: a tag key is 1-128 letters, digits, spaces or _ . : / = + - @ and does not "
                            "start with aws: or mlpack: (mlpack sets those)")
        if not isinstance(value, str) or not TAG_VALUE_RE.match(value):
            problems.append(f"tags.{key}: must be a string of up to 256 letters, digits, spaces or _ . : / = + - @ "
                            f"(got {value!r})")
    envs = raw.get("environments")
    environments: dict[str, Environment] = {}
    if not isinstance(envs, dict) or not envs:
        problems.append("environments: required: at least one [environments.<name>] table with account and region")
        envs = {}
    for name, table in envs.items():
        where = f"environments.{name}"
        if not ENV_NAME_RE.match(name):
            problems.append(f"{where}: an environment name is a lowercase letter then up to 11 lowercase letters or "
                            f"digits (no dashes; it becomes part of resource names), e.g. dev, staging, prod")
        if not isinstance(table, dict):
            problems.append(f"{where}: must be a table with account and region (got {table!r})")
            continue
        for key in sorted(set(table) - set(ENV_KEYS)):
            problems.append(f"{where}.{key}: unknown key; allowed: {', '.join(ENV_KEYS)}")
        account, region = table.get("account"), table.get("region")
        if not isinstance(account, str) or not ACCOUNT_RE.match(account):
            problems.append(f"{where}.account: required, the 12-digit AWS account id as a string (got {account!r})")
        if not isinstance(region, str) or not REGION_RE.match(region):
            problems.append(f"{where}.region: required, an AWS region like \"eu-west-1\" (got {region!r})")
        lock = table.get("lock", lock_mod.lock_file_for(name))
        if not isinstance(lock, str) or not lock.endswith(".json"):
            problems.append(f"{where}.lock: the lock file's path, relative to {REPO_FILE}, ending in .json "
                            f"(got {lock!r})")
            continue
        environments[name] = Environment(name=name, account=str(account), region=str(region),
                                         lock=(path.parent / lock).resolve())
    locks = [e.lock for e in environments.values()]
    for env in environments.values():
        if locks.count(env.lock) > 1:
            problems.append(f"environments.{env.name}.lock: another environment uses {env.lock.name} too; each "
                            "environment needs its own lock")
            break
    if problems:
        raise SpecError(str(path), problems)
    return Repo(path=path, projects=tuple(projects), tags=dict(sorted(tags.items())), environments=environments)
