"""render_serving: KServe manifests (ServingRuntime + InferenceService) serving a registry version."""
from __future__ import annotations

import re

import click
import yaml

from mlops_runtime import kserve, outputs, step_io
from mlops_runtime.cli import output_path_option, step
from mlops_runtime.errors import BadInputError, ComponentError, StorageError
from mlops_runtime.lineage import lineage
from mlops_runtime.log import get_logger
from mlops_runtime.registry import ModelRegistry

RUNTIME_FILE = "servingruntime.yaml"
SERVICE_FILE = "inferenceservice.yaml"
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


@step("render_serving", help="Render a KServe ServingRuntime for the serve image and an InferenceService with "
                             "storageUri at a registry version (production, previous for a rollback, or N); "
                             "with --apply, apply both through the Kubernetes API.")
@click.option("--registry-uri", required=True, help="Registry root (s3://... for a cluster).")
@click.option("--model-name", required=True, help="Registered model name.")
@click.option("--model-ref", default="production", show_default=True,
              help="'production', 'previous' (roll back to the version before production) or a version number.")
@click.option("--serve-image", required=True,
              help="The serve image, pinned (registry/mlops-components/serve@sha256:...).")
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
def cli(registry_uri, model_name, model_ref, serve_image, service_name, runtime_name, namespace, cpu, memory,
        min_replicas, max_replicas, canary_traffic_percent, service_account, output_dir, apply_manifests, kubeconfig,
        inference_service_uri_output_path, model_version_output_path):
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
    if not serve_image.strip() or any(c.isspace() for c in serve_image):
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
    if apply_manifests and not storage_uri.startswith("s3://"):
        raise BadInputError(f"{storage_uri}: a cluster can only download s3:// storage URIs", label="--registry-uri")

    runtime = kserve.serving_runtime(runtime_name, serve_image)
    service = kserve.inference_service(service_name, storage_uri=storage_uri, runtime=runtime_name,
                                       model_version=version, cpu=cpu, memory=memory, min_replicas=min_replicas,
                                       max_replicas=max_replicas, canary_traffic_percent=canary_traffic_percent,
                                       service_account=service_account, namespace=namespace)
    runtime["metadata"]["namespace"] = namespace
    applied = []
    if apply_manifests:
        try:
            applied = kserve.apply([runtime, service], kubeconfig=kubeconfig, namespace=namespace)
        except Exception as error:  # the kubernetes client raises many types: config, connection, API errors
            raise StorageError(f"cannot apply to the cluster ({type(error).__name__}: "
                               f"{str(error).splitlines()[0] if str(error) else ''})", label="--kubeconfig") from None
    parameters = {"registry_uri": registry_uri, "model_name": model_name, "model_ref": model_ref,
                  "model_version": version, "serve_image": serve_image,
                  "canary_traffic_percent": canary_traffic_percent}
    with outputs.publication(output_dir, lineage=lineage("render_serving", parameters, [])) as out:
        out.put(runtime_uri, yaml.safe_dump(runtime, sort_keys=False).encode(), label="--output-dir")
        out.put(service_uri, yaml.safe_dump(service, sort_keys=False).encode(), label="--output-dir")
        out.parameters({"inference_service_uri": (inference_service_uri_output_path, service_uri),
                        "model_version": (model_version_output_path, str(version))})
    log.info("rendered %s version %d at %s%s", service_name, version, storage_uri,
             f"; {', '.join(applied)}" if applied else "")
    step_io.print_outputs({"inference_service_uri": service_uri, "model_version": version,
                           "serving_runtime_uri": runtime_uri, "storage_uri": storage_uri, "applied": applied})


if __name__ == "__main__":
    cli()
