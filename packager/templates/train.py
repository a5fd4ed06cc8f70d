"""Starter model for an mlpack project: a logistic regression on scikit-learn's iris data.

`mlpack export .` calls build_model() and samples(); replace them with your own.
"""

import numpy as np
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler


def samples() -> np.ndarray:
    return load_iris().data.astype(np.float32)


def build_model():
    data = load_iris()
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000, random_state=0))
    return model.fit(data.data.astype(np.float32), data.target)
