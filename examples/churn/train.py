"""churn: a scikit-learn Pipeline on a pandas DataFrame with categorical columns, missing values and a
gradient-boosted model. The customers are generated here with a fixed seed (no downloads); trains in
about a second.

    python train.py        # writes model.joblib and samples.csv next to this file

The pipeline imputes and one-hot encodes the string columns (an unseen plan or region is encoded as
all zeros, as OneHotEncoder(handle_unknown="ignore") does), imputes the numeric ones, and ends in a
HistGradientBoostingClassifier. mlpack exports it with one input per column.
"""

from pathlib import Path

import joblib
import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder

HERE = Path(__file__).resolve().parent
NUMERIC = ["tenure_months", "monthly_charges", "support_calls", "autopay"]
CATEGORICAL = ["plan", "region", "contract"]


def customers(n: int, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """n customers and whether each churned, from a fixed seed."""
    rng = np.random.default_rng(seed)
    plan = rng.choice(["basic", "plus", "pro"], n, p=[0.5, 0.3, 0.2])
    region = rng.choice(["north", "south", "east", "west"], n).astype(object)
    region[rng.random(n) < 0.08] = None  # not recorded for some customers
    contract = rng.choice(["monthly", "yearly"], n, p=[0.7, 0.3])
    tenure = rng.integers(0, 72, n)
    charges = np.round(rng.normal(40, 8, n) + np.select([plan == "plus", plan == "pro"], [20, 45], 0), 2)
    charges[rng.random(n) < 0.05] = np.nan  # billing data missing
    calls = rng.poisson(1.5, n)
    autopay = rng.random(n) < 0.6
    logit = (1.2 - 0.05 * tenure + 0.45 * calls - 0.8 * autopay + 0.9 * (contract == "monthly")
             + 0.015 * np.nan_to_num(charges, nan=60.0) - 0.9 * (plan == "pro"))
    churned = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    frame = pd.DataFrame({"plan": plan, "region": region, "contract": contract, "tenure_months": tenure,
                          "monthly_charges": charges, "support_calls": calls, "autopay": autopay})
    return frame, churned


def model() -> Pipeline:
    pre = ColumnTransformer([
        ("num", SimpleImputer(strategy="median"), NUMERIC),
        ("cat", Pipeline([("impute", SimpleImputer(strategy="constant", fill_value="unknown")),
                          ("onehot", OneHotEncoder(handle_unknown="ignore"))]), CATEGORICAL),
    ])
    return Pipeline([("prepare", pre),
                     ("classify", HistGradientBoostingClassifier(max_iter=60, learning_rate=0.1, random_state=0))])


def main() -> None:
    frame, churned = customers(2000)
    pipeline = model().fit(frame, churned)
    joblib.dump(pipeline, HERE / "model.joblib")
    frame.iloc[:300].to_csv(HERE / "samples.csv", index=False)
    accuracy = pipeline.score(frame, churned)
    print(f"churn: trained on {len(frame)} rows, accuracy {accuracy:.3f}; wrote model.joblib, samples.csv")


if __name__ == "__main__":
    main()
