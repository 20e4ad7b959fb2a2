"""render_serving: KServe manifests at a registry version, valid against KServe's CRD schema (vendored,
pruned: tests/serving/kserve/crd-schemas.json), rollback to the previous version, --apply refusals."""
from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from mlops_runtime.registry import ModelRegistry
from tests.serving.serving_fixtures import customers, fit_pipeline, register

SCHEMAS = json.loads((Path(__file__).parent / "kserve" / "crd-schemas.json").read_text())
IMAGE = "127.0.0.1:5000/mlops-components/serve:0.1.0@sha256:" + "a" * 64
MODEL = "churn"


def valid(kind: str, document: dict) -> None:
    jsonschema.Draft7Validator(SCHEMAS[kind]).validate(document)


@pytest.fixture(scope="module")
def registry_uri(tmp_path_factory) -> str:
    uri = str(tmp_path_factory.mktemp("registry"))
    table = customers()
    register(uri, MODEL, fit_pipeline(table), table)
    register(uri, MODEL, fit_pipeline(table, n_estimators=7, random_state=5), table)
    return uri


def render(step, registry_uri: str, out: Path, *extra: str):
    return step("render_serving", "--registry-uri", registry_uri, "--model-name", MODEL, "--serve-image", IMAGE,
                "--output-dir", out, *extra)


def manifests(out: Path) -> tuple[dict, dict]:
    return (yaml.safe_load((out / "inferenceservice.yaml").read_text()),
            yaml.safe_load((out / "servingruntime.yaml").read_text()))


@pytest.mark.parametrize("where", ["local", "s3"])
def test_renders_valid_manifests_at_the_production_version(step, registry_uri, tmp_path, s3_prefix, where):
    out = tmp_path / "out"
    result = render(step, registry_uri, out if where == "local" else f"{s3_prefix}/out", "--canary-traffic-percent",
                    "10", "--cpu", "500m", "--memory", "512Mi", "--service-account", "s3-reader",
                    "--model-version-output-path", tmp_path / "version")
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout.splitlines()[-1])
    assert summary["model_version"] == 2 and (tmp_path / "version").read_text() == "2"
    if where == "s3":
        return
    service, runtime = manifests(out)
    valid("InferenceService", service)
    valid("ServingRuntime", runtime)
    predictor = service["spec"]["predictor"]
    assert predictor["model"]["storageUri"] == ModelRegistry(registry_uri, MODEL).version_uri(2)
    assert predictor["model"]["modelFormat"] == {"name": "skops"} and predictor["model"]["protocolVersion"] == "v2"
    assert predictor["canaryTrafficPercent"] == 10 and predictor["serviceAccountName"] == "s3-reader"
    assert predictor["model"]["resources"]["limits"] == {"cpu": "500m", "memory": "512Mi"}
    assert runtime["spec"]["supportedModelFormats"][0]["name"] == "skops"
    assert runtime["spec"]["containers"][0]["image"] == IMAGE
    # read-only root filesystem: serve's scratch folder is an emptyDir, as /tmp is a tmpfs in the docker tests
    assert runtime["spec"]["containers"][0]["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]


def test_the_schema_refuses_what_kserve_would(step, registry_uri, tmp_path):
    assert render(step, registry_uri, tmp_path).exit_code == 0
    service, runtime = manifests(tmp_path)
    valid("InferenceService", service)
    service["spec"]["predictor"]["model"]["storageURI"] = service["spec"]["predictor"]["model"].pop("storageUri")
    with pytest.raises(jsonschema.ValidationError, match="storageURI"):
        valid("InferenceService", service)
    del runtime["spec"]["containers"][0]["name"]
    with pytest.raises(jsonschema.ValidationError, match="'name' is a required property"):
        valid("ServingRuntime", runtime)
    service, _ = manifests(tmp_path)
    service["spec"]["predictor"]["minReplicas"] = "one"
    with pytest.raises(jsonschema.ValidationError):
        valid("InferenceService", service)


def test_previous_renders_the_rollback(step, registry_uri, tmp_path):
    result = render(step, registry_uri, tmp_path, "--model-ref", "previous")
    assert result.exit_code == 0, result.stderr
    service, _ = manifests(tmp_path)
    assert service["spec"]["predictor"]["model"]["storageUri"] == ModelRegistry(registry_uri, MODEL).version_uri(1)
    assert service["metadata"]["labels"]["mlops-components/model-version"] == "1"


def test_apply_without_a_kubeconfig_refuses_and_renders_nothing(step, registry_uri, tmp_path):
    result = render(step, registry_uri, tmp_path / "out", "--apply")
    assert result.exit_code == 3 and result.stderr.startswith("error: --kubeconfig: "), result.stderr
    assert not (tmp_path / "out").exists()


def test_apply_to_an_unreachable_cluster_is_a_storage_error(step, registry_uri, tmp_path, s3_prefix):
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "none",
        "clusters": [{"name": "none", "cluster": {"server": "https://127.0.0.1:9"}}],
        "contexts": [{"name": "none", "context": {"cluster": "none", "user": "none"}}],
        "users": [{"name": "none", "user": {"token": "placeholder"}}]}))
    s3_registry = f"{s3_prefix}/registry"
    table = customers()
    register(s3_registry, MODEL, fit_pipeline(table), table)
    result = step("render_serving", "--registry-uri", s3_registry, "--model-name", MODEL, "--serve-image", IMAGE,
                  "--output-dir", tmp_path / "out", "--apply", "--kubeconfig", kubeconfig)
    assert result.exit_code == 4 and result.stderr.startswith("error: --kubeconfig: cannot apply"), result.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("extra, option", [
    (["--model-ref", "7"], "--model-ref"), (["--cpu", "lots"], "--cpu"), (["--memory", "0Gi"], "--memory"),
    (["--service-name", "Churn_Model"], "--service-name"), (["--min-replicas", "5", "--max-replicas", "2"],
                                                           "--min-replicas")])
