"""Shared fixtures: the real S3 server, per-test prefixes, in-process steps and the built images.

Tests are split in two tiers. A test needs **services** (the S3 server, the Docker engine, the registry
or the built images) when it lives in one of :data:`SERVICE_DIRS`, uses one of :data:`SERVICE_FIXTURES`,
or is parametrised with the ``s3`` storage; it is then marked ``services``. Everything else runs on a
bare machine: ``pytest -m "not services"`` (the fast tier).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import pytest

from tests.support import BASE_IMAGE, REGISTRY, REPO, S3_ENDPOINT, S3_ENV, TEST_BUCKET, BuiltImages, run_step

BUILD_TIMEOUT_S = 1800
SERVICE_DIRS = ("build", "containers", "hardening", "pipelines", "serving")
SERVICE_FIXTURES = {"s3_prefix", "built_images", "private_s3", "use_s3", "docker_client"}


def needs_services(item: pytest.Item) -> bool:
    relative = item.path.relative_to(REPO / "tests").parts
    if relative and relative[0] in SERVICE_DIRS:
        return True
    if SERVICE_FIXTURES & set(getattr(item, "fixturenames", ())):
        return True
    callspec = getattr(item, "callspec", None)
    return callspec is not None and any(isinstance(value, str) and value == "s3" for value in callspec.params.values())


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if needs_services(item):
            item.add_marker(pytest.mark.services)


@pytest.fixture(scope="session", autouse=True)
def s3_environment(request: pytest.FixtureRequest) -> None:
    """Point boto3 at the real S3 server started by scripts/provision.sh, and make the test bucket.

    A run of the fast tier only (no test marked ``services``) needs no server: the bucket is not made.
    """
    os.environ.update(S3_ENV)
    from mlops_runtime import storage

    if not any(item.get_closest_marker("services") for item in request.session.items):
        return

    storage._s3_client.cache_clear()
    client = storage.s3_client()
    try:
        client.head_bucket(Bucket=TEST_BUCKET)
    except client.exceptions.ClientError:
        client.create_bucket(Bucket=TEST_BUCKET)
    except Exception as error:  # the server is not there: every S3 test would fail confusingly
        pytest.exit(f"no S3 server answers at {S3_ENDPOINT} ({error}); run ./dev.sh test", returncode=3)


@pytest.fixture
def s3_prefix(request: pytest.FixtureRequest) -> str:
    """A fresh ``s3://`` folder for one test."""
    safe = "".join(c if c.isalnum() else "-" for c in request.node.name)[:60]
    return f"s3://{TEST_BUCKET}/{safe}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def step():
    return run_step


@pytest.fixture(scope="session")
def built_images(tmp_path_factory: pytest.TempPathFactory) -> BuiltImages:
    specs_dir = tmp_path_factory.mktemp("pinned-specs")
    command = [sys.executable, str(REPO / "build.py"), "--registry", REGISTRY, "--base-image", BASE_IMAGE,
               "--push", "--pin-dir", str(specs_dir), "--progress", "plain"]
    done = subprocess.run(command, cwd=REPO, stdout=subprocess.PIPE, text=True, timeout=BUILD_TIMEOUT_S, check=False)
    if done.returncode != 0:
        pytest.fail(f"build.py failed with exit status {done.returncode} (its log is in the captured stderr)")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return BuiltImages(specs_dir, result["images"], result["tags"], result["version"])
