"""check_performance: metrics, the degradation rule, the append-only history, the report, and every refusal."""
from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from gate_fixtures import TARGET, fit_forest, iris, put_table, relabelled, write_model
from sklearn.metrics import accuracy_score, f1_score
from step_checks import assert_refused, run_process

from mlops_runtime import outputs, storage
from mlops_runtime.errors import ExitCode
from mlops_runtime.registry import ModelRegistry
from tests.support import load_step

MODEL = "iris"
SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture(scope="module")
def model():
    """A full-depth forest on all of iris: it predicts every iris row right, so relabelled() sets accuracy."""
    return fit_forest(iris(), random_state=0)


def register(base: str, model, *, accuracy: float, f1: float = 0.9, promote: bool = True, tag: str = "a") -> int:
    """Put ``model`` in the registry at ``<base>/registry`` with the given baseline metrics."""
    candidate = f"{base}/candidate-{tag}/model.skops"
    card = write_model(model, candidate, train_uri=f"{base}/train.parquet", train=iris())
    metrics = {"accuracy": accuracy, "f1_macro": f1, "model_sha256": card["model_sha256"]}
    registry = ModelRegistry(f"{base}/registry", MODEL)
    version, _ = registry.register(model=storage.read_bytes(candidate),
                                   card=storage.read_bytes(f"{base}/candidate-{tag}/model_card.json"),
                                   metrics=outputs.json_bytes(metrics),
                                   entry={"metrics": {"accuracy": accuracy, "f1_macro": f1}})
    if promote:
        assert registry.promote(version, reason="test", expected=registry.production())
    return version


def batch(base: str, model, *, rows: int, errors: int, name: str = "b", seed: int = 1) -> str:
    """A labeled batch of ``rows`` iris rows on which ``model`` makes exactly ``errors`` mistakes."""
    table = iris().sample(rows, replace=rows > 150, random_state=seed).reset_index(drop=True)
    return put_table(f"{base}/batches/{name}/batch.parquet", relabelled(model, table, errors))


def check(step, base: str, batch_uri: str, out: str, *extra: str):
    return step("check_performance", "--batch-uri", batch_uri, "--registry-uri", f"{base}/registry",
                "--model-name", MODEL, "--output-dir", out, *extra)


def history(base: str) -> list[str]:
    return storage.list_uris(f"{base}/registry/{MODEL}/performance")


def executor_input(tmp_path) -> dict:
    def artifact(name: str, schema: str) -> dict:
        return {"artifacts": [{"name": name, "type": {"schemaTitle": schema, "schemaVersion": "0.0.1"},
                               "uri": f"s3://pipeline-root/check/{name}", "metadata": {}}]}

    return {"inputs": {"parameterValues": {}},
            "outputs": {"parameters": {}, "outputFile": str(tmp_path / "kfp" / "executor_output.json"),
                        "artifacts": {"metrics": artifact("metrics", "system.Metrics"),
                                      "classification_metrics": artifact("classification_metrics",
                                                                         "system.ClassificationMetrics")}}}


def embedded_chart(report: bytes) -> ET.Element:
    """The report's inline SVG history chart, parsed (so it is well-formed XML)."""
    match = re.search(rb"<svg .*?</svg>", report, flags=re.DOTALL)
    assert match, "no inline SVG chart in the report"
    return ET.fromstring(match.group())


