"""mlops_runtime.metrics: bootstrap resample metrics equal scikit-learn's, intervals are seeded and calibrated."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, precision_recall_fscore_support

from mlops_runtime import metrics
from mlops_runtime.metrics import _resample_metric, bootstrap_interval


def sklearn_metric(true: np.ndarray, pred: np.ndarray, metric: str) -> float:
    if metric == "accuracy":
        return accuracy_score(true, pred)
    precision, recall, f1, _ = precision_recall_fscore_support(true, pred, average="macro", zero_division=0)
    return {"precision_macro": precision, "recall_macro": recall, "f1_macro": f1}[metric]


@pytest.mark.parametrize("metric", metrics.SCALAR_METRICS)
def test_each_resample_metric_equals_sklearn(metric):
    rng = np.random.default_rng(0)
    # four classes, few rows per resample: classes go missing from labels, predictions or both
    true = rng.integers(0, 4, size=(100, 12))
    pred = np.where(rng.random((100, 12)) < 0.6, true, rng.integers(0, 4, size=(100, 12)))
    ours = _resample_metric(true, pred, 4, metric)
    theirs = [sklearn_metric(t, p, metric) for t, p in zip(true, pred, strict=True)]
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-12)


def test_interval_is_reproducible_and_seed_dependent():
    rng = np.random.default_rng(1)
    true = rng.integers(0, 3, 300)
    pred = np.where(rng.random(300) < 0.8, true, (true + 1) % 3)
    first = bootstrap_interval(true, pred, "f1_macro", n_resamples=500, seed=4)
    assert first == bootstrap_interval(true, pred, "f1_macro", n_resamples=500, seed=4)
    assert first != bootstrap_interval(true, pred, "f1_macro", n_resamples=500, seed=5)
    assert first[0] < sklearn_metric(true, pred, "f1_macro") < first[1]


def test_string_labels_and_blocks_give_the_same_interval(monkeypatch):
    rng = np.random.default_rng(2)
    true = rng.integers(0, 3, 150)
    pred = np.where(rng.random(150) < 0.7, true, (true + 2) % 3)
    names = np.array(["setosa", "versicolor", "virginica"])
    whole = bootstrap_interval(true, pred, "recall_macro", n_resamples=300, seed=9)
    assert bootstrap_interval(names[true], names[pred], "recall_macro", n_resamples=300, seed=9) == whole
    monkeypatch.setattr(metrics, "_BOOTSTRAP_BLOCK_CELLS", 150 * 7)  # blocks of 7 resamples, same stream
    assert bootstrap_interval(true, pred, "recall_macro", n_resamples=300, seed=9) == whole


def test_accuracy_interval_covers_the_true_accuracy_about_as_often_as_stated():
    rng = np.random.default_rng(3)
    covered = 0
    trials = 200
    for trial in range(trials):
        true = np.zeros(200, dtype=int)
        pred = (rng.random(200) > 0.8).astype(int)  # correct with probability 0.8
        low, high = bootstrap_interval(true, pred, "accuracy", n_resamples=1000, seed=trial)
        covered += low <= 0.8 <= high
    assert 0.90 <= covered / trials <= 0.99, covered / trials


def test_interval_narrows_with_more_rows():
    rng = np.random.default_rng(4)

    def width(n: int) -> float:
        true = np.zeros(n, dtype=int)
        pred = (rng.random(n) > 0.9).astype(int)
        low, high = bootstrap_interval(true, pred, "accuracy", n_resamples=1000, seed=0)
        return high - low

    assert width(2000) < width(200) / 2


def test_bad_arguments():
    with pytest.raises(ValueError):
        bootstrap_interval([0, 1], [0, 1], "roc_auc")
    with pytest.raises(ValueError):
        bootstrap_interval([0, 1], [0, 1], "accuracy", confidence=1.0)
    with pytest.raises(ValueError):
        bootstrap_interval([], [], "accuracy")
