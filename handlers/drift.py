"""Per-feature drift against the training reference: the one computation `mlpack drift` and the
monitor function share (docs/MONITORING.md says what each score means).

Enters: model.json's `reference` as plain JSON (a list of features, each numeric with quantile bin
edges and the training samples' counts per bin, or categorical with a count per category), and the
captured rows: per feature name, the values seen (`capture_line` writes them, `read_capture` reads
them back). Leaves: a `FeatureDrift` per feature with its population stability index (PSI), its
Jensen-Shannon distance (base 2, in [0, 1]) and, for categoricals, the chi-squared statistic and its
p-value; `status` is "drift", "warn" or "ok" after Evidently's and NannyML's published defaults (PSI
0.1 warns, 0.2 drifts; JS distance 0.1 drifts).

Bins: edges are the interior cut points; bin i holds edges[i-1] <= v < edges[i] (bisect_right), so
there are len(edges) + 1 bins and a value beyond the training range falls in the first or the last.
Missing values (NaN, "") are not binned. Empty bins take a floor of 1e-4 of the share before PSI
(Evidently's convention), never before JS, which is finite for empty bins.

Standard library only: the monitor ships in a zip without numpy (like handlers/notify.py), and the
handler writes capture lines with it. Tests check every figure against numpy/scipy.
"""

from __future__ import annotations

import json
import math
from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

PSI_WARN, PSI_DRIFT = 0.1, 0.2  # Evidently / industry convention: < 0.1 stable, 0.1-0.2 moderate, > 0.2 shift
JS_DRIFT = 0.1  # Evidently's default for Jensen-Shannon distance
CHI2_P = 0.05  # NannyML's chi-squared p-value threshold for categoricals
FLOOR = 1e-4  # share given to an empty bin before PSI
MIN_ROWS = 30  # fewer captured values than this: scores are printed but never "drift"
CAPTURE_KEY = "mlpack_capture"  # the JSON key marking a capture log line
FEEDBACK_KEY = "mlpack_feedback"  # the JSON key marking a ground-truth log line


class FeatureDrift:
    """One feature's scores over a window (psi and js always; chi2 and p_value for categoricals)."""

    __slots__ = ("chi2", "js", "kind", "name", "p_value", "psi", "rows", "status")

    def __init__(self, name: str, kind: str, rows: int, psi: float, js: float, chi2: float | None = None,
                 p_value: float | None = None) -> None:
        self.name, self.kind, self.rows, self.psi, self.js = name, kind, rows, psi, js
        self.chi2, self.p_value = chi2, p_value
        if rows < MIN_ROWS:
            self.status = "few"
        elif psi >= PSI_DRIFT or js >= JS_DRIFT:
            self.status = "drift"
        elif psi >= PSI_WARN:
            self.status = "warn"
        else:
            self.status = "ok"

    def as_dict(self) -> dict[str, Any]:
        return {"feature": self.name, "kind": self.kind, "rows": self.rows, "psi": round(self.psi, 6),
                "js": round(self.js, 6), "chi2": None if self.chi2 is None else round(self.chi2, 6),
                "p_value": None if self.p_value is None else round(self.p_value, 6), "status": self.status}


def shares(counts: Sequence[float], *, floor: float = 0.0) -> list[float]:
    """Counts as shares summing to 1; with a floor, empty shares become `floor` first (then renormalised)."""
    total = float(sum(counts))
    if total <= 0:
        return [1.0 / len(counts)] * len(counts) if counts else []
    out = [c / total for c in counts]
    if floor > 0:
        out = [max(s, floor) for s in out]
        t = sum(out)
        out = [s / t for s in out]
    return out


def psi(reference: Sequence[float], current: Sequence[float]) -> float:
    """Population stability index: sum over bins of (c - r) * ln(c / r), shares floored at FLOOR."""
    r, c = shares(reference, floor=FLOOR), shares(current, floor=FLOOR)
    return sum((ci - ri) * math.log(ci / ri) for ri, ci in zip(r, c, strict=True))


