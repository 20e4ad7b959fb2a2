"""Label-free performance estimation for classifiers: confidence-based, on calibrated probabilities (CBPE).

The idea is NannyML's CBPE: if a model's probabilities are calibrated, the probability it gives its own
prediction is the chance that prediction is right, so the expected confusion matrix of an unlabeled
batch follows from its probabilities alone. Raw probabilities are rarely calibrated (a random forest's
are not), so a calibration is fitted first on labeled data the model never trained on (the test split):
one isotonic regression per class, one-vs-rest (scikit-learn's ``IsotonicRegression``), renormalised
to sum to 1 per row. It keeps working under covariate shift (P(x) changes, P(y | x) does not); it
cannot see concept drift, which only labels show.

Estimates, with c the calibrated probabilities and the model's predicted class per row:

* accuracy: the mean of c[i, predicted_i];
* per class k, expected TP_k = sum of c[i, k] over rows predicted k, FP_k = sum of (1 - c[i, k]) there,
  FN_k = sum of c[i, k] over rows predicted otherwise; precision, recall and F1 (macro averages) are
  computed from these expected counts, as NannyML does.

The interval: labels are drawn from the calibrated probabilities ``SIMULATIONS`` times and the metric
computed on each draw; its 2.5 and 97.5 percentiles bound the realised metric the batch would show if
the calibration holds (the sampling error of a batch of that size).
"""
from __future__ import annotations

from typing import Any

import numpy as np

METRICS = ("accuracy", "precision_macro", "recall_macro", "f1_macro")
SIMULATIONS = 500
SIMULATION_CELLS = 4_000_000  # random draws held at once while simulating
CALIBRATION_FORMAT = "mlops-components/cbpe-calibration"


def fit_calibration(probabilities: np.ndarray, labels: np.ndarray, classes: list[Any]) -> dict[str, Any]:
    """Per-class isotonic calibration maps (JSON-ready) fitted on labeled held-out predictions."""
    from sklearn.isotonic import IsotonicRegression

    probabilities = np.asarray(probabilities, dtype=np.float64)
    if probabilities.ndim != 2 or probabilities.shape[1] != len(classes) or len(classes) < 2:
        raise ValueError("probabilities must have one column per class (at least two)")
    labels = np.asarray(labels)
    maps = []
    for index, klass in enumerate(classes):
        isotonic = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
        isotonic.fit(probabilities[:, index], (labels == klass).astype(np.float64))
        maps.append({"x": isotonic.X_thresholds_.tolist(), "y": isotonic.y_thresholds_.tolist()})
    return {"format": CALIBRATION_FORMAT, "classes": [str(c) for c in classes], "n_rows": int(labels.size),
            "maps": maps}


def calibrate(probabilities: np.ndarray, calibration: dict[str, Any]) -> np.ndarray:
    probabilities = np.asarray(probabilities, dtype=np.float64)
    columns = [np.interp(probabilities[:, i], m["x"], m["y"]) for i, m in enumerate(calibration["maps"])]
    calibrated = np.column_stack(columns)
    totals = calibrated.sum(axis=1, keepdims=True)
    uniform = np.full_like(calibrated, 1.0 / calibrated.shape[1])
    return np.where(totals > 0, calibrated / np.where(totals > 0, totals, 1.0), uniform)


