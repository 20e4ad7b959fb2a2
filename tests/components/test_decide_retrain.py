"""decide_retrain: drift OR degraded, the retraining table, the decision record in the registry, refusals."""
from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from gate_fixtures import TARGET, fit_forest, iris, put_table, write_model
from step_checks import assert_refused

from mlops_runtime import outputs, step_io, storage
from mlops_runtime.errors import ExitCode
from mlops_runtime.registry import ModelRegistry, TrainingData, snapshot

MODEL = "iris"


@pytest.fixture(params=["local", "s3"])
def base(request: pytest.FixtureRequest, tmp_path) -> str:
    return str(tmp_path / "store") if request.param == "local" else request.getfixturevalue("s3_prefix")


def decide(step, base: str, drift: str, degraded: str, batch_uri: str, out: str, *extra: str):
    return step("decide_retrain", "--drift-detected", drift, "--degraded", degraded, "--batch-uri", batch_uri,
                "--registry-uri", f"{base}/registry", "--model-name", MODEL, "--output-dir", out, *extra)


def decisions(base: str) -> list[dict]:
    return [json.loads(storage.read_bytes(uri)) for uri in storage.list_uris(f"{base}/registry/{MODEL}/monitoring")]


def read(uri: str) -> pd.DataFrame:
    return pq.read_table(io.BytesIO(storage.read_bytes(uri))).to_pandas()


def production(base: str, train_uri: str, snapshot: TrainingData | None = None) -> None:
    """A production model in the registry whose card names ``train_uri`` as its training data (and, with
    ``snapshot``, the registry's training-data snapshot of the version)."""
    model = fit_forest(iris())
    card = write_model(model, f"{base}/candidate/model.skops", train_uri=train_uri, train=iris())
    registry = ModelRegistry(f"{base}/registry", MODEL)
    version, _ = registry.register(model=storage.read_bytes(f"{base}/candidate/model.skops"),
                                   card=storage.read_bytes(f"{base}/candidate/model_card.json"),
                                   metrics=outputs.json_bytes({"accuracy": 0.95, "model_sha256": card["model_sha256"]}),
                                   entry={"metrics": {"accuracy": 0.95}}, training_data=snapshot)
    assert registry.promote(version, reason="test", expected=registry.production())


@pytest.fixture
def tables(base):
    """A reference (first 100 iris rows) and a batch (last 50, columns in another order, 5 rows incomplete)."""
    reference = put_table(f"{base}/reference.parquet", iris().head(100))
    batch = iris().tail(50).reset_index(drop=True)
    batch[TARGET] = batch[TARGET].astype(float)
    batch.loc[:2, "petal width (cm)"] = np.nan
    batch.loc[3:4, TARGET] = np.nan
    batch_uri = put_table(f"{base}/batch.parquet", batch[list(reversed(batch.columns))])
    return reference, batch_uri


def test_no_drift_and_no_degradation_keeps_the_model(step, base, tables, tmp_path):
    reference, batch_uri = tables
    out = f"{base}/out"
    kfp = {name: tmp_path / name for name in ("retrain", "reason", "data_uri")}
    result = decide(step, base, "false", "false", batch_uri, out, "--reference-uri", reference, "--run-id", "run-1",
                    *[a for name, path in kfp.items() for a in (f"--{name.replace('_', '-')}-output-path", path)])
    reason = "no data drift and no performance degradation: keep the production model"
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == {"retrain": False, "reason": reason, "data_uri": ""}
    assert kfp["retrain"].read_text() == "false" and kfp["reason"].read_text() == reason
    assert kfp["data_uri"].read_text() == ""
    assert storage.list_uris(out) == [f"{out}/_manifest.json", f"{out}/decision.json"]
    [record] = decisions(base)
    assert record["retrain"] is False and record["reason"] == reason and record["run_id"] == "run-1"
    assert record["data_uri"] is None and record["production_version"] is None
    assert json.loads(storage.read_bytes(f"{out}/decision.json"))["record_uri"].startswith(
        f"{base}/registry/{MODEL}/monitoring/")


