"""Which stacks app.py creates: projects matched against mlpack.lock.json and model.json, and the
messages for every way they can disagree. Then app.py itself through the pinned CDK CLI."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from packager.errors import DeployError
from stacks.plan import plan
from tests.support import stack_projects as sp

REPO = Path(__file__).resolve().parents[2]
LOCK = Path("mlpack.lock.json")


def _plan(root: Path):
    return plan(root, patterns=["models/*"], lock_path=LOCK)


def test_pushed_models_are_planned_and_unpushed_ones_skipped_with_a_note(tmp_path):
    sp.write_project(tmp_path, "iris")
    sp.write_project(tmp_path, "fresh")
    sp.write_lock(tmp_path, ["iris"])
    p = _plan(tmp_path)
    assert [m.spec.name for m in p.models] == ["iris"]
    assert p.models[0].image.digest == sp.digest_for("iris") and p.env == (sp.ACCOUNT, sp.REGION)
    assert p.notes == (
        "mlpack: skipping fresh (models/fresh): not in mlpack.lock.json yet; "
        "run `mlpack push models/fresh` to deploy it",
    )


def test_no_lock_file_means_nothing_to_deploy(tmp_path):
    sp.write_project(tmp_path, "iris")
    p = _plan(tmp_path)
    assert p.models == () and len(p.notes) == 1


def _skipped(root: Path, **kwargs) -> str:
    """The plan's skipped lines, one model each, after checking every model with a problem is left out."""
    p = plan(root, patterns=kwargs.get("patterns", ["models/*"]), lock_path=LOCK)
    for line in p.skipped:
        assert "\n" not in line and line.startswith("mlpack: skipping ")
    return "\n".join(p.skipped)


def test_lock_entry_whose_project_is_gone(tmp_path):
    sp.write_project(tmp_path, "iris")
    sp.write_lock(tmp_path, ["iris", "old"])
    p = _plan(tmp_path)
    assert [m.spec.name for m in p.models] == ["iris"]
    (line,) = p.skipped
    assert line.startswith("mlpack: skipping old (models/old): mlpack.lock.json: models.old: project models/old is "
                           "gone (no mlpack.toml)")
    assert f"aws cloudformation delete-stack --stack-name mlpack-old --region {sp.REGION}`" in line


def test_lock_entry_outside_the_project_globs(tmp_path):
    sp.write_project(tmp_path, "iris")
    sp.write_lock(tmp_path, ["iris"])
    assert re.search(r"not matched by the project globs \(examples/\*\); add it to `projects` in mlpack-repo.toml",
                     _skipped(tmp_path, patterns=["examples/*"]))


def test_a_pushed_image_without_its_deploy_record_says_how_to_get_it(tmp_path):
    sp.write_project(tmp_path, "iris", model_json={})
    sp.write_lock(tmp_path, ["iris"])
    line = _skipped(tmp_path)
    assert f"mlpack.records/iris/{sp.digest_for('iris').partition(':')[2]}.json: no deploy record" in line
    assert "git add mlpack.records" in line and "`mlpack relock iris`" in line


def test_model_json_from_another_version(tmp_path):
    sp.write_project(tmp_path, "iris", version="v2")
    sp.write_lock(tmp_path, ["iris"], version="v1")
    assert "model version v2 does not match the pushed image's v1" in _skipped(tmp_path)


def test_malformed_model_json_names_the_file(tmp_path):
    sp.write_project(tmp_path, "iris", model_json={"format": "mlpack.model/1", "name": "iris"})
    sp.write_lock(tmp_path, ["iris"])
    assert re.search(r"model.json: malformed model.json \(KeyError", _skipped(tmp_path))


def test_arch_mismatch_and_non_ecr_repository_and_renamed_model_are_each_skipped(tmp_path):
    sp.write_project(tmp_path, "a", toml_extra='[runtime]\narch = "arm64"\n')
    sp.write_project(tmp_path, "b")
    (tmp_path / "models/c").mkdir(parents=True)
    sp.write_project(tmp_path, "c")
    text = (tmp_path / "models/c/mlpack.toml").read_text().replace('name = "c"', 'name = "renamed"')
    (tmp_path / "models/c/mlpack.toml").write_text(text)
    sp.write_project(tmp_path, "good")
    sp.write_lock(tmp_path, ["a", "c", "good"])
    lock = json.loads((tmp_path / "mlpack.lock.json").read_text())
    lock["models"]["b"] = {**lock["models"]["a"], "repository": "127.0.0.1:5000/mlpack/b", "project": "models/b"}
    (tmp_path / "mlpack.lock.json").write_text(json.dumps(lock))
    p = _plan(tmp_path)
    assert [m.spec.name for m in p.models] == ["good"]
    assert len(p.skipped) == 3
    msg = "\n".join(p.skipped)
    assert "models.a.arch: the pushed image is x86_64 but models/a/mlpack.toml asks for runtime.arch = 'arm64'" in msg
    assert "models.b.repository: repository '127.0.0.1:5000/mlpack/b' is not an ECR repository" in msg
    assert "`mlpack push PROJECT` without --to" in msg  # the flag that exists
    assert "models.c: models/c/mlpack.toml names model 'renamed', not 'c'" in msg


def test_models_in_two_regions_are_refused(tmp_path):
    sp.write_project(tmp_path, "a")
    sp.write_project(tmp_path, "b")
    sp.write_lock(tmp_path, ["a"])
    lock = json.loads((tmp_path / "mlpack.lock.json").read_text())
    lock["models"]["b"] = {
        **lock["models"]["a"],
        "project": "models/b",
        "repository": f"{sp.ACCOUNT}.dkr.ecr.eu-west-1.amazonaws.com/mlpack/b",
    }
    (tmp_path / "mlpack.lock.json").write_text(json.dumps(lock))
    with pytest.raises(DeployError, match="models span several AWS accounts/regions"):
        _plan(tmp_path)