def test_bad_options_fail_cleanly(step, registry_uri, tmp_path, extra, option):
    result = render(step, registry_uri, tmp_path / "out", *extra)
    assert result.exit_code == 3 and result.stderr.startswith(f"error: {option}: "), result.stderr
    assert not (tmp_path / "out").exists()


def test_no_previous_version_is_bad_input(step, tmp_path):
    table = customers()
    register(str(tmp_path / "reg"), MODEL, fit_pipeline(table), table)
    result = render(step, str(tmp_path / "reg"), tmp_path / "out", "--model-ref", "previous")
    assert result.exit_code == 3 and result.stderr.startswith("error: --model-ref: "), result.stderr


@pytest.fixture(scope="module")
def onnx_registry(tmp_path_factory) -> str:
    """Version 1 without ONNX, version 2 (production) with export_onnx's parity-checked model.onnx registered."""
    from mlops_runtime import models, outputs, storage
    from tests.serving.serving_fixtures import card_for
    from tests.support import run_step

    root = tmp_path_factory.mktemp("onnx-registry")
    table = customers()
    register(str(root / "registry"), MODEL, fit_pipeline(table, n_estimators=5), table)
    model = fit_pipeline(table)
    payload = models.dumps(model)
    storage.write_bytes(str(root / "model" / "model.skops"), payload)
    storage.write_bytes(str(root / "model" / "model_card.json"), outputs.json_bytes(card_for(model, table, payload)))
    table.to_csv(root / "test.csv", index=False)
    exported = run_step("export_onnx", "--model-uri", str(root / "model" / "model.skops"), "--test-uri",
                        str(root / "test.csv"), "--output-dir", str(root / "onnx"))
    assert exported.exit_code == 0, exported.stderr
    register(str(root / "registry"), MODEL, model, table, onnx_dir=str(root / "onnx"))
    return str(root / "registry")


def test_onnx_renders_a_triton_inference_service_with_its_model_repository(step, onnx_registry, tmp_path):
    out = tmp_path / "out"
    result = step("render_serving", "--registry-uri", onnx_registry, "--model-name", MODEL, "--model-format", "onnx",
                  "--output-dir", out)
    assert result.exit_code == 0, result.stderr
    service = yaml.safe_load((out / "inferenceservice.yaml").read_text())
    valid("InferenceService", service)
    model = service["spec"]["predictor"]["model"]
    assert model["modelFormat"] == {"name": "onnx"} and "runtime" not in model
    assert model["storageUri"] == str(out / "triton") and model["protocolVersion"] == "v2"
    registered = (Path(ModelRegistry(onnx_registry, MODEL).version_uri(2)) / "model.onnx").read_bytes()
    assert (out / "triton" / MODEL / "1" / "model.onnx").read_bytes() == registered  # Triton's layout
    assert 'backend: "onnxruntime"' in (out / "triton" / MODEL / "config.pbtxt").read_text()
    assert not (out / "servingruntime.yaml").exists()  # KServe's own Triton runtime serves it


def test_onnx_refuses_a_version_without_an_onnx_model(step, onnx_registry, tmp_path):
    result = step("render_serving", "--registry-uri", onnx_registry, "--model-name", MODEL, "--model-format", "onnx",
                  "--model-ref", "1", "--output-dir", tmp_path / "out")
    assert result.exit_code == 3 and result.stderr.startswith("error: --model-format: version 1 has no ONNX model")
    assert not (tmp_path / "out").exists()


def test_onnx_refuses_a_changed_model_file(step, onnx_registry, tmp_path):
    import shutil

    registry = tmp_path / "registry"
    shutil.copytree(onnx_registry, registry)
    onnx_file = Path(ModelRegistry(str(registry), MODEL).version_uri(2)) / "model.onnx"
    onnx_file.write_bytes(onnx_file.read_bytes() + b"\0")
    result = step("render_serving", "--registry-uri", registry, "--model-name", MODEL, "--model-format", "onnx",
                  "--output-dir", tmp_path / "out")
    assert result.exit_code == 5 and result.stderr.startswith("error: --model-format: "), result.stderr
    assert not (tmp_path / "out").exists()


def test_skops_still_needs_the_serve_image(step, onnx_registry, tmp_path):
    result = step("render_serving", "--registry-uri", onnx_registry, "--model-name", MODEL,
                  "--output-dir", tmp_path / "out")
    assert result.exit_code == 3 and result.stderr.startswith("error: --serve-image: "), result.stderr