@pytest.mark.parametrize(("drift", "degraded", "cause"), [
    ("true", "false", "retrain: data drift detected"),
    ("false", "true", "retrain: performance degraded"),
    ("true", "true", "retrain: data drift detected and performance degraded"),
])
def test_either_verdict_retrains_on_reference_plus_batch(step, base, tables, tmp_path, drift, degraded, cause):
    reference, batch_uri = tables
    out = f"{base}/out"
    result = decide(step, base, drift, degraded, batch_uri, out, "--reference-uri", reference,
                    "--drift-report-uri", "s3://r/drift.html", "--data-uri-output-path", tmp_path / "data_uri")
    assert result.exit_code == 0, result.stderr
    reason = f"{cause}; retraining on 100 reference rows + 45 batch rows"
    assert json.loads(result.stdout) == {"retrain": True, "reason": reason, "data_uri": f"{out}/retrain_data.parquet"}
    assert (tmp_path / "data_uri").read_text() == f"{out}/retrain_data.parquet"
    manifest = outputs.verify_published(out)
    assert [o["name"] for o in manifest["objects"]][::2] == ["retrain_data.parquet", "decision.json"]
    data = read(f"{out}/retrain_data.parquet")
    expected = pd.concat([iris().head(100), iris().tail(45)], ignore_index=True)
    pd.testing.assert_frame_equal(data, expected)  # reference order of columns, integer labels kept
    lineage = step_io.read_lineage(storage.read_bytes(f"{out}/retrain_data.parquet"))
    assert [i["uri"] for i in lineage["inputs"]] == [reference, batch_uri]
    [record] = decisions(base)
    assert record["retrain"] is True and record["reason"] == reason and record["batch_rows_dropped"] == 5
    assert record["drift_report_uri"] == "s3://r/drift.html" and record["reference_uri"] == reference


def test_reference_defaults_to_the_production_models_training_data(step, base, tables):
    reference, batch_uri = tables
    production(base, reference)
    out = f"{base}/out"
    assert decide(step, base, "true", "false", batch_uri, out).exit_code == 0
    [record] = decisions(base)
    assert record["reference_uri"] == reference and record["production_version"] == 1
    assert len(read(f"{out}/retrain_data.parquet")) == 145


def test_every_decision_is_a_new_record(step, base, tables):
    reference, batch_uri = tables
    for index, verdicts in enumerate((("false", "false"), ("true", "false"), ("false", "false"))):
        assert decide(step, base, *verdicts, batch_uri, f"{base}/out{index}", "--reference-uri",
                      reference).exit_code == 0
    assert [r["retrain"] for r in decisions(base)] == [False, True, False]


def refused(step, base, args: list[str], code: int, option: str) -> None:
    out = f"{base}/out"
    assert_refused(step("decide_retrain", *args, "--output-dir", out), code, option, out)
    assert decisions(base) == []


def test_refusals(step, base, tables):
    reference, batch_uri = tables
    registry = ["--registry-uri", f"{base}/registry", "--model-name", MODEL]
    verdict = ["--drift-detected", "true", "--degraded", "false"]
    refused(step, base, [*verdict, "--batch-uri", batch_uri, *registry], ExitCode.BAD_INPUT, "--reference-uri")
    refused(step, base, [*verdict, "--batch-uri", f"{base}/none.parquet", "--reference-uri", reference, *registry],
            ExitCode.BAD_INPUT, "--batch-uri")
    refused(step, base, [*verdict, "--batch-uri", batch_uri, "--reference-uri", f"{base}/none.parquet", *registry],
            ExitCode.BAD_INPUT, "--reference-uri")
    other = put_table(f"{base}/other.parquet", iris().assign(extra=1.0))
    refused(step, base, [*verdict, "--batch-uri", other, "--reference-uri", reference, *registry],
            ExitCode.BAD_INPUT, "--batch-uri")
    unlabeled = put_table(f"{base}/unlabeled.parquet", iris().drop(columns=[TARGET]))
    refused(step, base, [*verdict, "--batch-uri", unlabeled, "--reference-uri", reference, *registry],
            ExitCode.BAD_INPUT, "--batch-uri")
    refused(step, base, ["--drift-detected", "maybe", "--degraded", "false", "--batch-uri", batch_uri, *registry],
            ExitCode.USAGE, "--drift-detected")
    refused(step, base, [*verdict, "--batch-uri", batch_uri, "--registry-uri", f"{base}/registry", "--model-name",
                         "a/b"], ExitCode.BAD_INPUT, "--model-name")


def test_the_default_reference_is_the_registry_snapshot_when_the_version_has_one(step, base, tables):
    _reference, batch_uri = tables
    rows = iris().head(60)
    production(f"{base}", f"{base}/gone/train.parquet",  # the card's table is gone (a removed pipeline root)
               snapshot([(rows, {"uri": f"{base}/gone/train.parquet", "sha256": "0" * 64})], label="--test"))
    result = decide(step, base, "true", "false", batch_uri, f"{base}/out")
    assert result.exit_code == 0, result.stderr
    [record] = decisions(base)
    assert record["reference_uri"] == f"{base}/registry/{MODEL}/1/training_data.parquet"
    assert "retraining on 60 reference rows" in record["reason"]
