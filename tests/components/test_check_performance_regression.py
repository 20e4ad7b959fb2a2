"""check_performance for a regressor: RMSE/MAE/R² against the baseline, the direction-aware verdict with its
bootstrap interval, the signature check of the batch, and the task's metric choice."""
from __future__ import annotations

import json

import numpy as np
import pytest
import task_fixtures
from sklearn import metrics as sk
from step_checks import assert_refused

from mlops_runtime import outputs, resampling, storage
from mlops_runtime.errors import ExitCode
from mlops_runtime.registry import ModelRegistry
from tests.support import load_step

MODEL = "regressor"


@pytest.fixture
def production(step, base):
    """A ridge regressor trained, evaluated by evaluate and registered in production; returns (model, metrics)."""
    data = task_fixtures.table("regression", 600, seed=1)
    train, test = data.iloc[:400], data.iloc[400:]
    model = task_fixtures.fit(train, "regression")
    model_uri = f"{base}/candidate/model.skops"
    task_fixtures.write(model, model_uri, train, "regression")
    test_uri = task_fixtures.put(f"{base}/test.parquet", test)
    assert step("evaluate", "--model-uri", model_uri, "--test-uri", test_uri, "--output-dir",
                f"{base}/eval").exit_code == 0
    metrics_bytes = storage.read_bytes(f"{base}/eval/metrics.json")
    metrics = json.loads(metrics_bytes)
    registry = ModelRegistry(f"{base}/registry", MODEL)
    version, _ = registry.register(model=storage.read_bytes(model_uri),
                                   card=storage.read_bytes(f"{base}/candidate/model_card.json"), metrics=metrics_bytes,
                                   entry={"metrics": {k: metrics[k] for k in ("rmse", "mae", "r2")}})
    assert registry.promote(version, reason="test", expected=registry.production())
    return model, metrics


def check(step, base: str, batch: str, *extra: str):
    return step("check_performance", "--batch-uri", batch, "--registry-uri", f"{base}/registry", "--model-name", MODEL,
                "--output-dir", f"{base}/out", *extra)


def document(base: str) -> dict:
    return json.loads(storage.read_bytes(f"{base}/out/performance.json"))


def test_a_healthy_batch_on_rmse(step, base, production, tmp_path):
    model, metrics = production
    batch = task_fixtures.table("regression", 200, seed=7)
    batch.loc[:4, task_fixtures.TARGET] = np.nan
    uri = task_fixtures.put(f"{base}/batch.parquet", batch)
    declared = (("metrics", "system.Metrics"), ("classification_metrics", "system.ClassificationMetrics"))
    executor_input = {"outputs": {"outputFile": str(tmp_path / "kfp" / "out.json"), "artifacts": {
        name: {"artifacts": [{"name": name, "type": {"schemaTitle": schema}, "uri": f"s3://r/{name}", "metadata": {}}]}
        for name, schema in declared}}}
    result = check(step, base, uri, "--metric", "rmse", "--tolerance", "1.0", "--executor-input",
                   json.dumps(executor_input), "--accuracy-output-path", tmp_path / "accuracy",
                   "--value-output-path", tmp_path / "value")
    assert result.exit_code == 0, result.stderr
    found = document(base)
    labeled = batch.dropna(subset=[task_fixtures.TARGET])
    predicted = model.predict(labeled[task_fixtures.FEATURES])
    rmse = sk.root_mean_squared_error(labeled[task_fixtures.TARGET], predicted)
    assert found["value"] == found["metrics"]["rmse"] == rmse
    assert found["metrics"]["r2"] == sk.r2_score(labeled[task_fixtures.TARGET], predicted)
    assert (found["task"], found["direction"], found["n_rows"], found["n_rows_skipped"]) == (
        "regression", "lower", 195, 5)
    assert found["baseline"] == metrics["rmse"] and found["drop"] == pytest.approx(rmse - metrics["rmse"])
    assert found["ci"]["lower"] < rmse < found["ci"]["upper"] and found["degraded"] is False
    assert (tmp_path / "accuracy").read_text() == "-1.0" and (tmp_path / "value").read_text() == repr(rmse)
    ui = json.loads((tmp_path / "kfp" / "out.json").read_text())["artifacts"]
    assert not ui["classification_metrics"]["artifacts"][0]["metadata"]  # listed (declared), nothing to show
    assert ui["metrics"]["artifacts"][0]["metadata"]["baseline_rmse"] == metrics["rmse"]
    report = storage.read_bytes(f"{base}/out/performance_report.html").decode()
    assert "lower end" in report and "Confusion matrix" not in report


