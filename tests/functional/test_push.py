"""`mlpack push` against a real registry (Debian's docker-registry on 127.0.0.1): what arrives is
checked with skopeo and umoci; skip, mount, tags, dry-run, faults, interruption and the lock file."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from packager import oci
from packager.cli import main
from packager.config import lock as lock_mod
from packager.registry import push as push_mod
from packager.registry.client import ImageRef, RegistryClient, RetryPolicy
from tests.support import registry as registry_support
from tests.support.layouts import random_layer, write_layout
from tests.support.registry import RegistryServer, fault_proxy

local_registry = registry_support.local_registry  # the session fixture, shared

pytestmark = pytest.mark.slow

BASE = {"var/lang/bin/python": b"#!python\n" * 50, "etc/os-release": b"ID=test\n"}
DEPS = {"var/task/numpy/__init__.py": b"# numpy stand-in\n" * 200}
HANDLER = {"var/task/handlers/predict.py": b"def handler(event, context):\n    return {}\n"}


def model_files(version: str, name: str = "model", sha256: str | None = None) -> dict[str, bytes]:
    """The model layer: weights and the export's model.json (what the deploy record keeps)."""
    sha256 = sha256 or hashlib.sha256(f"onnx weights {version}".encode()).hexdigest()
    doc = {"name": name, "version": version, "model_sha256": sha256}
    return {"var/task/model/model.onnx": f"onnx weights {version}".encode() * 100,
            "var/task/model/model.json": json.dumps(doc).encode()}


def make_project(root: Path, name: str, version: str, *, extra_layers: list[dict[str, bytes]] | None = None) -> Path:
    """A model project with build/<name>/image (OCI layout) and build/<name>/model.json, as `mlpack build`
    leaves it. Returns the project folder."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "mlpack.toml").write_text(
        f'[model]\nname = "{name}"\nowners = ["ana@example.com"]\nsource = "train:build_model"\n'
        '[samples]\nsource = "train:samples"\n', encoding="utf-8")
    (root / "train.py").write_text("def build_model(): ...\ndef samples(): ...\n", encoding="utf-8")
    build = root / "build" / name
    image = build / "image"
    if image.exists():
        import shutil
        shutil.rmtree(image)
    write_layout(image, [BASE, DEPS, HANDLER, *(extra_layers or []), model_files(version, name)])
    (build / "model.json").write_text(json.dumps({
        "name": name, "version": version,
        "model_sha256": hashlib.sha256(f"onnx weights {version}".encode()).hexdigest()}), encoding="utf-8")
    return root


def default_tag(version: str, image: oci.Image) -> str:
    """The tag `mlpack push` gives an image when --to names none: the version and the digest's start."""
    return f"{version}-{image.manifest.digest.removeprefix('sha256:')[:12]}"


