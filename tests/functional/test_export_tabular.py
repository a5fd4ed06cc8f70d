"""DataFrame models end to end in one process: export (one input per column, parity over missing values and
unseen categories) -> the handler's records, columns and v2 requests -> the original model's answers, or a
4xx naming the row and the column.

The churn example's generator makes the data (examples/churn/train.py, fixed seeds); other variants are
trained here on data scikit-learn ships (wine, diabetes) or generated.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from handlers import model_json as mj
from handlers.inference import Request, handle, load_model
from packager.config import spec as spec_mod
from packager.errors import ExportError
from packager.export.pipeline import export
from tests.support.projects import make_project

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def _churn_module() -> Any:
    spec = importlib.util.spec_from_file_location("churn_train", REPO / "examples" / "churn" / "train.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


churn = _churn_module()


def _project(root: Path, model: Any, frame: pd.DataFrame, *, extra: str = "", tables: str = "",
             name: str = "m") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    joblib.dump(model, root / "model.joblib")
    frame.to_csv(root / "samples.csv", index=False)
    make_project(root, source="model.joblib", samples="samples.csv", extra=extra, name=name)
    if tables:
        with (root / "mlpack.toml").open("a") as f:
            f.write("\n" + tables + "\n")
    return root


def _export(root: Path) -> tuple[Any, mj.ModelJson]:
    artifact = export(spec_mod.load(root)).artifact
    return load_model(str(artifact.out_dir)), artifact.document


def _call(model: Any, body: Any, path: str = "/predict") -> Any:
    return handle(model, Request("POST", path, body=json.dumps(body), content_type="application/json"))


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """The frame as JSON records: NaN and None become null, numpy scalars Python ones."""
    out = []
    for row in frame.to_dict(orient="records"):
        out.append({k: (None if v is None or (isinstance(v, float) and math.isnan(v)) else
                        v.item() if hasattr(v, "item") else v) for k, v in row.items()})
    return out


def _as_original(records: list[dict[str, Any]], columns: list[str]) -> pd.DataFrame:
    """What the original model is given for the same records: missing as NaN, pandas' own marker."""
    frame = pd.DataFrame(records, columns=columns)
    return frame.where(frame.notna(), np.nan)


def _probabilities(result: Any) -> np.ndarray:
    rows = result.payload["outputs"]["probabilities"]
    return np.array([list(r.values()) for r in rows])


@pytest.fixture(scope="module")
def churn_export(tmp_path_factory) -> tuple[Any, mj.ModelJson, Any]:
    frame, y = churn.customers(1500, seed=0)
    pipeline = churn.model().fit(frame, y)
    root = _project(tmp_path_factory.mktemp("churn") / "p", pipeline, frame.iloc[:300], name="churn",
                    tables="[inputs.tenure_months]\nmin = 0\nmax = 600\nmissing = false")
    model, document = _export(root)
    return model, document, pipeline


def _requests(seed: int) -> list[dict[str, Any]]:
    """100 new customers with missing values and unseen categories in every string column."""
    frame, _ = churn.customers(100, seed=seed)
    rng = np.random.default_rng(seed)
    frame = frame.astype(object)
    for col in ("plan", "region", "contract", "monthly_charges", "support_calls", "autopay"):
        frame.loc[rng.random(100) < 0.1, col] = None
    for col, unseen in (("plan", "enterprise"), ("region", "mars"), ("contract", "weekly")):
        frame.loc[rng.random(100) < 0.1, col] = unseen
    return _records(frame)


