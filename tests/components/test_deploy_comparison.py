"""deploy with --metric for either task (direction-aware thresholds) and the fair champion/challenger:
both models scored on the same newest labeled rows, a paired test, a minimum improvement."""
from __future__ import annotations

import json

import pytest
import task_fixtures
from step_checks import assert_refused

from mlops_runtime import storage
from mlops_runtime.errors import ExitCode

OLD = (3.0, -2.0, 0.5)  # how the target depended on the features when the champion was trained
NEW = (-3.0, -2.0, 0.5)  # after the drift: x1 now pulls the other way


def trained(step, base: str, name: str, task: str, *, coefficients=OLD, seed: int = 0, estimator: str = "linear",
            test_table=None) -> tuple[str, str, dict]:
    """A model trained on its own data, evaluated on its own split; (model_uri, metrics_uri, metrics)."""
    data = task_fixtures.table(task, 600, seed=seed, coefficients=coefficients)
    train, test = data.iloc[:400], data.iloc[400:] if test_table is None else test_table
    model_uri = f"{base}/{name}/model/model.skops"
    task_fixtures.write(task_fixtures.fit(train, task, estimator=estimator, seed=seed), model_uri, train, task)
    test_uri = task_fixtures.put(f"{base}/{name}/test.parquet", test)
    result = step("evaluate", "--model-uri", model_uri, "--test-uri", test_uri, "--output-dir", f"{base}/{name}/eval")
    assert result.exit_code == 0, result.stderr
    metrics_uri = f"{base}/{name}/eval/metrics.json"
    return model_uri, metrics_uri, json.loads(storage.read_bytes(metrics_uri))


def deploy(step, model: tuple, registry: str, *extra: str):
    return step("deploy", "--model-uri", model[0], "--metrics-uri", model[1], "--registry-uri", registry, *extra)


def outcome(result) -> dict:
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def pointer(registry: str) -> dict:
    return json.loads(storage.read_bytes(f"{registry}/classifier/production.json"))


def entry(registry: str, version: int) -> dict:
    return json.loads(storage.read_bytes(f"{registry}/classifier/{version}/entry.json"))


def test_a_regressor_is_gated_on_r2_by_default_and_on_rmse_as_a_maximum(step, tmp_path):
    base, registry = str(tmp_path), str(tmp_path / "registry")
    model = trained(step, base, "reg", "regression")
    metrics = model[2]
    assert metrics["rmse"] > 1 and 0.9 < metrics["r2"] < 1
    assert outcome(deploy(step, model, f"{registry}-a"))["reason"] == f"r2 {metrics['r2']:.3g} > threshold 0.9"
    rejected = outcome(deploy(step, model, f"{registry}-b", "--metric", "rmse", "--threshold", "1.5"))
    assert rejected["promoted"] is False and rejected["reason"] == (
        f"rmse {metrics['rmse']:.3g} ≥ threshold 1.5 (maximum)")
    assert storage.list_uris(f"{registry}-b") == []
    approved = outcome(deploy(step, model, f"{registry}-b", "--metric", "rmse", "--threshold", "25"))
    assert approved["promoted"] is True and approved["reason"] == f"rmse {metrics['rmse']:.3g} < threshold 25 (maximum)"
    recorded = entry(f"{registry}-b", 1)
    assert (recorded["metric"], recorded["direction"], recorded["threshold"], recorded["task"]) == (
        "rmse", "lower", 25.0, "regression")
    assert recorded["metrics"] == {k: metrics[k] for k in ("rmse", "mae", "r2", "mape", "n_samples")}


def test_recorded_lower_is_better_comparison(step, tmp_path):
    registry = str(tmp_path / "registry")
    worse = trained(step, str(tmp_path), "worse", "regression", seed=1, estimator="forest")
    better = trained(step, str(tmp_path), "better", "regression", seed=1)
    assert better[2]["mae"] < worse[2]["mae"]
    args = ("--metric", "mae", "--threshold", "100", "--compare-to-production")
    assert outcome(deploy(step, worse, registry, *args))["promoted"] is True
    assert outcome(deploy(step, better, registry, *args))["reason"].endswith(
        f"and < production {worse[2]['mae']:.3g} (version 1)")
    assert outcome(deploy(step, worse, registry, *args))["promoted"] is False


