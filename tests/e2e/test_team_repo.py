"""A team's models repository, driven as a team drives it, with mlpack installed the way a team installs it:

the wheel is built and installed into a fresh virtualenv outside this checkout (not editable; nothing
of the checkout on the path) -> `mlpack init --repo` -> a model project is added and trained -> build
-> push to dev (ECR's control plane in moto_server, its data plane a local registry) -> lock and deploy
record committed, weights and build outputs ignored -> `cdk deploy` to dev (against moto_server) ->
promote the digest to prod (another account, its own registry) -> deploy prod -> a retrain reaches prod
-> rollback prod (the lock, then `--live` through the Lambda alias) -> `git clone` into a fresh folder
and `cdk synth` there from committed files only, next to a broken project.

Each step is a test, in order, sharing one module-scoped dict; a step whose inputs an earlier step did
not produce is skipped (the earlier failure is the one to read).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path
from typing import Any

import pytest

from tests.support import registry as registry_support
from tests.support.moto_server import ACCOUNT, running

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
CDK = REPO / "node_modules" / ".bin" / "cdk"
REGION = "us-east-1"
DEV, PROD = ACCOUNT, "222222222222"  # moto's default account, and one reached by assuming a role in it
local_registry = registry_support.local_registry


def ecr(account: str) -> str:
    return f"{account}.dkr.ecr.{REGION}.amazonaws.com"


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """mlpack from its wheel in a fresh virtualenv: returns the venv's bin folder."""
    src = tmp_path_factory.mktemp("src")
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "pyproject.toml",
                             "README.md", "packager", "stacks", "handlers"], cwd=REPO, capture_output=True,
                            text=True, check=True).stdout.split()
    for rel in listed:
        if (REPO / rel).is_file():
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, src / rel)
    dist = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(dist)], check=True, capture_output=True, timeout=600)
    (wheel,) = dist.glob("mlpack_lambda-*.whl")
    home = tmp_path_factory.mktemp("venv") / "v"
    venv.create(home, with_pip=True)
    pip = subprocess.run([str(home / "bin" / "python"), "-m", "pip", "install", "-q", f"{wheel}[sklearn]"],
                         capture_output=True, text=True, timeout=1200)
    assert pip.returncode == 0, pip.stderr[-3000:]
    return home / "bin"