def test_drift_degrades_rmse_mae_and_r2(step, base, production):
    drifted = task_fixtures.put(f"{base}/drifted.parquet",
                                task_fixtures.table("regression", 200, seed=8, coefficients=(-3.0, -2.0, 0.5)))
    for metric, tolerance in (("rmse", "2"), ("mae", "2"), ("auto", "0.1")):
        assert check(step, base, drifted, "--metric", metric, "--tolerance", tolerance).exit_code == 0
        found = document(base)
        assert found["degraded"] is True, found["reason"]
        assert found["metric"] == ("r2" if metric == "auto" else metric)
        if found["direction"] == "lower":
            assert found["ci"]["lower"] > found["baseline"] + float(tolerance) and "rose by" in found["reason"]
        else:
            assert found["ci"]["upper"] < found["baseline"] - float(tolerance) and "dropped by" in found["reason"]


@pytest.mark.parametrize(("value", "low", "high", "degraded"), [
    (5.0, 4.01, 6.0, True),    # rose 2 > 1 and lower end 4.01 > 3 + 1
    (5.0, 4.0, 6.0, False),    # the lower end touches baseline + tolerance: not beyond it
    (3.9, 3.5, 4.2, False),    # rose 0.9, within the tolerance
    (1.0, 0.5, 1.5, False),    # better than the baseline
])
def test_the_lower_is_better_rule(value, low, high, degraded):
    verdict = load_step("check_performance").verdict
    assert verdict(value, low, high, baseline=3.0, tolerance=1.0, direction="lower")[0] is degraded


def test_regression_intervals_equal_sklearn_on_each_resample():
    rng = np.random.default_rng(0)
    true, pred = rng.normal(size=40), rng.normal(size=40)
    rows = rng.integers(0, 40, size=(30, 40))
    for metric, reference in (("rmse", sk.root_mean_squared_error), ("mae", sk.mean_absolute_error),
                              ("r2", sk.r2_score)):
        ours = resampling.resample_scorer(true, pred, metric)(rows)
        np.testing.assert_allclose(ours, [reference(true[r], pred[r]) for r in rows], rtol=0, atol=1e-12)


def refused(step, base: str, batch: str, code: int, option: str, *extra: str) -> str:
    return assert_refused(check(step, base, batch, *extra), code, option, f"{base}/out")


def test_refusals(step, base, production):
    good = task_fixtures.table("regression", 50, seed=9)
    uri = task_fixtures.put(f"{base}/good.parquet", good)
    assert "accuracy is not a regression metric" in refused(step, base, uri, ExitCode.USAGE, "--metric", "--metric",
                                                            "accuracy")
    wrong = task_fixtures.put(f"{base}/wrong.csv", good.assign(x2="high"))
    assert "column 'x2' should hold numbers" in refused(step, base, wrong, ExitCode.BAD_INPUT, "--batch-uri")
    # A gap this model (no imputer) cannot fill is the batch's fault, said in one line: never a crash.
    gaps = task_fixtures.put(f"{base}/gaps.csv", good.assign(x2=np.nan))
    assert "the model cannot score these rows (ValueError: Input X contains NaN" in refused(
        step, base, gaps, ExitCode.BAD_INPUT, "--batch-uri")
    missing = task_fixtures.put(f"{base}/missing.parquet", good.drop(columns=["x1"]))
    assert "missing model input column(s): x1" in refused(step, base, missing, ExitCode.BAD_INPUT, "--batch-uri")
    tampered = f"{base}/registry/{MODEL}/1/metrics.json"
    storage.write_bytes(tampered, outputs.json_bytes({"rmse": -4.0}))
    assert "(rmse: -4.0 is outside [0, inf])" in refused(step, base, uri, ExitCode.BAD_INPUT, "--baseline-metrics-uri",
                                                  "--metric", "rmse", "--baseline-metrics-uri", tampered)
