"""Shared fixtures: the real S3 server, per-test prefixes, and in-process step invocation."""
from __future__ import annotations

import importlib.util
import os
import sys
import uuid
from pathlib import Path
from types import ModuleType

import pytest
from click.testing import CliRunner, Result

REPO = Path(__file__).resolve().parents[1]
COMPONENTS = REPO / "components"
S3_ENDPOINT = os.environ.get("MLOPS_TEST_S3_ENDPOINT", "http://127.0.0.1:8333")
TEST_BUCKET = os.environ.get("MLOPS_TEST_BUCKET", "mlops-test")
S3_ENV = {
    "AWS_ENDPOINT_URL": S3_ENDPOINT,
    "AWS_ACCESS_KEY_ID": "mlops-test",
    "AWS_SECRET_ACCESS_KEY": "mlops-test-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
    "MLOPS_S3_MAX_ATTEMPTS": "3",
}


def step_names() -> list[str]:
    """Every component directory that holds a step (a main.py beside a component.yaml)."""
    return sorted(p.parent.name for p in COMPONENTS.glob("*/component.yaml") if (p.parent / "main.py").is_file())


def load_step(name: str) -> ModuleType:
    """Import components/<name>/main.py as module ``step_<name>`` (step directories are not packages)."""
    module_name = f"step_{name}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, COMPONENTS / name / "main.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session", autouse=True)
def s3_environment() -> None:
    """Point boto3 at the real S3 server started by scripts/provision.sh, and make the test bucket."""
    os.environ.update(S3_ENV)
    from mlops_runtime import storage

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


def run_step(name: str, *args: str, env: dict[str, str] | None = None) -> Result:
    """Run a step in-process exactly as its CLI would, returning exit code, stdout and stderr."""
    module = load_step(name)
    return CliRunner().invoke(module.cli, [str(a) for a in args], env=env, catch_exceptions=False)


@pytest.fixture
def step():
    return run_step


# --- Step images: built once per session by build.py, pushed to the local registry, specs pinned ---
REGISTRY = os.environ.get("MLOPS_REGISTRY", "127.0.0.1:5000")
BASE_IMAGE = os.environ.get("MLOPS_BASE_IMAGE", f"{REGISTRY}/mlops-components/python-base:3.11-bookworm")
BUILD_TIMEOUT_S = 1800


class BuiltImages:
    """What ``build.py --push --pin-dir`` produced for this session.

    ``specs_dir / <step> / component.yaml`` is each step's spec pinned to its pushed digest and
    ``images[step]`` that pinned reference (``<registry>/mlops-components/<step>:<version>@sha256:...``);
    ``tags[step]`` are the tags it was pushed under.
    """

    def __init__(self, specs_dir: Path, images: dict[str, str], tags: dict[str, list[str]], version: str) -> None:
        self.specs_dir = specs_dir
        self.images = images
        self.tags = tags
        self.version = version

    def spec(self, step: str) -> Path:
        return self.specs_dir / step / "component.yaml"


@pytest.fixture(scope="session")
def built_images(tmp_path_factory: pytest.TempPathFactory) -> BuiltImages:
    import json
    import subprocess

    specs_dir = tmp_path_factory.mktemp("pinned-specs")
    command = [sys.executable, str(REPO / "build.py"), "--registry", REGISTRY, "--base-image", BASE_IMAGE,
               "--push", "--pin-dir", str(specs_dir), "--progress", "plain"]
    done = subprocess.run(command, cwd=REPO, stdout=subprocess.PIPE, text=True, timeout=BUILD_TIMEOUT_S, check=False)
    if done.returncode != 0:
        pytest.fail(f"build.py failed with exit status {done.returncode} (its log is in the captured stderr)")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return BuiltImages(specs_dir, result["images"], result["tags"], result["version"])