def _metrics_from_counts(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray, n: int) -> dict[str, np.ndarray]:
    """Metrics from per-class counts (last axis: classes); any leading axes are kept (simulations)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(tp + fp > 0, tp / (tp + fp), 0.0)
        recall = np.where(tp + fn > 0, tp / (tp + fn), 0.0)
        f1 = np.where(2 * tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), 0.0)
    return {"accuracy": tp.sum(axis=-1) / n, "precision_macro": precision.mean(axis=-1),
            "recall_macro": recall.mean(axis=-1), "f1_macro": f1.mean(axis=-1)}


def realised_metrics(predicted: np.ndarray, labels: np.ndarray, n_classes: int) -> dict[str, float]:
    """The same metrics from true labels (class indices), for comparison."""
    onehot_pred, onehot_true = np.eye(n_classes)[predicted], np.eye(n_classes)[labels]
    tp = (onehot_pred * onehot_true).sum(axis=0)
    fp = (onehot_pred * (1 - onehot_true)).sum(axis=0)
    fn = ((1 - onehot_pred) * onehot_true).sum(axis=0)
    return {k: float(v) for k, v in _metrics_from_counts(tp, fp, fn, predicted.size).items()}


def _simulated_counts(calibrated: np.ndarray, predicted: np.ndarray,
                      rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per simulation, TP, FP and FN per class with labels drawn from the calibrated probabilities; in
    chunks of simulations so memory stays near SIMULATION_CELLS values whatever the batch size."""
    n, k = calibrated.shape
    cumulative = np.cumsum(calibrated, axis=1)
    chunk = max(1, SIMULATION_CELLS // (n * k))
    tp, fp, fn = (np.zeros((SIMULATIONS, k)) for _ in range(3))
    for start in range(0, SIMULATIONS, chunk):
        stop = min(start + chunk, SIMULATIONS)
        draws = (rng.random((stop - start, n, 1)) > cumulative[None, :, :]).sum(axis=2).clip(max=k - 1)
        hit = draws == predicted[None, :]
        for c in range(k):
            predicted_c = predicted == c
            tp[start:stop, c] = (hit & predicted_c).sum(axis=1)
            fp[start:stop, c] = (~hit & predicted_c).sum(axis=1)
            fn[start:stop, c] = ((draws == c) & ~predicted_c).sum(axis=1)
    return tp, fp, fn


def estimate(probabilities: np.ndarray, calibration: dict[str, Any], *, seed: int = 0) -> dict[str, Any]:
    """Estimated metrics of an unlabeled batch, each with its 95 % interval.

    ``probabilities`` are the model's raw ``predict_proba`` in ``calibration["classes"]`` order; the
    predicted class is their argmax (what the model predicts).
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    n, k = probabilities.shape
    if n == 0:
        raise ValueError("no rows to estimate on")
    predicted = probabilities.argmax(axis=1)
    calibrated = calibrate(probabilities, calibration)
    onehot_pred = np.eye(k)[predicted]
    tp = (calibrated * onehot_pred).sum(axis=0)
    fp = ((1 - calibrated) * onehot_pred).sum(axis=0)
    fn = (calibrated * (1 - onehot_pred)).sum(axis=0)
    point = _metrics_from_counts(tp, fp, fn, n)
    simulated = _metrics_from_counts(*_simulated_counts(calibrated, predicted, np.random.default_rng(seed)), n)
    return {"method": "cbpe", "n_rows": n, "calibration_rows": calibration.get("n_rows"),
            "metrics": {name: {"estimate": float(point[name]),
                               "lower": float(np.percentile(simulated[name], 2.5)),
                               "upper": float(np.percentile(simulated[name], 97.5))} for name in METRICS},
            "predicted_class_shares": dict(zip(calibration["classes"], (np.bincount(predicted, minlength=k) / n)
                                               .round(6).tolist(), strict=True))}


def check_calibration(document: Any) -> dict[str, Any]:
    """A calibration read back from storage, validated (ValueError with one line)."""
    if not isinstance(document, dict) or document.get("format") != CALIBRATION_FORMAT:
        raise ValueError(f"not a calibration (format is not '{CALIBRATION_FORMAT}')")
    classes, maps = document.get("classes"), document.get("maps")
    if not isinstance(classes, list) or not isinstance(maps, list) or len(classes) != len(maps) or len(maps) < 2:
        raise ValueError("classes and maps must be lists of the same length (at least two)")
    for entry in maps:
        x, y = entry.get("x") if isinstance(entry, dict) else None, entry.get("y") if isinstance(entry, dict) else None
        if (not isinstance(x, list) or not isinstance(y, list) or len(x) != len(y) or not x
                or any(type(v) not in (int, float) for v in x + y) or any(not 0 <= v <= 1 for v in y)):
            raise ValueError("each map needs x and y lists of numbers of the same length, y in [0, 1]")
    return document