def test_the_signature_has_one_input_per_column_with_its_rules(churn_export):
    _, doc, _ = churn_export
    assert doc.tabular is True
    assert [(t.name, t.dtype, t.shape) for t in doc.signature.inputs] == [
        ("plan", "str", ("batch", 1)), ("region", "str", ("batch", 1)), ("contract", "str", ("batch", 1)),
        ("tenure_months", "float32", ("batch", 1)), ("monthly_charges", "float32", ("batch", 1)),
        ("support_calls", "float32", ("batch", 1)), ("autopay", "float32", ("batch", 1))]
    rules = doc.input_rules
    assert rules is not None
    assert rules["plan"].kind == "string" and rules["plan"].categories == ("basic", "plus", "pro")
    assert rules["plan"].unseen == "accept" and rules["plan"].missing is True
    assert rules["tenure_months"].kind == "integer" and rules["tenure_months"].missing is False
    assert (rules["tenure_months"].min, rules["tenure_months"].max) == (0, 600)
    assert rules["monthly_charges"].kind == "number" and rules["autopay"].kind == "boolean"
    region = doc.profile.inputs["region"][0]
    assert set(region.categories) == {"east", "north", "south", "west"} and region.nan_share > 0
    # the drift reference: category counts of the non-missing samples, numeric columns in decile bins
    ref = {f.name: f for f in (doc.reference.features if doc.reference else ())}
    frame = churn.customers(1500, seed=0)[0].iloc[:300]
    want = frame["region"].dropna()
    want = want[want != ""].value_counts().to_dict()
    assert ref["region"].kind == "categorical" and dict(ref["region"].categories) == want
    tenure = ref["tenure_months"]
    assert tenure.kind == "numeric" and sum(tenure.counts) == frame["tenure_months"].notna().sum()
    # parity covered the probe rows (each column missing, each string column unseen) beyond the 300 samples
    assert doc.parity.passed and doc.parity.rows > 300


@pytest.mark.parametrize("form", ["records", "columns", "v2"])
def test_100_rows_with_missing_values_and_unseen_categories_get_the_original_answers(churn_export, form):
    model, doc, pipeline = churn_export
    records = _requests(seed=11)
    names = [t.name for t in doc.signature.inputs]
    for r in records:  # tenure_months does not accept missing values (mlpack.toml says so)
        assert r["tenure_months"] is not None
    if form == "records":
        res = _call(model, {"instances": records})
    elif form == "columns":
        res = _call(model, {"inputs": {n: [r.get(n) for r in records] for n in names}})
    else:
        kinds = {"string": "BYTES", "boolean": "BOOL", "integer": "INT64", "number": "FP64"}
        tensors = [{"name": n, "datatype": kinds[doc.input_rules[n].kind], "shape": [len(records), 1],
                    "data": [r.get(n) for r in records]} for n in names]
        res = _call(model, {"inputs": tensors}, "/v2/models/churn/infer")
    assert res.status == 200, res.payload
    expected = pipeline.predict_proba(_as_original(records, names))
    if form == "v2":
        out = {t["name"]: t for t in res.payload["outputs"]}
        got = np.asarray(out["probabilities"]["data"], dtype=np.float64).reshape(len(records), 2)
        np.testing.assert_array_equal(np.asarray(out["label"]["data"]), pipeline.predict(
            _as_original(records, names)))
    else:
        got = _probabilities(res)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    assert res.unseen_by_feature and set(res.unseen_by_feature) == {"plan", "region", "contract"}
    assert res.missing_by_feature and res.missing_by_feature.get("plan")


REC = {"plan": "pro", "region": "north", "contract": "monthly", "tenure_months": 3, "monthly_charges": 89.5,
       "support_calls": 4, "autopay": False}


