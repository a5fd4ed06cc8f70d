"""`mlpack build` / `mlpack check` end to end: real debian base (mmdebstrap), real wheels, real readers.

One module-scoped cache and one debian base per architecture are shared by every test here; builds
after the first reuse the cached base and dependency layer, so most tests cost a second or two.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import re
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from handlers import contract
from packager import oci
from packager.cli import cli, main
from packager.config import spec as spec_mod
from packager.errors import BuildError
from packager.image import bases, checks, deps
from packager.image import build as image_mod
from tests.support.images import aws_like_base, copy_example, multi_arch_layout, skopeo_copy
from tests.support.registry import local_registry, start_registry  # noqa: F401  (session fixture)

pytestmark = pytest.mark.slow

OFFLINE = {
    # any pip run or proxied HTTP request in these tests would fail: proves "no network"
    "PIP_INDEX_URL": "http://127.0.0.1:9/simple",
    "PIP_NO_INDEX": "1",
    "PIP_FIND_LINKS": "",
    "PIP_CONFIG_FILE": os.devnull,
    "HTTP_PROXY": "http://127.0.0.1:9",
    "HTTPS_PROXY": "http://127.0.0.1:9",
}


@contextlib.contextmanager
def environ(**values: str | None) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in values}
    for k, v in values.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def build_cli(project: Path, *args: str) -> dict[str, Any]:
    result = CliRunner().invoke(cli, ["build", str(project), *args, "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return dict(json.loads(result.stdout))


def fails(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(list(args))
    err = capsys.readouterr().err
    return code, err


def tar_names(path: Path) -> list[str]:
    with gzip.open(path) as gz, tarfile.open(fileobj=gz, mode="r|") as tar:
        return [m.name for m in tar]


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("mlpack-cache")
    with environ(MLPACK_CACHE_DIR=str(root), SOURCE_DATE_EPOCH=None, MLPACK_BASE=None, MLPACK_ARCH=None,
                 MLPACK_PYTHON=None):
        yield root


@pytest.fixture(scope="module")
def iris(cache: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """The iris example built once on the debian base (x86_64), through the CLI."""
    project = copy_example("iris", tmp_path_factory.mktemp("iris-a"))
    return project, build_cli(project, "--base", "debian")


def layout_of(project: Path) -> Path:
    return project / "build" / "iris" / "image"


def run_in_image(layout: Path, dest: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run `args` in the image's own root (unpacked under dest) with its config's Env only, as root of
    a user namespace under chroot."""
    img = oci.read_layout(layout)
    rootfs = oci.unpack(img, dest)
    env = list(img.config_json["config"]["Env"])
    return subprocess.run(["/usr/bin/env", "-i", *env, "/usr/bin/unshare", "-r", "-m", "-p", "-f",
                           "/usr/sbin/chroot", str(rootfs), *args], capture_output=True, text=True, timeout=120)


# ---------------------------------------------------------------------------------------------------
# what the image holds


def test_build_prints_digest_and_layers_in_order(iris: tuple[Path, dict[str, Any]]) -> None:
    project, out = iris
    assert out["digest"] == oci.read_layout(layout_of(project)).manifest.digest
    assert [layer["name"] for layer in out["layers"]] == ["base", "deps", "handler", "model"]
    assert out["python"] == "3.11" and out["arch"] == "x86_64"
    text = CliRunner().invoke(cli, ["build", str(project), "--base", "debian"])
    assert text.exit_code == 0, text.output
    assert out["digest"] in text.output
    for name in ("base", "deps", "handler", "model"):
        assert f"  {name} " in text.output