def test_healthy_batch(step, base, model, tmp_path):
    register(base, model, accuracy=0.95)
    batch_uri = batch(base, model, rows=120, errors=3)
    out = f"{base}/out"
    kfp = tmp_path / "kfp"
    result = check(step, base, batch_uri, out, "--executor-input", json.dumps(executor_input(tmp_path)),
                   *[arg for name in ("degraded", "accuracy", "report_uri", "checked_batch_uri", "training_data_uri")
                     for arg in (f"--{name.replace('_', '-')}-output-path", kfp / name)],
                   "--report-output-path", kfp / "report.html")
    assert result.exit_code == 0, result.stderr
    expected = {"accuracy": 0.975, "value": 0.975, "checked_batch_uri": batch_uri, "degraded": False,
                "report_uri": f"{out}/performance_report.html", "training_data_uri": f"{base}/train.parquet",
                "reference_profile_uri": ""}  # this fixture model has no reference profile beside it
    assert result.stdout.splitlines() == [json.dumps(expected, sort_keys=True)]
    assert (kfp / "degraded").read_text() == "false" and (kfp / "accuracy").read_text() == "0.975"
    assert (kfp / "report_uri").read_text() == expected["report_uri"]
    assert (kfp / "checked_batch_uri").read_text() == batch_uri
    assert (kfp / "training_data_uri").read_text() == f"{base}/train.parquet"
    assert storage.list_uris(out) == [f"{out}/_manifest.json", f"{out}/performance.json",
                                      f"{out}/performance_report.html"]

    document = json.loads(storage.read_bytes(f"{out}/performance.json"))
    truth = relabelled(model, iris().sample(120, random_state=1).reset_index(drop=True), 3)
    predicted = model.predict(truth.drop(columns=[TARGET]))
    assert document["value"] == document["metrics"]["accuracy"] == accuracy_score(truth[TARGET], predicted)
    assert document["metrics"]["f1_macro"] == pytest.approx(f1_score(truth[TARGET], predicted, average="macro"))
    assert document["model_version"] == 1 and document["n_rows"] == 120 and document["n_rows_skipped"] == 0
    assert document["baseline"] == 0.95 and document["baseline_source"] == "registry entry of version 1"
    assert document["ci"]["lower"] <= 0.975 <= document["ci"]["upper"] and document["ci"]["n_resamples"] == 1000
    assert document["degraded"] is False and document["drop"] == pytest.approx(-0.025)
    assert document["batch"]["sha256"] == storage.sha256_hex(storage.read_bytes(batch_uri))

    [record_uri] = history(base)
    assert document["history_record_uri"] == record_uri
    manifest = outputs.verify_published(out)
    assert [o["uri"] for o in manifest["objects"]] == [record_uri, f"{out}/performance.json",
                                                       f"{out}/performance_report.html"]
    record = json.loads(storage.read_bytes(record_uri))
    assert record == {k: v for k, v in document.items() if k != "history_record_uri"}

    report = storage.read_bytes(f"{out}/performance_report.html")
    assert (kfp / "report.html").read_bytes() == report
    assert b"OK: within tolerance" in report
    assert len(embedded_chart(report).findall(f".//{SVG}circle")) == 1  # one point per check so far

    ui = json.loads((kfp / "executor_output.json").read_text())["artifacts"]
    shown = ui["metrics"]["artifacts"][0]["metadata"]
    assert shown["accuracy"] == 0.975 and shown["baseline_accuracy"] == 0.95 and shown["degraded"] == 0.0
    assert shown["accuracy_ci_lower"] == document["ci"]["lower"]
    matrix = ui["classification_metrics"]["artifacts"][0]["metadata"]["confusionMatrix"]
    assert [row["row"] for row in matrix["rows"]] == document["metrics"]["confusion_matrix"]["matrix"]


def test_significant_drop_is_degraded(step, base, model, tmp_path):
    register(base, model, accuracy=0.95)
    out = f"{base}/out"
    result = check(step, base, batch(base, model, rows=150, errors=45), out,
                   "--degraded-output-path", tmp_path / "degraded")
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "degraded").read_text() == "true"
    document = json.loads(storage.read_bytes(f"{out}/performance.json"))
    assert document["value"] == 0.7 and document["degraded"] is True
    assert document["ci"]["upper"] < 0.9 and "upper end" in document["reason"]
    assert b"DEGRADED" in storage.read_bytes(f"{out}/performance_report.html")


def test_large_drop_on_a_tiny_batch_is_not_significant(step, base, model):
    register(base, model, accuracy=0.95)
    out = f"{base}/out"
    assert check(step, base, batch(base, model, rows=8, errors=2), out).exit_code == 0
    document = json.loads(storage.read_bytes(f"{out}/performance.json"))
    assert document["value"] == 0.75 and document["drop"] > document["tolerance"]
    assert document["ci"]["upper"] >= 0.9 and document["degraded"] is False
    assert "not significant" in document["reason"]


@pytest.mark.parametrize(("value", "low", "high", "degraded"), [
    (0.80, 0.75, 0.849, True),    # drop 0.15 > 0.05 and upper 0.849 < 0.85
    (0.80, 0.75, 0.850, False),   # upper end touches baseline - tolerance: not below it
    (0.86, 0.80, 0.840, False),   # drop 0.04 within the tolerance, whatever the interval says
    (0.95, 0.90, 1.000, False),
])
def test_the_rule(value, low, high, degraded):
    assert load_step("check_performance").verdict(value, low, high, baseline=0.9, tolerance=0.05)[0] is degraded


