"""handlers/model_json.py: the one reader and writer of model.json. Round trips (typed and byte for byte
on real exports), what a document must hold, and messages that name the file and the field."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
from sklearn.datasets import load_diabetes, load_iris
from sklearn.linear_model import LinearRegression, LogisticRegression

from handlers import contract as C
from handlers import model_json as mj
from packager.config import spec as spec_mod
from packager.export.pipeline import export
from tests.support.projects import make_project

ORIGIN = "build/iris/model.json"


def full_document() -> mj.ModelJson:
    """Every field set, as export fills them for a classifier."""
    feature = mj.FeatureProfile(name="a", count=3, nan_share=0.0, min=0.0, max=2.0, mean=1.0, std=0.8,
                                q01=0.02, q50=1.0, q99=1.98)
    return mj.ModelJson(
        name="iris", version="3f2a9c01b7d4", description="three flowers", task="classification",
        signature=mj.Signature(
            inputs=(mj.Tensor(name="input", dtype="float32", shape=("batch", 2)),),
            outputs=(mj.Tensor(name="label", dtype="int64", shape=("batch",)),
                     mj.Tensor(name="probabilities", dtype="float32", shape=("batch", 3)))),
        roles=mj.Roles(label="label", scores="probabilities", scores_kind="probabilities"),
        classes=(0, 1, 2), label_names=("setosa", "versicolor", "virginica"),
        feature_names={"input": ("a", "b")}, opset=17,
        versions=mj.Versions(mlpack="0.1", onnx="1.17", onnxruntime="1.20", framework="scikit-learn",
                             framework_version="1.5", converter="skl2onnx 1.17"),
        source=mj.Source(kind="sklearn", ref="model.joblib", sha256="ab" * 32),
        model_sha256="cd" * 32,
        parity=mj.Parity(passed=True, rows=3, rtol=1e-4, atol=1e-5, checks=(
            mj.ParityCheck(output="label", kind="exact", rows=3, passed=True, mismatches=0,
                           summary="all 3 labels equal", worst=()),
            mj.ParityCheck(output="probabilities", kind="close", rows=3, passed=False, mismatches=1,
                           max_abs_err=0.5, summary="1/3 rows out of tolerance", worst=(
                               mj.Mismatch(row=1, column=2, expected=0.25, got=0.75),)))),
        profile=mj.Profile(rows=3, inputs={"input": (feature, mj.FeatureProfile(name="b", count=3))},
                           outputs=mj.ProfileOutputs(classes={"setosa": 0.5, "versicolor": 0.25, "virginica": 0.25})),
        inputs_hash="ef" * 32,
        read_files=(mj.ReadFile(path="weights/model.pt", sha256="01" * 32),
                    mj.ReadFile(path="/data/shared.csv", sha256="23" * 32)),
    )


def minimal() -> dict[str, Any]:
    """What the handler needs and nothing else."""
    return {"format": C.MODEL_FORMAT, "name": "m",
            "signature": {"inputs": [{"name": "x", "dtype": "float32", "shape": ["batch", 2]}],
                          "outputs": [{"name": "y", "dtype": "float32", "shape": ["batch", 1]}]}}


# ---------------------------------------------------------------------------------------------------
# round trips


def test_loads_of_dumps_is_the_document():
    doc = full_document()
    text = mj.dumps(doc)
    assert mj.loads(text, ORIGIN) == doc
    assert mj.dumps(mj.loads(text.decode(), ORIGIN)) == text


def test_dumps_writes_sorted_keys_two_space_indent_and_a_trailing_newline():
    doc = full_document()
    text = mj.dumps(doc)
    assert text == (json.dumps(mj.as_dict(doc), indent=2, sort_keys=True) + "\n").encode()
    assert mj.as_dict(doc)["format"] == C.MODEL_FORMAT
    assert json.loads(text)["classes"] == [0, 1, 2]  # tuples are written as lists


def test_absent_fields_are_left_out_and_roles_are_written_with_nulls():
    doc = mj.from_dict(minimal(), ORIGIN)
    assert (doc.version, doc.task, doc.profile, doc.classes) == (None, None, None, None)
    assert mj.as_dict(doc) == minimal()
    with_roles = mj.as_dict(mj.ModelJson(name="m", signature=doc.signature, roles=mj.Roles(scores="s"),
                                         label_names=()))
    assert with_roles["roles"] == {"label": None, "scores": "s", "scores_kind": None}
    assert with_roles["label_names"] == []


def test_null_counts_as_absent_for_optional_fields_and_unknown_keys_are_ignored():
    data = {**minimal(), "version": None, "profile": None, "something_new": {"x": 1}}
    doc = mj.from_dict(data, ORIGIN)
    assert doc.version is None and doc.profile is None
    assert "something_new" not in mj.as_dict(doc)


def test_read_files_are_written_as_a_list_of_path_and_digest_and_an_empty_list_is_kept():
    doc = full_document()
    assert mj.as_dict(doc)["read_files"] == [{"path": "weights/model.pt", "sha256": "01" * 32},
                                             {"path": "/data/shared.csv", "sha256": "23" * 32}]
    empty = mj.from_dict({**minimal(), "read_files": []}, ORIGIN)
    assert empty.read_files == () and mj.as_dict(empty)["read_files"] == []
    assert mj.from_dict(minimal(), ORIGIN).read_files is None


def test_a_number_is_written_back_as_it_was_read():
    data = {**minimal(), "parity": {"passed": True, "rtol": 0, "atol": 1e-5}}
    assert mj.as_dict(mj.from_dict(data, ORIGIN))["parity"] == {"passed": True, "rtol": 0, "atol": 1e-5}


def test_dumps_refuses_values_json_cannot_hold():
    doc = mj.ModelJson(name="m", signature=mj.Signature(inputs=(), outputs=()), parity=mj.Parity(rtol=float("nan")))
    with pytest.raises(ValueError):
        mj.dumps(doc)


def test_records_are_immutable_keyword_only_and_compared_by_value():
    doc = full_document()
    with pytest.raises(AttributeError, match="immutable"):
        doc.name = "other"  # type: ignore[misc]
    with pytest.raises(TypeError, match=r"missing \['signature'\]"):
        mj.ModelJson(name="m")  # type: ignore[call-arg]
    with pytest.raises(TypeError, match=r"unknown \['size'\]"):
        mj.Tensor(name="x", dtype="float32", shape=(), size=3)  # type: ignore[call-arg]
    assert full_document() == doc and hash(doc.signature) == hash(full_document().signature)
    assert mj.OutputProfile(name="a") != mj.FeatureProfile(name="a")
    assert mj.Roles().label is None and "scores_kind=None" in repr(mj.Roles())


def _export(root: Path, model: object, x: np.ndarray, *, csv_header: list[str] | None = None) -> Path:
    root.mkdir(parents=True)
    joblib.dump(model, root / "model.joblib")
    if csv_header:
        np.savetxt(root / "samples.csv", x, delimiter=",", header=",".join(csv_header), comments="")
        samples = "samples.csv"
    else:
        np.save(root / "samples.npy", x)
        samples = "samples.npy"
    make_project(root, source="model.joblib", samples=samples)
    return export(spec_mod.load(root)).artifact.json_path


@pytest.mark.parametrize("kind", ["classifier", "regressor"])
def test_a_real_export_round_trips_byte_for_byte(tmp_path, kind):
    if kind == "classifier":
        data = load_iris()
        x = data.data.astype(np.float32)
        path = _export(tmp_path / "p", LogisticRegression(max_iter=500).fit(x, data.target), x,
                       csv_header=["a", "b", "c", "d"])
    else:
        data = load_diabetes()
        x = data.data.astype(np.float32)
        path = _export(tmp_path / "p", LinearRegression().fit(x, data.target), x)
    raw = path.read_bytes()
    doc = mj.read(path)
    assert mj.dumps(doc) == raw
    assert mj.as_dict(doc) == json.loads(raw)
    absent = [k for k, v in vars(doc).items() if v is None]
    assert not absent, f"export left out {absent}"


def test_the_handler_test_models_read(tmp_path):
    from tests.support import handler_models as hm

    for folder in (hm.two_inputs(tmp_path / "two"), hm.flags(tmp_path / "flags")):
        raw = (folder / C.MODEL_JSON).read_bytes()
        assert mj.dumps(mj.read(folder / C.MODEL_JSON)) == raw


# ---------------------------------------------------------------------------------------------------
# what is wrong, where


def _set(path: str, value: Any) -> Any:
    """An edit of minimal(): set the value at a dotted path (list indexes as numbers); value None removes it."""
    def edit(data: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = data
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if value is None:
            del node[int(last) if isinstance(node, list) else last]
        elif isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value
    return edit


@pytest.mark.parametrize("edit, field, problem", [
    (_set("format", None), "format", "missing"),
    (_set("format", "mlpack.model/2"), "format", "expected 'mlpack.model/1', got 'mlpack.model/2'"),
    (_set("name", None), "name", "missing"),
    (_set("name", 3), "name", "expected a string, got int"),
    (_set("signature", None), "signature", "missing"),
    (_set("signature", []), "signature", "expected an object, got list"),
    (_set("signature.inputs", None), "signature.inputs", "missing"),
    (_set("signature.outputs", {"y": 1}), "signature.outputs", "expected a list, got object"),
    (_set("signature.inputs.0.dtype", None), "signature.inputs[0].dtype", "missing"),
    (_set("signature.inputs.0.name", False), "signature.inputs[0].name", "expected a string, got bool"),
    (_set("signature.outputs.0.shape", None), "signature.outputs[0].shape", "missing"),
    (_set("signature.outputs.0.shape", ["batch", 1.5]), "signature.outputs[0].shape[1]",
     "expected an integer or a string, got float"),
    (_set("signature.inputs.0", "x"), "signature.inputs[0]", "expected an object, got str"),
])
def test_a_missing_or_mistyped_required_field_is_named(edit, field, problem):
    data = minimal()
    edit(data)
    with pytest.raises(mj.ModelJsonError) as info:
        mj.from_dict(data, ORIGIN)
    assert (info.value.origin, info.value.field, info.value.problem) == (ORIGIN, field, problem)
    assert str(info.value) == f"{ORIGIN}: {field}: {problem}"


@pytest.mark.parametrize("key, value, field, problem", [
    ("version", 3, "version", "expected a string, got int"),
    ("roles", {"label": 1}, "roles.label", "expected a string, got int"),
    ("classes", [{}], "classes[0]", "expected a string, number or boolean, got object"),
    ("feature_names", {"x": "ab"}, "feature_names['x']", "expected a list, got str"),
    ("parity", {"rtol": True}, "parity.rtol", "expected a number, got bool"),
    ("parity", {"checks": [{"passed": "yes"}]}, "parity.checks[0].passed", "expected true or false, got str"),
    ("profile", {"inputs": {"x": [{"name": "a", "q01": "low"}]}}, "profile.inputs['x'][0].q01",
     "expected a number, got str"),
    ("profile", {"outputs": {"classes": ["a"]}}, "profile.outputs.classes", "expected an object, got list"),
    ("read_files", {"a.pt": "01"}, "read_files", "expected a list, got object"),
    ("read_files", [{"path": "a.pt"}], "read_files[0].sha256", "missing"),
    ("read_files", [{"path": 1, "sha256": "01"}], "read_files[0].path", "expected a string, got int"),
])
def test_a_present_optional_field_must_have_its_type(key, value, field, problem):
    with pytest.raises(mj.ModelJsonError) as info:
        mj.from_dict({**minimal(), key: value}, ORIGIN)
    assert (info.value.field, info.value.problem) == (field, problem)


def test_the_document_as_a_whole():
    with pytest.raises(mj.ModelJsonError, match=r"^build/iris/model.json: expected an object, got list$"):
        mj.from_dict([minimal()], ORIGIN)
    with pytest.raises(mj.ModelJsonError, match=r"^build/iris/model.json: not valid JSON: ") as info:
        mj.loads(b"{not json", ORIGIN)
    assert info.value.field == ""
    with pytest.raises(mj.ModelJsonError, match="not valid JSON"):
        mj.loads(b"\xff\xfe", ORIGIN)


def test_read_names_the_file_and_passes_os_errors_on(tmp_path):
    path = tmp_path / "model.json"
    path.write_text(json.dumps({**minimal(), "name": None}))
    with pytest.raises(mj.ModelJsonError, match=rf"^{path}: name: expected a string, got null$"):
        mj.read(path)
    with pytest.raises(FileNotFoundError):
        mj.read(tmp_path / "missing.json")


def test_the_error_key_is_the_last_name_in_the_field():
    data = copy.deepcopy(minimal())
    del data["signature"]["outputs"][0]["shape"]
    with pytest.raises(mj.ModelJsonError) as info:
        mj.from_dict(data, ORIGIN)
    assert info.value.key == "shape"


# ---------------------------------------------------------------------------------------------------
# identity: what mlpack push records


def test_identity_reads_only_name_version_and_digest():
    got = mj.identity({"name": "m", "version": "1", "model_sha256": "ab" * 32}, ORIGIN)
    assert got == mj.Identity(name="m", version="1", model_sha256="ab" * 32)


@pytest.mark.parametrize("data, field", [
    ({"name": "m"}, "version, model_sha256"),
    ({"name": "", "version": 1, "model_sha256": "x"}, "name, version"),
    ([], "name, version, model_sha256"),
])
def test_identity_lists_every_missing_field(data, field):
    with pytest.raises(mj.ModelJsonError) as info:
        mj.identity(data, ORIGIN)
    assert str(info.value) == f"{ORIGIN}: {field}: missing"
