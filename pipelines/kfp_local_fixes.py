"""Workarounds of open kfp.local bugs, applied only by ``run-local`` (never when compiling or submitting).

Each one is gated on the kfp versions it was checked against, and tests/pipelines/test_kfp_local_fixes.py
holds a test per workaround that runs STOCK kfp and fails once upstream fixes the bug (then delete it here).

* kubeflow/pipelines#13332: ``docker_task_handler.run_docker_container`` starts the container with
  ``auto_remove=True`` and returns exit code 0 when the container is already gone by the time it asks for
  the code, so a step that fails quickly is reported SUCCESS. :func:`run_docker_container` runs it without
  auto-remove, streams its logs, returns the real exit code and removes the container afterwards.
  (Open fixes: PRs 13402 and 13907.)
"""
from __future__ import annotations

import codecs
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import kfp

# kfp versions on which the workaround below was verified to be needed (13332 is open in all of them).
AFFECTED_VERSIONS = re.compile(r"^2\.(1[4-7])\.")


def affected(version: str = kfp.__version__) -> bool:
    return bool(AFFECTED_VERSIONS.match(version))


def run_docker_container(client: Any, image: str, command: list[str], volumes: dict[str, Any],
                         **container_run_args: Any) -> int:
    """``kfp.local.docker_task_handler.run_docker_container`` that returns the container's real exit code."""
    import docker
    from kfp.local import docker_task_handler

    image = docker_task_handler.add_latest_tag_if_not_present(image)
    try:
        client.images.get(image)
    except docker.errors.ImageNotFound:
        print(f"Pulling image {image!r}")
        client.images.pull(image)
    for managed in ("auto_remove", "remove", "detach"):
        container_run_args.pop(managed, None)
    container = client.containers.run(image=image, command=command, volumes=volumes, detach=True,
                                      **container_run_args)
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


@contextmanager
def applied(version: str = kfp.__version__) -> Iterator[bool]:
    """While active (and only on an affected kfp version), kfp.local uses :func:`run_docker_container`.

    Yields whether the workaround is in place.
    """
    if not affected(version):
        yield False
        return
    from kfp.local import docker_task_handler

    original = docker_task_handler.run_docker_container
    docker_task_handler.run_docker_container = run_docker_container
    try:
        yield True
    finally:
        docker_task_handler.run_docker_container = original