def test_history_grows_one_object_per_check_across_versions(step, base, model):
    register(base, model, accuracy=0.95)
    for index, errors in enumerate((0, 30)):
        assert check(step, base, batch(base, model, rows=100, errors=errors, name=f"b{index}"),
                     f"{base}/out{index}").exit_code == 0
    second = fit_forest(iris(), random_state=1)
    assert register(base, second, accuracy=0.97, tag="b") == 2
    assert check(step, base, batch(base, second, rows=100, errors=1, name="b2"), f"{base}/out2").exit_code == 0
    records = [json.loads(storage.read_bytes(uri)) for uri in history(base)]
    assert [(r["model_version"], r["value"], r["degraded"]) for r in records] == [
        (1, 1.0, False), (1, 0.7, True), (2, 0.99, False)]
    assert [r["report_uri"] for r in records] == [f"{base}/out{i}/performance_report.html" for i in range(3)]
    report = storage.read_bytes(f"{base}/out2/performance_report.html").decode()
    assert report.count("<td>degraded</td>") == 1 and report.count("<td>ok</td>") == 2
    points = embedded_chart(report.encode()).findall(f".//{SVG}circle")
    assert [point.get("fill") for point in points] == ["#1f5fa8", "#c0392b", "#1f5fa8"]  # oldest first; red: degraded


@pytest.mark.slow
def test_concurrent_checks_never_overwrite_each_other(s3_prefix, model):
    """Three processes check at once against S3 (where concurrent writers are the norm)."""
    base = s3_prefix
    register(base, model, accuracy=0.95)
    batch_uri = batch(base, model, rows=60, errors=5)
    with ThreadPoolExecutor(max_workers=3) as pool:
        done = list(pool.map(lambda i: run_process(
            "check_performance", "--batch-uri", batch_uri, "--registry-uri", f"{base}/registry", "--model-name",
            MODEL, "--n-bootstrap", "200", "--output-dir", f"{base}/out{i}"), range(3)))
    assert [d.returncode for d in done] == [0, 0, 0], [d.stderr for d in done]
    records = [json.loads(storage.read_bytes(uri)) for uri in history(base)]
    assert sorted(r["report_uri"] for r in records) == [f"{base}/out{i}/performance_report.html" for i in range(3)]


def test_model_uri_with_explicit_baseline_and_history(step, base, model):
    model_uri = f"{base}/model/model.skops"
    card = write_model(model, model_uri, train_uri=f"{base}/train.parquet", train=iris())
    metrics_uri = f"{base}/evaluate/metrics.json"
    storage.write_bytes(metrics_uri, outputs.json_bytes({"accuracy": 0.9, "model_sha256": card["model_sha256"]}))
    batch_uri = batch(base, model, rows=50, errors=0)
    out = f"{base}/out"
    result = step("check_performance", "--batch-uri", batch_uri, "--model-uri", model_uri, "--baseline-metrics-uri",
                  metrics_uri, "--registry-uri", "", "--output-dir", out)
    assert result.exit_code == 0, result.stderr
    document = json.loads(storage.read_bytes(f"{out}/performance.json"))
    assert document["baseline"] == 0.9 and document["baseline_source"] == metrics_uri
    assert document["model_version"] is None and document["history_record_uri"] is None
    assert storage.list_uris(base) == sorted([model_uri, f"{base}/model/model_card.json", metrics_uri, batch_uri,
                                              f"{out}/_manifest.json", f"{out}/performance.json",
                                              f"{out}/performance_report.html"])
    assert step("check_performance", "--batch-uri", batch_uri, "--model-uri", model_uri, "--baseline-metrics-uri",
                metrics_uri, "--history-uri", f"{base}/history", "--output-dir", f"{base}/out2").exit_code == 0
    assert len(storage.list_uris(f"{base}/history")) == 1