@pytest.mark.parametrize("args, option, code", [
    (("--metric", "rmse"), "--metric", ExitCode.USAGE),  # not a classifier's metric
    (("--metric", "log_loss"), "--threshold", ExitCode.USAGE),  # lower-is-better: no default maximum
    (("--threshold", "1.5"), "--threshold", ExitCode.USAGE),  # accuracy cannot exceed 1
    (("--metric", "brier", "--threshold", "2.5"), "--threshold", ExitCode.USAGE),
    (("--min-improvement", "2"), "--min-improvement", ExitCode.USAGE),
    (("--comparison-data-uri", "x.parquet"), "--comparison-data-uri", ExitCode.USAGE),  # needs --compare-to-...
    (("--alpha", "0.9"), "--alpha", ExitCode.USAGE),
])
def test_gate_options_that_do_not_fit_the_model(step, tmp_path, args, option, code):
    model = trained(step, str(tmp_path), "m", "classification")
    assert_refused(deploy(step, model, str(tmp_path / "registry"), *args), code, option, str(tmp_path / "registry"))


def test_a_metric_undefined_on_the_test_data_is_refused(step, tmp_path):
    data = task_fixtures.table("classification", 300, seed=5)
    model = trained(step, str(tmp_path), "m", "classification", test_table=data[data[task_fixtures.TARGET] == 1])
    assert model[2]["roc_auc"] is None
    line = assert_refused(deploy(step, model, str(tmp_path / "registry"), "--metric", "roc_auc"), ExitCode.BAD_INPUT,
                          "--metrics-uri", str(tmp_path / "registry"))
    assert "roc_auc is null" in line


def test_a_regressor_s_metrics_for_a_classifier_are_refused(step, tmp_path):
    classifier = trained(step, str(tmp_path), "c", "classification")
    regressor = trained(step, str(tmp_path), "r", "regression")
    line = assert_refused(deploy(step, (classifier[0], regressor[1]), str(tmp_path / "registry")), ExitCode.BAD_INPUT,
                          "--metrics-uri", str(tmp_path / "registry"))
    assert "not of" in line


def newest_holdout(base: str, task: str) -> str:
    """The newest labeled rows, after the drift: neither model trained on them."""
    return task_fixtures.put(f"{base}/newest/holdout.parquet",
                             task_fixtures.table(task, 300, seed=99, coefficients=NEW))


def test_a_degraded_champion_is_replaced_by_a_better_challenger(step, base):
    registry = f"{base}/registry"
    # As in issue 11: the champion's recorded score (1.0) comes from rows it had seen.
    seen = task_fixtures.table("classification", 600, seed=1, coefficients=OLD).iloc[:400]
    champion = trained(step, base, "champion", "classification", coefficients=OLD, seed=1, estimator="forest",
                       test_table=seen)
    challenger = trained(step, base, "challenger", "classification", coefficients=NEW, seed=2)
    assert outcome(deploy(step, champion, registry, "--threshold", "0.7"))["promoted"] is True
    # The weak comparison of recorded metrics from different test sets keeps the degraded champion.
    assert champion[2]["accuracy"] == 1.0 > challenger[2]["accuracy"]
    assert outcome(deploy(step, challenger, registry, "--threshold", "0.7", "--compare-to-production"))[
        "promoted"] is False

    holdout = newest_holdout(base, "classification")
    result = outcome(deploy(step, challenger, registry, "--threshold", "0.7", "--compare-to-production",
                            "--comparison-data-uri", holdout, "--min-improvement", "0.05"))
    assert result["promoted"] is True and result["registered_uri"] == f"{registry}/classifier/2"
    record = entry(registry, 2)["comparison"]
    assert record["data"] == {"uri": holdout, "sha256": storage.sha256_hex(storage.read_bytes(holdout))}
    assert record["metric"] == "accuracy" and record["champion_version"] == 1 and record["n_rows"] == 300
    assert record["challenger"] - record["champion"] == pytest.approx(record["improvement"]) and \
        record["improvement"] > 0.2
    assert record["challenger"] == record["scores"]["challenger"]["accuracy"]
    assert record["test"]["method"] == "exact one-sided McNemar test" and record["test"]["p_value"] < 1e-6
    discordant = record["test"]["discordant"]
    assert discordant["challenger_only_right"] - discordant["champion_only_right"] == round(300 * record["improvement"])
    reason = pointer(registry)["reason"]
    assert f"accuracy {record['challenger']:.4g} vs production {record['champion']:.4g} (version 1)" in reason
    assert "p = " in reason and pointer(registry)["version"] == 2


