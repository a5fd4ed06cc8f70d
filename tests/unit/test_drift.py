"""handlers/drift.py against an independent computation with numpy and scipy: PSI, Jensen-Shannon,
chi-squared, binning; the capture lines read back; drift found on exactly the shifted features."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from scipy.spatial.distance import jensenshannon

from handlers import drift


def _psi_numpy(ref: np.ndarray, cur: np.ndarray) -> float:
    r, c = ref / ref.sum(), cur / cur.sum()
    r, c = np.maximum(r, drift.FLOOR), np.maximum(c, drift.FLOOR)
    r, c = r / r.sum(), c / c.sum()
    return float(np.sum((c - r) * np.log(c / r)))


@pytest.mark.parametrize("seed", range(5))
def test_psi_js_chi2_equal_numpy_scipy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    ref = rng.integers(0, 50, size=8).astype(float)
    cur = rng.integers(0, 50, size=8).astype(float)
    cur[seed % 8] = 0.0  # an empty bin
    assert drift.psi(ref.tolist(), cur.tolist()) == pytest.approx(_psi_numpy(ref, cur), rel=1e-12)
    assert drift.js_distance(ref.tolist(), cur.tolist()) == pytest.approx(
        float(jensenshannon(ref, cur, base=2)), rel=1e-9, abs=1e-12)
    r = np.maximum(ref / ref.sum(), drift.FLOOR)
    r = r / r.sum()
    want = stats.chisquare(cur, f_exp=r * cur.sum())
    stat, p = drift.chi2(ref.tolist(), cur.tolist())
    assert stat == pytest.approx(float(want.statistic), rel=1e-12)
    assert p == pytest.approx(float(want.pvalue), rel=1e-9, abs=1e-300)


@pytest.mark.parametrize(("x", "k"), [(0.5, 1), (3.0, 2), (10.0, 4), (40.0, 9), (200.0, 30), (1.0, 50)])
def test_chi2_sf_equals_scipy(x: float, k: int) -> None:
    assert drift._chi2_sf(x, k) == pytest.approx(float(stats.chi2.sf(x, k)), rel=1e-9, abs=1e-300)


def test_bin_counts_equal_numpy_digitize() -> None:
    rng = np.random.default_rng(1)
    values = rng.normal(size=1000)
    edges = np.quantile(values, np.linspace(0, 1, 11)[1:-1])
    counts, n = drift.bin_counts(edges.tolist(), [*values.tolist(), float("nan"), None, "x"])
    assert n == 1000
    assert counts == np.bincount(np.digitize(values, edges, right=False), minlength=10).tolist()


def test_identical_is_zero_and_thresholds() -> None:
    assert drift.psi([10, 20, 30], [1, 2, 3]) == pytest.approx(0.0, abs=1e-15)
    assert drift.js_distance([10, 20, 30], [1, 2, 3]) == pytest.approx(0.0, abs=1e-7)
    assert drift.FeatureDrift("a", "numeric", 100, 0.25, 0.05).status == "drift"
    assert drift.FeatureDrift("a", "numeric", 100, 0.15, 0.05).status == "warn"
    assert drift.FeatureDrift("a", "numeric", 100, 0.05, 0.12).status == "drift"
    assert drift.FeatureDrift("a", "numeric", 100, 0.01, 0.01).status == "ok"
    assert drift.FeatureDrift("a", "numeric", 5, 3.0, 0.9).status == "few"


def _reference(rng: np.random.Generator) -> dict[str, object]:
    train = rng.normal(size=(2000, 3))
    feats: list[dict[str, object]] = []
    for i, name in enumerate(["a", "b", "c"]):
        edges = sorted(set(np.quantile(train[:, i], np.linspace(0, 1, 11)[1:-1]).tolist()))
        counts, _ = drift.bin_counts(edges, train[:, i].tolist())
        feats.append({"name": name, "kind": "numeric", "edges": edges, "counts": counts})
    cities = rng.choice(["lyon", "paris", "nice"], size=2000, p=[0.3, 0.5, 0.2])
    feats.append({"name": "city", "kind": "categorical",
                  "categories": {c: int((cities == c).sum()) for c in ["lyon", "nice", "paris"]}})
    return {"features": feats, "outputs": []}


def test_capture_lines_find_exactly_the_shifted_features() -> None:
    rng = np.random.default_rng(7)
    reference = _reference(rng)
    lines = ["START RequestId: x", '{"level": "INFO", "message": "other"}']
    for r in range(300):
        a, b, c = rng.normal(size=3)
        city = rng.choice(["lyon", "paris", "nice", "brest"], p=[0.1, 0.3, 0.2, 0.4])
        cols = {"a": [float(a)], "b": [float(b) + 1.5], "c": [float(c)], "city": [str(city)]}
        lines.append("2026-01-01T00:00:00Z\tid\tINFO\t" * (r % 2) + drift.capture_line("m", f"r{r}", cols, 1))
    columns, by_request = drift.read_capture(lines, "m")
    assert len(columns["a"]) == 300 and len(by_request) == 300
    found = {d.name: d.status for d in drift.report(reference, columns)}
    assert {k for k, v in found.items() if v == "drift"} == {"b", "city"}
    assert found["a"] in ("ok", "warn") and found["c"] in ("ok", "warn")


def test_sampled_rate() -> None:
    assert not drift.sampled(0.0, lambda: 0.0)
    assert drift.sampled(1.0, lambda: 0.99)
    assert drift.sampled(0.01, lambda: 0.005) and not drift.sampled(0.01, lambda: 0.5)


def test_feedback_joins_captured_predictions_by_request_id() -> None:
    lines = [drift.capture_line("m", "r1", {"x": [1.0, 2.0], "prediction": ["a", "b"]}, 1),
             drift.capture_line("m", "r2", {"x": [3.0], "prediction": ["a"]}, 1),
             drift.capture_line("m", "r3", {"x": [3.0], "prediction": ["b"]}, 1),
             drift.feedback_line("m", "r1", ["a", "a"], 2), drift.feedback_line("m", "r2", ["a"], 2),
             drift.feedback_line("m", "r9", ["b"], 2),  # no capture: not joined
             drift.feedback_line("other", "r3", ["b"], 2)]
    _, by_request = drift.read_capture(lines, "m")
    n, accuracy, _ = drift.realised(by_request, drift.read_feedback(lines, "m"), "prediction")
    assert (n, accuracy) == (3, pytest.approx(2 / 3))
    reg = [drift.capture_line("m", "r1", {"variable": [1.0, 4.0]}, 1), drift.feedback_line("m", "r1", [2.0, 2.0], 2)]
    _, by_request = drift.read_capture(reg)
    n, _, mae = drift.realised(by_request, drift.read_feedback(reg), "variable")
    assert (n, mae) == (2, pytest.approx(np.mean(np.abs(np.array([1.0, 4.0]) - 2.0))))
