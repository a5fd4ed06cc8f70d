"""mlpack's CDK app: `cdk synth` / `cdk deploy` in a models repository (cdk.json: "python -m stacks.app";
this repository's own app.py runs it for its examples).

In a team repository (mlpack-repo.toml in the folder cdk runs in), context "mlpack:env" picks the
environment (default: the only one): its lock, account and region; its stacks are mlpack-<env>-<model>
and mlpack-<env>-shared, every name carries the environment, and every resource is tagged (model,
owners, version, environment, and the file's [tags]). Without mlpack-repo.toml: context "mlpack:projects"
(globs) and "mlpack:lock" (default mlpack.lock.json), stacks mlpack-<model> and mlpack-shared.

One stack per pushed model plus the shared stack. What a stack needs from an export comes from the
committed deploy record beside the lock, so a clean checkout synthesises. A project not pushed yet is
skipped with a note on stderr. A model with a problem (an invalid mlpack.toml, a lock entry whose project
is gone, which may leave an orphaned stack, a missing deploy record, ...) is skipped with one line saying
why and what to run, and the others are still synthesised: only deploying that model fails. Problems of
the whole app (a lock file that cannot be read, models in several accounts or regions, an unknown
environment) stop synth. No AWS calls, no Docker.

Other context keys: "mlpack:account_concurrency" (default 1000; the account's Lambda concurrency limit, for
the alarms), "mlpack:concurrency_budget" (default half of it: what this app's functions may reserve in all;
stacks/assembly.py shares it out), "mlpack:platform_email" (an email address or a JSON list of them,
subscribed to the shared stack's platform alarms), "mlpack:bootstrapless" (true: no bootstrap stack needed;
used by the deploy smoke test; only works while no stack has file assets, i.e. no chat notifier),
"mlpack:strict" (true: a skipped model fails synth, exit 2 and no template written — for CI checks
of a pull request).
Context values are validated first (read_context): a bad one stops synth with exit 2 and a line
naming the key, the value and what to put instead.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aws_cdk as cdk

from packager.config import repo as repo_mod
from packager.config.spec import EMAIL_RE
from packager.errors import MlpackError
from stacks.assembly import add_stacks
from stacks.plan import plan

DEFAULT_PROJECTS = ("examples/*",)
DEFAULT_LOCK = "mlpack.lock.json"
DEFAULT_ACCOUNT_CONCURRENCY = 1000
TRUE, FALSE = ("1", "true", "yes"), ("0", "false", "no", "")


@dataclass(frozen=True)
class Settings:
    """The app's context values, validated: raw context -> Settings happens only in read_context."""

    projects: tuple[str, ...] = DEFAULT_PROJECTS
    lock: Path = Path(DEFAULT_LOCK)
    lock_given: bool = False  # mlpack:lock was set (in a team repository it overrides the environment's)
    env: str | None = None
    account_concurrency: int = DEFAULT_ACCOUNT_CONCURRENCY
    concurrency_budget: int | None = None  # None: half of account_concurrency (stacks/assembly.py)
    platform_emails: tuple[str, ...] = ()
    bootstrapless: bool = False
    strict: bool = False


class ContextError(MlpackError):
    """Context values that are not valid; carries every problem, one line each."""

    exit_code = 2

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def _problem(key: str, must: str, got: object, example: str) -> str:
    return f"context {key} must be {must} (got {got!r}): set it in cdk.json or pass -c {key}={example}"


