"""Staleness of an export: the files a factory reads while loading (weights, pickles, CSVs) are
recorded in model.json, and a change to any of them, or its disappearance, makes the next export redo
the work and say why; files of the Python installation are not recorded."""

from __future__ import annotations

import hashlib
import json
import os
import textwrap
from pathlib import Path

import joblib
import numpy as np
import pytest
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from packager.cli import main
from packager.config import spec as spec_mod
from packager.errors import ExportError
from packager.export import staleness
from packager.export.pipeline import export
from tests.support.projects import make_project

IRIS = load_iris()
X = IRIS.data.astype(np.float32)

SKLEARN_FACTORY = '''
from pathlib import Path

import joblib
import numpy as np

HERE = Path(__file__).parent


def build():
    return joblib.load(HERE / "artifacts" / "model.joblib")


def samples():
    return np.loadtxt(HERE / "data.csv", delimiter=",", dtype=np.float32)
'''


def write_spec(root: Path, source: str, samples: str) -> Path:
    return make_project(root, source=source, samples=samples)


def save_model(root: Path, c: float) -> None:
    (root / "artifacts").mkdir(parents=True, exist_ok=True)
    joblib.dump(LogisticRegression(C=c, max_iter=500).fit(X, IRIS.target), root / "artifacts" / "model.joblib")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def factory_project(tmp_path: Path) -> Path:
    """train:build loads artifacts/model.joblib; train:samples parses data.csv."""
    root = tmp_path / "p"
    root.mkdir()
    (root / "train.py").write_text(SKLEARN_FACTORY)
    save_model(root, 1.0)
    np.savetxt(root / "data.csv", X, delimiter=",")
    return write_spec(root, "train:build", "train:samples")


def test_files_a_factory_reads_are_recorded_with_their_digests(factory_project: Path) -> None:
    root = factory_project
    art = export(spec_mod.load(root)).artifact
    written = json.loads(art.json_path.read_text())["read_files"]
    assert written == [{"path": "artifacts/model.joblib", "sha256": sha256(root / "artifacts" / "model.joblib")},
                       {"path": "data.csv", "sha256": sha256(root / "data.csv")}]


def test_a_retrained_weights_file_is_exported_again(factory_project: Path) -> None:
    root = factory_project
    spec = spec_mod.load(root)
    first = export(spec)
    assert not first.skipped and first.reason == f"no earlier export in {root / 'build' / 'm'}"
    again = export(spec)
    assert again.skipped and again.reason == ""  # nothing changed: skipped

    save_model(root, 0.01)  # retrained: only the weights file changes, no Python file, no mlpack.toml
    third = export(spec)
    assert not third.skipped
    assert third.reason == "artifacts/model.joblib changed since the last export"
    assert third.artifact.model_sha256 != first.artifact.model_sha256
    assert third.artifact.document.read_files[0].sha256 == sha256(root / "artifacts" / "model.joblib")
    assert export(spec).skipped
    assert export(spec, force=True).reason == "forced"


def test_other_changes_are_named_as_well_as_they_can_be(tmp_path: Path, factory_project: Path) -> None:
    root = tmp_path / "file"
    root.mkdir()
    joblib.dump(LogisticRegression(max_iter=500).fit(X, IRIS.target), root / "model.joblib")
    np.save(root / "samples.npy", X)
    spec = spec_mod.load(write_spec(root, "model.joblib", "samples.npy"))
    export(spec)
    joblib.dump(LogisticRegression(C=0.01, max_iter=500).fit(X, IRIS.target), root / "model.joblib")
    assert export(spec).reason == "model.source (model.joblib) changed since the last export"
    np.save(root / "samples.npy", X[:50])
    assert export(spec).reason == ("the samples, the project's Python files, mlpack.toml or an installed "
                                   "converter changed since the last export")

    factory = spec_mod.load(factory_project)
    export(factory)
    (factory_project / "train.py").unlink()  # the factory's module is gone: loading says so
    with pytest.raises(ExportError, match="importing 'train'"):
        export(factory)


