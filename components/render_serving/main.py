"""render_serving: KServe manifests (ServingRuntime + InferenceService) serving a registry version."""
from __future__ import annotations

import json
import re

import click
import yaml

from mlops_runtime import kserve, models, outputs, step_io, storage
from mlops_runtime.cli import output_path_option, step
from mlops_runtime.errors import BadInputError, ComponentError, ModelError, StorageError
from mlops_runtime.lineage import lineage
from mlops_runtime.log import get_logger
from mlops_runtime.registry import ModelRegistry

RUNTIME_FILE = "servingruntime.yaml"
SERVICE_FILE = "inferenceservice.yaml"
TRITON_DIR = "triton"
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
QUANTITY = re.compile(r"^([0-9]+(\.[0-9]+)?)(m|k|Ki|M|Mi|G|Gi|T|Ti)?$")

log = get_logger("render_serving")


def dns_label(value: str, *, label: str) -> str:
    if not DNS_LABEL.match(value):
        raise BadInputError(f"'{value}' is not a Kubernetes name (lower-case letters, digits and '-', at most 63)",
                            label=label)
    return value


def quantity(value: str, *, label: str) -> str:
    if not QUANTITY.match(value) or float(QUANTITY.match(value).group(1)) <= 0:
        raise BadInputError(f"'{value}' is not a positive Kubernetes quantity (e.g. 500m, 2, 512Mi)", label=label)
    return value


def resolve_version(registry: ModelRegistry, reference: str) -> int:
    """``production``, ``previous`` (the version production pointed at before: a rollback) or a number."""
    pointer = registry.production().pointer
    if reference in ("production", "previous"):
        if pointer is None:
            raise BadInputError(f"{registry.base}: no production model yet", label="--model-ref")
        version = pointer["version"] if reference == "production" else pointer.get("previous_version")
        if version is None:
            raise BadInputError(f"{registry.base}: production has no previous version to roll back to",
                                label="--model-ref")
        return int(version)
    if reference.isdigit() and int(reference) in registry.versions():
        return int(reference)
    raise BadInputError(f"{registry.base}: no model version '{reference}'", label="--model-ref")


def onnx_model(registry: ModelRegistry, version: int) -> bytes:
    """The version's model.onnx, checked: its parity report is of this model and names this file's sha256."""
    folder = registry.version_uri(version)
    if not storage.exists(storage.join(folder, models.ONNX_REPORT_FILE)):
        raise BadInputError(f"version {version} has no ONNX model (export it with export_onnx and register it "
                            "with deploy --onnx-dir)")
    files = models.onnx_files(folder, registry.entry(version)["model_sha256"], label=None, invalid=ModelError)
    if models.ONNX_FILE not in files:
        reason = json.loads(files[models.ONNX_REPORT_FILE]).get("reason", "no reason recorded")
        raise BadInputError(f"version {version} has no ONNX model: export_onnx did not export it "
                            f"({str(reason)[:200]})")
    return files[models.ONNX_FILE]


@step("render_serving", help="Render a KServe ServingRuntime for the serve image and an InferenceService with "
                             "storageUri at a registry version (production, previous for a rollback, or N); "
                             "with --apply, apply both through the Kubernetes API.")
@click.option("--registry-uri", required=True, help="Registry root (s3://... for a cluster).")
@click.option("--model-name", required=True, help="Registered model name.")
@click.option("--model-ref", default="production", show_default=True,
              help="'production', 'previous' (roll back to the version before production) or a version number.")
@click.option("--serve-image", default="",
              help="The serve image, pinned (registry/mlops-components/serve@sha256:...); needed for --model-format "
                   "skops.")
@click.option("--model-format", type=click.Choice([kserve.SKOPS_FORMAT, kserve.ONNX_FORMAT]),
              default=kserve.SKOPS_FORMAT, show_default=True,
              help="skops: the serve image's ServingRuntime; onnx: the version's parity-checked model.onnx "
                   "(export_onnx, deploy --onnx-dir) on KServe's Triton runtime, from a Triton model repository at "
                   "<output-dir>/triton.")
@click.option("--service-name", default=None, help="InferenceService name (default: the model name).")
@click.option("--runtime-name", default="mlops-skops", show_default=True, help="ServingRuntime name.")
@click.option("--namespace", default="default", show_default=True, help="Kubernetes namespace.")
@click.option("--cpu", default="1", show_default=True, help="CPU request and limit of the predictor.")
@click.option("--memory", default="1Gi", show_default=True, help="Memory request and limit of the predictor.")
@click.option("--min-replicas", type=click.IntRange(0, 100), default=1, show_default=True, help="Replicas at least.")
@click.option("--max-replicas", type=click.IntRange(1, 100), default=3, show_default=True, help="Replicas at most.")
@click.option("--canary-traffic-percent", type=click.IntRange(0, 100), default=100, show_default=True,
              help="Traffic share of this version while the previous revision takes the rest; 100: all traffic "
                   "(no canary).")
