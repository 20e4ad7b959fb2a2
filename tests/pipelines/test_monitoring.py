"""The monitoring pipeline: its compiled form, its CLI, and real local runs that retrain (or not) on Docker."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from mlops_runtime import step_io, storage, tables
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
        assert tasks[name]["cachingOptions"].get("enableCache", False) is False
        assert tasks[name]["retryPolicy"]["maxRetryCount"] == 3
        resources = executors[f"exec-{name}"]["container"]["resources"]
        assert resources["resourceMemoryLimit"] == monitoring.RESOURCES[step].memory_limit
        if "output_dir" in tasks[name]["inputs"]["parameters"]:
            output_dir = tasks[name]["inputs"]["parameters"]["output_dir"]["runtimeValue"]["constant"]
            assert output_dir.endswith(f"/{{{{$.pipeline_job_uuid}}}}/{step}")
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

def run_cli(script: str, built_images, s3_prefix: str, *args: str) -> dict[str, str]:
    """``python pipelines/<script> run-local`` on the built images; the ``key: value`` summary it prints."""
    command = [sys.executable, str(REPO / "pipelines" / script), "run-local", "--specs-dir",
               str(built_images.specs_dir), "--storage-root", f"{s3_prefix}/runs", "--registry-uri",
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
def test_drifted_batch_retrains_and_promotes_a_clean_batch_does_not(built_images, s3_prefix, step):
    # Production starts from a model trained on labels a quarter of which are wrong (it passes a 0.5 gate);
    # new labeled batches are correct, so a model retrained with them beats it (champion/challenger).
    noisy = f"{s3_prefix}/source"
    assert step("make_batch", "--dataset", "iris", "--n-rows", "150", "--label-noise", "0.25", "--random-state", "3",
                "--output-dir", noisy).exit_code == 0
    first = run_cli("training.py", built_images, s3_prefix, "--source-uri", f"{noisy}/batch.parquet",
                    "--threshold", "0.5", "--random-state", "1")
    assert first["promoted"] == "true"
    registry = ModelRegistry(f"{s3_prefix}/registry", "classifier")
    champion = registry.production().pointer
    assert champion["version"] == 1

    # A clean batch (same distribution, correct labels): no drift, no degradation, no retraining.
    assert step("make_batch", "--dataset", "iris", "--n-rows", "150", "--random-state", "7",
                "--output-dir", f"{s3_prefix}/batches/0001").exit_code == 0
    clean = run_cli("monitoring.py", built_images, s3_prefix, "--batch-uri", f"{s3_prefix}/batches/",
                    "--threshold", "0.5")
    assert clean["batch_uri"] == f"{s3_prefix}/batches/0001/batch.parquet"
    assert (clean["drift_detected"], clean["degraded"], clean["retrain"]) == ("false", "false", "false")
    # Drift was measured against the reference profile train stored with the production model.
    drift_report = json.loads(storage.read_bytes(clean["drift_report_uri"].replace(".html", ".json")))
    assert drift_report["reference"]["uri"] == f"{s3_prefix}/registry/classifier/1/reference_profile.json"
    assert registry.versions() == [1] and registry.production().pointer == champion
    [kept] = journal(s3_prefix, "monitoring")
    assert kept["retrain"] is False and kept["production_version"] == 1

    # The newest batch drifted (sepal features moved by 3 standard deviations): retrain on reference + batch.
    assert step("make_batch", "--dataset", "iris", "--n-rows", "150", "--random-state", "8", "--shift",
                "sepal length (cm):mean=+3;sepal width (cm):mean=+3",
                "--output-dir", f"{s3_prefix}/batches/0002").exit_code == 0
    drifted = run_cli("monitoring.py", built_images, s3_prefix, "--batch-uri", f"{s3_prefix}/batches/",
                      "--threshold", "0.5")
    assert drifted["batch_uri"] == f"{s3_prefix}/batches/0002/batch.parquet"
    assert (drifted["drift_detected"], drifted["retrain"]) == ("true", "true")
    assert drifted["reason"].startswith("retrain: data drift detected")

    decisions = journal(s3_prefix, "monitoring")
    assert [d["retrain"] for d in decisions] == [False, True]
    retrained = decisions[1]
    assert retrained["reference_uri"] == champion_training_data(registry, 1)
    assert retrained["batch_uri"] == f"{s3_prefix}/batches/0002/batch.parquet"
    assert registry.versions() == [1, 2]
    promoted = registry.production().pointer
    assert promoted["version"] == 2 and promoted["previous_version"] == 1
    assert "(version 1)" in promoted["reason"] and "> production" in promoted["reason"]
    assert drifted["production"].startswith("version 2 ")
    # The new model was trained on what decide_retrain wrote: the reference rows plus the drifted batch.
    run_root = champion_training_data(registry, 2).rsplit("/split/", 1)[0]
    loaded = step_io.read_lineage(storage.read_bytes(f"{run_root}/load_data/data.parquet"))
    assert loaded["inputs"][0]["uri"] == retrained["data_uri"]
    assert len(tables.read_table(retrained["data_uri"])) == 120 + 150
    assert [r["degraded"] for r in journal(s3_prefix, "performance")] == [False, drifted["degraded"] == "true"]


def champion_training_data(registry: ModelRegistry, version: int) -> str:
    card = json.loads(storage.read_bytes(f"{registry.version_uri(version)}/model_card.json"))
    return card["training_data"]["uri"]