def test_a_challenger_no_better_on_the_same_rows_keeps_the_champion(step, tmp_path):
    base, registry = str(tmp_path), str(tmp_path / "registry")
    champion = trained(step, base, "champion", "classification", coefficients=NEW, seed=1)
    twin = trained(step, base, "twin", "classification", coefficients=NEW, seed=2)  # same model family, same data
    better = trained(step, base, "better", "classification", coefficients=NEW, seed=3)
    assert outcome(deploy(step, champion, registry, "--threshold", "0.7"))["promoted"] is True
    holdout = newest_holdout(base, "classification")
    before = storage.list_uris(registry)
    result = outcome(deploy(step, twin, registry, "--threshold", "0.7", "--compare-to-production",
                            "--comparison-data-uri", holdout))
    assert result["promoted"] is False and result["reason"].endswith("the champion stays")
    assert "McNemar" in result["reason"] and storage.list_uris(registry) == before
    # A real improvement smaller than --min-improvement is not enough either.
    champion_degraded = trained(step, base, "old", "classification", coefficients=OLD, seed=4)
    registry2 = str(tmp_path / "registry2")
    assert outcome(deploy(step, champion_degraded, registry2, "--threshold", "0.7"))["promoted"] is True
    refused = outcome(deploy(step, better, registry2, "--threshold", "0.7", "--compare-to-production",
                             "--comparison-data-uri", holdout, "--min-improvement", "0.9"))
    assert refused["promoted"] is False and "(minimum 0.9)" in refused["reason"]


def test_a_regression_champion_is_replaced_on_rmse_by_paired_bootstrap(step, tmp_path):
    base, registry = str(tmp_path), str(tmp_path / "registry")
    champion = trained(step, base, "champion", "regression", coefficients=OLD, seed=1)
    challenger = trained(step, base, "challenger", "regression", coefficients=NEW, seed=2)
    gate = ("--metric", "rmse", "--threshold", "30")
    assert outcome(deploy(step, champion, registry, *gate))["promoted"] is True
    holdout = newest_holdout(base, "regression")
    result = outcome(deploy(step, challenger, registry, *gate, "--compare-to-production", "--comparison-data-uri",
                            holdout, "--n-bootstrap", "500", "--random-state", "3"))
    assert result["promoted"] is True
    record = entry(registry, 2)["comparison"]
    assert record["direction"] == "lower" and record["champion"] - record["challenger"] == pytest.approx(
        record["improvement"]) and record["champion"] > 10 > record["challenger"]
    test = record["test"]
    assert test["method"] == "paired percentile bootstrap of the improvement" and test["n_resamples"] == 500
    assert test["p_value"] == pytest.approx(1 / 501) and 0 < test["interval"]["lower"] < record["improvement"]
    assert "improvement interval [" in pointer(registry)["reason"]


def test_comparison_data_that_does_not_fit_is_refused(step, tmp_path):
    base, registry = str(tmp_path), str(tmp_path / "registry")
    champion = trained(step, base, "champion", "classification", seed=1)
    challenger = trained(step, base, "challenger", "classification", coefficients=NEW, seed=2)
    assert outcome(deploy(step, champion, registry, "--threshold", "0.7"))["promoted"] is True
    before = storage.list_uris(registry)
    bad = task_fixtures.put(f"{base}/bad.csv", task_fixtures.table("classification", 50, seed=4).drop(columns=["x1"]))
    line = assert_refused(deploy(step, challenger, registry, "--threshold", "0.7", "--compare-to-production",
                                 "--comparison-data-uri", bad), ExitCode.BAD_INPUT, "--comparison-data-uri",
                          f"{base}/nowhere")
    assert "missing model input column(s): x1" in line and storage.list_uris(registry) == before
    assert_refused(deploy(step, challenger, registry, "--threshold", "0.7", "--compare-to-production",
                          "--comparison-data-uri", f"{base}/absent.parquet"), ExitCode.BAD_INPUT,
                   "--comparison-data-uri", f"{base}/nowhere")
    regressor = trained(step, base, "regressor", "regression", seed=3)
    line = assert_refused(deploy(step, regressor, registry, "--threshold", "0.5", "--compare-to-production",
                                 "--comparison-data-uri", newest_holdout(base, "regression")), ExitCode.MODEL,
                          "--registry-uri", f"{base}/nowhere")
    assert "not a regression model" in line and storage.list_uris(registry) == before


def test_a_lower_is_better_probability_metric_on_the_comparison_data(step, tmp_path):
    base, registry = str(tmp_path), str(tmp_path / "registry")
    champion = trained(step, base, "champion", "classification", coefficients=OLD, seed=1)
    challenger = trained(step, base, "challenger", "classification", coefficients=NEW, seed=2)
    gate = ("--metric", "brier", "--threshold", "0.3")
    assert outcome(deploy(step, champion, registry, *gate))["promoted"] is True
    result = outcome(deploy(step, challenger, registry, *gate, "--compare-to-production", "--comparison-data-uri",
                            newest_holdout(base, "classification"), "--n-bootstrap", "200"))
    assert result["promoted"] is True, result["reason"]
    record = entry(registry, 2)["comparison"]
    assert record["direction"] == "lower" and record["champion"] > record["challenger"]
    assert record["scores"]["champion"]["brier"] == record["champion"] and record["test"]["p_value"] == 1 / 201