def push(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["push", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def push_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict:
    code, out, err = push(capsys, *args, "--json")
    assert code == 0, err
    return json.loads(out)


def skopeo_raw(ref: str) -> bytes:
    return subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{ref}"],
                          check=True, capture_output=True).stdout


def test_push_arrives_byte_exact_and_unpacks(tmp_path, capsys, local_registry: RegistryServer):
    project = make_project(tmp_path / "iris", "iris", "1.0.0")
    lock = tmp_path / "mlpack.lock.json"
    res = push_json(capsys, str(project), "--to", f"{local_registry.host}/mlpack/iris", "--lock", str(lock))

    image = oci.read_layout(project / "build" / "iris" / "image")
    assert res["digest"] == image.manifest.digest
    assert res["tag"] == default_tag("1.0.0", image)
    assert res["blobs"] == {"upload": 5, "mount": 0, "skip": 0}
    # A third-party reader sees exactly our manifest bytes, by digest and by tag.
    assert skopeo_raw(f"{local_registry.host}/mlpack/iris@{image.manifest.digest}") == image.manifest_bytes
    assert skopeo_raw(f"{local_registry.host}/mlpack/iris:{res['tag']}") == image.manifest_bytes

    entry = lock_mod.read(lock)["iris"]
    assert entry.repository == f"{local_registry.host}/mlpack/iris"
    assert entry.digest == image.manifest.digest
    assert entry.model_version == "1.0.0" and entry.arch == "x86_64" and entry.project == "iris"

    # Pull it back with skopeo and unpack it with umoci: the files are there.
    pulled = tmp_path / "pulled"
    subprocess.run(["skopeo", "copy", "--src-tls-verify=false", f"docker://{entry.image_uri}",
                    f"oci:{pulled}:x"], check=True, capture_output=True)
    bundle = tmp_path / "bundle"
    subprocess.run(["umoci", "unpack", "--rootless", "--image", f"{pulled}:x", str(bundle)],
                   check=True, capture_output=True)
    assert (bundle / "rootfs/var/task/model/model.onnx").read_bytes() == b"onnx weights 1.0.0" * 100
    assert (bundle / "rootfs/var/task/handlers/predict.py").exists()


def test_second_push_sends_nothing_and_model_change_sends_one_layer(tmp_path, capsys, local_registry):
    dest = f"{local_registry.host}/mlpack/again"
    lock = str(tmp_path / "lock.json")
    project = make_project(tmp_path / "p", "again", "1")
    first = push_json(capsys, str(project), "--to", dest, "--lock", lock)
    assert first["blobs"]["upload"] == 5
    second = push_json(capsys, str(project), "--to", dest, "--lock", lock)
    assert second["digest"] == first["digest"]
    assert second["bytes_sent"] == 0 and second["blobs"] == {"upload": 0, "mount": 0, "skip": 5}

    make_project(tmp_path / "p", "again", "2")  # a retrain: only the model layer (and config) differ
    image = oci.read_layout(project / "build" / "again" / "image")
    third = push_json(capsys, str(project), "--to", dest, "--lock", lock)
    assert third["blobs"] == {"upload": 2, "mount": 0, "skip": 3}
    assert third["bytes_sent"] == image.layers[-1].size + image.config.size
    assert lock_mod.read(Path(lock))["again"].digest == image.manifest.digest


def test_an_image_change_with_the_same_model_gets_its_own_tag(tmp_path, capsys, local_registry):
    # A dependency refresh (or a base update, an arch switch, an mlpack upgrade): same model version and
    # ONNX, another image. Its push must not be refused, and the first image's tag must not move.
    repo = f"{local_registry.host}/mlpack/refresh"
    lock = tmp_path / "l.json"
    project = make_project(tmp_path / "refresh", "refresh", "1")
    old = oci.read_layout(project / "build/refresh/image")
    first = push_json(capsys, str(project), "--to", repo, "--lock", str(lock))
    make_project(tmp_path / "refresh", "refresh", "1", extra_layers=[{"var/task/numpy/_new.py": b"# newer\n"}])
    new = oci.read_layout(project / "build/refresh/image")
    assert new.manifest.digest != old.manifest.digest
    second = push_json(capsys, str(project), "--to", repo, "--lock", str(lock))
    assert (first["tag"], second["tag"]) == (default_tag("1", old), default_tag("1", new))
    assert skopeo_raw(f"{repo}:{first['tag']}") == old.manifest_bytes
    assert skopeo_raw(f"{repo}:{second['tag']}") == new.manifest_bytes
    assert lock_mod.read(lock)["refresh"].digest == new.manifest.digest


def test_a_default_tag_taken_by_another_image_is_refused_with_a_free_one(tmp_path, capsys, local_registry):
    # Someone pushed another image under the tag mlpack would pick: it stays, and the hint still works.
    repo = f"{local_registry.host}/mlpack/squatted"
    lock = tmp_path / "l.json"
    other = make_project(tmp_path / "other", "squatted", "0")
    mine = make_project(tmp_path / "mine", "squatted", "1")
    taken = default_tag("1", oci.read_layout(mine / "build/squatted/image"))
    push_json(capsys, str(other), "--to", f"{repo}:{taken}", "--lock", str(tmp_path / "theirs.json"))
    code, _, err = push(capsys, str(mine), "--to", repo, "--lock", str(lock))
    assert code != 0 and f"{repo}:{taken}: the tag already points to" in err
    suggested = re.search(r"push with --to (\S+) ", err)
    assert suggested, err
    res = push_json(capsys, str(mine), "--to", suggested.group(1), "--lock", str(lock))
    assert res["tag"] != taken and res["digest"] == oci.read_layout(mine / "build/squatted/image").manifest.digest


def test_default_tags_follow_the_tag_grammar():
    digest = "sha256:" + hashlib.sha256(b"an image").hexdigest()
    for base in ("1.0.0", "3f2a9c01b7d4", "-lead.dash", "..dots", "v 1/2+3", "x" * 200, "", "ü"):
        for digits in (12, 64):
            tag = push_mod.image_tag(base, digest, digits)
            assert ImageRef.parse(f"127.0.0.1:5000/r:{tag}").tag == tag, base
            assert len(tag) <= 128 and tag.endswith(digest[7:7 + digits]), base
    assert push_mod.image_tag("1.0.0", digest) == f"1.0.0-{digest[7:19]}"


def test_existing_tag_is_never_moved_and_the_hint_names_one_that_works(tmp_path, capsys, local_registry):
    dest = f"{local_registry.host}/mlpack/tagged:v1"
    lock = tmp_path / "l.json"
    a = make_project(tmp_path / "a", "tagged", "1")
    first = push_json(capsys, str(a), "--to", dest, "--lock", str(lock))
    (a / "mlpack.toml").unlink()  # the project moved to b (two live projects of one name are refused)
    b = make_project(tmp_path / "b", "tagged", "2")
    code, out, _ = push(capsys, str(b), "--to", dest, "--lock", str(lock), "--dry-run", "--json")
    assert code != 0 and json.loads(out)["tag"]["state"] == "conflict"
    free = json.loads(out)["tag"]["free"]
    code, out, _ = push(capsys, str(b), "--to", dest, "--lock", str(lock), "--dry-run")
    assert code != 0 and "tag v1: CONFLICT" in out and f"free tag for this image: {free}\n" in out
    code, _, err = push(capsys, str(b), "--to", dest, "--lock", str(lock))
    assert code != 0
    assert "never moves a tag" in err and first["digest"] in err and "hint:" in err
    assert json.loads(skopeo_raw(dest)) == json.loads(oci.read_layout(a / "build/tagged/image").manifest_bytes)
    assert lock_mod.read(lock)["tagged"].digest == first["digest"]
    # The hint names a destination with a free tag: following it succeeds, and v1 stays where it was.
    suggested = re.search(r"push with --to (\S+) ", err)
    assert suggested and suggested.group(1) == f"{dest.rpartition(':')[0]}:{free}", err
    res = push_json(capsys, str(b), "--to", suggested.group(1), "--lock", str(lock))
    image_b = oci.read_layout(b / "build/tagged/image")
    assert res["digest"] == image_b.manifest.digest and res["tag"] == push_mod.image_tag("v1", res["digest"])
    assert skopeo_raw(suggested.group(1)) == image_b.manifest_bytes
    assert json.loads(skopeo_raw(dest)) == json.loads(oci.read_layout(a / "build/tagged/image").manifest_bytes)


def test_dry_run_prints_the_plan_and_changes_nothing(tmp_path, capsys, local_registry):
    project = make_project(tmp_path / "d", "dry", "1", extra_layers=[{"big/file": b"x" * 5000}])
    lock = tmp_path / "lock.json"
    dest = f"{local_registry.host}/mlpack/dry"
    code, out, err = push(capsys, str(project), "--to", dest, "--lock", str(lock), "--dry-run")
    assert code == 0, err
    image = oci.read_layout(project / "build/dry/image")
    assert out.count("upload") >= 6 and image.layers[0].digest[:19] in out
    plan = push_json(capsys, str(project), "--to", dest, "--lock", str(lock), "--dry-run")
    assert plan["dry_run"] is True
    assert plan["tag"] == {"name": default_tag("1", image), "state": "absent", "points_to": None, "free": None}
    assert [b["action"] for b in plan["blobs"]] == ["upload"] * 6
    assert plan["bytes_to_upload"] == sum(d.size for d in image.layers) + image.config.size
    assert not lock.exists()
    assert not any(local_registry.blob_exists("mlpack/dry", d.digest) for d in image.layers)


def test_blobs_of_another_model_are_mounted_not_uploaded(tmp_path, capsys, local_registry):
    lock = str(tmp_path / "mlpack.lock.json")
    a = make_project(tmp_path / "a", "mount-a", "1")
    push_json(capsys, str(a), "--to", f"{local_registry.host}/mlpack/mount-a", "--lock", lock)
    b = make_project(tmp_path / "b", "mount-b", "2")
    dest = f"{local_registry.host}/mlpack/mount-b"
    plan = push_json(capsys, str(b), "--to", dest, "--lock", lock, "--dry-run")
    mounts = [s for s in plan["blobs"] if s["action"] == "mount"]
    assert len(mounts) == 3 and {s["mount_from"] for s in mounts} == {"mlpack/mount-a"}
    res = push_json(capsys, str(b), "--to", dest, "--lock", lock)
    assert res["blobs"] == {"mount": 3, "upload": 2, "skip": 0}
    image = oci.read_layout(b / "build/mount-b/image")
    assert res["bytes_sent"] == image.layers[-1].size + image.config.size
    assert all(local_registry.blob_exists("mlpack/mount-b", d.digest) for d in image.layers)
    assert set(lock_mod.read(Path(lock))) == {"mount-a", "mount-b"}


def fast_client(endpoint: str, host: str, **kw) -> RegistryClient:
    return RegistryClient(host, endpoint=endpoint, retry=RetryPolicy(attempts=25, sleep=lambda s: None), **kw)


@pytest.mark.parametrize("chunked", [False, True], ids=["monolithic", "chunked"])
def test_push_survives_dropped_connections_and_500s(tmp_path, local_registry, chunked):
    layout = tmp_path / "img"
    write_layout(layout, [BASE, DEPS, HANDLER], raw_layers=[random_layer(300_000, seed=7 + chunked)])
    image = oci.read_layout(layout)
    repo = f"faults/{'chunked' if chunked else 'mono'}"
    dest = ImageRef(local_registry.host, repo, "v1", None)
    kw = {"chunked_above": 1000, "chunk_size": 64 * 1024} if chunked else {}
    with fault_proxy(local_registry.host, drop_share=0.2, error_share=0.2, seed=3) as proxy, \
            fast_client(proxy.url, local_registry.host, **kw) as client:
        plan = push_mod.plan_push(image, dest, client)
        result = push_mod.execute(plan, image, client)
    assert proxy.stats.dropped > 0 and proxy.stats.errors > 0
    assert result.ref.digest == image.manifest.digest
    raw = skopeo_raw(f"{local_registry.host}/{repo}@{image.manifest.digest}")
    assert raw == image.manifest_bytes
    manifest = json.loads(raw)
    for desc in [manifest["config"], *manifest["layers"]]:
        assert local_registry.blob_exists(repo, desc["digest"]), desc
    # The data itself arrived intact: the registry serves the big layer with its digest.
    direct = RegistryClient(local_registry.host)
    direct.fetch_blob(repo, image.layers[-1].digest, tmp_path / "back")
    assert hashlib.sha256((tmp_path / "back").read_bytes()).hexdigest() == image.layers[-1].digest[7:]


def test_manifest_never_refers_to_a_missing_blob_when_the_push_fails(tmp_path, local_registry):
    layout = tmp_path / "img"
    write_layout(layout, [BASE, {"x": b"never arrives"}])
    image = oci.read_layout(layout)
    dest = ImageRef(local_registry.host, "faults/broken", "v1", None)
    # Every write fails: the push must give up before any manifest is written.
    with fault_proxy(local_registry.host, drop_share=0.5, error_share=0.5, methods=("PUT", "PATCH")) as proxy:
        client = RegistryClient(local_registry.host, endpoint=proxy.url,
                                retry=RetryPolicy(attempts=3, sleep=lambda s: None))
        plan = push_mod.plan_push(image, dest, client)
        with pytest.raises(Exception, match="gave up after 3 attempts"):
            push_mod.execute(plan, image, client)
    assert RegistryClient(local_registry.host).head_manifest("faults/broken", image.manifest.digest) is None
    assert RegistryClient(local_registry.host).head_manifest("faults/broken", "v1") is None


def test_interrupted_push_rerun_uploads_only_what_is_missing(tmp_path, local_registry):
    layout = tmp_path / "img"
    write_layout(layout, [BASE, DEPS, HANDLER, model_files("1")])
    image = oci.read_layout(layout)
    dest = ImageRef(local_registry.host, "interrupted/one", "v1", None)
    client = RegistryClient(local_registry.host)
    done: list[str] = []

    def stop_after_two(step: push_mod.BlobStep, action: str) -> None:
        done.append(step.digest)
        if len(done) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        push_mod.execute(push_mod.plan_push(image, dest, client), image, client, progress=stop_after_two)
    assert client.head_manifest("interrupted/one", "v1") is None

    again = push_mod.plan_push(image, dest, client)
    assert [s.digest for s in again.blobs if s.action == "skip"] == done
    result = push_mod.execute(again, image, client)
    sizes = {s.digest: s.size for s in again.blobs}
    assert result.bytes_sent == sum(sizes.values()) - sum(sizes[d] for d in done)
    assert client.head_manifest("interrupted/one", "v1") == image.manifest.digest


def test_chunked_upload_of_a_larger_layer(tmp_path, local_registry):
    layout = tmp_path / "img"
    write_layout(layout, [BASE], raw_layers=[random_layer(3_000_000, seed=11)])
    image = oci.read_layout(layout)
    dest = ImageRef(local_registry.host, "chunked/big", "v1", None)
    with RegistryClient(local_registry.host, chunked_above=1024 * 1024, chunk_size=700_000) as client:
        result = push_mod.execute(push_mod.plan_push(image, dest, client), image, client)
    assert result.bytes_sent == sum(d.size for d in image.layers) + image.config.size
    assert skopeo_raw(f"{local_registry.host}/chunked/big:v1") == image.manifest_bytes


def test_data_that_does_not_match_its_digest_is_refused_at_once(tmp_path, local_registry):
    # DIGEST_INVALID's message mentions "uploaded content": it must not be taken for a lost upload
    # session and retried until the attempts run out with a hint about reachability.
    import io

    from packager.errors import RegistryError

    pauses: list[float] = []
    client = RegistryClient(local_registry.host, retry=RetryPolicy(attempts=4, sleep=pauses.append))
    data = b"these bytes have another digest"
    with pytest.raises(RegistryError, match="computed another digest") as e:
        client.upload_blob("corrupt/blob", "sha256:" + "1" * 64, len(data), lambda: io.BytesIO(data))
    assert pauses == [] and "mlpack build" in str(e.value.hint)


MAIN = "import sys; from packager.cli import main; sys.exit(main(sys.argv[1:]))"


def _record_many(lock: str, name: str, n: int) -> None:
    for i in range(n):
        lock_mod.record(Path(lock), f"{name}-{i}", lock_mod.LockEntry(
            repository=f"r/{name}", digest="sha256:" + "ab" * 32, arch="x86_64", model_version=str(i),
            model_sha256="0" * 64, project=name, pushed_at="2026-01-01T00:00:00Z"))


def test_concurrent_lock_writes_for_two_models_lose_nothing(tmp_path, local_registry):
    # Two real pushes of different models at the same time, into one lock file...
    lock = tmp_path / "mlpack.lock.json"
    procs = []
    for name in ("left", "right"):
        project = make_project(tmp_path / name, name, "1")
        procs.append(subprocess.Popen(
            [sys.executable, "-c", MAIN, "push", str(project), "--to",
             f"{local_registry.host}/mlpack/{name}", "--lock", str(lock)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()
    assert set(lock_mod.read(lock)) == {"left", "right"}
    # ...and many interleaved writers: every entry survives.
    ctx = multiprocessing.get_context("spawn")
    workers = [ctx.Process(target=_record_many, args=(str(lock), n, 15)) for n in ("a", "b")]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
        assert w.exitcode == 0
    assert len(lock_mod.read(lock)) == 2 + 30


def test_an_unwritable_lock_stops_the_push_before_anything_is_sent(tmp_path, capsys, local_registry):
    project = make_project(tmp_path / "unwritable", "unwritable", "1")
    (tmp_path / "a-file").write_text("not a folder")
    lock = tmp_path / "a-file" / "sub" / "mlpack.lock.json"
    code, _, err = push(capsys, str(project), "--to", f"{local_registry.host}/mlpack/unwritable", "--lock", str(lock))
    assert code != 0 and "Traceback" not in err and "pushed " not in err
    assert f"{lock}: cannot write the lock file: {tmp_path / 'a-file'} is not a folder" in err and "--lock" in err
    image = oci.read_layout(project / "build/unwritable/image")
    assert not any(local_registry.blob_exists("mlpack/unwritable", d.digest) for d in image.layers)
    # A folder that does not exist yet is fine: writing the lock creates it.
    push_json(capsys, str(project), "--to", f"{local_registry.host}/mlpack/unwritable",
              "--lock", str(tmp_path / "new" / "mlpack.lock.json"))
    assert lock_mod.read(tmp_path / "new" / "mlpack.lock.json")["unwritable"].digest == image.manifest.digest


def test_an_unchanged_push_leaves_the_lock_byte_identical(tmp_path, capsys, local_registry):
    project = make_project(tmp_path / "same", "same", "1")
    lock = tmp_path / "mlpack.lock.json"
    dest = f"{local_registry.host}/mlpack/same"
    first = push_json(capsys, str(project), "--to", dest, "--lock", str(lock))
    assert first["lock_changed"] is True
    # Date the entry back, so that rewriting it now would change the bytes.
    entry = lock_mod.read(lock)["same"]
    lock.write_text(lock.read_text().replace(entry.pushed_at, "2020-01-01T00:00:00Z"))
    before = lock.read_bytes()
    code, out, err = push(capsys, str(project), "--to", dest, "--lock", str(lock))
    assert code == 0, err
    assert lock.read_bytes() == before
    assert "mlpack.lock.json already records same at this digest; left unchanged" in out
    assert push_json(capsys, str(project), "--to", dest, "--lock", str(lock))["lock_changed"] is False
    assert lock.read_bytes() == before
    # Anything else that differs is recorded: the same image from the project's new folder (it moved).
    moved = project.rename(tmp_path / "elsewhere")
    assert push_json(capsys, str(moved), "--to", dest, "--lock", str(lock))["lock_changed"] is True
    after = lock_mod.read(lock)["same"]
    assert after.project == "elsewhere" and after.pushed_at != "2020-01-01T00:00:00Z"


def _other_entry() -> dict[str, str]:
    return {"repository": "127.0.0.1:1/mlpack/other", "digest": "sha256:" + "ab" * 32, "arch": "x86_64",
            "model_version": "7", "model_sha256": "0" * 64, "project": "other", "pushed_at": "2026-01-01T00:00:00Z"}


DAMAGED = {
    "bad-json": ('{"format": "mlpack.lock/1", "models": {', "cannot read the lock file: not valid JSON"),
    "wrong-shape": ('{"format": "mlpack.lock/1", "models": []}', "not an mlpack lock file"),
    "other-format": ('{"format": "mlpack.lock/9", "models": {}}', "not an mlpack lock file"),
    "bad-entry": (json.dumps({"format": "mlpack.lock/1", "models": {
        "damaged": {**_other_entry(), "digest": 5}, "other": _other_entry()}}),
        "models.damaged.digest: expected a non-empty string (got 5)"),
    "missing-keys": (json.dumps({"format": "mlpack.lock/1", "models": {
        "damaged": {"digest": "sha256:" + "cd" * 32}, "other": _other_entry()}}),
        "models.damaged: expected keys arch, digest, model_sha256, model_version, project, pushed_at, "
        "repository (and optionally how, pushed_by, sbom) (got digest)"),
}


@pytest.mark.parametrize("case", sorted(DAMAGED))
def test_a_damaged_lock_stops_the_push_first_and_its_hint_works(tmp_path, capsys, local_registry, case):
    text, problem = DAMAGED[case]
    project = make_project(tmp_path / "damaged", "damaged", "1")
    image = oci.read_layout(project / "build/damaged/image")
    lock = tmp_path / "mlpack.lock.json"
    lock.write_text(text)
    dest = f"{local_registry.host}/mlpack/damaged-{case}"
    for extra in (["--dry-run"], []):
        code, out, err = push(capsys, str(project), "--to", dest, "--lock", str(lock), *extra)
        assert code != 0 and out == "" and "Traceback" not in err
        assert f"{lock}: {problem}" in err, err
    # Nothing was sent and the file is as it was.
    assert not any(local_registry.blob_exists(f"mlpack/damaged-{case}", d.digest)
                   for d in [*image.layers, image.config])
    assert lock.read_text() == text
    # Follow the hint: move the file aside (the command it gives), then push again.
    hint = err.split("hint:", 1)[1]
    mv = shlex.split(re.search(r"(mv \S+ \S+)\)", hint).group(1))
    assert mv[1] == str(lock)
    Path(mv[1]).rename(mv[2])
    push_json(capsys, str(project), "--to", dest, "--lock", str(lock))
    assert lock_mod.read(lock)["damaged"].digest == image.manifest.digest
    assert Path(mv[2]).read_text() == text


def test_a_damaged_entry_can_be_deleted_by_hand_keeping_the_others(tmp_path, capsys, local_registry):
    project = make_project(tmp_path / "entry", "entry", "1")
    lock = tmp_path / "mlpack.lock.json"
    lock.write_text(json.dumps({"format": "mlpack.lock/1", "models": {
        "entry": {**_other_entry(), "arch": None}, "other": _other_entry()}}))
    dest = f"{local_registry.host}/mlpack/entry"
    code, _, err = push(capsys, str(project), "--to", dest, "--lock", str(lock))
    assert code != 0 and f"{lock}: models.entry.arch: expected a non-empty string (got None)" in err
    assert f"delete models.entry from {lock}" in err
    data = json.loads(lock.read_text())
    del data["models"]["entry"]
    lock.write_text(json.dumps(data))
    push_json(capsys, str(project), "--to", dest, "--lock", str(lock))
    models = lock_mod.read(lock)
    assert set(models) == {"entry", "other"} and models["other"] == lock_mod.LockEntry(**_other_entry())


def test_default_lock_is_at_the_repository_root(tmp_path, capsys, local_registry):
    (tmp_path / "repo" / ".git").mkdir(parents=True)
    project = make_project(tmp_path / "repo" / "models" / "rooted", "rooted", "1")
    push_json(capsys, str(project / "build" / "rooted" / "image"), "--to", f"{local_registry.host}/mlpack/rooted")
    entry = lock_mod.read(tmp_path / "repo" / "mlpack.lock.json")["rooted"]
    assert entry.project == "models/rooted"


def test_bad_inputs_get_one_clear_line(tmp_path, capsys, local_registry):
    code, _, err = push(capsys, str(tmp_path))
    assert code != 0 and "neither a model project" in err
    project = make_project(tmp_path / "nomodel", "nomodel", "1")
    (project / "build/nomodel/model.json").unlink()
    code, _, err = push(capsys, str(project), "--to", f"{local_registry.host}/x/y")
    assert code != 0 and "model.json" in err and "mlpack build" in err
    code, _, err = push(capsys, str(project), "--to", "Bad Ref")
    assert code != 0 and "not an image reference" in err
    import shutil
    shutil.rmtree(project / "build/nomodel/image")
    code, _, err = push(capsys, str(project), "--to", f"{local_registry.host}/x/y")
    assert code != 0 and "no image here" in err and "mlpack build" in err


def test_model_identity_comes_from_the_image_labels_first(tmp_path, capsys, local_registry):
    # model.json in the build folder is newer than the image (re-exported, not rebuilt): the lock must
    # describe what is in the image.
    project = make_project(tmp_path / "labelled", "labelled", "2")
    write_layout(project / "build/labelled/image", [BASE, model_files("1", "labelled", "ab" * 32)],
                 labels={"org.opencontainers.image.title": "labelled", "org.opencontainers.image.version": "1",
                         "org.mlpack.model.sha256": "ab" * 32})
    lock = tmp_path / "l.json"
    res = push_json(capsys, str(project), "--to", f"{local_registry.host}/mlpack/labelled", "--lock", str(lock))
    assert res["tag"] == default_tag("1", oci.read_layout(project / "build/labelled/image"))
    entry = lock_mod.read(lock)["labelled"]
    assert (entry.model_version, entry.model_sha256) == ("1", "ab" * 32)


def test_a_layout_missing_a_blob_fails_clearly_and_pushes_no_manifest(tmp_path, capsys, local_registry):
    project = make_project(tmp_path / "holed", "holed", "1")
    image = oci.read_layout(project / "build/holed/image")
    image.blob_path(image.layers[1].digest).unlink()
    code, _, err = push(capsys, str(project), "--to", f"{local_registry.host}/mlpack/holed",
                        "--lock", str(tmp_path / "l.json"))
    assert code != 0 and "Traceback" not in err
    assert "missing from the image layout" in err and "mlpack build" in err
    assert RegistryClient(local_registry.host).head_manifest("mlpack/holed", image.manifest.digest) is None


def test_destination_with_a_digest_is_refused(tmp_path, capsys):
    project = make_project(tmp_path / "refused", "refused", "1")
    code, _, err = push(capsys, str(project), "--to", "127.0.0.1:1/x/y@sha256:" + "a" * 64)
    assert code != 0 and "cannot name a digest" in err


# ---------------------------------------------------------------------------------------------------
# ECR: the control plane in moto, the data plane pointed at the local registry


@pytest.fixture
def aws_env(monkeypatch, tmp_path):
    for var in ("AWS_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_REGION"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    return monkeypatch


def test_ecr_default_destination_creates_the_repository_and_pins_the_digest(tmp_path, capsys, local_registry,
                                                                           aws_env):
    import boto3
    from moto import mock_aws

    aws_env.setenv("MLPACK_REGISTRY_ENDPOINT", local_registry.url)
    project = make_project(tmp_path / "churn", "churn", "3")
    lock = tmp_path / "mlpack.lock.json"
    with mock_aws():
        res = push_json(capsys, str(project), "--lock", str(lock))
        ecr = boto3.client("ecr", region_name="eu-west-1")
        repo = ecr.describe_repositories(repositoryNames=["mlpack/churn"])["repositories"][0]
        policy = json.loads(ecr.get_lifecycle_policy(repositoryName="mlpack/churn")["lifecyclePolicyText"])
        account = boto3.client("sts").get_caller_identity()["Account"]
        # A second push finds the repository and changes nothing.
        again = push_json(capsys, str(project), "--lock", str(lock))
    assert repo["imageTagMutability"] == "IMMUTABLE"
    assert repo["imageScanningConfiguration"] == {"scanOnPush": True}
    assert policy["rules"][0]["selection"]["tagStatus"] == "untagged"
    assert policy["rules"][0]["action"] == {"type": "expire"}
    image = oci.read_layout(project / "build/churn/image")
    host = f"{account}.dkr.ecr.eu-west-1.amazonaws.com"
    assert res["image"] == f"{host}/mlpack/churn@{image.manifest.digest}"
    assert again["bytes_sent"] == 0
    entry = lock_mod.read(lock)["churn"]
    assert entry.repository == f"{host}/mlpack/churn" and entry.digest == image.manifest.digest
    # The bytes really went to the (local) data plane, under the ECR repository name.
    assert skopeo_raw(f"{local_registry.host}/mlpack/churn@{image.manifest.digest}") == image.manifest_bytes


def test_ecr_dry_run_creates_nothing(tmp_path, capsys, local_registry, aws_env):
    import boto3
    from moto import mock_aws

    aws_env.setenv("MLPACK_REGISTRY_ENDPOINT", local_registry.url)
    project = make_project(tmp_path / "dry-ecr", "dry-ecr", "1")
    with mock_aws():
        plan = push_json(capsys, str(project), "--lock", str(tmp_path / "l.json"), "--dry-run")
        repos = boto3.client("ecr", region_name="eu-west-1").describe_repositories()["repositories"]
    tag = default_tag("1", oci.read_layout(project / "build/dry-ecr/image"))
    assert plan["destination"].endswith(f".dkr.ecr.eu-west-1.amazonaws.com/mlpack/dry-ecr:{tag}")
    assert repos == []


def test_ecr_repository_creation_is_a_step_of_the_plan(tmp_path, capsys, local_registry, aws_env):
    import boto3
    from moto import mock_aws

    aws_env.setenv("MLPACK_REGISTRY_ENDPOINT", local_registry.url)
    project = make_project(tmp_path / "stepped", "stepped", "1")
    lock = str(tmp_path / "l.json")
    with mock_aws():
        ecr = boto3.client("ecr", region_name="eu-west-1")
        # --dry-run shows the step, in text and in JSON, and creates nothing
        code, dry_out, err = push(capsys, str(project), "--lock", lock, "--dry-run")
        assert code == 0, err
        dry_plan = push_json(capsys, str(project), "--lock", lock, "--dry-run")
        repos_after_dry_run = ecr.describe_repositories()["repositories"]
        # a real push performs it before uploading
        code, _, first_err = push(capsys, str(project), "--lock", lock)
        assert code == 0, first_err
        repos_after_push = [r["repositoryName"] for r in ecr.describe_repositories()["repositories"]]
        # the next push finds it: no such step
        code, again_out, again_err = push(capsys, str(project), "--lock", lock, "--dry-run")
        assert code == 0, again_err
        again_plan = push_json(capsys, str(project), "--lock", lock, "--dry-run")
        code, _, second_err = push(capsys, str(project), "--lock", lock)
        assert code == 0, second_err
    assert "  create repository mlpack/stepped\n" in dry_out
    assert dry_plan["create_repository"] == "mlpack/stepped"
    assert [b["action"] for b in dry_plan["blobs"]] == ["upload"] * 5
    assert repos_after_dry_run == []
    assert first_err.index("create repository mlpack/stepped") < first_err.index("upload")
    assert repos_after_push == ["mlpack/stepped"]
    assert again_plan["create_repository"] is None and "create repository" not in again_out
    assert [b["action"] for b in again_plan["blobs"]] == ["skip"] * 5
    assert "create repository" not in second_err


class FakeRepositories:
    """push.Repositories for a registry where repositories must be created first; records calls."""

    def __init__(self, existing: set[str]) -> None:
        self.existing = existing
        self.calls: list[tuple[str, str]] = []

    def exists(self, repository: str) -> bool:
        self.calls.append(("exists", repository))
        return repository in self.existing

    def create(self, repository: str) -> None:
        self.calls.append(("create", repository))
        self.existing.add(repository)


def test_a_plan_that_creates_the_repository_needs_something_to_create_it_with(tmp_path, local_registry):
    from packager.errors import RegistryError

    layout = tmp_path / "img"
    write_layout(layout, [BASE, {"x": b"created first"}])
    image = oci.read_layout(layout)
    dest = ImageRef(local_registry.host, "created/first", "v1", None)
    repos = FakeRepositories(set())
    with RegistryClient(local_registry.host) as client:
        plan = push_mod.plan_push(image, dest, client, repositories=repos)
        assert plan.create_repository == "created/first" and repos.calls == [("exists", "created/first")]
        with pytest.raises(RegistryError, match="nothing was given to create it with"):
            push_mod.execute(plan, image, client)
        assert client.head_manifest("created/first", "v1") is None
        result = push_mod.execute(plan, image, client, repositories=repos)
        assert repos.calls[-1] == ("create", "created/first")
        assert result.ref.digest == image.manifest.digest
        assert push_mod.plan_push(image, dest, client, repositories=repos).create_repository is None


def test_ecr_without_credentials_says_so_in_one_line(tmp_path, capsys, aws_env):
    project = make_project(tmp_path / "nocred", "nocred", "1")
    code, out, err = push(capsys, str(project), "--lock", str(tmp_path / "l.json"))
    assert code != 0 and out == ""
    assert err.startswith("error: cannot find the current AWS account: no AWS credentials found")
    assert "hint:" in err and "Traceback" not in err


def test_ecr_wrong_region_says_so(tmp_path, capsys, aws_env):
    from moto import mock_aws

    aws_env.setenv("AWS_DEFAULT_REGION", "eu-wset-1")
    project = make_project(tmp_path / "region", "region", "1")
    with mock_aws():
        code, _, err = push(capsys, str(project), "--lock", str(tmp_path / "l.json"))
    assert code != 0 and "AWS region 'eu-wset-1' does not exist" in err
    with mock_aws():
        code, _, err = push(capsys, str(project), "--to", "123456789012.dkr.ecr.mars-1.amazonaws.com/mlpack/x")
    assert code != 0 and "'mars-1' does not exist" in err


def test_ecr_regions_of_every_partition_are_accepted():
    import boto3

    from packager.aws import Aws

    for region in ("us-gov-west-1", "cn-north-1", "eu-west-1"):
        session = boto3.Session(aws_access_key_id="k", aws_secret_access_key="s", region_name=region)
        assert Aws(session)._client("ecr").meta.region_name == region


def test_ecr_access_denied_names_the_iam_action():
    import boto3
    from botocore.stub import Stubber

    from packager.aws import Aws, EcrRegistry
    from packager.errors import RegistryError

    session = boto3.Session(aws_access_key_id="k", aws_secret_access_key="s", region_name="eu-west-1")
    ecr = session.client("ecr")
    stub = Stubber(ecr)
    stub.add_client_error("describe_repositories", service_error_code="RepositoryNotFoundException")
    stub.add_client_error("create_repository", service_error_code="AccessDeniedException", http_status_code=400,
                          service_message="User: arn:aws:iam::123456789012:user/ana is not authorized to perform: "
                                  "ecr:CreateRepository")
    stub.add_client_error("get_authorization_token", service_error_code="AccessDeniedException", http_status_code=400,
                          service_message="denied")

    class OneClientSession:  # the Aws seam: whatever session hands out clients
        region_name = "eu-west-1"

        def client(self, service, region_name=None):
            assert service == "ecr"
            return ecr

        def get_available_regions(self, service, partition_name="aws"):
            return session.get_available_regions(service, partition_name=partition_name)

        def get_available_partitions(self):
            return session.get_available_partitions()

    aws = Aws(OneClientSession())  # type: ignore[arg-type]
    registry = EcrRegistry(account="123456789012", region="eu-west-1")
    with stub:
        with pytest.raises(RegistryError) as e:
            aws.ensure_repository(registry, "mlpack/x")
        assert "AWS denied ecr:CreateRepository" in e.value.message
        assert "allows ecr:CreateRepository" in str(e.value.hint)
        with pytest.raises(RegistryError, match="ecr:GetAuthorizationToken"):
            aws.registry_credentials(registry)


def test_the_images_sbom_is_pushed_as_an_artifact_referring_to_it(tmp_path, capsys, local_registry):
    """sbom.cdx.json beside the layout (what `mlpack build` writes) goes up as an OCI artifact whose subject
    is the image; docker-registry has no referrers API, so the tag-schema fallback index lists it. The lock
    records the artifact's digest; pushing again changes nothing."""
    project = make_project(tmp_path / "sbomed", "sbomed", "1")
    image = oci.read_layout(project / "build/sbomed/image")
    sbom = json.dumps({"bomFormat": "CycloneDX", "metadata": {"properties": [
        {"name": "mlpack:image:digest", "value": image.manifest.digest}]}}).encode()
    (project / "build/sbomed/sbom.cdx.json").write_bytes(sbom)
    lock = tmp_path / "l.json"
    dest = f"{local_registry.host}/mlpack/sbomed"
    push_json(capsys, str(project), "--to", dest, "--lock", str(lock))
    entry = lock_mod.read(lock)["sbomed"]
    assert entry.sbom.startswith("sha256:")
    client = RegistryClient(local_registry.host)
    index, media_type, _ = client.get_manifest("mlpack/sbomed", "sha256-" + image.manifest.digest.partition(":")[2])
    assert media_type == oci.MT_OCI_INDEX
    (listed,) = json.loads(index)["manifests"]
    assert listed["digest"] == entry.sbom and listed["artifactType"] == "application/vnd.cyclonedx+json"
    artifact = json.loads(client.get_manifest("mlpack/sbomed", entry.sbom)[0])
    assert artifact["subject"]["digest"] == image.manifest.digest
    blob = tmp_path / "sbom-blob"
    client.fetch_blob("mlpack/sbomed", artifact["layers"][0]["digest"], blob)
    assert blob.read_bytes() == sbom
    before = lock.read_bytes()
    assert push_json(capsys, str(project), "--to", dest, "--lock", str(lock))["lock_changed"] is False
    assert lock.read_bytes() == before
    # an SBOM of another image is not attached
    other = sbom.replace(image.manifest.digest.encode(), b"sha256:" + b"0" * 64)
    (project / "build/sbomed/sbom.cdx.json").write_bytes(other)
    code, _, err = push(capsys, str(project), "--to", dest, "--lock", str(tmp_path / "other.json"))
    assert code == 0 and "describes another image; not attached" in err
    assert lock_mod.read(tmp_path / "other.json")["sbomed"].sbom == ""
