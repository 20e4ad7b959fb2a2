"""The monitoring pipeline: its compiled form, its CLI, and real local runs that retrain (or not) on Docker."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from mlops_runtime import storage, tables
from mlops_runtime.registry import ModelRegistry
from pipelines import common, monitoring, training
from tests.support import REPO

TASKS = {"check-performance": "check_performance", "detect-drift": "detect_drift", "decide-retrain": "decide_retrain"}
LOCAL_RUN_TIMEOUT_S = 900


def compile_with_cli(tmp_path: Path, *args: str) -> dict:
    package = tmp_path / "monitoring.yaml"
    result = CliRunner().invoke(monitoring.cli, ["compile", "--output", str(package), *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return common.read_package(package)[0]


def test_compiled_pipeline_wires_the_verdicts_into_one_condition(tmp_path):
    spec = compile_with_cli(tmp_path)
    tasks = spec["root"]["dag"]["tasks"]
    assert set(tasks) == {*TASKS, "retrain-if-needed"}
    assert sorted(tasks["detect-drift"]["dependentTasks"]) == ["check-performance"]
    assert sorted(tasks["decide-retrain"]["dependentTasks"]) == ["check-performance", "detect-drift"]
    decision_inputs = tasks["decide-retrain"]["inputs"]["parameters"]
    assert decision_inputs["drift_detected"]["taskOutputParameter"] == {
        "producerTask": "detect-drift", "outputParameterKey": "drift_detected"}
    assert decision_inputs["degraded"]["taskOutputParameter"] == {
        "producerTask": "check-performance", "outputParameterKey": "degraded"}
    drift_inputs = tasks["detect-drift"]["inputs"]["parameters"]
    assert drift_inputs["reference_uri"]["taskOutputParameter"]["outputParameterKey"] == "training_data_uri"
    profile = drift_inputs["reference_profile_uri"]["taskOutputParameter"]
    assert (profile["producerTask"], profile["outputParameterKey"]) == ("check-performance", "reference_profile_uri")
    assert drift_inputs["current_uri"]["taskOutputParameter"]["outputParameterKey"] == "checked_batch_uri"

    gate = tasks["retrain-if-needed"]["inputs"]["parameters"]
    assert gate["retrain"]["taskOutputParameter"] == {"producerTask": "decide-retrain", "outputParameterKey": "retrain"}
    assert gate["batch_uri"]["taskOutputParameter"] == {"producerTask": "check-performance",
                                                        "outputParameterKey": "checked_batch_uri"}
    assert gate["window"]["componentInputParameter"] == "window"
    # The condition is on the sub-pipeline's input, which stock kfp.local resolves (a task output it does not).
    gated = spec["components"]["comp-retrain-if-needed"]["dag"]["tasks"]
    [condition] = gated.values()
    assert condition["taskInfo"]["name"] == "retrain"
    assert condition["triggerPolicy"]["condition"] == "inputs.parameter_values['pipelinechannel--retrain'] == true"
    branch = spec["components"][condition["componentRef"]["name"]]["dag"]["tasks"]
    assert set(branch) == {"build-training-set", "mlops-training"}
    rows = branch["build-training-set"]["inputs"]["parameters"]
    # The history comes from the registry (the production version's snapshot), never from a run's objects.
    assert rows["registry_uri"]["componentInputParameter"] == "pipelinechannel--registry_uri"
    assert rows["batch_uri"]["componentInputParameter"] == "pipelinechannel--batch_uri"
    assert rows["window"]["componentInputParameter"] == "pipelinechannel--window"
    nested = branch["mlops-training"]
    assert nested["componentRef"]["name"] == "comp-mlops-training"
    arguments = nested["inputs"]["parameters"]
    assert arguments["compare_to_production"]["runtimeValue"]["constant"] is True
    assert arguments["source_uri"]["taskOutputParameter"] == {"producerTask": "build-training-set",
                                                              "outputParameterKey": "data_uri"}
    # Champion and challenger are scored on the holdout neither trained on.
    assert arguments["comparison_data_uri"]["taskOutputParameter"] == {"producerTask": "build-training-set",
                                                                       "outputParameterKey": "holdout_uri"}
    deploy_inputs = spec["components"]["comp-mlops-training"]["dag"]["tasks"]["deploy"]["inputs"]["parameters"]
    assert deploy_inputs["training_data_uri"]["taskOutputParameter"] == {"producerTask": "load-data",
                                                                        "outputParameterKey": "data_uri"}
    assert set(spec["components"]["comp-mlops-training"]["dag"]["tasks"]) == {
        "load-data", "split", "train", "evaluate", "deploy"}

    executors = spec["deploymentSpec"]["executors"]
    for name, step in TASKS.items():
        assert tasks[name]["cachingOptions"].get("enableCache", False) is monitoring.CACHING[step]
        assert tasks[name]["retryPolicy"]["maxRetryCount"] == 3
        resources = executors[f"exec-{name}"]["container"]["resources"]
        assert resources["resourceMemoryLimit"] == monitoring.RESOURCES[step].memory_limit
        if "output_dir" in tasks[name]["inputs"]["parameters"]:
            output_dir = tasks[name]["inputs"]["parameters"]["output_dir"]["runtimeValue"]["constant"]
            assert output_dir.endswith(f"/{{{{$.pipeline_job_uuid}}}}/{step}")
    assert monitoring.CACHING == {"check_performance": False, "detect_drift": True, "decide_retrain": False,
                                  "build_training_set": False}
    assert "output_dir" not in tasks["detect-drift"]["inputs"]["parameters"]  # its folder is its drift artifact
    assert set(spec["root"]["outputDefinitions"]["parameters"]) == set(monitoring.MonitoringOutputs._fields)
    assert "defaultValue" not in spec["root"]["inputDefinitions"]["parameters"]["batch_uri"]


def test_cli_defaults_are_the_pipeline_defaults(tmp_path):
    spec = compile_with_cli(tmp_path)
    pipeline_defaults = {name: parameter["defaultValue"]
                         for name, parameter in spec["root"]["inputDefinitions"]["parameters"].items()
                         if "defaultValue" in parameter}
    for command in ("run-local", "submit"):
        cli_defaults = {p.name: p.default for p in monitoring.cli.commands[command].params
                        if p.name in pipeline_defaults}
        assert cli_defaults == pipeline_defaults, command


def test_compiles_with_the_local_policy_too(tmp_path):
    pipeline = monitoring.build_pipeline(common.load_components(monitoring.STEPS + training.STEPS),
                                         policy=common.LOCAL)
    spec = common.read_package(common.compile_pipeline(pipeline, tmp_path / "local.yaml"))[0]
    assert all("retryPolicy" not in task for task in spec["root"]["dag"]["tasks"].values())


def test_submit_to_an_unreachable_endpoint_fails_with_one_line(made_up_pinned_specs):
    """As a user runs it (a fresh process: in-process, earlier steps' log handlers would add urllib3's retries)."""
    done = subprocess.run([sys.executable, str(REPO / "pipelines" / "monitoring.py"), "submit", "--host",
                           "http://127.0.0.1:9", "--batch-uri", "s3://b/x/", "--specs-dir", str(made_up_pinned_specs)],
                          capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 1
    assert done.stderr.startswith("error: cannot submit to http://127.0.0.1:9: ")
    assert done.stderr.count("\n") == 1


# ---------------------------------------------------------------------------- local runs on Docker

def run_cli(script: str, built_images, s3_prefix: str, root: Path, *args: str) -> dict[str, str]:
    """``python pipelines/<script> run-local`` on the built images; the ``key: value`` summary it prints.

    The runs of a test share the pipeline root ``root``: the artifacts of a training run (the model card's
    training data) are read by the monitoring runs after it."""
    storage_root = ["--storage-root", f"{s3_prefix}/runs"] if script == "monitoring.py" else []
    command = [sys.executable, str(REPO / "pipelines" / script), "run-local", "--specs-dir",
               str(built_images.specs_dir), "--pipeline-root", str(root), *storage_root, "--registry-uri",
               f"{s3_prefix}/registry", *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=LOCAL_RUN_TIMEOUT_S, check=False)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr
    lines = done.stdout.rstrip("\n").splitlines()
    start = max(i for i, line in enumerate(lines) if " succeeded in " in line and line.startswith("pipeline: "))
    print(lines[start])  # the wall time, kept in the test log
    return dict(line.split(": ", 1) for line in lines[start + 1:] if ": " in line)


def journal(s3_prefix: str, folder: str) -> list[dict]:
    uris = storage.list_uris(f"{s3_prefix}/registry/classifier/{folder}")
    return [json.loads(storage.read_bytes(uri)) for uri in uris]


@pytest.mark.docker
@pytest.mark.slow
def test_a_degraded_champion_is_replaced_and_a_challenger_no_better_is_refused(built_images, s3_prefix, step,
                                                                             tmp_path):
    # The champion is trained on iris; its version snapshots the 150 rows it was built from (train + test).
    root = tmp_path / "root"
    source = f"{s3_prefix}/source"
    assert step("make_batch", "--dataset", "iris", "--n-rows", "150", "--random-state", "3",
                "--output-dir", source).exit_code == 0
    first = run_cli("training.py", built_images, s3_prefix, root, "--source-uri", f"{source}/batch.parquet",
                    "--threshold", "0.5", "--random-state", "1")
    assert first["promoted"] == "true"
    registry = ModelRegistry(f"{s3_prefix}/registry", "classifier")
    champion = registry.production().pointer
    assert champion["version"] == 1
    assert registry.training_data(1)[0] == f"{registry.version_uri(1)}/training_data.parquet"
    assert len(tables.read_table(registry.training_data(1)[0])) == 150

    # Drift without a change of concept (sepal features moved by 3 standard deviations): retraining runs, but
    # the challenger is not better than the champion by the minimum on the holdout, so the champion stays.
    assert step("make_batch", "--dataset", "iris", "--n-rows", "150", "--random-state", "8", "--shift",
                "sepal length (cm):mean=+3;sepal width (cm):mean=+3",
                "--output-dir", f"{s3_prefix}/batches/0001").exit_code == 0
    drifted = run_cli("monitoring.py", built_images, s3_prefix, root, "--batch-uri", f"{s3_prefix}/batches/",
                      "--threshold", "0.5", "--min-improvement", "0.1")
    assert (drifted["drift_detected"], drifted["retrain"]) == ("true", "true")
    assert drifted["reason"].startswith("retrain: data drift detected")
    assert registry.versions() == [1] and registry.production().pointer == champion
    drift_report = json.loads(storage.read_bytes(drifted["drift_report_uri"].replace(".html", ".json")))
    assert drift_report["reference"]["uri"] == f"{registry.version_uri(1)}/reference_profile.json"
    [refusal] = run_documents(s3_prefix, "build_training_set/accounting.json")
    assert refusal["sources"][0]["uri"] == f"{registry.version_uri(1)}/training_data.parquet"
    assert [(s["rows"], s["training"], s["holdout"]) for s in refusal["sources"]] == [(150, 150, 0), (150, 120, 30)]

    # A concept shift: the same flowers now carry the next class. The champion degrades; the challenger,
    # trained on the registered history plus the batch, is scored with it on the batch's newest rows.
    # Shuffled: make_batch keeps the source's row order, and the holdout is the batch's last (newest) rows.
    concept = tables.read_table(f"{source}/batch.parquet").sample(frac=1, random_state=0).reset_index(drop=True)
    concept["target"] = (concept["target"] + 1) % 3
    storage.write_bytes(f"{s3_prefix}/concept.parquet", tables.table_bytes(concept))
    assert step("make_batch", "--source-uri", f"{s3_prefix}/concept.parquet", "--n-rows", "600", "--random-state",
                "9", "--output-dir", f"{s3_prefix}/batches/0002").exit_code == 0
    shifted = run_cli("monitoring.py", built_images, s3_prefix, root, "--batch-uri", f"{s3_prefix}/batches/",
                      "--threshold", "0.5", "--min-improvement", "0.1")
    assert shifted["batch_uri"] == f"{s3_prefix}/batches/0002/batch.parquet"
    assert (shifted["degraded"], shifted["retrain"]) == ("true", "true") and float(shifted["accuracy"]) < 0.1
    assert registry.versions() == [1, 2]
    promoted = registry.production().pointer
    assert promoted["version"] == 2 and promoted["previous_version"] == 1
    record = registry.entry(2)["comparison"]
    holdout = f"{record['data']['uri']}"
    assert holdout.endswith("/build_training_set/holdout.parquet") and record["n_rows"] == 120
    assert record["champion_version"] == 1 and record["metric"] == "accuracy"
    assert record["challenger"] - record["champion"] >= 0.1 and record["challenger_better"] is True
    assert record["test"]["method"] == "exact one-sided McNemar test" and record["test"]["p_value"] < 0.05
    print("promotion record:", json.dumps({k: record[k] for k in ("challenger", "champion", "improvement", "test")}))
    assert "vs production" in promoted["reason"] and "(version 1)" in promoted["reason"]
    # Version 2 snapshots what it was built from plus the holdout: the next cycle's history, no row lost.
    snapshot = tables.read_table(registry.training_data(2)[0])
    assert len(snapshot) == 150 + 600 and registry.entry(2)["training_data"]["rows"] == 750
    assert [r["degraded"] for r in journal(s3_prefix, "performance")] == [drifted["degraded"] == "true", True]


def run_documents(s3_prefix: str, suffix: str) -> list[dict]:
    return [json.loads(storage.read_bytes(uri)) for uri in storage.list_uris(f"{s3_prefix}/runs")
            if uri.endswith(suffix)]
