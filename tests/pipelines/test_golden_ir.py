"""Golden tests of the compiled pipelines: per task, what a cluster runs (image, command, arguments), its caching,
retries, resources, environment and secrets, and every component's typed outputs (parameters and artifacts).

After an intended change: MLOPS_UPDATE_GOLDEN=1 pytest tests/pipelines/test_golden_ir.py, and review the diff.
"""
import json
import os
import re

import pytest

from pipelines import common, monitoring, production, training
from tests.support import REPO

GOLDEN = REPO / "tests" / "pipelines" / "golden"
PIPELINES = {"training": training.DEFINITION, "monitoring": monitoring.DEFINITION, "production": production.DEFINITION}


def summary(package) -> dict:
    """The parts of the IR and platform spec that decide what runs; image digests (made up here) left out."""
    spec, platform = common.read_package(package)
    secrets = platform.get("platforms", {}).get("kubernetes", {}).get("deploymentSpec", {}).get("executors", {})
    components = {}
    for name, component in sorted(spec["components"].items()):
        outputs = component.get("outputDefinitions", {})
        entry = {"parameters": {k: v["parameterType"] for k, v in sorted(outputs.get("parameters", {}).items())},
                 "artifacts": {k: v["artifactType"]["schemaTitle"]
                               for k, v in sorted(outputs.get("artifacts", {}).items())}}
        if "dag" in component:
            entry["tasks"] = {task_name: task_summary(task)
                              for task_name, task in sorted(component["dag"]["tasks"].items())}
        else:
            executor = spec["deploymentSpec"]["executors"][component["executorLabel"]]["container"]
            entry["container"] = {
                "image": re.sub(r"@sha256:[0-9a-f]{64}$", "@sha256:<digest>", executor["image"]),
                "command": executor.get("command"), "args": executor.get("args"),
                "env": executor.get("env", []), "resources": executor.get("resources", {}),
                "secrets": secrets.get(component["executorLabel"], {}).get("secretAsEnv", [])}
        components[name] = entry
    return {"root": {task_name: task_summary(task) for task_name, task in sorted(spec["root"]["dag"]["tasks"].items())},
            "components": components}


def task_summary(task: dict) -> dict:
    return {"component": task["componentRef"]["name"], "after": sorted(task.get("dependentTasks", [])),
            "caching": task.get("cachingOptions", {}).get("enableCache", False),
            "retry": task.get("retryPolicy"), "condition": task.get("triggerPolicy", {}).get("condition")}


@pytest.mark.parametrize("name", sorted(PIPELINES))
def test_compiled_pipeline_matches_its_golden_summary(name, made_up_pinned_specs, tmp_path):
    definition = PIPELINES[name]
    pipeline = definition.build(common.load_components(definition.steps, made_up_pinned_specs),
                                policy=common.TaskPolicy(s3_endpoint="http://minio.kubeflow:9000"))
    got = summary(common.compile_pipeline(pipeline, tmp_path / f"{name}.yaml"))
    golden = GOLDEN / f"{name}.json"
    if os.environ.get("MLOPS_UPDATE_GOLDEN"):
        golden.write_text(json.dumps(got, indent=1, sort_keys=True) + "\n")
    assert got == json.loads(golden.read_text()), f"{golden} differs: see the module docstring"


def test_the_golden_summaries_cover_what_a_cluster_needs():
    training_summary = json.loads((GOLDEN / "training.json").read_text())
    evaluate = training_summary["components"]["comp-evaluate"]
    assert evaluate["artifacts"] == {"classification_metrics": "system.ClassificationMetrics",
                                     "metrics": "system.Metrics"}
    assert evaluate["parameters"] == {"accuracy": "NUMBER_DOUBLE", "metrics_uri": "STRING", "score": "NUMBER_DOUBLE"}
    container = evaluate["container"]
    assert container["image"] == "ghcr.io/mlops-components/mlops-components/evaluate:0.1.0@sha256:<digest>"
    assert container["env"] == [{"name": "AWS_ENDPOINT_URL", "value": "http://minio.kubeflow:9000"}]
    [secret] = container["secrets"]
    assert {m["secretKey"] for m in secret["keyToEnv"]} == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
