"""What every pipeline shares: component specs, per-task settings, compiling and submitting.

Imports neither kfp.local nor docker: compiling and submitting need only kfp. Local runs live in
:mod:`pipelines.local_run` (and the kfp.local workarounds it applies in :mod:`pipelines.kfp_local_fixes`).
"""
from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kfp
import yaml
from kfp import compiler, components

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SPECS_DIR = REPO / "components"

# What a step container needs from the host to reach S3; nothing else of the host environment is passed.
FORWARDED_ENV = (
    "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
    "AWS_DEFAULT_REGION", "AWS_REGION", "MLOPS_S3_RETRY_SECONDS", "MLOPS_S3_CONNECT_TIMEOUT", "MLOPS_S3_READ_TIMEOUT",
    "MLOPS_LOG_LEVEL",
)


def load_components(names: Iterable[str], specs_dir: str | Path | None = None) -> dict[str, Callable[..., Any]]:
    """Load ``<specs_dir>/<name>/component.yaml`` for each name (default: the repository's components/).

    Use the specs written by ``build.py --pin-dir`` to get components pinned to pushed image digests.
    """
    root = Path(specs_dir) if specs_dir else DEFAULT_SPECS_DIR
    loaded = {}
    for name in names:
        path = root / name / "component.yaml"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no component spec for step '{name}'")
        loaded[name] = components.load_component_from_file(str(path))
    return loaded


@dataclass(frozen=True)
class Resources:
    """Kubernetes requests and limits of one task (``"500m"``, ``"1Gi"``...)."""

    cpu_request: str
    cpu_limit: str
    memory_request: str
    memory_limit: str


@dataclass(frozen=True)
class Retry:
    num_retries: int = 3
    backoff_duration: str = "60s"
    backoff_factor: float = 2.0


# The keys of the Kubernetes secret named by TaskPolicy.s3_secret, each passed as the same environment variable.
S3_SECRET_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")


@dataclass(frozen=True)
class TaskPolicy:
    """Settings a pipeline factory applies to each of its tasks, besides their own resources.

    ``s3_secret`` names a Kubernetes secret whose keys :data:`S3_SECRET_KEYS` become the tasks' environment
    (kfp-kubernetes ``use_secret_as_env``); ``s3_endpoint``, when set, becomes their ``AWS_ENDPOINT_URL``.
    """

    retry: Retry | None = Retry()
    resources: bool = True
    s3_endpoint: str = ""
    s3_secret: str | None = "mlops-s3"


CLUSTER = TaskPolicy()
# kfp.local honours retries (a failing step would wait 60 + 120 + 240 s before the run fails) and
# ignores resource requests and limits, warning once per task; a local run sets neither. Its containers get
# the host's S3 settings from DockerRunner(environment=...), not from a Kubernetes secret.
LOCAL = TaskPolicy(retry=None, resources=False, s3_secret=None)


def configure_task(task: Any, resources: Resources, *, caching: bool, policy: TaskPolicy) -> Any:
    """Apply resources, retries, S3 settings and caching to a pipeline task; returns the task."""
    if policy.resources:
        task.set_cpu_request(resources.cpu_request).set_cpu_limit(resources.cpu_limit)
        task.set_memory_request(resources.memory_request).set_memory_limit(resources.memory_limit)
    if policy.retry is not None:
        task.set_retry(num_retries=policy.retry.num_retries, backoff_duration=policy.retry.backoff_duration,
                       backoff_factor=policy.retry.backoff_factor)
    if policy.s3_endpoint:
        task.set_env_variable("AWS_ENDPOINT_URL", policy.s3_endpoint)
    if policy.s3_secret:
        from kfp import kubernetes

        kubernetes.use_secret_as_env(task, secret_name=policy.s3_secret,
                                     secret_key_to_env={key: key for key in S3_SECRET_KEYS})
    task.set_caching_options(enable_caching=caching)
    return task


def compile_pipeline(pipeline_func: Callable[..., Any], package_path: str | Path) -> Path:
    path = Path(package_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(pipeline_func, str(path))
    return path


def read_package(package_path: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """A compiled pipeline's IR and its platform spec (Kubernetes settings; {} when it has none)."""
    documents = list(yaml.safe_load_all(Path(package_path).read_text(encoding="utf-8")))
    platform: dict[str, Any] = {}
    for document in documents[1:]:
        platform.update(document or {})
    return documents[0], platform


def package_body(package_path: str | Path) -> dict[str, Any]:
    """The ``pipeline_spec`` KFP's REST API takes for a package, as kfp.Client sends it."""
    spec, platform = read_package(package_path)
    return {"pipeline_spec": spec, "platform_spec": platform} if platform else spec


def unpinned_images(package_path: str | Path) -> list[str]:
    """The images of a compiled pipeline that are not pinned to a digest (``...@sha256:<64 hex>``)."""
    spec, _ = read_package(package_path)
    executors = spec.get("deploymentSpec", {}).get("executors", {})
    images = {executor["container"]["image"] for executor in executors.values() if "container" in executor}
    return sorted(image for image in images if not _pinned(image))


def _pinned(image: str) -> bool:
    _, _, digest = image.partition("@sha256:")
    return len(digest) == 64 and all(c in "0123456789abcdef" for c in digest)


def submit(package_path: str | Path, *, host: str, experiment: str, arguments: Mapping[str, Any],
           run_name: str | None = None, namespace: str | None = None) -> str:
    """Start a run of a compiled pipeline on a KFP endpoint, in ``experiment`` (created if needed); returns its id.

    Raises ValueError, before contacting the endpoint, when an image is not pinned to a digest: a mutable tag
    would run whatever the tag points at when the pod starts, and the cache (keyed on the image string)
    would hand out results of an older image.
    """
    unpinned = unpinned_images(package_path)
    if unpinned:
        raise ValueError(f"image {unpinned[0]} is not pinned to a digest ({len(unpinned)} unpinned); build with "
                         "build.py --push --pin-dir DIR and pass --specs-dir DIR")
    client_args: dict[str, Any] = {"host": host}
    if namespace:
        client_args["namespace"] = namespace
    with warnings.catch_warnings():  # "This client only works with Kubeflow Pipeline v2.0.0-beta.2 and later"
        warnings.simplefilter("ignore", FutureWarning)
        client = kfp.Client(**client_args)
    result = client.create_run_from_pipeline_package(
        str(package_path), arguments=dict(arguments), run_name=run_name, experiment_name=experiment,
        namespace=namespace)
    return result.run_id


def container_environment() -> dict[str, str]:
    """The host's S3 settings (endpoint, credentials, region, retries) for the step containers."""
    return {name: os.environ[name] for name in FORWARDED_ENV if os.environ.get(name)}