@click.option("--service-account", default=None, help="Service account holding the S3 Secret for the storage URI.")
@click.option("--output-dir", required=True, help="URI prefix (s3://... or a local folder) for this step's objects.")
@click.option("--apply", "apply_manifests", is_flag=True, default=False,
              help="Also create or update both objects in the cluster of --kubeconfig.")
@click.option("--kubeconfig", default=None, type=click.Path(dir_okay=False), help="Kubeconfig file for --apply.")
@output_path_option("inference_service_uri", "URI of the written inferenceservice.yaml.")
@output_path_option("model_version", "The registry version the InferenceService serves.")
def cli(registry_uri, model_name, model_ref, serve_image, model_format, service_name, runtime_name, namespace, cpu,
        memory, min_replicas, max_replicas, canary_traffic_percent, service_account, output_dir, apply_manifests,
        kubeconfig, inference_service_uri_output_path, model_version_output_path):
    runtime_uri = step_io.output_uri(output_dir, RUNTIME_FILE)
    service_uri = step_io.output_uri(output_dir, SERVICE_FILE)
    service_name = dns_label(service_name or model_name.lower(), label="--service-name")
    dns_label(runtime_name, label="--runtime-name")
    dns_label(namespace, label="--namespace")
    if service_account is not None:
        dns_label(service_account, label="--service-account")
    quantity(cpu, label="--cpu")
    quantity(memory, label="--memory")
    if min_replicas > max_replicas:
        raise BadInputError(f"{min_replicas} is above --max-replicas {max_replicas}", label="--min-replicas")
    if model_format == kserve.SKOPS_FORMAT and (not serve_image.strip() or any(c.isspace() for c in serve_image)):
        raise BadInputError(f"'{serve_image}' is not an image reference", label="--serve-image")
    if apply_manifests and not kubeconfig:
        raise BadInputError("--apply needs a kubeconfig; none given (nothing was rendered or applied)",
                            label="--kubeconfig")
    registry = ModelRegistry(registry_uri, model_name)
    try:
        version = resolve_version(registry, model_ref)
    except ComponentError as error:
        raise error.about("--registry-uri") from None
    storage_uri = registry.version_uri(version)
    repository: dict[str, bytes] = {}
    if model_format == kserve.ONNX_FORMAT:
        try:
            onnx = onnx_model(registry, version)
        except ComponentError as error:
            raise error.about("--model-format") from None
        storage_uri = step_io.output_uri(output_dir, TRITON_DIR)
        config = kserve.triton_config(service_name).encode()
        repository = {storage.join(storage_uri, service_name, "1", models.ONNX_FILE): onnx,
                      storage.join(storage_uri, service_name, "config.pbtxt"): config}
    if apply_manifests and not storage_uri.startswith("s3://"):
        raise BadInputError(f"{storage_uri}: a cluster can only download s3:// storage URIs",
                            label="--output-dir" if repository else "--registry-uri")

    runtime = kserve.serving_runtime(runtime_name, serve_image) if model_format == kserve.SKOPS_FORMAT else None
    service = kserve.inference_service(service_name, storage_uri=storage_uri, model_format=model_format,
                                       runtime=runtime_name if runtime else None, model_version=version, cpu=cpu,
                                       memory=memory, min_replicas=min_replicas,
                                       max_replicas=max_replicas, canary_traffic_percent=canary_traffic_percent,
                                       service_account=service_account, namespace=namespace)
    if runtime is not None:
        runtime["metadata"]["namespace"] = namespace
    applied = []
    if apply_manifests:
        try:
            applied = kserve.apply([d for d in (runtime, service) if d is not None], kubeconfig=kubeconfig,
                                   namespace=namespace)
        except Exception as error:  # the kubernetes client raises many types: config, connection, API errors
            raise StorageError(f"cannot apply to the cluster ({type(error).__name__}: "
                               f"{str(error).splitlines()[0] if str(error) else ''})", label="--kubeconfig") from None
    parameters = {"registry_uri": registry_uri, "model_name": model_name, "model_ref": model_ref,
                  "model_version": version, "serve_image": serve_image, "model_format": model_format,
                  "canary_traffic_percent": canary_traffic_percent}
    with outputs.publication(output_dir, lineage=lineage("render_serving", parameters, [])) as out:
        for uri, data in repository.items():
            out.put(uri, data, label="--output-dir")
        if runtime is not None:
            out.put(runtime_uri, yaml.safe_dump(runtime, sort_keys=False).encode(), label="--output-dir")
        out.put(service_uri, yaml.safe_dump(service, sort_keys=False).encode(), label="--output-dir")
        out.parameters({"inference_service_uri": (inference_service_uri_output_path, service_uri),
                        "model_version": (model_version_output_path, str(version))})
    log.info("rendered %s version %d at %s%s", service_name, version, storage_uri,
             f"; {', '.join(applied)}" if applied else "")
    step_io.print_outputs({"inference_service_uri": service_uri, "model_version": version,
                           "serving_runtime_uri": runtime_uri if runtime else "", "storage_uri": storage_uri,
                           "applied": applied})


if __name__ == "__main__":
    cli()
