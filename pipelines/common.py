"""What every pipeline shares: component specs, per-task settings, compiling, submitting and local runs.

Local runs use kfp.local's DockerRunner on the real step images, with these fixes applied while they run:

* kfp bug 13332 (kubeflow/pipelines): ``docker_task_handler.run_docker_container`` starts the container
  with ``auto_remove=True`` and returns exit code 0 when the container is already gone by the time it
  asks for the code, so a step that fails quickly is reported SUCCESS. :func:`run_docker_container`
  replaces it: no auto-remove, logs streamed, the real exit code read, then the container removed.
* kfp.local appends the task's command to the image's ENTRYPOINT (it passes it as docker CMD), while
  Kubernetes runs the command instead of the ENTRYPOINT; the step images have one (``python
  /app/main.py``, for ``docker run IMAGE --help``). The replacement runs the command as the entrypoint.
* kfp.local casts every integer input with ``int()`` in ``executor_input_utils.executor_input_to_dict``;
  an optional one left unset (train's ``max_depth``) is null there and ``int(None)`` raises.
  :func:`executor_input_to_dict` drops unset inputs first, so they are absent, as on the cluster.
* kfp.local's ConditionEvaluator resolves a ``dsl.If`` on ``pipelinechannel--<task>-<output>`` only
  when the output is named ``Output`` or the name holds ``--``; for any other output (monitoring's
  ``decide-retrain-retrain``) it logs "Could not resolve parent input" and evaluates the condition as
  False, silently skipping the branch. :func:`resolve_condition_channel` splits task and output at the
  last hyphen (task names are hyphenated, output names are not) before falling back to kfp's own.
* The images run as the non-root uid 10001 (as they do on the cluster), while kfp.local bind-mounts its
  pipeline root from the host at the same path. The root is created world-writable (mode 0o777); the
  containers create everything below it themselves (kfp.local makes no task folders on the host), so
  no umask change is needed. Mapping the container user to the host uid instead would run the images
  as root whenever the host user is root, unlike anywhere they are deployed.
"""
from __future__ import annotations

import codecs
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import kfp
from kfp import compiler, components, local
from kfp.local import docker_task_handler, executor_input_utils
from kfp.local.orchestrator.enhanced_dag_orchestrator import ConditionEvaluator

_upstream_executor_input_to_dict = executor_input_utils.executor_input_to_dict
_upstream_resolve_channel = ConditionEvaluator._resolve_pipeline_channel
REPO = Path(__file__).resolve().parents[1]
DEFAULT_SPECS_DIR = REPO / "components"
STEP_UID = 10001  # the user the step images run as (their Dockerfiles' USER)