def test_registry_version_by_number_and_metrics_json_beside_the_model(step, base, model):
    register(base, model, accuracy=0.95)
    register(base, fit_forest(iris(), random_state=2), accuracy=0.99, tag="b")
    batch_uri = batch(base, model, rows=40, errors=0)
    assert check(step, base, batch_uri, f"{base}/out", "--model-ref", "1").exit_code == 0
    document = json.loads(storage.read_bytes(f"{base}/out/performance.json"))
    assert document["model_version"] == 1 and document["baseline"] == 0.95
    version_model = f"{base}/registry/{MODEL}/2/model.skops"
    result = step("check_performance", "--batch-uri", batch_uri, "--model-uri", version_model,
                  "--output-dir", f"{base}/out2")
    assert result.exit_code == 0, result.stderr
    document = json.loads(storage.read_bytes(f"{base}/out2/performance.json"))
    assert document["baseline"] == 0.99 and document["baseline_source"] == f"{base}/registry/{MODEL}/2/metrics.json"


def test_f1_macro_verdict(step, base, model):
    register(base, model, accuracy=0.95, f1=0.97)
    assert check(step, base, batch(base, model, rows=150, errors=60), f"{base}/out", "--metric", "f1_macro",
                 "--tolerance", "0.1").exit_code == 0
    document = json.loads(storage.read_bytes(f"{base}/out/performance.json"))
    assert document["metric"] == "f1_macro" and document["baseline"] == 0.97
    assert document["value"] == document["metrics"]["f1_macro"] and document["degraded"] is True


def test_folder_means_the_newest_batch(step, base, model, tmp_path):
    register(base, model, accuracy=0.95)
    batch(base, model, rows=50, errors=0, name="2025-06-01")
    newest = batch(base, model, rows=50, errors=25, name="2025-06-02")
    parameter = tmp_path / "checked"
    result = check(step, base, f"{base}/batches/", f"{base}/out", "--checked-batch-uri-output-path", parameter)
    assert result.exit_code == 0, result.stderr
    assert parameter.read_text() == newest
    assert json.loads(storage.read_bytes(f"{base}/out/performance.json"))["value"] == 0.5


def test_rows_without_a_label_are_not_scored(step, base, model):
    register(base, model, accuracy=0.95)
    table = relabelled(model, iris().sample(100, random_state=3).reset_index(drop=True), 0)
    table.loc[:9, "sepal width (cm)"] = np.nan  # a missing feature value is the model's to handle
    table[TARGET] = table[TARGET].astype(float)
    table.loc[10:14, TARGET] = np.nan
    batch_uri = put_table(f"{base}/nan/batch.parquet", table)
    assert check(step, base, batch_uri, f"{base}/out").exit_code == 0
    document = json.loads(storage.read_bytes(f"{base}/out/performance.json"))
    labeled = table.dropna(subset=[TARGET])
    expected = accuracy_score(labeled[TARGET].astype(int), model.predict(labeled.drop(columns=[TARGET])))
    assert document["n_rows"] == 95 and document["n_rows_skipped"] == 5 and document["value"] == expected


def test_same_batch_and_seed_give_the_same_interval(step, base, model):
    register(base, model, accuracy=0.95)
    batch_uri = batch(base, model, rows=80, errors=9)
    intervals = []
    for index, seed in enumerate(("3", "3", "4")):
        assert check(step, base, batch_uri, f"{base}/out{index}", "--random-state", seed).exit_code == 0
        intervals.append(json.loads(storage.read_bytes(f"{base}/out{index}/performance.json"))["ci"])
    assert intervals[0] == intervals[1] != intervals[2]


def refused(step, base: str, args: list[str], code: int, option: str) -> None:
    out = f"{base}/out"
    before = history(base)
    assert_refused(step("check_performance", *args, "--output-dir", out), code, option, out)
    assert history(base) == before


