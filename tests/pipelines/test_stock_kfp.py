"""A user's own pipeline from the pinned specs, with kfp's public API only, on STOCK kfp.local (no patches).

Imports nothing from pipelines/. The block between the README markers is, verbatim, the README's
"Use the components in your own pipeline" section (a test below checks it).
"""
import json
import re
from typing import NamedTuple

import pytest

from mlops_runtime import storage
from tests.support import REPO, S3_ENV

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def run_users_pipeline(specs_dir, pipeline_root, storage_root, registry_uri, s3_env):
    # README:start
    from kfp import components, dsl, local

    def load(step):
        return components.load_component_from_file(f"{specs_dir}/{step}/component.yaml")

    load_data, split, train, evaluate, deploy, check_performance = map(load, [
        "load_data", "split", "train", "evaluate", "deploy", "check_performance"])

    @dsl.pipeline(name="check-if-promoted")
    def check_if_promoted(promoted: bool, batch_uri: str, registry_uri: str, storage_root: str):
        # A condition on a sub-pipeline's input: stock kfp.local 2.17 skips a dsl.If on a task output.
        with dsl.If(promoted == True):  # noqa: E712
            check_performance(batch_uri=batch_uri, registry_uri=registry_uri,
                              output_dir=f"{storage_root}/{dsl.PIPELINE_JOB_ID_PLACEHOLDER}/check_performance")

    class Outputs(NamedTuple):
        promoted: bool
        metrics: dsl.Metrics
        confusion: dsl.ClassificationMetrics
        registered: dsl.Model  # the registry version deploy promoted (its URI and version in the metadata)

    @dsl.pipeline(name="my-training")
    def my_training(storage_root: str, registry_uri: str) -> Outputs:
        # Steps hand each other typed artifacts (Dataset -> Model -> Metrics), kept under the pipeline root.
        data = load_data(dataset="wine")
        tables = split(data=data.outputs["data"])  # one Dataset: train.parquet and test.parquet
        model = train(splits=tables.outputs["splits"], n_estimators=50)
        scores = evaluate(model=model.outputs["model"], splits=tables.outputs["splits"])
        gate = deploy(model=model.outputs["model"], metrics=scores.outputs["metrics"], registry_uri=registry_uri)
        gate.set_caching_options(enable_caching=False)  # it writes the registry
        check_if_promoted(promoted=gate.outputs["promoted"], batch_uri=tables.outputs["test_uri"],
                          registry_uri=registry_uri, storage_root=storage_root)
        return Outputs(promoted=gate.outputs["promoted"], metrics=scores.outputs["metrics"],
                       confusion=scores.outputs["classification_metrics"],
                       registered=gate.outputs["registered_model"])

    # The images run as uid 10001: the pipeline root must be writable by it.
    pipeline_root.mkdir(parents=True, exist_ok=True)
    pipeline_root.chmod(0o777)
    local.init(runner=local.DockerRunner(network_mode="host", environment=s3_env),
               pipeline_root=str(pipeline_root))
    run = my_training(storage_root=storage_root, registry_uri=registry_uri)
    # README:end
    return run


def run_artifact(root, task, artifact):
    [folder] = root.glob(f"my-training-*/{task}/{artifact}")
    return str(folder)


def readme_block() -> str:
    source = (REPO / "tests" / "pipelines" / "test_stock_kfp.py").read_text()
    block = source.split("    # README:start\n", 1)[1].split("    # README:end\n", 1)[0]
    return "\n".join(line[4:] for line in block.splitlines()) + "\n"


def test_the_readme_shows_this_code():
    readme = (REPO / "README.md").read_text()
    assert f"```python\n{readme_block()}```" in readme


def test_a_users_pipeline_runs_on_stock_kfp_local(built_images, s3_prefix, tmp_path):
    import kfp.local.docker_task_handler as handler
    from kfp.local.orchestrator.enhanced_dag_orchestrator import ConditionEvaluator

    stock = (handler.run_docker_container, ConditionEvaluator.__dict__["_resolve_pipeline_channel"])
    registry = f"{s3_prefix}/registry"
    run = run_users_pipeline(built_images.specs_dir, tmp_path / "root", f"{s3_prefix}/runs", registry, S3_ENV)
    assert (handler.run_docker_container, ConditionEvaluator.__dict__["_resolve_pipeline_channel"]) == stock

    assert run.outputs["promoted"] is True  # wine's test accuracy is above deploy's default threshold 0.9
    # What the KFP UI shows: evaluate's scalar metrics and confusion matrix, equal to its metrics.json
    # The Metrics artifact is evaluate's folder: its metrics.json and, as its metadata, the scalars the UI shows
    metrics = run.outputs["metrics"]
    assert metrics.schema_title == "system.Metrics" and metrics.uri.startswith(str(tmp_path / "root"))
    document = json.loads(storage.read_bytes(f"{metrics.uri}/metrics.json"))
    shown = metrics.metadata
    assert {name: shown[name] for name in ("accuracy", "precision_macro", "recall_macro", "f1_macro")} == {
        name: document[name] for name in ("accuracy", "precision_macro", "recall_macro", "f1_macro")}
    matrix = run.outputs["confusion"].metadata["confusionMatrix"]
    assert [spec["displayName"] for spec in matrix["annotationSpecs"]] == [
        str(label) for label in document["confusion_matrix"]["labels"]]
    assert [[int(v) for v in row["row"]] for row in matrix["rows"]] == document["confusion_matrix"]["matrix"]
    production = storage.read_bytes(f"{registry}/classifier/production.json")
    assert b'"version": 1' in production
    registered = run.outputs["registered"]  # deploy's typed registry-version artifact
    assert registered.schema_title == "system.Model"
    assert {key: registered.metadata[key] for key in ("promoted", "registered_uri", "model_name", "version")} == {
        "promoted": True, "registered_uri": f"{registry}/classifier/1", "model_name": "classifier", "version": 1}
    assert registered.metadata["value"] == document["accuracy"] and registered.metadata["metric"] == "accuracy"
    # the conditional branch ran: check_performance appended one record to the model's history
    assert len(storage.list_uris(f"{registry}/classifier/performance/")) == 1
    runs = {uri.split("/")[-2] for uri in storage.list_uris(f"{s3_prefix}/runs/") if uri.endswith("_manifest.json")}
    assert runs == {"check_performance"}  # the others' folders are their artifacts, under the pipeline root
    assert document["model_uri"] == f"{run_artifact(tmp_path / 'root', 'train', 'model')}/model.skops"
    pinned = re.compile(r"@sha256:[0-9a-f]{64}$")
    for spec in built_images.specs_dir.glob("*/component.yaml"):
        assert pinned.search(re.search(r"image:\s*(\S+)", spec.read_text())[1])