# What a step container needs from the host to reach S3; nothing else of the host environment is passed.
FORWARDED_ENV = (
    "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
    "AWS_DEFAULT_REGION", "AWS_REGION", "MLOPS_S3_MAX_ATTEMPTS", "MLOPS_S3_CONNECT_TIMEOUT", "MLOPS_S3_READ_TIMEOUT",
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


@dataclass(frozen=True)
class TaskPolicy:
    """Settings a pipeline factory applies to each of its tasks, besides their own resources."""

    retry: Retry | None = Retry()
    resources: bool = True


CLUSTER = TaskPolicy()
# kfp.local honours retries (a failing step would wait 60 + 120 + 240 s before the run fails) and
# ignores resource requests and limits, warning once per task; a local run sets neither.
LOCAL = TaskPolicy(retry=None, resources=False)


def configure_task(task: Any, resources: Resources, *, caching: bool, policy: TaskPolicy) -> Any:
    """Apply resources, retries and caching to a pipeline task; returns the task."""
    if policy.resources:
        task.set_cpu_request(resources.cpu_request).set_cpu_limit(resources.cpu_limit)
        task.set_memory_request(resources.memory_request).set_memory_limit(resources.memory_limit)
    if policy.retry is not None:
        task.set_retry(num_retries=policy.retry.num_retries, backoff_duration=policy.retry.backoff_duration,
                       backoff_factor=policy.retry.backoff_factor)
    task.set_caching_options(enable_caching=caching)
    return task


def compile_pipeline(pipeline_func: Callable[..., Any], package_path: str | Path) -> Path:
    path = Path(package_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(pipeline_func, str(path))
    return path


def submit(package_path: str | Path, *, host: str, experiment: str, arguments: Mapping[str, Any],
           run_name: str | None = None, namespace: str | None = None) -> str:
    """Start a run of a compiled pipeline on a KFP endpoint, in ``experiment`` (created if needed); returns its id."""
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


def run_docker_container(client: Any, image: str, command: list[str], volumes: dict[str, Any],
                         **container_run_args: Any) -> int:
    """Drop-in replacement for ``kfp.local.docker_task_handler.run_docker_container``.

    Runs the container without auto-remove, streams its logs, returns its real exit code (kfp bug 13332)
    and removes it afterwards, also when interrupted. ``command`` (the task's command and arguments,
    with placeholders resolved) replaces the image's ENTRYPOINT, as a container's command does on
    Kubernetes; every component here declares a command.
    """
    image = docker_task_handler.add_latest_tag_if_not_present(image)
    try:
        client.images.get(image)
    except docker.errors.ImageNotFound:
        print(f"Pulling image {image!r}")
        client.images.pull(image)
    for managed in ("auto_remove", "remove", "detach"):
        container_run_args.pop(managed, None)
    # kfp.local passes the task's command + args as docker CMD, appended to the image's ENTRYPOINT;
    # Kubernetes runs a container's command instead of the ENTRYPOINT. Do what the cluster does.
    container_run_args.setdefault("entrypoint", command)
    container = client.containers.run(image=image, volumes=volumes, detach=True, **container_run_args)
    try:
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        for chunk in container.logs(stream=True, follow=True):
            _echo(decoder.decode(chunk))
        _echo(decoder.decode(b"", final=True))
        return int(container.wait()["StatusCode"])
    finally:
        try:
            container.remove(force=True)
        except docker.errors.NotFound:
            pass


def _echo(text: str) -> None:
    if text:  # print, not sys.stdout: kfp.local indents task logs by replacing builtins.print
        print(text, end="", flush=True)


def executor_input_to_dict(executor_input: Any, component_spec: Any) -> dict[str, Any]:
    """``kfp.local.executor_input_utils.executor_input_to_dict`` without the unset (null) input parameters."""
    trimmed = type(executor_input)()
    trimmed.CopyFrom(executor_input)
    values = trimmed.inputs.parameter_values
    for name in [name for name, value in values.items() if value.WhichOneof("kind") in (None, "null_value")]:
        del values[name]
    return _upstream_executor_input_to_dict(trimmed, component_spec)


def resolve_condition_channel(channel_ref: str, io_store: Any) -> Any:
    """``ConditionEvaluator._resolve_pipeline_channel`` that also finds ``<task>-<output>`` task outputs."""
    reference = channel_ref.replace("pipelinechannel--", "")
    if "--" not in reference and "-" in reference:
        task_name, key = reference.rsplit("-", 1)
        try:
            return io_store.get_task_output(task_name, key)
        except (KeyError, ValueError):
            pass
    return _upstream_resolve_channel(channel_ref, io_store)


@contextmanager
def local_runner_fixes() -> Iterator[None]:
    """While active, kfp.local uses :func:`run_docker_container`, :func:`executor_input_to_dict` and
    :func:`resolve_condition_channel`."""
    replaced = [(docker_task_handler, "run_docker_container", run_docker_container),
                (executor_input_utils, "executor_input_to_dict", executor_input_to_dict),
                (ConditionEvaluator, "_resolve_pipeline_channel", staticmethod(resolve_condition_channel))]
    originals = [(owner, name, owner.__dict__[name]) for owner, name, _ in replaced]
    try:
        for module, name, replacement in replaced:
            setattr(module, name, replacement)
        yield
    finally:
        for module, name, original in originals:
            setattr(module, name, original)


def prepare_pipeline_root(path: str | Path) -> Path:
    """kfp.local's pipeline root, writable by the images' user: created world-writable if it is missing.

    An existing folder is never re-moded; it must already be writable by uid 10001.
    """
    root = Path(path).resolve()
    if not root.exists():
        root.mkdir(parents=True)
        root.chmod(0o777)  # mkdir applied the umask
    mode = root.stat()
    if not root.is_dir() or (mode.st_uid != STEP_UID and not mode.st_mode & 0o002):
        raise ValueError(f"{root}: the step containers (uid {STEP_UID}) cannot write there; name a new folder")
    return root


def run_local(pipeline_func: Callable[..., Any], arguments: Mapping[str, Any], *,
              pipeline_root: str | Path | None = None, environment: Mapping[str, str] | None = None,
              docker_args: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Run a pipeline with kfp.local on Docker (host network) and return its outputs.

    Raises RuntimeError when a task fails, ValueError for an unusable ``pipeline_root``. Without
    ``pipeline_root`` a temporary one is used and removed afterwards (the steps' objects live at their
    output URIs; the root only holds KFP's output files).
    ``environment`` defaults to :func:`container_environment`; ``docker_args`` are more ``docker run``
    arguments for every step container (``mem_limit``, ``nano_cpus``...).
    """
    temporary = pipeline_root is None
    if temporary:
        root = Path(tempfile.mkdtemp(prefix="kfp-local-"))
        root.chmod(0o777)
    else:
        root = prepare_pipeline_root(pipeline_root)
    env = container_environment() if environment is None else dict(environment)
    runner = local.DockerRunner(network_mode="host", environment=env, **(docker_args or {}))
    local.init(runner=runner, pipeline_root=str(root), raise_on_error=True)
    try:
        with local_runner_fixes():
            task = pipeline_func(**arguments)
        return dict(task.outputs)
    finally:
        if temporary:
            shutil.rmtree(root, ignore_errors=True)
