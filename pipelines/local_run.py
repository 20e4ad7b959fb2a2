"""Running a pipeline on this machine with kfp.local's DockerRunner (only ``run-local`` imports this module).

The step images run as the non-root uid 10001, as on a cluster, and kfp.local bind-mounts its pipeline root
from the host at the same path, so the root must be writable by that user: :func:`prepare_pipeline_root`
creates it world-writable (mode 0o777), as a user of stock kfp.local does with ``mkdir -m 777 ROOT``.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pipelines import kfp_local_fixes
from pipelines.common import container_environment

STEP_UID = 10001  # the user the step images run as (their Dockerfiles' USER)


def prepare_pipeline_root(path: str | Path) -> Path:
    """kfp.local's pipeline root, writable by the images' user: created world-writable if it is missing.

    An existing folder is never re-moded; it must already be writable by uid 10001.
    """
    root = Path(path).resolve()
    if not root.exists():
        _create_world_writable(root)
    mode = root.stat()
    if not root.is_dir() or (mode.st_uid != STEP_UID and not mode.st_mode & 0o002):
        raise ValueError(f"{root}: the step containers (uid {STEP_UID}) cannot write there; name a new folder "
                         "or make it writable (chmod 777)")
    return root


def _create_world_writable(root: Path) -> None:
    """Make ``root`` appear already mode 0o777, also when several runs create it at once.

    A plain mkdir + chmod leaves a moment in which a concurrent run sees the folder with the umask applied and
    refuses it; a staged folder renamed into place is never seen half made. rename(2) replaces an empty
    folder and fails on a non-empty one, either way the winner's folder stays usable.
    """
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{root.name}-", dir=root.parent))
    staging.chmod(0o777)  # mkdtemp made it 0o700
    try:
        os.rename(staging, root)
    except OSError:
        staging.rmdir()  # another run put its folder there first
        if not root.is_dir():
            raise


def run_local(pipeline_func: Callable[..., Any], arguments: Mapping[str, Any], *,
              pipeline_root: str | Path | None = None, environment: Mapping[str, str] | None = None,
              docker_args: Mapping[str, Any] | None = None, enable_caching: bool = False,
              then: Callable[[dict[str, Any]], Any] | None = None) -> Any:
    """Run a pipeline with kfp.local on Docker (host network) and return its outputs (or ``then(outputs)``).

    Raises RuntimeError when a task fails, ValueError for an unusable ``pipeline_root``. Without
    ``pipeline_root`` a temporary one is used and removed afterwards, with the artifacts the tasks wrote in it:
    ``then`` runs before, on the outputs (e.g. to read evaluate's metrics.json). ``environment`` defaults to
    :func:`pipelines.common.container_environment`; ``docker_args`` are more ``docker run`` arguments for
    every step container (``mem_limit``, ``nano_cpus``...). ``enable_caching`` turns on kfp.local's cache
    (``<pipeline_root>/.kfp_cache``) for the tasks whose caching option is on.
    """
    from kfp import local

    temporary = pipeline_root is None
    if temporary:
        root = Path(tempfile.mkdtemp(prefix="kfp-local-"))
        root.chmod(0o777)
    else:
        root = prepare_pipeline_root(pipeline_root)
    env = container_environment() if environment is None else dict(environment)
    runner = local.DockerRunner(network_mode="host", environment=env, **(docker_args or {}))
    local.init(runner=runner, pipeline_root=str(root), raise_on_error=True, enable_caching=enable_caching)
    try:
        with kfp_local_fixes.applied():
            task = pipeline_func(**arguments)
        outputs = dict(task.outputs)
        return then(outputs) if then is not None else outputs
    finally:
        if temporary:
            shutil.rmtree(root, ignore_errors=True)
