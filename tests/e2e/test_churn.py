"""The churn example (a DataFrame pipeline: categorical columns, missing values, gradient-boosted trees) as a
user drives it: train -> `mlpack export` -> `mlpack serve --isolate` (which builds the image on the debian
base and runs its own root file system under AWS's runtime client) -> records and columns requests over
HTTP, 100 new customers with missing values and unseen categories, answered as the original pipeline
answers them; a bad cell is a 422 naming its row and column.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import joblib
import numpy as np
import pandas as pd
import pytest

from packager.local import function as local
from tests.support.images import copy_example
from tests.support.serving import Served

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
COLUMNS = ["plan", "region", "contract", "tenure_months", "monthly_charges", "support_calls", "autopay"]


def _new_customers(project: Path) -> list[dict[str, object]]:
    """100 customers the model never saw (another seed), with missing values and unseen categories."""
    code = ("import json, sys; sys.path.insert(0, '.'); import numpy as np; from train import customers; "
            "f, _ = customers(100, seed=42); f = f.astype(object); rng = np.random.default_rng(1)\n"
            "for c in ('plan', 'region', 'monthly_charges', 'support_calls', 'autopay'):\n"
            "    f.loc[rng.random(100) < 0.1, c] = None\n"
            "f.loc[rng.random(100) < 0.1, 'plan'] = 'enterprise'\n"
            "f.loc[rng.random(100) < 0.1, 'region'] = 'mars'\n"
            "rows = [{k: (None if v is None or (isinstance(v, float) and v != v) else "
            "(v.item() if hasattr(v, 'item') else v)) for k, v in r.items()} for r in f.to_dict('records')]\n"
            "print(json.dumps(rows))")
    out = subprocess.run([sys.executable, "-c", code], cwd=project, capture_output=True, text=True, check=True)
    rows: list[dict[str, object]] = json.loads(out.stdout)
    return rows


def test_churn_served_isolated_answers_like_the_pipeline(tmp_path):
    if problem := local.isolation_problem(local.HOST_ARCH):
        pytest.skip(problem)
    project = copy_example("churn", tmp_path)
    exported = subprocess.run([sys.executable, "-m", "packager", "export", str(project), "--json"], cwd=REPO,
                              capture_output=True, text=True, timeout=600)
    assert exported.returncode == 0, exported.stderr
    assert json.loads(exported.stdout)["parity"]["passed"]
    records = _new_customers(project)
    pipeline = joblib.load(project / "model.joblib")
    frame = pd.DataFrame(records, columns=COLUMNS)
    frame = frame.where(frame.notna(), np.nan)
    expected = pipeline.predict_proba(frame)
    served = Served([str(project), "--isolate"], env={**os.environ, "MLPACK_BASE": "debian"}, wait_s=900)
    try:
        with httpx.Client(base_url=served.url, timeout=60) as client:
            by_records = client.post("/predict", json={"instances": records})
            by_columns = client.post("/predict", json={"inputs": {c: [r[c] for r in records] for c in COLUMNS}})
            for r in (by_records, by_columns):
                assert r.status_code == 200, r.text
                got = np.array([[row["stays"], row["churns"]] for row in r.json()["outputs"]["probabilities"]])
                np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
                labels = r.json()["outputs"]["label"]
                assert labels == [["stays", "churns"][i] for i in pipeline.predict(frame)]
            bad = client.post("/predict", json={"instances": [records[0], {**records[1], "tenure_months": -3}]})
            assert bad.status_code == 422 and bad.json()["path"] == "instances[1].tenure_months", bad.text
            meta = client.get("/v2/models/churn").json()
            assert {i["name"]: i["datatype"] for i in meta["inputs"]}["plan"] == "BYTES"
            doc = client.get("/openapi.json").json()
            example = doc["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]["example"]
            assert client.post("/predict", json=example).status_code == 200
    finally:
        assert served.stop() == 0
    emf = [json.loads(line) for line in served.lines if '"UnseenCategories"' in line and line.startswith("{")]
    assert emf and any(d.get("Feature") == "plan" for d in emf), "unseen categories are counted per column"