def test_an_invalid_project_is_skipped_with_its_problems_and_the_others_planned(tmp_path):
    sp.write_project(tmp_path, "iris", toml_extra="[runtime]\nmemory_mb = 64\n")
    sp.write_project(tmp_path, "houses", model_json=sp.regressor_json("houses", "v1"))
    sp.write_project(tmp_path, "typo")
    (tmp_path / "models/typo/mlpack.toml").write_text("[model\nname = 'typo'\n")  # not TOML
    sp.write_lock(tmp_path, ["iris", "houses"])
    p = _plan(tmp_path)
    assert [m.spec.name for m in p.models] == ["houses"]
    iris, typo = p.skipped
    assert iris.startswith("mlpack: skipping iris (models/iris): models/iris/mlpack.toml is invalid: ")
    assert re.search(r"runtime.memory_mb: must be 128-10240 \(got 64\)", iris)
    assert "mlpack validate models/iris" in iris
    assert typo.startswith("mlpack: skipping models/typo: ") and "mlpack.toml" in typo


# --- app.py through the pinned CLI ---------------------------------------------------------------


def _cdk(root: Path, *args: str) -> subprocess.CompletedProcess:
    cdk = REPO / "node_modules/.bin/cdk"
    if not cdk.exists():
        pytest.fail(f"{cdk} is missing: run scripts/setup")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env |= {
        "CDK_DISABLE_CLI_TELEMETRY": "true",
        "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
        "PYTHONPATH": str(REPO),
    }
    return subprocess.run(
        [str(cdk), *args, "--no-notices", "-o", str(root / "cdk.out")],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow
def test_cdk_synth_lists_one_stack_per_pushed_model(tmp_path):
    sp.write_project(tmp_path, "iris")
    sp.write_project(tmp_path, "houses", model_json=sp.regressor_json("houses", "v1"))
    sp.write_project(tmp_path, "fresh")
    sp.write_lock(tmp_path, ["iris", "houses"])
    sp.write_cdk_json(tmp_path, REPO)
    result = _cdk(tmp_path, "ls")
    assert result.returncode == 0, result.stderr
    assert sorted(result.stdout.split()) == ["mlpack-houses", "mlpack-iris", "mlpack-shared"]
    assert "skipping fresh" in result.stderr


@pytest.mark.slow
def test_cdk_synth_skips_a_broken_model_and_synthesises_the_others(tmp_path):
    sp.write_project(tmp_path, "iris", model_json={})
    sp.write_project(tmp_path, "houses", model_json=sp.regressor_json("houses", "v1"))
    sp.write_lock(tmp_path, ["iris", "houses"])
    sp.write_cdk_json(tmp_path, REPO)
    result = _cdk(tmp_path, "synth", "mlpack-houses")
    assert result.returncode == 0, result.stderr
    assert "mlpack: skipping iris (models/iris): " in result.stderr and "mlpack relock iris" in result.stderr
    assert (tmp_path / "cdk.out" / "mlpack-houses.template.json").is_file()
    assert not (tmp_path / "cdk.out" / "mlpack-iris.template.json").exists()
    # deploying the broken one fails, with the reason printed above CDK's own message
    result = _cdk(tmp_path, "synth", "mlpack-iris")
    assert result.returncode != 0 and "mlpack: skipping iris" in result.stderr


@pytest.mark.slow
def test_cdk_synth_in_strict_mode_fails_with_the_message_and_writes_no_stack(tmp_path):
    sp.write_project(tmp_path, "iris", model_json={})
    sp.write_project(tmp_path, "houses", model_json=sp.regressor_json("houses", "v1"))
    sp.write_lock(tmp_path, ["iris", "houses"])
    sp.write_cdk_json(tmp_path, REPO)
    result = _cdk(tmp_path, "synth", "-c", "mlpack:strict=true")
    assert result.returncode != 0
    assert "no deploy record" in result.stderr and "mlpack:strict" in result.stderr
    assert not list((tmp_path / "cdk.out").glob("*.template.json"))


def test_a_committed_record_is_enough_and_memory_too_small_for_the_model_is_refused_with_the_figures(tmp_path):
    """A clean checkout: no build folder, only the lock and the deploy records. The record also gives
    model.onnx's size, and a function whose memory cannot hold it and the largest request is skipped."""
    from packager.config import records
    from stacks.plan import memory_needed_mb

    for name, size in (("small", 2 * 2**20), ("huge", 600 * 2**20)):
        project = sp.write_project(tmp_path, name, toml_extra="[runtime]\nmemory_mb = 1024\n")
        data = json.loads((project / "build" / name / "model.json").read_text())
        (project / "build" / name / "model.json").unlink()
        records.write(tmp_path / LOCK, name, sp.digest_for(name), "x86_64", data, size)
    sp.write_lock(tmp_path, ["small", "huge"])
    p = _plan(tmp_path)
    assert [m.spec.name for m in p.models] == ["small"]
    (line,) = p.skipped
    assert memory_needed_mb(600 * 2**20) == 1344
    assert "runtime.memory_mb = 1024 cannot hold the model and its largest request: about 1344 MB" in line
    assert "model.onnx's 600 MB twice" in line and "set runtime.memory_mb to 1344 or more" in line
