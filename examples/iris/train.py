"""iris: a scikit-learn Pipeline (StandardScaler + LogisticRegression) on the iris data that ships
with scikit-learn. Trains in well under a second with a fixed seed.

    python train.py        # writes model.joblib and samples.csv next to this file
"""

from pathlib import Path

import joblib
import numpy as np
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

HERE = Path(__file__).resolve().parent


def main() -> None:
    data = load_iris()
    x = data.data.astype(np.float32)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000, random_state=0))
    model.fit(x, data.target)
    joblib.dump(model, HERE / "model.joblib")
    header = ",".join(name.replace(" (cm)", "_cm").replace(" ", "_") for name in data.feature_names)
    np.savetxt(HERE / "samples.csv", x, delimiter=",", header=header, comments="", fmt="%.1f")
    accuracy = model.score(x, data.target)
    print(f"iris: trained on {len(x)} rows, accuracy {accuracy:.3f}; wrote model.joblib, samples.csv")


if __name__ == "__main__":
    main()