@pytest.fixture(scope="module")
def prod_registry(tmp_path_factory):
    server = registry_support.start_registry(tmp_path_factory.mktemp("prod-registry"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def moto(tmp_path_factory):
    with running(tmp_path_factory.mktemp("moto") / "moto.log") as server:
        yield server


@pytest.fixture(scope="module")
def world(tmp_path_factory, installed, local_registry, prod_registry, moto) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("work")
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("AWS_", "MLPACK_", "PYTHON", "VIRTUAL_ENV")) and k != "SOURCE_DATE_EPOCH"}
    env = clean | moto.env(REGION) | {
        "PATH": f"{installed}:{os.environ['PATH']}",  # `python` and `mlpack` are the fresh venv's
        "AWS_CONFIG_FILE": str(root / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(root / "no-aws-credentials"),
        "MLPACK_REGISTRY_ENDPOINT": f"{ecr(DEV)}={local_registry.url},{ecr(PROD)}={prod_registry.url}",
        "MLPACK_ACTOR": "ana",
        "GIT_AUTHOR_NAME": "ana", "GIT_AUTHOR_EMAIL": "ana@example.com",
        "GIT_COMMITTER_NAME": "ana", "GIT_COMMITTER_EMAIL": "ana@example.com",
    }
    return {"root": root, "repo": root / "team", "env": env, "bin": installed, "moto": moto,
            "dev": local_registry, "prod": prod_registry}


@pytest.fixture
def step(world):
    return world


def need(data: dict[str, Any], *keys: str) -> None:
    missing = [k for k in keys if k not in data]
    if missing:
        pytest.skip(f"an earlier step did not produce {', '.join(missing)}")


def sh(data: dict[str, Any], *args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
       timeout: float = 900, ok: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(list(args), cwd=cwd or data["repo"], env=env or data["env"], capture_output=True,
                            text=True, timeout=timeout)
    if ok:
        assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return result


def mlpack(data: dict[str, Any], *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
    return sh(data, str(data["bin"] / "mlpack"), *args, **kw)


def cdk(data: dict[str, Any], *args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
        ok: bool = True) -> subprocess.CompletedProcess[str]:
    return sh(data, str(CDK), *args, "--no-notices", "-c", "mlpack:bootstrapless=true", cwd=cwd, env=env, ok=ok)


def prod_env(data: dict[str, Any]) -> dict[str, str]:
    """Credentials of the prod account: a role assumed in it (moto ties the keys to that account)."""
    if "prod_env" not in data:
        import boto3

        sts = boto3.client("sts", endpoint_url=data["moto"].url, region_name=REGION,
                           aws_access_key_id="testing", aws_secret_access_key="testing")
        creds = sts.assume_role(RoleArn=f"arn:aws:iam::{PROD}:role/deploy", RoleSessionName="ci")["Credentials"]
        data["prod_env"] = data["env"] | {"AWS_ACCESS_KEY_ID": creds["AccessKeyId"],
                                          "AWS_SECRET_ACCESS_KEY": creds["SecretAccessKey"],
                                          "AWS_SESSION_TOKEN": creds["SessionToken"]}
    return data["prod_env"]


def aws(data: dict[str, Any], service: str, env: dict[str, str]) -> Any:
    import boto3

    return boto3.client(service, endpoint_url=data["moto"].url, region_name=REGION,
                        aws_access_key_id=env["AWS_ACCESS_KEY_ID"], aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
                        aws_session_token=env.get("AWS_SESSION_TOKEN"))


def lock(data: dict[str, Any], env_name: str, root: Path | None = None) -> dict[str, Any]:
    return json.loads(((root or data["repo"]) / f"mlpack.{env_name}.lock.json").read_text())


def commit(data: dict[str, Any], message: str) -> None:
    sh(data, "git", "add", "-A")
    sh(data, "git", "commit", "-q", "-m", message)


def test_1_the_installed_mlpack_is_the_wheel_not_this_checkout(step):
    where = sh(step, str(step["bin"] / "python"), "-c",
               "import packager, stacks, handlers; print(packager.__file__, stacks.__file__, handlers.__file__)",
               cwd=step["root"]).stdout
    assert str(REPO) not in where and "site-packages" in where
    step["ready"] = True


def test_2_init_a_team_repository_and_add_a_model(step):
    need(step, "ready")
    mlpack(step, "init", "--repo", str(step["repo"]), "--env", f"dev={DEV}/{REGION}", "--env",
           f"prod={PROD}/{REGION}", "--cost-center", "ml-42", cwd=step["root"])
    project = step["repo"] / "models" / "iris"
    shutil.copytree(REPO / "examples" / "iris", project, ignore=shutil.ignore_patterns("build", "__pycache__",
                                                                                     "*.joblib", "*.csv"))
    sh(step, str(step["bin"] / "python"), "train.py", cwd=project)
    sh(step, "git", "init", "-q", "-b", "main")
    commit(step, "a team repository with iris")
    tracked = sh(step, "git", "ls-files").stdout.split()
    assert "models/iris/mlpack.toml" in tracked and "mlpack-repo.toml" in tracked
    assert not [f for f in tracked if f.endswith((".joblib", ".csv"))]  # weights and data stay out of git
    step["project"] = project


def test_3_build_and_push_to_dev_records_the_lock_and_the_deploy_record(step):
    need(step, "project")
    mlpack(step, "build", "models/iris", "--base", "debian", timeout=1800)
    mlpack(step, "push", "models/iris", "--env", "dev")
    entry = lock(step, "dev")["models"]["iris"]
    assert entry["repository"] == f"{ecr(DEV)}/mlpack/iris" and entry["pushed_by"] == "ana"
    record = step["repo"] / "mlpack.records" / "iris" / f"{entry['digest'].partition(':')[2]}.json"
    assert record.is_file()
    commit(step, "push iris to dev")
    status = sh(step, "git", "status", "--porcelain", "--ignored").stdout
    assert "!! models/iris/build/" in status  # build outputs are ignored, the lock and record committed
    assert "mlpack.dev.lock.json" in sh(step, "git", "ls-files").stdout
    step["v1"] = entry["digest"]


def test_4_deploy_dev(step):
    need(step, "v1")
    cdk(step, "deploy", "-c", "mlpack:env=dev", "mlpack-dev-iris", "--require-approval", "never", "--method=direct",
        "--no-previous-parameters")
    fn = aws(step, "lambda", step["env"]).get_function(FunctionName="mlpack-dev-iris")
    assert fn["Code"]["ImageUri"] == f"{ecr(DEV)}/mlpack/iris@{step['v1']}"
    # the stack's tags (CloudFormation hands them to every resource; moto's Lambda keeps none of them)
    stack = aws(step, "cloudformation", step["env"]).describe_stacks(StackName="mlpack-dev-iris")["Stacks"][0]
    tags = {t["Key"]: t["Value"] for t in stack.get("Tags", [])}
    assert tags.get("mlpack:environment") == "dev" and tags.get("cost-center") == "ml-42", tags
    assert tags.get("mlpack:model") == "iris" and tags.get("mlpack:owners") == "ml-team@example.com", tags
    step["dev_deployed"] = True


def test_5_promote_to_prod_copies_the_digest_and_deploys_there(step):
    need(step, "dev_deployed")
    env = prod_env(step)
    mlpack(step, "promote", "iris", "--from", "dev", "--to", "prod", env=env)
    entry = lock(step, "prod")["models"]["iris"]
    assert entry["digest"] == step["v1"] and entry["repository"] == f"{ecr(PROD)}/mlpack/iris"
    assert entry["how"] == "promote from dev"
    raw = sh(step, "skopeo", "inspect", "--raw", "--tls-verify=false",
             f"docker://{step['prod'].host}/mlpack/iris@{step['v1']}").stdout
    assert json.loads(raw)["layers"]  # the very manifest, in prod's registry
    commit(step, "promote iris to prod")
    cdk(step, "deploy", "-c", "mlpack:env=prod", "mlpack-prod-iris", "--require-approval", "never",
        "--method=direct", "--no-previous-parameters", env=env)
    fn = aws(step, "lambda", env).get_function(FunctionName="mlpack-prod-iris")
    assert fn["Configuration"]["FunctionArn"].split(":")[4] == PROD
    assert fn["Code"]["ImageUri"] == f"{ecr(PROD)}/mlpack/iris@{step['v1']}"
    step["prod_deployed"] = True


def test_6_a_retrain_reaches_prod_and_rolls_back(step):
    need(step, "prod_deployed")
    env = prod_env(step)
    train = step["project"] / "train.py"
    train.write_text(train.read_text().replace("max_iter=", "tol=1e-5, max_iter="))
    sh(step, str(step["bin"] / "python"), "train.py", cwd=step["project"])
    mlpack(step, "build", "models/iris", "--base", "debian", timeout=1800)
    mlpack(step, "push", "models/iris", "--env", "dev")
    v2 = lock(step, "dev")["models"]["iris"]["digest"]
    assert v2 != step["v1"]
    mlpack(step, "promote", "iris", "--from", "dev", "--to", "prod", env=env)
    deploy = ("deploy", "-c", "mlpack:env=prod", "mlpack-prod-iris", "--require-approval", "never",
              "--method=direct", "--no-previous-parameters")
    cdk(step, *deploy, env=env)
    lam = aws(step, "lambda", env)
    assert lam.get_function(FunctionName="mlpack-prod-iris")["Code"]["ImageUri"].endswith(v2)
    # the lock's way back: the previous entry, for the next deploy
    mlpack(step, "rollback", "iris", "--env", "prod", env=env)
    assert lock(step, "prod")["models"]["iris"]["digest"] == step["v1"]
    history = mlpack(step, "history", "iris", "--env", "prod", "--json", env=env).stdout
    assert [e["digest"] for e in json.loads(history)] == [step["v1"], v2]
    cdk(step, *deploy, env=env)
    assert lam.get_function(FunctionName="mlpack-prod-iris")["Code"]["ImageUri"].endswith(step["v1"])
    commit(step, "roll prod back to v1")
    step["v2"] = v2


def test_7_a_clean_clone_synthesises_from_committed_files_next_to_a_broken_project(step):
    need(step, "v2")
    clone = step["root"] / "clone"
    sh(step, "git", "clone", "-q", str(step["repo"]), str(clone), cwd=step["root"])
    assert not (clone / "models" / "iris" / "build").exists() and not list(clone.glob("models/iris/*.joblib"))
    broken = clone / "models" / "typo"
    broken.mkdir()
    (broken / "mlpack.toml").write_text('[model]\nname = "typo"\nowners = "not a list"\n')
    out = clone / "cdk.out"
    synth = cdk(step, "synth", "-c", "mlpack:env=prod", "-o", str(out), "mlpack-prod-iris", cwd=clone,
                env=prod_env(step))
    assert "mlpack: skipping models/typo" in synth.stderr
    template = json.loads((out / "mlpack-prod-iris.template.json").read_text())
    assert step["v1"] in json.dumps(template) and step["v2"] not in json.dumps(template)
    # dev in the same clone: its own stack names and its own lock
    dev_out = clone / "cdk.out.dev"
    cdk(step, "synth", "-c", "mlpack:env=dev", "-o", str(dev_out), "mlpack-dev-iris", cwd=clone)
    assert step["v2"] in (dev_out / "mlpack-dev-iris.template.json").read_text()
