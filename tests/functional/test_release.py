"""A team repository's release path, against two real registries standing for two AWS accounts (ECR's
control plane from moto, its data plane from two local docker-registry servers): push to dev, promote
the exact digest to prod, roll back and forward, repair a damaged lock from the registry, and flip the
live alias through the Lambda API."""

from __future__ import annotations

import json
import subprocess

import pytest

from packager.cli import main
from packager.config import lock as lock_mod
from packager.config import records as records_mod
from tests.functional.test_push import make_project
from tests.support import registry as registry_support

local_registry = registry_support.local_registry

pytestmark = pytest.mark.slow

DEV, PROD = "111111111111", "222222222222"
REGION = "eu-west-1"
REPO_TOML = f"""projects = ["models/*"]
[tags]
cost-center = "ml-42"
[environments.dev]
account = "{DEV}"
region = "{REGION}"
[environments.prod]
account = "{PROD}"
region = "{REGION}"
"""


def host(account: str) -> str:
    return f"{account}.dkr.ecr.{REGION}.amazonaws.com"


@pytest.fixture(scope="module")
def prod_registry(tmp_path_factory):
    server = registry_support.start_registry(tmp_path_factory.mktemp("prod-registry"))
    yield server
    server.stop()


@pytest.fixture
def team(tmp_path, monkeypatch, local_registry, prod_registry):
    """A team repository with dev and prod, ECR mocked by moto, each account's registry a local server."""
    from moto import mock_aws

    for var in ("AWS_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_REGION"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("MLPACK_REGISTRY_ENDPOINT",
                       f"{host(DEV)}={local_registry.url},{host(PROD)}={prod_registry.url}")
    monkeypatch.setenv("MLPACK_ACTOR", "ana")
    root = tmp_path / "team"
    root.mkdir()
    (root / "mlpack-repo.toml").write_text(REPO_TOML)
    monkeypatch.chdir(root)
    with mock_aws():
        yield root


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def ok(capsys, *args: str) -> str:
    code, out, err = run(capsys, *args)
    assert code == 0, err
    return out


def manifest(registry: registry_support.RegistryServer, ref: str) -> bytes:
    return subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{registry.host}/{ref}"],
                          check=True, capture_output=True).stdout


def test_push_promote_rollback_and_relock(team, capsys, local_registry, prod_registry):
    project = make_project(team / "models" / "churn", "churn", "1")
    ok(capsys, "push", "models/churn", "--env", "dev")
    dev_lock, prod_lock = team / "mlpack.dev.lock.json", team / "mlpack.prod.lock.json"
    v1 = lock_mod.read(dev_lock)["churn"]
    assert v1.repository == f"{host(DEV)}/mlpack/churn" and v1.project == "models/churn"
    assert (v1.pushed_by, v1.how) == ("ana", "push")
    record = records_mod.path_for(dev_lock, "churn", v1.digest)
    assert json.loads(record.read_text())["model_json"]["version"] == "1"
    assert not prod_lock.exists()

    # Promote: the very bytes, into prod's registry, recorded in prod's lock with the same record.
    ok(capsys, "promote", "churn", "--from", "dev", "--to", "prod")
    p1 = lock_mod.read(prod_lock)["churn"]
    assert p1.digest == v1.digest and p1.repository == f"{host(PROD)}/mlpack/churn"
    assert p1.how == "promote from dev"
    assert manifest(prod_registry, f"mlpack/churn@{v1.digest}") == manifest(local_registry, f"mlpack/churn@{v1.digest}")
    # Promoting again sends nothing and leaves prod's lock byte-identical.
    before = prod_lock.read_bytes()
    out = ok(capsys, "promote", "churn", "--from", "dev", "--to", "prod")
    assert "sent 0 bytes" in out and prod_lock.read_bytes() == before
    # Only what the source lock holds can be promoted.
    code, _, err = run(capsys, "promote", "ghost", "--from", "dev", "--to", "prod")
    assert code != 0 and "dev holds no image of 'ghost'" in err
    code, _, err = run(capsys, "promote", "churn", "--from", "dev", "--to", "prod", "--image", "sha256:" + "0" * 64)
    assert code != 0 and "matches no entry" in err

    # A retrain: v2 in dev; history keeps v1.
    make_project(project, "churn", "2")
    ok(capsys, "push", "models/churn", "--env", "dev")
    v2 = lock_mod.read(dev_lock)["churn"]
    assert v2.model_version == "2" and lock_mod.read_lock(dev_lock).history["churn"][0].digest == v1.digest
    out = ok(capsys, "history", "churn", "--env", "dev")
    assert out.index(v2.digest[7:19]) < out.index(v1.digest[7:19])

    # Roll dev back (the previous entry by default), then forward again by version.
    ok(capsys, "rollback", "churn", "--env", "dev")
    back = lock_mod.read(dev_lock)["churn"]
    assert back.digest == v1.digest and back.how == "rollback"
    assert [e.digest for e in lock_mod.read_lock(dev_lock).history["churn"]] == [v2.digest]
    ok(capsys, "rollback", "churn", "--env", "dev", "--to", "2")
    assert lock_mod.read(dev_lock)["churn"].digest == v2.digest
    code, _, err = run(capsys, "rollback", "churn", "--env", "prod")
    assert code != 0 and "no earlier entry" in err

    # A damaged entry: relock rewrites it from the registry (and the lost record with it).
    data = json.loads(dev_lock.read_text())
    data["models"]["churn"]["digest"] = 5
    dev_lock.write_text(json.dumps(data))
    records_mod.path_for(dev_lock, "churn", v2.digest).unlink()
    code, _, err = run(capsys, "push", "models/churn", "--env", "dev")
    assert code != 0 and "mlpack relock churn" in err
    ok(capsys, "relock", "churn", "--env", "dev", "--image", f"{host(DEV)}/mlpack/churn@{v2.digest}")
    fixed = lock_mod.read(dev_lock)["churn"]
    assert (fixed.digest, fixed.model_version, fixed.project, fixed.how) == (v2.digest, "2", "models/churn", "relock")
    assert records_mod.read(dev_lock, "churn", v2.digest)["version"] == "2"
    assert lock_mod.read_lock(dev_lock).history["churn"][0].digest == v1.digest  # history survived
    # A lost record alone: relock finds the image from the (intact) entry.
    records_mod.path_for(dev_lock, "churn", v2.digest).unlink()
    ok(capsys, "relock", "churn", "--env", "dev")
    assert records_mod.read(dev_lock, "churn", v2.digest)["name"] == "churn"