def test_refusals_about_the_model(step, base, model):
    batch_uri = batch(base, model, rows=20, errors=0)
    registry = ["--registry-uri", f"{base}/registry", "--model-name", MODEL]
    refused(step, base, ["--batch-uri", batch_uri], ExitCode.USAGE, "--registry-uri")
    refused(step, base, ["--batch-uri", batch_uri, *registry], ExitCode.BAD_INPUT, "--model-ref")
    register(base, model, accuracy=0.95, promote=False)
    refused(step, base, ["--batch-uri", batch_uri, *registry], ExitCode.BAD_INPUT, "--model-ref")
    refused(step, base, ["--batch-uri", batch_uri, *registry, "--model-ref", "7"], ExitCode.BAD_INPUT, "--model-ref")
    refused(step, base, ["--batch-uri", batch_uri, *registry, "--model-ref", "latest"], ExitCode.BAD_INPUT,
            "--model-ref")
    refused(step, base, ["--batch-uri", batch_uri, "--registry-uri", f"{base}/registry", "--model-name", "a/b"],
            ExitCode.BAD_INPUT, "--model-name")
    model_uri = f"{base}/registry/{MODEL}/1/model.skops"
    refused(step, base, ["--batch-uri", batch_uri, *registry, "--model-uri", model_uri], ExitCode.USAGE, "--model-uri")

    loose = f"{base}/loose/model.skops"
    card = write_model(model, loose, train_uri="x", train=iris())
    refused(step, base, ["--batch-uri", batch_uri, "--model-uri", loose], ExitCode.BAD_INPUT, "--model-uri")
    other = f"{base}/other-metrics.json"
    storage.write_bytes(other, outputs.json_bytes({"accuracy": 0.9, "model_sha256": "0" * 64}))
    refused(step, base, ["--batch-uri", batch_uri, "--model-uri", loose, "--baseline-metrics-uri", other],
            ExitCode.BAD_INPUT, "--baseline-metrics-uri")
    storage.write_bytes(other, outputs.json_bytes({"f1_macro": 0.9, "model_sha256": card["model_sha256"]}))
    refused(step, base, ["--batch-uri", batch_uri, "--model-uri", loose, "--baseline-metrics-uri", other],
            ExitCode.BAD_INPUT, "--baseline-metrics-uri")
    storage.write_bytes(other, b"{not json")
    refused(step, base, ["--batch-uri", batch_uri, "--model-uri", loose, "--baseline-metrics-uri", other],
            ExitCode.BAD_INPUT, "--baseline-metrics-uri")

    ModelRegistry(f"{base}/registry", MODEL).promote(1, reason="test", expected=ModelRegistry(
        f"{base}/registry", MODEL).production())
    storage.write_bytes(model_uri, storage.read_bytes(model_uri) + b"tampered")
    refused(step, base, ["--batch-uri", batch_uri, *registry], ExitCode.MODEL, "--registry-uri")


def test_refusals_about_the_batch(step, base, model):
    register(base, model, accuracy=0.95)
    registry = ["--registry-uri", f"{base}/registry", "--model-name", MODEL]
    labeled = relabelled(model, iris().head(30), 0)
    cases = {
        "missing": None,
        "unlabeled": labeled.drop(columns=[TARGET]),
        "columns": labeled.rename(columns={"sepal width (cm)": "width"}),
        "classes": labeled.assign(**{TARGET: 7}),
        "no-label": labeled.assign(**{TARGET: np.nan}),
        "text": labeled.assign(**{"sepal width (cm)": "wide"}),
    }
    for name, table in cases.items():
        uri = f"{base}/{name}/batch.parquet"
        if table is not None:
            put_table(uri, table)
        refused(step, base, ["--batch-uri", uri, *registry], ExitCode.BAD_INPUT, "--batch-uri")
    refused(step, base, ["--batch-uri", f"{base}/empty-folder/", *registry], ExitCode.BAD_INPUT, "--batch-uri")


@pytest.mark.parametrize("args", [["--tolerance", "2"], ["--n-bootstrap", "5"], ["--metric", "roc_auc"],
                                  ["--metric", "rmse"], ["--tolerance", "-1"],
                                  ["--confidence", "1"], ["--random-state", "-1"]])
def test_refusals_of_out_of_range_options(step, base, model, args):
    register(base, model, accuracy=0.95)
    batch_uri = batch(base, model, rows=20, errors=0)
    refused(step, base, ["--batch-uri", batch_uri, "--registry-uri", f"{base}/registry", "--model-name", MODEL, *args],
            ExitCode.USAGE, args[0])


def test_batch_as_csv(step, base, model):
    register(base, model, accuracy=0.95)
    table = relabelled(model, iris().head(60), 6)
    uri = f"{base}/batch.csv"
    storage.write_bytes(uri, table.to_csv(index=False).encode())
    assert check(step, base, uri, f"{base}/out").exit_code == 0
    assert json.loads(storage.read_bytes(f"{base}/out/performance.json"))["value"] == 0.9
