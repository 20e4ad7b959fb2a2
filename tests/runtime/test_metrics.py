"""mlops_runtime.metrics and .resampling: metrics of both tasks equal scikit-learn's (null where undefined),
bootstrap resample metrics equal scikit-learn's, intervals are seeded and calibrated, the paired tests."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, precision_recall_fscore_support

from mlops_runtime import comparison, metrics, resampling
from mlops_runtime.errors import BadInputError
from mlops_runtime.resampling import _resample_metric, bootstrap_interval


def sklearn_metric(true: np.ndarray, pred: np.ndarray, metric: str) -> float:
    if metric == "accuracy":
        return accuracy_score(true, pred)
    precision, recall, f1, _ = precision_recall_fscore_support(true, pred, average="macro", zero_division=0)
    return {"precision_macro": precision, "recall_macro": recall, "f1_macro": f1}[metric]


@pytest.mark.parametrize("metric", resampling.CLASS_METRICS)
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
    monkeypatch.setattr(resampling, "_BOOTSTRAP_BLOCK_CELLS", 150 * 7)  # blocks of 7 resamples, same stream
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


def test_every_scalar_metric_has_a_direction_and_a_range():
    assert set(metrics.METRIC_DIRECTIONS) == set(metrics.SCALAR_METRICS) == set(metrics.METRIC_RANGES)
    assert {m for m, d in metrics.METRIC_DIRECTIONS.items() if d == "lower"} == {"rmse", "mae", "mape", "log_loss",
                                                                                "brier"}
    assert all(metrics.DEFAULT_METRIC[task] in names for task, names in metrics.TASK_METRICS.items())


def probabilities(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    raw = rng.random((n, k)) + 0.05
    return raw / raw.sum(axis=1, keepdims=True)


def test_probability_metrics_equal_sklearn():
    from sklearn import metrics as sk

    rng = np.random.default_rng(5)
    y = rng.integers(0, 3, 200)
    proba = probabilities(rng, 200, 3)
    found = metrics.probability_metrics(y, proba, [0, 1, 2])
    assert found == {"roc_auc": sk.roc_auc_score(y, proba, multi_class="ovr", average="macro"),
                     "pr_auc": sk.average_precision_score(np.eye(3)[y], proba, average="macro"),
                     "log_loss": sk.log_loss(y, proba), "brier": sk.brier_score_loss(y, proba)}
    # the multiclass Brier score is the mean over rows of the squared distance to the one-hot label
    assert found["brier"] == pytest.approx(np.mean(np.sum((np.eye(3)[y] - proba) ** 2, axis=1)))
    names = np.array(["no", "yes"])
    y2 = names[rng.integers(0, 2, 100)]
    p2 = probabilities(rng, 100, 2)
    binary = metrics.probability_metrics(y2, p2, ["no", "yes"])
    assert binary["roc_auc"] == sk.roc_auc_score(y2 == "yes", p2[:, 1])
    assert binary["brier"] == sk.brier_score_loss(y2 == "yes", p2[:, 1]) == pytest.approx(
        np.mean((p2[:, 1] - (y2 == "yes")) ** 2))


def test_metrics_undefined_on_the_rows_are_none():
    rng = np.random.default_rng(6)
    one_class = metrics.probability_metrics(np.zeros(20, dtype=int), probabilities(rng, 20, 2), [0, 1])
    assert one_class["roc_auc"] is None and one_class["pr_auc"] is None and one_class["log_loss"] > 0
    missing_class = metrics.probability_metrics(rng.integers(0, 2, 30), probabilities(rng, 30, 3), [0, 1, 2])
    assert missing_class["roc_auc"] is None and missing_class["brier"] is not None
    assert metrics.probability_metrics(np.zeros(3), None, [0, 1]) == dict.fromkeys(
        ("roc_auc", "pr_auc", "log_loss", "brier"))
    zero = metrics.regression_metrics(np.array([0.0, 1.0, 2.0]), np.array([0.5, 1.0, 2.5]))
    assert zero["mape"] is None and zero["rmse"] == pytest.approx(np.sqrt(0.5 / 3))
    assert metrics.regression_metrics(np.array([3.0]), np.array([2.0]))["r2"] is None


def test_regression_metrics_equal_sklearn():
    from sklearn import metrics as sk

    rng = np.random.default_rng(7)
    y, p = rng.normal(10, 2, 100), rng.normal(10, 2, 100)
    assert metrics.regression_metrics(y, p) == {
        "rmse": sk.root_mean_squared_error(y, p), "mae": sk.mean_absolute_error(y, p), "r2": sk.r2_score(y, p),
        "mape": sk.mean_absolute_percentage_error(y, p)}


@pytest.mark.parametrize("document, message", [
    ([], "not a JSON object"),
    ({"task": "ranking"}, "unknown task"),
    ({"accuracy": 1.2}, "accuracy 1.2 is not a number between 0 and 1"),
    ({"accuracy": True}, "accuracy True is not a number"),
    ({"task": "regression", "rmse": float("nan")}, "rmse nan is not a number"),
    ({"task": "regression", "accuracy": 0.5}, "accuracy is not a regression metric"),
    ({"brier": 2.5}, "brier 2.5 is not a number between 0 and 2"),
    ({"n_samples": -3}, "n_samples -3 is not a positive integer"),
])
def test_a_bad_metrics_document_is_refused(document, message):
    with pytest.raises(BadInputError, match=message):
        metrics.check_metrics_document(document, uri="m.json", label="--metrics-uri")
    ok = {"task": "regression", "rmse": 1e6, "r2": -40.0, "mape": None, "n_samples": 5}
    assert metrics.check_metrics_document(ok, uri="m.json", label="--metrics-uri") is ok


def test_mcnemar_is_the_exact_binomial_tail():
    from math import comb

    true = np.zeros(100, dtype=int)
    challenger = np.r_[np.zeros(90), np.ones(10)].astype(int)  # wrong on the last 10
    champion = np.r_[np.ones(12), np.zeros(85), np.ones(3)].astype(int)  # wrong on the first 12 and 3 of the last
    test = resampling.mcnemar_test(true, challenger, champion)
    b, c = 12, 7  # challenger alone right on 12 rows, champion alone right on 7
    assert test["discordant"] == {"challenger_only_right": b, "champion_only_right": c}
    assert test["p_value"] == pytest.approx(sum(comb(b + c, k) for k in range(b, b + c + 1)) / 2 ** (b + c))
    assert resampling.mcnemar_test(true, challenger, challenger)["p_value"] == 1.0


def test_paired_bootstrap_tells_a_real_improvement_from_none():
    rng = np.random.default_rng(8)
    y = rng.normal(size=300)
    good, bad = y + rng.normal(scale=0.5, size=300), y + rng.normal(scale=1.0, size=300)
    scorer = resampling.resample_scorer
    clear = resampling.paired_bootstrap_test(scorer(y, good, "rmse"), scorer(y, bad, "rmse"), 300, sign=-1.0,
                                             n_resamples=400, confidence=0.95, seed=1)
    assert clear["p_value"] == 1 / 401 and clear["interval"]["lower"] > 0
    same = resampling.paired_bootstrap_test(scorer(y, good, "rmse"), scorer(y, good, "rmse"), 300, sign=-1.0,
                                            n_resamples=400, confidence=0.95, seed=1)
    assert same["p_value"] == 1.0 and same["interval"] == {"lower": 0.0, "upper": 0.0, "confidence": 0.95}


@pytest.mark.parametrize("metric", ["log_loss", "brier", "roc_auc"])
@pytest.mark.parametrize("k", [2, 3])
def test_per_resample_probability_metrics_equal_sklearn(metric, k):
    rng = np.random.default_rng(9)
    y = rng.integers(0, k, 60)
    proba = probabilities(rng, 60, k)
    rows = rng.integers(0, 60, size=(5, 60))
    ours = comparison._scorer(metric, y, proba.argmax(axis=1), proba, list(range(k)))(rows)
    theirs = [metrics.probability_metrics(y[r], proba[r], list(range(k)))[metric] for r in rows]
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-12)
