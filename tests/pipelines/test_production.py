"""The unlabeled production pipeline: its compiled form, and real scheduled-like local runs on Docker over
several unlabeled batches (clean and drifted) against a real webhook on 127.0.0.1."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from mlops_runtime import storage, tables, watermark
from pipelines import common, production
from tests.alerts.test_notify import Webhook
from tests.support import REPO

LOCAL_RUN_TIMEOUT_S = 900
DRIFT = "petal length (cm):mean=+3;petal width (cm):mean=+3"
LABEL_FREE_ALERTS = ("data_quality", "drift", "prediction_drift")  # sorted, as alerts_since returns them


def compile_with_cli(tmp_path: Path) -> dict:
    package = tmp_path / "production.yaml"
    result = CliRunner().invoke(production.cli, ["compile", "--output", str(package)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return common.read_package(package)[0]


def test_compiled_pipeline_checks_each_claimed_batch_inside_an_exit_handler(tmp_path):
    spec = compile_with_cli(tmp_path)
    root = spec["root"]["dag"]["tasks"]
    [body] = [name for name in root if name.startswith("exit-handler")]
    [exit_task] = [task for name, task in root.items() if name != body]
    assert exit_task["inputs"]["parameters"]["event"]["runtimeValue"]["constant"] == "pipeline_failure"
    assert exit_task["inputs"]["parameters"]["pipeline_status"] == {"taskFinalStatus": {"producerTask": body}}
    assert exit_task["triggerPolicy"]["strategy"] == "ALL_UPSTREAM_TASKS_COMPLETED"
    tasks = spec["components"][f"comp-{body}"]["dag"]["tasks"]
    assert tasks["check-batches"]["inputs"]["parameters"]["batch_uris"]["taskOutputParameter"] == {
        "producerTask": "claim-batches", "outputParameterKey": "batch_uris"}
    assert sorted(tasks["complete-batches"]["dependentTasks"]) == ["check-batches", "claim-batches"]
    assert tasks["history-report"]["dependentTasks"] == ["complete-batches"]
    run_id = tasks["claim-batches"]["inputs"]["parameters"]["run_id"]["runtimeValue"]["constant"]
    assert run_id == "{{$.pipeline_job_uuid}}"
    checks = spec["components"]["comp-check-batches"]["dag"]["tasks"]
    [loop] = checks
    assert checks[loop]["parameterIterator"]["items"]["inputParameter"] == "pipelinechannel--batch_uris"
    each = spec["components"][f"comp-{loop}"]["dag"]["tasks"]
    drift = each["detect-drift"]["inputs"]["parameters"]
    for name in ("model_uri", "reference_profile_uri"):
        assert drift[name]["componentInputParameter"] == f"pipelinechannel--{name}"
    alerts = {t["inputs"]["parameters"]["event"]["runtimeValue"]["constant"]:
              t["inputs"]["parameters"]["active"]["taskOutputParameter"]
              for t in each.values() if t.get("dependentTasks") == ["detect-drift"]}
    assert alerts == {event: {"producerTask": "detect-drift", "outputParameterKey": verdict} for event, verdict in (
        ("drift", "drift_detected"), ("prediction_drift", "prediction_drift_detected"),
        ("data_quality", "data_quality_failed"))}
    # CBPE (classifiers only) under a condition on the sub-pipeline's input, which kfp.local resolves.
    [condition] = [name for name in each if name.startswith("condition")]
    expected = "inputs.parameter_values['pipelinechannel--estimate'] == true"
    assert each[condition]["triggerPolicy"]["condition"] == expected
    estimated = spec["components"][f"comp-{condition}"]["dag"]["tasks"]
    estimate = estimated["estimate-performance"]["inputs"]["parameters"]
    assert estimate["reference_uri"]["componentInputParameter"] == "pipelinechannel--calibration_uri"
    [degradation_alert] = [t for t in estimated.values() if t.get("dependentTasks") == ["estimate-performance"]]
    assert degradation_alert["inputs"]["parameters"]["active"]["taskOutputParameter"]["outputParameterKey"] == \
        "estimated_degraded"
    for task in [*tasks.values(), *each.values(), *estimated.values()]:
        if "cachingOptions" in task:
            assert task["cachingOptions"].get("enableCache", False) is False


def test_cli_defaults_are_the_pipeline_defaults(tmp_path):
    spec = compile_with_cli(tmp_path)
    parameters = spec["root"]["inputDefinitions"]["parameters"]
    defaults = {name: p["defaultValue"] for name, p in parameters.items() if "defaultValue" in p}
    for command in ("run-local", "submit"):
        assert {p.name: p.default for p in production.cli.commands[command].params if p.name in defaults} == defaults


# ---------------------------------------------------------------------------- local runs on Docker

def deployed(step, base: str) -> str:
    """Train a random forest on iris and deploy it (in-process steps); the registry root."""
    registry = f"{base}/registry"
    for args in (("make_batch", "--dataset", "iris", "--n-rows", "300", "--random-state", "1", "--output-dir",
                  f"{base}/source"),
                 ("split", "--data-uri", f"{base}/source/batch.parquet", "--output-dir", f"{base}/split"),
                 ("train", "--train-uri", f"{base}/split/train.parquet", "--n-estimators", "50",
                  "--output-dir", f"{base}/model"),
                 ("evaluate", "--model-uri", f"{base}/model/model.skops", "--test-uri", f"{base}/split/test.parquet",
                  "--output-dir", f"{base}/eval"),
                 ("deploy", "--model-uri", f"{base}/model/model.skops", "--metrics-uri", f"{base}/eval/metrics.json",
                  "--registry-uri", registry, "--threshold", "0.5")):
        result = step(*args)
        assert result.exit_code == 0, f"{args[0]}: {result.stderr}"
    return registry


def run_pipeline(built_images, base: str, registry: str, webhook: Webhook, batches: str, *args: str,
                 succeed: bool = True) -> dict[str, str]:
    command = [sys.executable, str(REPO / "pipelines" / "production.py"), "run-local", "--specs-dir",
               str(built_images.specs_dir), "--no-cache", "--storage-root", f"{base}/runs", "--registry-uri",
               registry, "--batches-uri", batches, "--webhook-url", f"{webhook.url}/api/v2/alerts",
               "--webhook-format", "alertmanager", *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=LOCAL_RUN_TIMEOUT_S, check=False)
    if not succeed:
        assert done.returncode != 0 and done.stderr.startswith("error: "), done.stdout[-4000:] + done.stderr
        return {}
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr
    lines = done.stdout.rstrip("\n").splitlines()
    start = max(i for i, line in enumerate(lines) if line.startswith("pipeline: ") and " succeeded in " in line)
    print(lines[start])  # the wall time, kept in the test log
    return dict(line.split(": ", 1) for line in lines[start + 1:] if ": " in line)


def alerts_since(webhook: Webhook, seen: int) -> list[tuple[str, str]]:
    """(event, batch) of every alert posted after the first ``seen`` requests."""
    return sorted((alert["labels"]["event"], alert["labels"].get("batch", ""))
                  for request in webhook.received[seen:] for alert in request["body"])


def checked(registry: str) -> dict[str, str]:
    document, _ = watermark.Watermark(registry, "classifier").read()
    return {uri: entry["state"] for uri, entry in document["batches"].items()}


@pytest.mark.docker
@pytest.mark.slow
def test_scheduled_runs_check_every_unlabeled_batch_once_and_alert_on_the_drifted(built_images, s3_prefix, step):
    registry = deployed(step, s3_prefix)
    batches = f"{s3_prefix}/batches"
    drifted = {1, 3}
    for index in range(4):  # folders named by time: claim_batches takes them oldest first
        shift = ("--shift", DRIFT) if index in drifted else ()
        assert step("make_batch", "--dataset", "iris", "--n-rows", "300", "--random-state", str(10 + index),
                    "--with-labels", "false", *shift,
                    "--output-dir", f"{batches}/2026-12-01T0{index}").exit_code == 0
    uris = [f"{batches}/2026-12-01T0{index}/batch.parquet" for index in range(4)]
    assert "target" not in tables.read_table(uris[0]).columns
    webhook = Webhook()
    try:
        first = run_pipeline(built_images, s3_prefix, registry, webhook, batches, "--max-batches", "3")
        assert first == {"checked": "3", "claimed": "0", "unclaimed": "1"}  # the bound leaves one for the next run
        assert checked(registry) == dict.fromkeys(uris[:3], "done")
        # Only the drifted batch alerts, and for each label-free check: feature drift, the model's outputs and
        # data quality (values far beyond the training range). The clean batches raise none of them.
        batch_alerts = [alert for alert in alerts_since(webhook, 0) if alert[0] in LABEL_FREE_ALERTS]
        assert batch_alerts == [(event, uris[1]) for event in LABEL_FREE_ALERTS]
        assert "pipeline_failure" not in {event for event, _ in alerts_since(webhook, 0)}
        print("alerts of run 1:", alerts_since(webhook, 0))

        seen = len(webhook.received)
        second = run_pipeline(built_images, s3_prefix, registry, webhook, batches)
        assert second == {"checked": "4", "claimed": "0", "unclaimed": "0"}
        assert [alert for alert in alerts_since(webhook, seen) if alert[0] in LABEL_FREE_ALERTS] == [
            (event, uris[3]) for event in LABEL_FREE_ALERTS]
        print("alerts of run 2:", alerts_since(webhook, seen))

        seen = len(webhook.received)
        assert run_pipeline(built_images, s3_prefix, registry, webhook, batches) == second  # nothing new
        assert alerts_since(webhook, seen) == []

        # Every batch was checked exactly once: one drift record per batch in the registry's journal.
        journal = [json.loads(storage.read_bytes(uri)) for uri in storage.list_uris(f"{registry}/classifier/drift")
                   if uri.endswith(".json")]
        assert sorted(record["current_uri"] for record in journal) == uris
        estimates = [json.loads(storage.read_bytes(uri)) for uri in
                     storage.list_uris(f"{registry}/classifier/estimates") if uri.endswith(".json")]
        assert len(estimates) == 4  # the CBPE branch ran for every batch
        print("drift per batch:", [(r["current_uri"][-24:], r["drift_detected"], r["drift_share"]) for r in journal])
        reports = [uri for uri in storage.list_uris(f"{s3_prefix}/runs") if uri.endswith(".html")
                   and "/history_report/" in uri]
        assert len(reports) == 3 and b"<html" in storage.read_bytes(reports[0]).lower()

        # A batch missing a signature column: detect_drift refuses it (exit 3), the run fails, the exit handler
        # alerts, and the batch stays unchecked for a later run.
        broken = tables.read_table(uris[0]).drop(columns=["sepal width (cm)"])
        storage.write_bytes(f"{s3_prefix}/broken/2026-12-02T00/batch.parquet", tables.table_bytes(broken))
        seen = len(webhook.received)
        run_pipeline(built_images, s3_prefix, registry, webhook, f"{s3_prefix}/broken", succeed=False)
        assert ("pipeline_failure", "") in alerts_since(webhook, seen)
        assert checked(registry)[f"{s3_prefix}/broken/2026-12-02T00/batch.parquet"] == "claimed"
    finally:
        webhook.close()

