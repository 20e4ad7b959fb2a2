"""decide_retrain: drift OR degraded, the decision record in the registry, refusals. It reads no table."""
from __future__ import annotations

import json

import pytest
from gate_fixtures import fit_forest, iris, write_model
from step_checks import assert_refused

from mlops_runtime import outputs, storage
from mlops_runtime.errors import ExitCode
from mlops_runtime.registry import ModelRegistry

MODEL = "iris"
BATCH = "s3://prod/batches/2026-12-01/batch.parquet"  # recorded only: the step never reads it


def decide(step, base: str, drift: str, degraded: str, out: str, *extra: str):
    return step("decide_retrain", "--drift-detected", drift, "--degraded", degraded, "--batch-uri", BATCH,
                "--registry-uri", f"{base}/registry", "--model-name", MODEL, "--output-dir", out, *extra)


def decisions(base: str) -> list[dict]:
    return [json.loads(storage.read_bytes(uri)) for uri in storage.list_uris(f"{base}/registry/{MODEL}/monitoring")]


def production(base: str) -> None:
    """A production model (version 1) in the registry."""
    model = fit_forest(iris())
    card = write_model(model, f"{base}/candidate/model.skops", train_uri=f"{base}/train.parquet", train=iris())
    registry = ModelRegistry(f"{base}/registry", MODEL)
    version, _ = registry.register(model=storage.read_bytes(f"{base}/candidate/model.skops"),
                                   card=storage.read_bytes(f"{base}/candidate/model_card.json"),
                                   metrics=outputs.json_bytes({"accuracy": 0.95, "model_sha256": card["model_sha256"]}),
                                   entry={"metrics": {"accuracy": 0.95}})
    assert registry.promote(version, reason="test", expected=registry.production())


def kfp_args(tmp_path) -> tuple[list, dict]:
    paths = {name: tmp_path / name for name in ("retrain", "reason")}
    return [a for name, path in paths.items() for a in (f"--{name}-output-path", path)], paths


def test_no_drift_and_no_degradation_keeps_the_model(step, base, tmp_path):
    out = f"{base}/out"
    args, kfp = kfp_args(tmp_path)
    result = decide(step, base, "false", "false", out, "--run-id", "run-1", *args)
    reason = "no data drift and no performance degradation: keep the production model"
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == {"retrain": False, "reason": reason}
    assert kfp["retrain"].read_text() == "false" and kfp["reason"].read_text() == reason
    assert storage.list_uris(out) == [f"{out}/_manifest.json", f"{out}/decision.json"]
    [record] = decisions(base)
    assert record["retrain"] is False and record["reason"] == reason and record["run_id"] == "run-1"
    assert record["production_version"] is None and record["batch_uri"] == BATCH
    assert json.loads(storage.read_bytes(f"{out}/decision.json"))["record_uri"].startswith(
        f"{base}/registry/{MODEL}/monitoring/")


@pytest.mark.parametrize(("drift", "degraded", "reason"), [
    ("true", "false", "retrain: data drift detected"),
    ("false", "true", "retrain: performance degraded"),
    ("true", "true", "retrain: data drift detected and performance degraded"),
])
def test_either_verdict_retrains(step, base, tmp_path, drift, degraded, reason):
    production(base)
    out = f"{base}/out"
    args, kfp = kfp_args(tmp_path)
    result = decide(step, base, drift, degraded, out, "--drift-report-uri", "s3://r/drift.html", *args)
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == {"retrain": True, "reason": reason}
    assert kfp["retrain"].read_text() == "true"
    manifest = outputs.verify_published(out)
    journal_record, decision = (o["name"] for o in manifest["objects"])  # no table: build_training_set makes it
    assert journal_record.startswith(f"{base}/registry/{MODEL}/monitoring/") and decision == "decision.json"
    [record] = decisions(base)
    assert record["retrain"] is True and record["reason"] == reason and record["production_version"] == 1
    assert record["drift_report_uri"] == "s3://r/drift.html"
    assert (record["drift_detected"], record["degraded"]) == (drift == "true", degraded == "true")


def test_every_decision_is_a_new_record(step, base):
    for index, verdicts in enumerate((("false", "false"), ("true", "false"), ("false", "false"))):
        assert decide(step, base, *verdicts, f"{base}/out{index}").exit_code == 0
    assert [r["retrain"] for r in decisions(base)] == [False, True, False]


def refused(step, base, args: list[str], code: int, option: str) -> None:
    out = f"{base}/out"
    assert_refused(step("decide_retrain", *args, "--output-dir", out), code, option, out)
    assert decisions(base) == []


def test_refusals(step, base):
    registry = ["--registry-uri", f"{base}/registry", "--model-name", MODEL]
    refused(step, base, ["--drift-detected", "maybe", "--degraded", "false", "--batch-uri", BATCH, *registry],
            ExitCode.USAGE, "--drift-detected")
    refused(step, base, ["--drift-detected", "true", "--degraded", "false", "--batch-uri", BATCH, "--registry-uri",
                         f"{base}/registry", "--model-name", "a/b"], ExitCode.BAD_INPUT, "--model-name")
    storage.write_bytes(f"{base}/registry/{MODEL}/production.json", b'{"version": "one"}')
    refused(step, base, ["--drift-detected", "true", "--degraded", "false", "--batch-uri", BATCH, *registry],
            ExitCode.MODEL, "--registry-uri")  # a corrupted production pointer