def read_context(get: Callable[[str], Any]) -> Settings:
    """Validate the mlpack:* context values (cdk.json gives JSON values, -c gives strings); unset
    ones take their defaults. Raises ContextError naming every bad value at once."""
    problems: list[str] = []

    projects: tuple[str, ...] = DEFAULT_PROJECTS
    raw = get("mlpack:projects")
    if raw is not None:
        value: Any = raw
        if isinstance(raw, str) and raw.lstrip().startswith("["):  # -c gives a string, maybe JSON
            try:
                value = json.loads(raw)
            except ValueError:
                value = None
        elif isinstance(raw, str):
            value = [raw]  # one glob
        if isinstance(value, list) and value and all(isinstance(v, str) and v.strip() for v in value):
            projects = tuple(value)
        else:
            must = "a glob or a JSON list of globs"
            problems.append(_problem("mlpack:projects", must, raw, """'["models/*"]'"""))

    lock = Path(DEFAULT_LOCK)
    raw = get("mlpack:lock")
    lock_given = raw is not None
    if raw is not None:
        if isinstance(raw, str) and raw.strip():
            lock = Path(raw)
        else:
            problems.append(_problem("mlpack:lock", "the path of the lock file", raw, "PATH"))

    concurrency = _positive(get, "mlpack:account_concurrency", problems) or DEFAULT_ACCOUNT_CONCURRENCY
    budget = _positive(get, "mlpack:concurrency_budget", problems)
    emails: tuple[str, ...] = ()
    raw = get("mlpack:platform_email")
    if raw is not None:
        value = raw
        if isinstance(raw, str):
            try:
                value = json.loads(raw) if raw.lstrip().startswith("[") else [raw.strip()]
            except ValueError:
                value = None
        if isinstance(value, list) and value and all(isinstance(v, str) and EMAIL_RE.match(v) for v in value):
            emails = tuple(value)
        else:
            must = "an email address or a JSON list of them"
            problems.append(_problem("mlpack:platform_email", must, raw, "ops@example.com"))

    env: str | None = None
    raw = get("mlpack:env")
    if raw is not None:
        if isinstance(raw, str) and repo_mod.ENV_NAME_RE.match(raw.strip()):
            env = raw.strip()
        else:
            problems.append(_problem("mlpack:env", "an environment name of mlpack-repo.toml", raw, "dev"))

    bootstrapless = _flag(get, "mlpack:bootstrapless", problems)
    strict = _flag(get, "mlpack:strict", problems)
    if problems:
        raise ContextError(problems)
    return Settings(projects=projects, lock=lock, lock_given=lock_given, env=env, account_concurrency=concurrency,
                    concurrency_budget=budget, platform_emails=emails, bootstrapless=bootstrapless, strict=strict)


def _positive(get: Callable[[str], Any], key: str, problems: list[str]) -> int | None:
    """A positive integer context value (unset: None); a bad one is added to problems."""
    raw = get(key)
    if raw is None:
        return None
    number = None
    if isinstance(raw, int) and not isinstance(raw, bool):
        number = raw
    elif isinstance(raw, str) and raw.strip().isascii() and raw.strip().isdigit():
        number = int(raw.strip())
    if number is not None and number > 0:
        return number
    problems.append(_problem(key, "a positive integer", raw, "N"))
    return None


def _flag(get: Callable[[str], Any], key: str, problems: list[str]) -> bool:
    """A true/false context value (unset: false); a bad one is added to problems."""
    raw = get(key)
    if raw is None:
        return False
    text = str(raw).strip().lower()  # str(True) == "True"
    if text not in TRUE and text not in FALSE:
        problems.append(_problem(key, "true or false", raw, "true"))
    return text in TRUE


def main(default_root: Path | None = None) -> None:
    """Synthesise the app for the folder cdk runs in (the one with cdk.json; else default_root)."""
    app = cdk.App()
    root = Path.cwd() if (Path.cwd() / "cdk.json").is_file() or default_root is None else default_root
    try:
        settings = read_context(app.node.try_get_context)
        repo_file = root / repo_mod.REPO_FILE
        environment = None
        tags: dict[str, str] = {}
        patterns, lock = list(settings.projects), settings.lock
        if repo_file.is_file():
            repo = repo_mod.load(repo_file)
            environment = repo.environment(settings.env)
            patterns, tags = list(repo.projects), dict(repo.tags)
            lock = settings.lock if settings.lock_given else environment.lock
        elif settings.env is not None:
            raise MlpackError(f"context mlpack:env={settings.env}: {root} has no {repo_mod.REPO_FILE} declaring "
                              "environments", hint="run `mlpack init --repo .` or drop -c mlpack:env")
        the_plan = plan(root, patterns=patterns, lock_path=lock, environment=environment)
    except ContextError as e:
        for problem in e.problems:
            print(f"mlpack: {problem}", file=sys.stderr)
        sys.exit(e.exit_code)
    except MlpackError as e:
        print(f"mlpack: {e}", file=sys.stderr)
        sys.exit(2)
    for line in (*the_plan.notes, *the_plan.skipped):
        print(line, file=sys.stderr)
    if settings.strict and the_plan.skipped:
        print(f"mlpack: {len(the_plan.skipped)} model(s) cannot be deployed (mlpack:strict is on); "
              "fix them or run without -c mlpack:strict=true", file=sys.stderr)
        sys.exit(2)
    if not the_plan.models:
        print("mlpack: no pushed model to deploy (run `mlpack push PROJECT` first)", file=sys.stderr)
    try:
        add_stacks(
            app,
            the_plan,
            environment=environment.name if environment else None,
            tags=tags,
            account_concurrency=settings.account_concurrency,
            concurrency_budget=settings.concurrency_budget,
            platform_emails=settings.platform_emails,
            synthesizer=cdk.BootstraplessSynthesizer if settings.bootstrapless else None,
        )
    except MlpackError as e:  # what concerns the whole app, e.g. reservations over the budget
        print(f"mlpack: {e}", file=sys.stderr)
        sys.exit(2)
    app.synth()


if __name__ == "__main__":
    main()