def test_two_projects_naming_one_model_are_refused_before_any_upload(team, capsys, local_registry):
    make_project(team / "models" / "a", "twin", "1")
    b = make_project(team / "models" / "b", "twin", "2")
    ok(capsys, "push", "models/a", "--env", "dev")
    code, _, err = run(capsys, "push", "models/b", "--env", "dev")
    assert code != 0 and "both projects name their model 'twin'" in err
    assert lock_mod.read(team / "mlpack.dev.lock.json")["twin"].project == "models/a"
    del b


def test_an_environment_must_be_named_when_there_are_several(team, capsys):
    make_project(team / "models" / "solo", "solo", "1")
    code, _, err = run(capsys, "push", "models/solo")
    assert code != 0 and "2 environments (dev, prod); say which one" in err and "--env" in err
    code, _, err = run(capsys, "push", "models/solo", "--env", "qa")
    assert code != 0 and "no environment 'qa'" in err


def test_rollback_live_points_the_alias_at_the_version_running_that_image(team, capsys):
    import boto3

    make_project(team / "models" / "fast", "fast", "1")
    ok(capsys, "push", "models/fast", "--env", "dev")
    make_project(team / "models" / "fast", "fast", "2")
    ok(capsys, "push", "models/fast", "--env", "dev")
    old, new = lock_mod.read_lock(team / "mlpack.dev.lock.json").entries("fast")[1::-1]
    iam = boto3.client("iam")
    role = iam.create_role(RoleName="r", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    lam = boto3.client("lambda", region_name=REGION)
    name = "mlpack-dev-fast"
    lam.create_function(FunctionName=name, Role=role, PackageType="Image", Code={"ImageUri": old.image_uri})
    v1 = lam.publish_version(FunctionName=name, Description=f"fast {old.model_version} {old.digest}")["Version"]
    lam.update_function_code(FunctionName=name, ImageUri=new.image_uri)
    v2 = lam.publish_version(FunctionName=name, Description=f"fast {new.model_version} {new.digest}")["Version"]
    lam.create_alias(FunctionName=name, Name="live", FunctionVersion=v2)

    out = ok(capsys, "rollback", "fast", "--env", "dev", "--live", "--dry-run")
    assert f"-> version {v1}" in out and lam.get_alias(FunctionName=name, Name="live")["FunctionVersion"] == v2
    ok(capsys, "rollback", "fast", "--env", "dev", "--live")
    assert lam.get_alias(FunctionName=name, Name="live")["FunctionVersion"] == v1
    assert lock_mod.read(team / "mlpack.dev.lock.json")["fast"].digest == old.digest