def test_third_party_readers_accept_the_layout(iris: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    project, out = iris
    layout = layout_of(project)
    inspect = json.loads(subprocess.run(["skopeo", "inspect", f"oci:{layout}"], check=True,
                                        capture_output=True, text=True).stdout)
    assert inspect["Digest"] == out["digest"]
    assert inspect["Architecture"] == "amd64"
    assert len(inspect["Layers"]) == 4
    version = json.loads((project / "build" / "iris" / contract.MODEL_JSON).read_text())["version"]
    subprocess.run(["umoci", "unpack", "--rootless", "--image", f"{layout}:{version}", str(tmp_path / "bundle")],
                   check=True, capture_output=True)
    task = tmp_path / "bundle" / "rootfs" / "var" / "task"
    assert (task / "model" / contract.MODEL_FILE).is_file()
    meta = json.loads((task / "model" / contract.MODEL_JSON).read_text())
    assert meta["name"] == "iris"
    assert (task / "handlers" / "predict.py").is_file()
    assert (task / "handlers" / "contract.py").is_file()
    assert (task / "onnxruntime" / "__init__.py").is_file()
    assert (task / "awslambdaric").is_dir()  # the debian base has no runtime client of its own
    assert (tmp_path / "bundle" / "rootfs" / "usr" / "bin" / "python3.11").exists()


def test_unpacked_image_runs_the_model_under_chroot(iris: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    """The stripped dependency layer still imports and runs: the image's own python, in its own root."""
    project, _ = iris
    code = ("import json, numpy as np, onnxruntime as ort, awslambdaric, handlers.predict; "
            "from handlers import inference; "  # the JSON libraries are optional there: the image must ship them
            "assert inference.orjson is not None and inference._PARSER is not None; "
            "assert inference._rows_fast('{\"inputs\": [[1, 2]]}', 2).tolist() == [[1.0, 2.0]]; "
            "s = ort.InferenceSession('/var/task/model/model.onnx'); "
            "x = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]], np.float32); "
            "print(json.dumps(s.run(None, {s.get_inputs()[0].name: x})[0].tolist()))")
    proc = run_in_image(layout_of(project), tmp_path / "bundle", "/usr/bin/python3.11", "-c", code)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == [0, 2]


def test_init_imports_the_standard_library_from_bytecode(iris: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    """Lambda's file system is read-only: a module without a .pyc is compiled again at every cold start.
    The debian base's stdlib ships bytecode, and what the runtime client and the handler import at init
    (the model loaded) is read from it, never compiled (-v names each code object's file; -B: nothing is
    written, as there)."""
    project, _ = iris
    code = "import awslambdaric.bootstrap, handlers.predict"
    proc = run_in_image(layout_of(project), tmp_path / "bundle", "/usr/bin/python3.11", "-B", "-v", "-c", code)
    assert proc.returncode == 0, proc.stderr[-2000:]
    loaded = re.findall(r"^# code object from '?(.*?)'?$", proc.stderr, re.MULTILINE)
    stdlib = [p for p in loaded if p.startswith("/usr/lib/python3.11/")]
    assert [p for p in stdlib if not p.endswith(".cpython-311.pyc")] == []
    for module in ("json/__pycache__/decoder", "logging/__pycache__/__init__", "__pycache__/typing",
                   "__pycache__/sitecustomize"):
        assert f"/usr/lib/python3.11/{module}.cpython-311.pyc" in stdlib
    # the dependency layer's too (compiled when the image is built)
    assert [p for p in loaded if p.startswith("/var/task/") and p.endswith(".py")] == []
    img = oci.read_layout(layout_of(project))
    assert "standard library compiled" in img.config_json["history"][0]["created_by"]


def test_config_fits_a_base_without_runtime_client(iris: tuple[Path, dict[str, Any]]) -> None:
    project, _ = iris
    img = oci.read_layout(layout_of(project))
    cfg = img.config_json["config"]
    assert cfg["Entrypoint"] == ["/usr/bin/python3.11", "-m", "awslambdaric"]
    assert cfg["Cmd"] == [contract.HANDLER]
    assert cfg["WorkingDir"] == "/var/task"
    assert any(e.startswith("PYTHONPATH=/var/task") for e in cfg["Env"])
    assert img.config_json["architecture"] == "amd64" and img.config_json["os"] == "linux"
    assert len(img.config_json["history"]) == len(img.layers)
    assert [d.media_type for d in img.layers] == [oci.MT_OCI_LAYER_GZIP] * 4


def test_check_passes_on_a_built_layout(iris: tuple[Path, dict[str, Any]]) -> None:
    project, out = iris
    result = CliRunner().invoke(cli, ["check", str(layout_of(project)), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["ok"] is True and data["digest"] == out["digest"]
    # every module of the image (debian stdlib, dependencies, handler) carries its bytecode
    assert not [w for w in data["warnings"] if "bytecode" in w], data["warnings"]


def test_report_pins_every_distribution(iris: tuple[Path, dict[str, Any]]) -> None:
    project, _ = iris
    report = json.loads((project / "build" / "iris" / image_mod.REPORT_FILE).read_text())
    dists = {d["name"]: d for d in report["dependencies"]["distributions"]}
    for name in ("onnxruntime", "numpy", "awslambdaric"):
        assert name in dists
        assert len(dists[name]["sha256"]) == 64 and dists[name]["version"]
        assert dists[name]["wheel"].endswith(".whl")
    assert report["base"]["digest"].startswith("sha256:")
    assert report["image"]["digest"] == oci.read_layout(layout_of(project)).manifest.digest


def test_dependency_layer_is_stripped_and_compiled(iris: tuple[Path, dict[str, Any]]) -> None:
    project, _ = iris
    img = oci.read_layout(layout_of(project))
    names = tar_names(img.blob_path(img.layers[1].digest))
    assert not [n for n in names if "/tests/" in n or n.endswith(".pyi")]
    assert not [n for n in names if n.startswith("var/task/onnxruntime/transformers")]
    assert not [n for n in names if n.startswith("var/task/bin/")]
    assert not [n for n in names if n.startswith("var/task/simdjson/") and n.endswith((".cpp", ".h", ".pyx"))]
    assert any(n.startswith("var/task/csimdjson") and n.endswith(".so") for n in names)
    assert any(n.startswith("var/task/onnxruntime-") and n.endswith(".dist-info/METADATA") for n in names)
    # the debian base's python (3.11) matches this machine's, so bytecode is there
    assert any(n.startswith("var/task/numpy/__pycache__/__init__.cpython-311") for n in names)
    report = json.loads((project / "build" / "iris" / image_mod.REPORT_FILE).read_text())
    d = report["dependencies"]
    assert d["bytecode"] is True
    assert d["stripped_bytes"] < d["installed_bytes"]


# ---------------------------------------------------------------------------------------------------
# reproducible and cached


def test_same_inputs_elsewhere_give_the_same_digest(iris: tuple[Path, dict[str, Any]], cache: Path,
                                                    tmp_path: Path) -> None:
    """Another folder, another umask, another dependency cache (the layer is rebuilt from wheels)."""
    _, first = iris
    other = copy_example("iris", tmp_path / "deep" / "other")
    cache2 = tmp_path / "cache2"
    cache2.mkdir()
    for sub in ("store", "bases"):  # share the debian base only: its build hits the Debian mirror
        shutil.copytree(cache / sub, cache2 / sub)
    old = os.umask(0o027)
    try:
        with environ(MLPACK_CACHE_DIR=str(cache2)):
            second = build_cli(other, "--base", "debian")
    finally:
        os.umask(old)
    assert second["deps_cache_hit"] is False
    assert second["digest"] == first["digest"]
    assert [x["digest"] for x in second["layers"]] == [x["digest"] for x in first["layers"]]


def test_model_only_change_rebuilds_one_layer_offline(iris: tuple[Path, dict[str, Any]],
                                                       tmp_path: Path) -> None:
    import joblib
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    src, first = iris
    project = tmp_path / "iris"
    shutil.copytree(src, project)
    data = load_iris()
    joblib.dump(LogisticRegression(C=0.05, max_iter=500).fit(data.data.astype("float32"), data.target),
                project / "model.joblib")
    with environ(**OFFLINE):
        second = build_cli(project, "--base", "debian")
    assert second["exported"] is True and second["deps_cache_hit"] is True
    before = [x["digest"] for x in first["layers"]]
    after = [x["digest"] for x in second["layers"]]
    assert [a != b for a, b in zip(before, after, strict=True)] == [False, False, False, True]
    assert second["digest"] != first["digest"]


def test_corrupt_dependency_cache_entry_is_rebuilt(iris: tuple[Path, dict[str, Any]], cache: Path,
                                                   tmp_path: Path) -> None:
    src, first = iris
    project = tmp_path / "iris"
    shutil.copytree(src, project)
    blobs = list((cache / "deps" / "layers").glob("*.tar.gz"))
    assert blobs
    for blob in blobs:
        with blob.open("r+b") as f:
            f.seek(1000)
            f.write(b"corrupt!")
    again = build_cli(project, "--base", "debian")
    assert again["deps_cache_hit"] is False  # detected by digest, built again
    assert again["digest"] == first["digest"]
    # the first build's layout is a copy, untouched by the damage to the cache
    assert checks.check(layout_of(src)).problems == ()
    # the rebuild installed exactly the versions and wheels the first build's report pinned
    reports = [json.loads((p / "build" / "iris" / image_mod.REPORT_FILE).read_text()) for p in (src, project)]
    assert reports[0]["dependencies"]["distributions"] == reports[1]["dependencies"]["distributions"]


def test_failed_build_leaves_the_previous_layout_untouched(iris: tuple[Path, dict[str, Any]],
                                                           tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                                           ) -> None:
    src, first = iris
    project = tmp_path / "iris"
    shutil.copytree(src, project)
    code, err = fails(capsys, "build", str(project), "--base", "debian", "--python", "3.12")
    assert code == 1
    assert "3.12" in err and "3.11" in err and "runtime.python" in err
    assert oci.read_layout(layout_of(project)).manifest.digest == first["digest"]
    assert sorted(p.name for p in (project / "build" / "iris").iterdir() if p.name.startswith(".")) == []


# ---------------------------------------------------------------------------------------------------
# bad input


def test_unknown_arch_and_python_are_refused(iris: tuple[Path, dict[str, Any]],
                                             capsys: pytest.CaptureFixture[str]) -> None:
    project, _ = iris
    code, err = fails(capsys, "build", str(project), "--arch", "sparc")
    assert code == 2 and "sparc" in err
    code, err = fails(capsys, "build", str(project), "--python", "3.9")
    assert code == 2 and "3.9" in err


@pytest.mark.parametrize("base, expect", [
    ("nonsense", "not a known base"),
    ("oci:/nonexistent/layout", "/nonexistent/layout"),
    ("docker-archive:/nonexistent.tar", "/nonexistent.tar"),
    ("127.0.0.1:9/lambda/python:3.12", "127.0.0.1:9"),
])
def test_unreachable_bases_are_named_with_the_other_forms(iris: tuple[Path, dict[str, Any]], base: str,
                                                          expect: str, capsys: pytest.CaptureFixture[str]
                                                          ) -> None:
    project, first = iris
    code, err = fails(capsys, "build", str(project), "--base", base)
    assert code == 1
    assert expect in err
    assert "oci:PATH" in err and "docker-archive:PATH" in err and "debian" in err
    assert oci.read_layout(layout_of(project)).manifest.digest == first["digest"]


def test_package_without_wheel_for_target_is_named(cache: Path) -> None:
    with pytest.raises(BuildError) as e:
        deps.dependency_layer(["numpy==1.21.0"], deps.Target(python="3.12", arch="arm64"))
    assert "numpy==1.21.0" in e.value.message
    assert "arm64" in e.value.message and "3.12" in e.value.message


# ---------------------------------------------------------------------------------------------------
# other bases


@pytest.fixture(scope="module")
def aws_like(iris: tuple[Path, dict[str, Any]], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The debian base re-shaped like AWS's Lambda base, as an OCI layout."""
    base = bases.resolve("debian", arch="x86_64", python=None)
    dest = tmp_path_factory.mktemp("aws-like") / "layout"
    aws_like_base(base.image, dest)
    return dest


def test_registry_base_is_pulled_verified_and_cached(aws_like: Path, local_registry: Any,  # noqa: F811
                                                     iris: tuple[Path, dict[str, Any]], cache: Path,
                                                     tmp_path: Path) -> None:
    skopeo_copy(f"oci:{aws_like}:3.11", f"docker://{local_registry.host}/lambda/python:3.11")
    project = copy_example("iris", tmp_path)
    with environ(MLPACK_AWS_BASE_REPO=f"{local_registry.host}/lambda/python"):
        out = build_cli(project, "--base", "aws", "--python", "3.11")
    assert out["base"]["runtime_client"] == "base"
    img = oci.read_layout(project / "build" / "iris" / "image")
    assert img.config_json["config"]["Entrypoint"] == ["/lambda-entrypoint.sh"]
    assert img.config_json["config"]["Cmd"] == [contract.HANDLER]
    report = json.loads((project / "build" / "iris" / image_mod.REPORT_FILE).read_text())
    names = {d["name"] for d in report["dependencies"]["distributions"]}
    assert "awslambdaric" not in names and "onnxruntime" in names
    assert report["base"]["source"].startswith(f"{local_registry.host}/lambda/python@sha256:")

    # a corrupt blob in the cache is detected by digest and fetched again
    store = cache / "store" / "blobs" / "sha256"
    last = img.layers[len(img.layers) - 4]  # the base's own last layer (the aws shape)
    path = store / last.digest.split(":", 1)[1]
    path.write_bytes(b"garbage")
    again = build_cli(project, "--base", f"{local_registry.host}/lambda/python:3.11")
    assert again["digest"] == out["digest"]
    assert oci.sha256_file(path)[0] == last.digest


def test_oci_and_docker_archive_bases(aws_like: Path, iris: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    project = copy_example("iris", tmp_path)
    via_oci = build_cli(project, "--base", f"oci:{aws_like}")
    assert via_oci["base"]["runtime_client"] == "base"
    archive = tmp_path / "base.tar"
    skopeo_copy(f"oci:{aws_like}:3.11", f"docker-archive:{archive}")
    via_archive = build_cli(project, "--base", f"docker-archive:{archive}")
    assert via_archive["base"]["source"].startswith("docker-archive:")
    result = CliRunner().invoke(cli, ["check", str(project / "build" / "iris" / "image")])
    assert result.exit_code == 0, result.output
    # the same model, handler and dependency layers on both bases
    assert [x["digest"] for x in via_oci["layers"][-3:]] == [x["digest"] for x in via_archive["layers"][-3:]]


def test_arm64_target(iris: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    project = copy_example("iris", tmp_path)
    out = build_cli(project, "--base", "debian", "--arch", "arm64")
    img = oci.read_layout(project / "build" / "iris" / "image")
    assert out["arch"] == "arm64" and img.config_json["architecture"] == "arm64"
    inspect = json.loads(subprocess.run(["skopeo", "inspect", f"oci:{project / 'build' / 'iris' / 'image'}"],
                                        check=True, capture_output=True, text=True).stdout)
    assert inspect["Architecture"] == "arm64"
    names = tar_names(img.blob_path(img.layers[1].digest))
    assert any("aarch64" in n and n.endswith(".so") for n in names)
    assert not any("x86_64" in n and n.endswith(".so") for n in names)
    base_names = tar_names(img.blob_path(img.layers[0].digest))
    assert "lib/ld-linux-aarch64.so.1" in base_names or any("ld-linux-aarch64" in n for n in base_names)


def test_digits_example_builds(iris: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    project = copy_example("digits-mlp", tmp_path)
    spec = spec_mod.resolve(spec_mod.load(project), {"runtime.base": "debian"})
    result = image_mod.build(spec)
    assert [r.name for r in result.rows] == ["base", "deps", "handler", "model"]
    assert result.deps_cache_hit is True
    assert checks.check(result.layout).problems == ()


def test_registry_base_rebuild_reuses_the_pinned_digest_offline(aws_like: Path, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    import joblib
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    server = start_registry(tmp_path)
    try:
        skopeo_copy(f"oci:{aws_like}:3.11", f"docker://{server.host}/lambda/python:3.11")
        project = copy_example("iris", tmp_path)
        ref = f"{server.host}/lambda/python:3.11"
        first = build_cli(project, "--base", ref)
    finally:
        server.stop()
    data = load_iris()
    joblib.dump(LogisticRegression(C=0.1, max_iter=500).fit(data.data.astype("float32"), data.target),
                project / "model.joblib")
    with environ(**OFFLINE):
        second = build_cli(project, "--base", ref)  # the registry is gone: the pin and the cache suffice
    assert second["base"]["digest"] == first["base"]["digest"]
    assert [x["digest"] for x in second["layers"][:-1]] == [x["digest"] for x in first["layers"][:-1]]
    code, err = fails(capsys, "build", str(project), "--base", ref, "--pull")
    assert code == 1 and server.host in err and "oci:PATH" in err


def test_registry_index_is_resolved_to_the_target_arch(aws_like: Path, local_registry: Any,  # noqa: F811
                                                       tmp_path: Path) -> None:
    arm_base = bases.resolve("debian", arch="arm64", python=None)
    arm = aws_like_base(arm_base.image, tmp_path / "arm")
    amd = oci.read_layout(aws_like)
    merged = multi_arch_layout([amd, arm], tmp_path / "multi", tag="3.11")
    subprocess.run(["skopeo", "copy", "--quiet", "--all", "--insecure-policy", "--dest-tls-verify=false",
                    f"oci:{merged}:3.11", f"docker://{local_registry.host}/multi/python:3.11"],
                   check=True, capture_output=True, timeout=300)
    project = copy_example("iris", tmp_path)
    out = build_cli(project, "--base", f"{local_registry.host}/multi/python:3.11", "--arch", "arm64")
    assert out["arch"] == "arm64"
    assert out["base"]["digest"] == arm.manifest.digest
    img = oci.read_layout(project / "build" / "iris" / "image")
    assert img.config_json["architecture"] == "arm64"
    assert [d.digest for d in img.layers[:2]] == [d.digest for d in arm.layers]


def test_without_a_host_interpreter_the_image_compiles_its_own_bytecode(
        iris: tuple[Path, dict[str, Any]], cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No python3.11 on the build machine (find_interpreter finds none): the dependency and handler layers
    are compiled by the debian base's own /usr/bin/python3.11, run isolated on its root file system
    (unshare + chroot). Two such builds, in other folders with other dependency caches and umasks, give one
    digest; every module of the image ships bytecode."""
    monkeypatch.setattr(deps, "find_interpreter", lambda python: None)  # bases keeps its own: base cached
    digests = []
    for i, umask in enumerate((0o022, 0o077)):
        project = copy_example("iris", tmp_path / f"no-host-{i}" / ("deeper" * i))
        cache_i = tmp_path / f"cache-{i}"
        cache_i.mkdir()
        for sub in ("store", "bases"):
            shutil.copytree(cache / sub, cache_i / sub)
        old = os.umask(umask)
        try:
            with environ(MLPACK_CACHE_DIR=str(cache_i)):
                result = CliRunner().invoke(cli, ["build", str(project), "--base", "debian", "--json"])
        finally:
            os.umask(old)
        assert result.exit_code == 0, result.output
        assert "no bytecode" not in result.stderr
        out = json.loads(result.stdout)
        assert out["deps_cache_hit"] is False
        digests.append(out["digest"])
        report = json.loads((project / "build" / "iris" / image_mod.REPORT_FILE).read_text())
        assert report["dependencies"]["bytecode"] is True
        img = oci.read_layout(layout_of(project))
        deps_names = tar_names(img.blob_path(img.layers[-3].digest))
        handler_names = tar_names(img.blob_path(img.layers[-2].digest))
        for pyc in ("numpy/__pycache__/__init__.cpython-311.pyc", "onnxruntime/__pycache__/__init__.cpython-311.pyc"):
            assert f"var/task/{pyc}" in deps_names
        assert "var/task/handlers/__pycache__/predict.cpython-311.pyc" in handler_names
        assert not [w for w in checks.check(layout_of(project)).warnings if "bytecode" in w]
        assert not list((cache_i / "deps").glob("rootfs-*"))  # the unpacked base is gone
    assert digests[0] == digests[1]


def test_python_without_a_local_interpreter_is_said_once(iris: tuple[Path, dict[str, Any]], tmp_path: Path
                                                         ) -> None:
    if deps.find_interpreter("3.12"):
        pytest.skip("python3.12 is installed here: bytecode would be compiled")
    debian = bases.resolve("debian", arch="x86_64", python=None)
    base312 = aws_like_base(debian.image, tmp_path / "py312", python="3.12")
    project = copy_example("iris", tmp_path)
    result = CliRunner().invoke(cli, ["build", str(project), "--base", f"oci:{base312.layout}", "--json"])
    assert result.exit_code == 0, result.output
    assert result.stderr.count("no python3.12 on this machine") == 1
    out = json.loads(result.stdout)
    assert out["python"] == "3.12"
    report = json.loads((project / "build" / "iris" / image_mod.REPORT_FILE).read_text())
    assert report["dependencies"]["bytecode"] is False
    img = oci.read_layout(project / "build" / "iris" / "image")
    names = tar_names(img.blob_path(img.layers[-3].digest))
    assert any(n.endswith(".cpython-312-x86_64-linux-gnu.so") for n in names)
    assert not any(n.endswith(".pyc") for n in names)


def test_debian_base_rebuilds_to_the_same_digest(iris: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    first = bases.resolve("debian", arch="x86_64", python=None)
    with environ(MLPACK_CACHE_DIR=str(tmp_path / "fresh-cache")):
        again = bases.resolve("debian", arch="x86_64", python=None)
    assert again.image.layout != first.image.layout
    assert again.digest == first.digest


def test_source_date_epoch_sets_every_time(aws_like: Path, tmp_path: Path) -> None:
    project = copy_example("iris", tmp_path)
    with environ(SOURCE_DATE_EPOCH="1700000000"):
        out = build_cli(project, "--base", f"oci:{aws_like}")
    img = oci.read_layout(project / "build" / "iris" / "image")
    assert img.config_json["created"] == "2023-11-14T22:13:20Z"
    for desc in img.layers[-3:]:
        with gzip.open(img.blob_path(desc.digest)) as gz, tarfile.open(fileobj=gz, mode="r|") as tar:
            assert {m.mtime for m in tar} == {1700000000}
    assert out["deps_cache_hit"] is False  # the epoch is part of the dependency layer's key
