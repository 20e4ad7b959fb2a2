"""``pip install`` the repository into a throwaway venv: mlops_components returns every component, pinned or not."""
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

from tests.support import REPO

pytestmark = pytest.mark.slow
SOURCES = ("pyproject.toml", "README.md", "VERSION", "components", "mlops_components")
CHECK = """
import json, sys
from pathlib import Path
import mlops_components
from mlops_components import components
shipped = components.load_all()
pinned = components.load_all(pinned_dir=sys.argv[1])
print(json.dumps({
    "package": str(Path(mlops_components.__file__).parent),
    "spec": str(components.spec_path("train")),
    "steps": sorted(shipped),
    "pinned_steps": sorted(pinned),
    "pinned_images": sorted(c.component_spec.implementation.container.image for c in pinned.values()),
    "train_inputs": sorted(shipped["train"].component_spec.inputs),
}))
"""


def test_pip_install_ships_every_component_pinned_or_not(tmp_path, made_up_pinned_specs):
    source = tmp_path / "source"  # a copy: building in place would leave egg-info and build/ in the checkout
    source.mkdir()
    for name in SOURCES:
        (shutil.copytree if (REPO / name).is_dir() else shutil.copy)(REPO / name, source / name)
    environment = tmp_path / "venv"
    venv.create(environment, with_pip=True)
    python = environment / "bin" / "python"
    # kfp from this interpreter (only the package under test is installed into the venv)
    site = Path(subprocess.check_output([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                        text=True).strip())
    (site / "kfp-from-the-test-interpreter.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    installed = subprocess.run([python, "-m", "pip", "install", "--quiet", "--no-deps", str(source)],
                               capture_output=True, text=True, timeout=600, check=False)
    assert installed.returncode == 0, installed.stderr[-3000:]

    clean = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # the installed copy, not the checkout
    done = subprocess.run([python, "-c", CHECK, str(made_up_pinned_specs)], capture_output=True, text=True,
                          timeout=300, check=False, cwd=tmp_path, env=clean)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.splitlines()[-1])
    steps = sorted(path.parent.name for path in (REPO / "components").glob("*/component.yaml"))
    assert result["package"].startswith(str(site)) and result["spec"].startswith(str(site))
    assert result["steps"] == result["pinned_steps"] == steps
    assert all("@sha256:" in image for image in result["pinned_images"])
    assert "max_depth" in result["train_inputs"]
    assert sys.version_info >= (3, 11)