@pytest.mark.parametrize("body, status, path, words", [
    ({"instances": [REC, {**REC, "tenure_months": None}]}, 422, "instances[1].tenure_months",
     "does not accept missing"),
    ({"instances": [REC, {k: v for k, v in REC.items() if k != "tenure_months"}]}, 422, "instances[1].tenure_months",
     "missing column"),
    ({"instances": [{**REC, "tenure_months": -1}]}, 422, "instances[0].tenure_months", "between 0 and 600"),
    ({"instances": [{**REC, "tenure_months": 2.5}]}, 422, "instances[0].tenure_months", "integer"),
    ({"instances": [{**REC, "autopay": 1}]}, 422, "instances[0].autopay", "true or false"),
    ({"instances": [{**REC, "plan": 3}]}, 422, "instances[0].plan", "string"),
    ({"instances": [{**REC, "monthly_charges": "cheap"}]}, 422, "instances[0].monthly_charges", "number"),
    ({"instances": [{**REC, "monthly_charges": 1e39}]}, 422, "instances[0].monthly_charges", "float32"),
    ({"instances": [{**REC, "colour": "red"}]}, 422, "instances[0].colour", "unknown column"),
    ({"instances": [REC, [1, 2]]}, 422, "instances[1]", "record"),
    ({"instances": []}, 422, "instances", "empty"),
    ({"instances": [REC] * 257}, 413, "instances", "maximum"),
    ({"instances": {"plan": "pro"}}, 400, "instances", "list of records"),
    ({"inputs": {**{k: [v] for k, v in REC.items()}, "plan": ["pro", "plus"]}}, 422, "inputs.region",
     "has 1 values, but the other columns have 2"),
    ({"inputs": {k: [v] for k, v in REC.items() if k != "plan"}}, 422, "inputs.plan", "missing column"),
    ({"inputs": {**{k: [v] for k, v in REC.items()}, "tenure_months": [700]}}, 422, "inputs.tenure_months[0]",
     "between 0 and 600"),
    ({"inputs": [[1, 2, 3]]}, 400, "inputs", "object of columns"),
    ({"instances": [REC], "extra": 1}, 400, "extra", "unknown field"),
])
def test_refusals_name_the_row_and_the_column(churn_export, body, status, path, words):
    res = _call(churn_export[0], body)
    assert res.status == status, res.payload
    assert res.payload["path"] == path and words in res.payload["message"], res.payload


def test_v2_metadata_and_openapi_describe_each_column(churn_export):
    from openapi_spec_validator import validate

    model, _, _ = churn_export
    meta = {i["name"]: i["datatype"] for i in model.v2_metadata["inputs"]}
    assert meta == {"plan": "BYTES", "region": "BYTES", "contract": "BYTES", "tenure_months": "INT64",
                    "monthly_charges": "FP32", "support_calls": "INT64", "autopay": "BOOL"}
    doc = model.openapi_doc
    validate(doc)
    body = doc["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]
    records = body["schema"]["oneOf"][0]["properties"]["instances"]["items"]["properties"]
    assert records["plan"]["x-categories"] == ["basic", "plus", "pro"] and records["plan"]["nullable"] is True
    assert records["tenure_months"]["minimum"] == 0 and "nullable" not in records["tenure_months"]
    assert "training range" in records["monthly_charges"]["description"]
    example = body["example"]
    assert _call(model, example).status == 200  # the documented example is a request the model answers


def test_the_stacks_request_schema_takes_records_and_columns(churn_export):
    import jsonschema

    from stacks import model_json as stacks_mj

    _, doc, _ = churn_export
    info = stacks_mj.parse(mj.as_dict(doc), origin="model.json", max_batch_size=256)
    assert info.categorical
    check = jsonschema.Draft4Validator(info.request_schema)
    assert check.is_valid({"instances": [REC, {**REC, "region": None}]})
    assert check.is_valid({"inputs": {k: [v] for k, v in REC.items()}})
    assert not check.is_valid({"instances": [{**REC, "tenure_months": None}]})
    assert not check.is_valid({"instances": [REC], "inputs": {}})
    assert not check.is_valid({"rows": [[1]]})


COLUMNS = [t for t in ("plan", "region", "contract", "tenure_months", "monthly_charges", "support_calls", "autopay")]
_value = {
    "plan": st.one_of(st.none(), st.sampled_from(["basic", "plus", "pro", "", "x", "PRO"]), st.integers()),
    "region": st.one_of(st.none(), st.sampled_from(["north", "east", "atlantis"]),
                        st.text(st.characters(exclude_categories=("Cs",)), max_size=3)),
    "contract": st.one_of(st.none(), st.sampled_from(["monthly", "yearly", "daily"])),
    "tenure_months": st.one_of(st.integers(-5, 700), st.floats(allow_nan=False, allow_infinity=False), st.none()),
    "monthly_charges": st.one_of(st.none(), st.floats(allow_nan=False, allow_infinity=False, width=64),
                                 st.integers(-10 ** 20, 10 ** 20), st.booleans()),
    "support_calls": st.one_of(st.none(), st.integers(-3, 50), st.sampled_from([1.5, 3.4e38, -0.0])),
    "autopay": st.one_of(st.none(), st.booleans(), st.integers(0, 1)),
}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.fixed_dictionaries({}, optional=_value), min_size=1, max_size=8))
def test_random_records_get_the_original_answer_or_a_4xx_naming_the_cell(churn_export, records):
    model, _, pipeline = churn_export
    res = _call(model, {"instances": records})
    assert res.status < 500, res.payload
    if res.status != 200:
        path = res.payload["path"]
        assert path.startswith("instances["), res.payload
        return
    frame = _as_original(records, COLUMNS)
    for col in ("tenure_months", "monthly_charges", "support_calls", "autopay"):
        frame[col] = frame[col].astype(float)
    expected = pipeline.predict_proba(frame)
    got = _probabilities(res)
    # float32 in the graph: an extreme input may round across a tree split; finite and a distribution
    assert np.all(np.isfinite(got)) and np.allclose(got.sum(axis=1), 1, atol=1e-5)
    moderate = np.all(np.abs(frame[["monthly_charges"]].fillna(0).to_numpy()) < 1e6, axis=1)
    np.testing.assert_allclose(got[moderate], expected[moderate], rtol=1e-4, atol=1e-5)