def js_distance(reference: Sequence[float], current: Sequence[float]) -> float:
    """Jensen-Shannon distance, base 2 (scipy.spatial.distance.jensenshannon(p, q, base=2))."""
    p, q = shares(reference), shares(current)
    div = 0.0
    for pi, qi in zip(p, q, strict=True):
        m = (pi + qi) / 2
        if pi > 0:
            div += pi * math.log2(pi / m) / 2
        if qi > 0:
            div += qi * math.log2(qi / m) / 2
    return math.sqrt(max(div, 0.0))


def chi2(reference: Sequence[float], current: Sequence[float]) -> tuple[float, float]:
    """Chi-squared goodness of fit of the current counts to the reference's shares (scipy.stats.chisquare
    with f_exp = reference shares x current total, categories the reference never saw given the floor):
    (statistic, p-value)."""
    r = shares(reference, floor=FLOOR)
    total = float(sum(current))
    stat = sum((c - total * ri) ** 2 / (total * ri) for ri, c in zip(r, current, strict=True)) if total else 0.0
    dof = len(r) - 1
    return stat, (_chi2_sf(stat, dof) if dof > 0 else 1.0)


def _chi2_sf(x: float, k: int) -> float:
    """P(X > x) for chi-squared with k degrees of freedom: the regularised upper incomplete gamma Q(k/2, x/2)."""
    a, z = k / 2.0, x / 2.0
    if z <= 0:
        return 1.0
    if z < a + 1:  # series for P, then Q = 1 - P
        term = total = 1.0 / a
        n = a
        for _ in range(1000):
            n += 1
            term *= z / n
            total += term
            if abs(term) < abs(total) * 1e-15:
                break
        return max(0.0, 1.0 - total * math.exp(-z + a * math.log(z) - math.lgamma(a)))
    # continued fraction for Q (Lentz)
    tiny = 1e-300
    b = z + 1 - a
    c, d = 1 / tiny, 1 / b
    h = d
    for i in range(1, 1000):
        an = -i * (i - a)
        b += 2
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1 / d
        delta = d * c
        h *= delta
        if abs(delta - 1) < 1e-15:
            break
    return min(1.0, math.exp(-z + a * math.log(z) - math.lgamma(a)) * h)


def bin_counts(edges: Sequence[float], values: Iterable[Any]) -> tuple[list[int], int]:
    """(counts per bin, values binned); NaN, None and non-numbers are skipped."""
    counts = [0] * (len(edges) + 1)
    n = 0
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int | float) or v != v:
            continue
        counts[bisect_right(edges, v)] += 1
        n += 1
    return counts, n


def category_counts(categories: Sequence[str], values: Iterable[Any]) -> tuple[list[int], int]:
    """(counts per reference category, plus one last count for categories the reference never saw); missing
    values ("" or None) are skipped."""
    index = {c: i for i, c in enumerate(categories)}
    counts = [0] * (len(categories) + 1)
    n = 0
    for v in values:
        if v is None or v == "":
            continue
        counts[index.get(str(v), len(categories))] += 1
        n += 1
    return counts, n


def score(feature: Mapping[str, Any], values: Sequence[Any]) -> FeatureDrift:
    """One reference feature (model.json's reference.features[i] or outputs[i]) against captured values."""
    name = str(feature["name"])
    if feature.get("kind") == "categorical":
        cats = dict(feature.get("categories") or {})
        names = sorted(cats)
        cur, n = category_counts(names, values)
        ref = [float(cats[c]) for c in names] + [0.0]
        stat, p = chi2(ref, cur)
        return FeatureDrift(name, "categorical", n, psi(ref, cur), js_distance(ref, cur), stat, p)
    edges = [float(e) for e in feature.get("edges") or ()]
    cur, n = bin_counts(edges, values)
    ref = [float(c) for c in feature.get("counts") or [0] * (len(edges) + 1)]
    return FeatureDrift(name, "numeric", n, psi(ref, cur), js_distance(ref, cur))


def report(reference: Mapping[str, Any], columns: Mapping[str, Sequence[Any]]) -> list[FeatureDrift]:
    """Every reference feature and output with captured values, inputs first, in the reference's order."""
    out = []
    for feature in [*(reference.get("features") or ()), *(reference.get("outputs") or ())]:
        values = columns.get(str(feature["name"]))
        if values is not None:
            out.append(score(feature, values))
    return out


