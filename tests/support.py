"""Constants and helpers shared by the tests (import as ``from tests.support import ...``).

Fixtures live in tests/conftest.py; test modules never import conftest (several exist).
"""
from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

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
    "MLOPS_S3_RETRY_SECONDS": "10",
}
REGISTRY = os.environ.get("MLOPS_REGISTRY", "127.0.0.1:5000")
BASE_IMAGE = os.environ.get("MLOPS_BASE_IMAGE", f"{REGISTRY}/mlops-components/python-base:3.11-bookworm")


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


def run_step(name: str, *args: str, env: dict[str, str] | None = None) -> Result:
    """Run a step in-process exactly as its CLI would, returning exit code, stdout and stderr."""
    module = load_step(name)
    return CliRunner().invoke(module.cli, [str(a) for a in args], env=env, catch_exceptions=False)


class BuiltImages:
    """What ``build.py --push --pin-dir`` produced for this session.

    ``specs_dir / <step> / component.yaml`` is each step's spec pinned to its pushed digest and
    ``images[step]`` that pinned reference (``<registry>/mlops-components/<step>@sha256:...``, no tag);
    ``tags[step]`` are the tags it was pushed under.
    """

    def __init__(self, specs_dir: Path, images: dict[str, str], tags: dict[str, list[str]], version: str) -> None:
        self.specs_dir = specs_dir
        self.images = images
        self.tags = tags
        self.version = version

    def spec(self, step: str) -> Path:
        return self.specs_dir / step / "component.yaml"