def test_export_is_one_version_under_five_hash_seeds(tmp_path):
    frame, y = churn.customers(400, seed=3)
    root = _project(tmp_path / "p", churn.model().fit(frame, y), frame.iloc[:100])
    code = ("import sys; from pathlib import Path; from packager.config import spec; "
            "from packager.export.pipeline import export; "
            "print(export(spec.load(sys.argv[1]), Path(sys.argv[2]), force=True).artifact.version)")
    versions = set()
    for seed in range(1, 6):
        env = {**os.environ, "PYTHONHASHSEED": str(seed), "PYTHONPATH": str(REPO)}
        out = subprocess.run([sys.executable, "-c", code, str(root), str(tmp_path / f"out{seed}")], env=env,
                             capture_output=True, text=True, timeout=300, check=True)
        versions.add(out.stdout.strip().splitlines()[-1])
    assert len(versions) == 1, versions


def _wine() -> tuple[pd.DataFrame, np.ndarray]:
    from sklearn.datasets import load_wine

    data = load_wine(as_frame=True)
    return data.data, data.target.to_numpy()


def _diabetes() -> tuple[pd.DataFrame, np.ndarray]:
    from sklearn.datasets import load_diabetes

    data = load_diabetes(as_frame=True, scaled=False)
    frame = data.data.copy()
    frame["sex"] = frame["sex"].map({1.0: "f", 2.0: "m"})
    return frame, data.target.to_numpy()


def _trees(kind: str) -> Any:
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    if kind == "xgboost":
        import xgboost

        est: Any = xgboost.XGBClassifier(n_estimators=30, max_depth=3, random_state=0)
    elif kind == "lightgbm":
        import lightgbm

        est = lightgbm.LGBMClassifier(n_estimators=30, random_state=0, verbose=-1)
    else:
        from sklearn.ensemble import HistGradientBoostingClassifier

        est = HistGradientBoostingClassifier(max_iter=30, random_state=0)
    pre = ColumnTransformer([("num", "passthrough", ["tenure_months", "monthly_charges", "support_calls"]),
                             ("cat", OneHotEncoder(handle_unknown="ignore"), ["plan", "contract"])])
    return Pipeline([("pre", pre), ("model", est)])


@pytest.mark.parametrize("variant", ["wine", "diabetes", "xgboost", "lightgbm", "hist"])
def test_variants_answer_like_the_original(tmp_path, variant):
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    if variant == "wine":
        frame, y = _wine()
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(frame, y)
    elif variant == "diabetes":
        frame, y = _diabetes()
        numeric = [c for c in frame.columns if c != "sex"]
        pre = ColumnTransformer([("num", StandardScaler(), numeric), ("cat", OneHotEncoder(), ["sex"])])
        model = make_pipeline(pre, Ridge()).fit(frame, y)
    else:
        frame, y = churn.customers(800, seed=5)
        frame = frame.drop(columns=["region", "autopay"])
        frame["monthly_charges"] = frame["monthly_charges"].fillna(50.0)
        model = _trees(variant).fit(frame, y)
    tables = '[outputs]\nvariable = "progression"' if variant == "diabetes" else ""
    served, doc = _export(_project(tmp_path / "p", model, frame.iloc[:150], tables=tables))
    new = frame.iloc[150:250]
    res = _call(served, {"instances": _records(new)})
    assert res.status == 200, res.payload
    if variant == "diabetes":
        assert [t.name for t in doc.signature.outputs] == ["progression"]
        got = np.asarray(res.payload["outputs"]["progression"], dtype=np.float64).reshape(-1)
        np.testing.assert_allclose(got, model.predict(new), rtol=1e-4, atol=1e-3)
        assert served.openapi_doc["paths"]["/predict"]["post"]["responses"]["200"]["content"][
            "application/json"]["schema"]["properties"]["outputs"]["properties"]["progression"]
    else:
        np.testing.assert_allclose(_probabilities(res), model.predict_proba(new), rtol=1e-4, atol=1e-5)