# --- capture ----------------------------------------------------------------------------------------


def sampled(rate: float, draw: Any) -> bool:
    """Whether this request is captured: one draw in [0, 1) against the rate (0 never, 1 always)."""
    return rate > 0 and (rate >= 1 or draw() < rate)


def capture_line(model: str, request_id: str, columns: Mapping[str, Sequence[Any]], ts: int) -> str:
    """The capture log line: {"mlpack_capture": 1, "model", "request_id", "ts", "columns": {name: [values]}}
    (inputs by feature name and outputs by their reference name; excluded columns already left out)."""
    cols = {k: [None if isinstance(v, float) and not math.isfinite(v) else v for v in vs]
            for k, vs in columns.items()}
    return json.dumps({CAPTURE_KEY: 1, "model": model, "request_id": request_id, "ts": ts, "columns": cols},
                      separators=(",", ":"))


def read_capture(lines: Iterable[str], model: str | None = None) -> tuple[dict[str, list[Any]],
                                                                         dict[str, dict[str, Any]]]:
    """Captured columns from log lines (other lines skipped), and per request id its columns (for the feedback
    join). model: keep only that model's lines."""
    columns: dict[str, list[Any]] = {}
    by_request: dict[str, dict[str, Any]] = {}
    for line in lines:
        start = line.find("{")
        if start < 0 or CAPTURE_KEY not in line:
            continue
        try:
            doc = json.loads(line[start:])
        except ValueError:
            continue
        if not isinstance(doc, dict) or CAPTURE_KEY not in doc or (model and doc.get("model") != model):
            continue
        cols = doc.get("columns")
        if not isinstance(cols, dict):
            continue
        for k, vs in cols.items():
            if isinstance(vs, list):
                columns.setdefault(k, []).extend(vs)
        by_request[str(doc.get("request_id"))] = cols
    return columns, by_request


# --- ground truth -----------------------------------------------------------------------------------


def feedback_line(model: str, request_id: str, truth: Sequence[Any], ts: int) -> str:
    """The log line a /feedback call writes: the true labels (or values) of a request's rows, in row order."""
    return json.dumps({FEEDBACK_KEY: 1, "model": model, "request_id": request_id, "ts": ts, "truth": list(truth)},
                      separators=(",", ":"))


def read_feedback(lines: Iterable[str], model: str | None = None) -> dict[str, list[Any]]:
    """Per request id the truth its feedback line gave (the last one wins)."""
    out: dict[str, list[Any]] = {}
    for line in lines:
        start = line.find("{")
        if start < 0 or FEEDBACK_KEY not in line:
            continue
        try:
            doc = json.loads(line[start:])
        except ValueError:
            continue
        if isinstance(doc, dict) and FEEDBACK_KEY in doc and isinstance(doc.get("truth"), list) and (
                not model or doc.get("model") == model):
            out[str(doc.get("request_id"))] = doc["truth"]
    return out


def realised(by_request: Mapping[str, Mapping[str, Sequence[Any]]], truth: Mapping[str, Sequence[Any]],
             output: str) -> tuple[int, float | None, float | None]:
    """Captured predictions joined with ground truth by request id, row by row: (rows joined, accuracy, mean
    absolute error). output: the captured column the truth is compared with ("prediction" for a classifier's
    label: accuracy; a regressor's output column: MAE). A request whose row counts differ is left out."""
    n, hits, err = 0, 0, 0.0
    numeric = True
    for rid, true in truth.items():
        got = (by_request.get(rid) or {}).get(output)
        if got is None or len(got) != len(true):
            continue
        for p, t in zip(got, true, strict=True):
            n += 1
            hits += str(p) == str(t)
            if numeric and isinstance(p, int | float) and isinstance(t, int | float) and not isinstance(t, bool):
                err += abs(float(p) - float(t))
            else:
                numeric = False
    if n == 0:
        return 0, None, None
    return n, hits / n, (err / n if numeric else None)