def test_a_changed_csv_is_exported_again(factory_project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = factory_project
    assert main(["export", str(root)]) == 0
    assert main(["export", str(root)]) == 0
    assert "up to date, export skipped" in capsys.readouterr().out

    np.savetxt(root / "data.csv", X[:90], delimiter=",")
    assert main(["export", str(root)]) == 0
    assert "  why: data.csv changed since the last export" in capsys.readouterr().out
    np.savetxt(root / "data.csv", X[:80], delimiter=",")
    result = export(spec_mod.load(root))
    assert not result.skipped and result.reason == "data.csv changed since the last export"
    assert result.artifact.metadata["profile"]["rows"] == 80


def test_a_recorded_file_that_disappears_makes_the_export_stale(tmp_path: Path) -> None:
    root = tmp_path / "p"
    root.mkdir()
    (root / "train.py").write_text(textwrap.dedent('''
        import json
        from pathlib import Path

        import numpy as np
        from sklearn.datasets import load_iris
        from sklearn.linear_model import LogisticRegression

        HERE = Path(__file__).parent


        def build():
            overrides = HERE / "params.json"
            c = json.loads(overrides.read_text())["C"] if overrides.exists() else 1.0
            data = load_iris()
            return LogisticRegression(C=c, max_iter=500).fit(data.data, data.target)


        def samples():
            return load_iris().data.astype(np.float32)
    '''))
    (root / "params.json").write_text('{"C": 0.01}')
    spec = spec_mod.load(write_spec(root, "train:build", "train:samples"))
    first = export(spec)
    assert [f.path for f in first.artifact.document.read_files] == ["params.json"]
    assert export(spec).skipped

    (root / "params.json").unlink()
    second = export(spec)
    assert not second.skipped and second.reason == "params.json is missing since the last export"
    assert second.artifact.document.read_files == ()
    assert second.artifact.model_sha256 != first.artifact.model_sha256
    assert export(spec).skipped  # the new export recorded no params.json: current again


def test_files_outside_the_project_are_recorded_by_absolute_path(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    save_model(shared, 1.0)
    root = tmp_path / "p"
    root.mkdir()
    (root / "train.py").write_text(textwrap.dedent(f'''
        import joblib
        from sklearn.datasets import load_iris


        def build():
            return joblib.load({str(shared / "artifacts" / "model.joblib")!r})


        def samples():
            return load_iris().data
    '''))
    spec = spec_mod.load(write_spec(root, "train:build", "train:samples"))
    weights = (shared / "artifacts" / "model.joblib").resolve()
    assert [f.path for f in export(spec).artifact.document.read_files] == [weights.as_posix()]
    save_model(shared, 0.01)
    result = export(spec)
    assert not result.skipped and result.reason == f"{weights.as_posix()} changed since the last export"


def test_files_of_the_python_installation_and_build_and_written_files_are_not_recorded(tmp_path: Path) -> None:
    root = tmp_path / "p"
    root.mkdir()
    (root / "build").mkdir()
    (root / "build" / "note.txt").write_text("in the build folder")
    (root / "train.py").write_text(textwrap.dedent('''
        import json
        import wave  # a standard-library module not imported before: its source is read now
        from pathlib import Path

        import numpy as np
        from sklearn.datasets import load_iris  # reads iris.csv from site-packages
        from sklearn.linear_model import LogisticRegression

        HERE = Path(__file__).parent


        def build():
            Path(json.__file__).read_bytes()
            (HERE / "build" / "note.txt").read_text()
            cache = HERE / "cache.npy"
            data = load_iris()
            np.save(cache, data.data)  # written by the load, then read back: an output, not an input
            x = np.load(cache)
            (HERE / "weights.txt").read_text()
            return LogisticRegression(max_iter=500).fit(x, data.target)


        def samples():
            return load_iris().data.astype(np.float32)
    '''))
    (root / "weights.txt").write_text("1")
    spec = spec_mod.load(write_spec(root, "train:build", "train:samples"))
    files = [f.path for f in export(spec).artifact.document.read_files or ()]
    assert files == ["weights.txt"]


def test_the_recorder_sees_only_reads_inside_the_block(tmp_path: Path, factory_project: Path) -> None:
    spec = spec_mod.load(factory_project)
    a, b, c, d = (tmp_path / n for n in ("a.bin", "b.bin", "c.bin", "d.bin"))
    for path in (a, b, c, d):
        path.write_bytes(path.name.encode())
    with staleness.recording(spec) as rec:
        a.read_bytes()
        os.close(os.open(b, os.O_RDONLY))  # os.open, not only builtins.open
        c.write_bytes(b"replaced")  # written, never read
    d.read_bytes()  # after the block
    assert [(f.path, f.sha256) for f in rec.files] == [(a.resolve().as_posix(), sha256(a)),
                                                        (b.resolve().as_posix(), sha256(b))]


@pytest.mark.parametrize("dist", ["xgboost", "lightgbm", "onnxmltools", "skl2onnx", "torch"])
def test_converter_versions_are_part_of_the_hash(factory_project: Path, monkeypatch: pytest.MonkeyPatch,
                                                 dist: str) -> None:
    spec = spec_mod.load(factory_project)
    before = staleness.inputs_hash(spec, {}, ())
    real = staleness.dist_version
    monkeypatch.setattr(staleness, "dist_version", lambda d: "99.0" if d == dist else real(d))
    assert staleness.inputs_hash(spec, {}, ()) != before


def test_torch_load_of_a_weights_file_is_recorded(tmp_path: Path, factory_project: Path) -> None:
    torch = pytest.importorskip("torch")
    weights = tmp_path / "weights.pt"
    torch.save(torch.nn.Linear(2, 1).state_dict(), weights)
    with staleness.recording(spec_mod.load(factory_project)) as rec:
        torch.nn.Linear(2, 1).load_state_dict(torch.load(weights))
    assert [(f.path, f.sha256) for f in rec.files] == [(weights.resolve().as_posix(), sha256(weights))]


def test_a_module_of_the_same_name_imported_elsewhere_does_not_stand_in_for_the_projects(tmp_path):
    """A notebook (or another test) imported its own `train`: the project's train.py is still the one used,
    and the other is back in place afterwards."""
    import sys
    import types

    foreign = types.ModuleType("train")
    foreign.__file__ = str(tmp_path / "elsewhere" / "train.py")
    sys.modules["train"] = foreign
    try:
        from packager.export import sources

        project = tmp_path / "p"
        project.mkdir()
        (project / "train.py").write_text("def build():\n    return 42\n")
        with sources._project_on_path(project):
            import importlib

            assert importlib.import_module("train").build() == 42
        assert sys.modules["train"] is foreign
    finally:
        sys.modules.pop("train", None)