def test_declared_missing_for_a_column_the_model_cannot_answer_is_an_export_error(tmp_path):
    from sklearn.linear_model import LogisticRegression

    frame, y = _wine()
    root = _project(tmp_path / "p", LogisticRegression(max_iter=3000).fit(frame, y), frame.iloc[:60],
                    tables="[inputs.alcohol]\nmissing = true")
    with pytest.raises(ExportError, match=r"inputs\.alcohol\.missing: true, but the model cannot answer"):
        export(spec_mod.load(root))


def test_a_model_fitted_on_a_dataframe_needs_dataframe_samples(tmp_path):
    from sklearn.linear_model import LogisticRegression

    frame, y = _wine()
    root = tmp_path / "p"
    root.mkdir()
    joblib.dump(LogisticRegression(max_iter=3000).fit(frame, y), root / "model.joblib")
    np.save(root / "samples.npy", frame.to_numpy()[:20])
    make_project(root, source="model.joblib", samples="samples.npy")
    with pytest.raises(ExportError, match="fitted on a DataFrame with columns"):
        export(spec_mod.load(root))
    frame.drop(columns=["alcohol"]).iloc[:20].to_csv(root / "samples.csv", index=False)
    make_project(root, source="model.joblib", samples="samples.csv")
    with pytest.raises(ExportError, match=r"lack column.*'alcohol'"):
        export(spec_mod.load(root))


def test_an_unknown_output_rename_names_the_outputs(tmp_path):
    from sklearn.linear_model import Ridge

    frame, y = _diabetes()
    frame = frame.drop(columns=["sex"])
    root = _project(tmp_path / "p", Ridge().fit(frame, y), frame.iloc[:40], tables='[outputs]\nprice = "x"')
    with pytest.raises(ExportError, match=r"(?s)outputs\.price: the exported model has no output 'price'.*variable"):
        export(spec_mod.load(root))


def test_an_embedding_index_outside_its_table_is_a_422_not_a_500_nor_a_wrong_answer(tmp_path):
    import torch

    class Embed(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.table = torch.nn.Embedding(50, 4)
            self.head = torch.nn.Linear(4, 2)

        def forward(self, item_id: torch.Tensor) -> torch.Tensor:
            return self.head(self.table(item_id))

    root = tmp_path / "p"
    root.mkdir()
    module = Embed()
    program = torch.export.export(module, (torch.zeros(3, dtype=torch.int64),),
                                  dynamic_shapes={"item_id": {0: torch.export.Dim("batch", min=1)}})
    torch.export.save(program, root / "model.pt2")
    np.save(root / "samples.npy", np.arange(50, dtype=np.int64))
    make_project(root, source="model.pt2", samples="samples.npy", extra='task = "regression"')
    served, doc = _export(root)
    assert doc.input_rules["item_id"].min == 0 and doc.input_rules["item_id"].max == 49
    assert doc.input_rules["item_id"].range_from == "embedding"
    ok = _call(served, {"inputs": [0, 49, 7]})
    assert ok.status == 200, ok.payload
    for bad, index in (([1, 99], 1), ([-1], 0)):
        res = _call(served, {"inputs": bad})
        assert res.status == 422 and res.payload["path"] == f"inputs[{index}]", res.payload
        assert "at most 49" in res.payload["message"] or "at least 0" in res.payload["message"]
