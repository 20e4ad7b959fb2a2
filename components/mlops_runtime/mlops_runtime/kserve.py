"""KServe manifests for a registry version: a ServingRuntime for the serve image and an InferenceService.

KServe's storage initializer downloads ``storageUri`` (the registry version folder: model.skops, its card,
entry.json) into /mnt/models; the runtime's container runs the serve image on that folder, so the version it
names in every response is the registry's. S3 credentials come from the service account's Secret
(annotated ``serving.kserve.io/s3-endpoint``), as KServe documents.
"""
from __future__ import annotations

import logging
from typing import Any

SKOPS_FORMAT = "skops"
ONNX_FORMAT = "onnx"  # served by KServe's Triton runtime (kserve-tritonserver), auto-selected
KSERVE_GROUP = "serving.kserve.io"
MODEL_DIR = "/mnt/models"


def serving_runtime(name: str, image: str, *, port: int = 8080) -> dict[str, Any]:
    return {
        "apiVersion": f"{KSERVE_GROUP}/v1alpha1",
        "kind": "ServingRuntime",
        "metadata": {"name": name},
        "spec": {
            "supportedModelFormats": [{"name": SKOPS_FORMAT, "version": "1", "autoSelect": True}],
            "protocolVersions": ["v2"],
            "containers": [{
                "name": "kserve-container",
                "image": image,
                "args": ["--model-uri", f"{MODEL_DIR}/model.skops", "--model-name", "{{.Name}}",
                         "--port", str(port)],
                "ports": [{"containerPort": port, "protocol": "TCP"}],
                "readinessProbe": {"httpGet": {"path": "/v2/health/ready", "port": port}},
                "securityContext": {"runAsNonRoot": True, "readOnlyRootFilesystem": True,
                                    "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
                "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],  # the only place serve writes
            }],
            "volumes": [{"name": "tmp", "emptyDir": {}}],
        },
    }


def inference_service(name: str, *, storage_uri: str, runtime: str | None, model_version: int, cpu: str,
                      memory: str, min_replicas: int, max_replicas: int, canary_traffic_percent: int | None = None,
                      service_account: str | None = None, namespace: str | None = None,
                      model_format: str = SKOPS_FORMAT) -> dict[str, Any]:
    """``runtime`` None: KServe picks a runtime for the format (Triton for onnx)."""
    predictor: dict[str, Any] = {
        "minReplicas": min_replicas,
        "maxReplicas": max_replicas,
        "model": {
            "modelFormat": {"name": model_format},
            **({"runtime": runtime} if runtime else {}),
            "protocolVersion": "v2",
            "storageUri": storage_uri,
            "resources": {"requests": {"cpu": cpu, "memory": memory}, "limits": {"cpu": cpu, "memory": memory}},
        },
    }
    if canary_traffic_percent is not None and canary_traffic_percent < 100:  # 100: a full rollout, no canary
        predictor["canaryTrafficPercent"] = canary_traffic_percent
    if service_account:
        predictor["serviceAccountName"] = service_account
    metadata: dict[str, Any] = {"name": name, "labels": {"mlops-components/model-version": str(model_version)}}
    if namespace:
        metadata["namespace"] = namespace
    return {"apiVersion": f"{KSERVE_GROUP}/v1beta1", "kind": "InferenceService", "metadata": metadata,
            "spec": {"predictor": predictor}}


def apply(documents: list[dict[str, Any]], *, kubeconfig: str, namespace: str) -> list[str]:
    """Create or update each document through the Kubernetes API; returns what was done, one line each."""
    from kubernetes import client, config
    from kubernetes.client.exceptions import ApiException

    api = client.CustomObjectsApi(config.new_client_from_config(config_file=kubeconfig))
    # urllib3 logs each connection retry as a WARNING; the step reports the final failure as its one line.
    pool_log = logging.getLogger("urllib3.connectionpool")
    level = pool_log.level
    pool_log.setLevel(logging.ERROR)
    try:
        return _apply_all(api, documents, namespace, ApiException)
    finally:
        pool_log.setLevel(level)


def _apply_all(api: Any, documents: list[dict[str, Any]], namespace: str, api_exception: type) -> list[str]:
    done = []
    for document in documents:
        group, version = document["apiVersion"].split("/")
        plural = document["kind"].lower() + "s"
        name = document["metadata"]["name"]
        try:
            api.create_namespaced_custom_object(group, version, namespace, plural, document)
            done.append(f"created {document['kind']}/{name}")
        except api_exception as error:
            if error.status != 409:
                raise
            api.patch_namespaced_custom_object(group, version, namespace, plural, name, document)
            done.append(f"updated {document['kind']}/{name}")
    return done


def triton_config(model_name: str) -> str:
    """A minimal Triton model configuration: the ONNX backend completes inputs and outputs from the model."""
    return f'name: "{model_name}"\nbackend: "onnxruntime"\nmax_batch_size: 0\n'
