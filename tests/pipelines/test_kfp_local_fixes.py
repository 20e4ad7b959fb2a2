"""pipelines.kfp_local_fixes: each workaround is needed on this kfp (a test on STOCK kfp fails once upstream fixes
the bug) and works; only run-local applies them."""
import subprocess
import sys
import uuid

import docker
import pytest

from pipelines import kfp_local_fixes
from tests.support import BASE_IMAGE, REPO

pytestmark = pytest.mark.docker
FAST_FAILURE = ["python", "-c", "import sys; print('about to fail'); sys.exit(3)"]
INSTANT_FAILURE = ["sh", "-c", "exit 3"]  # loses kfp's race about half the time here (measured: 4 of 8)
ATTEMPTS = 20


@pytest.fixture(scope="module")
def docker_client():
    client = docker.from_env()
    yield client
    client.close()


def test_bug_13332_stock_kfp_local_reports_a_fast_failing_container_as_success(docker_client):
    """When this fails, kfp.local returns the real exit code: delete the workaround (and this test)."""
    from kfp.local import docker_task_handler

    assert kfp_local_fixes.affected()
    codes = []
    while len(codes) < ATTEMPTS and 0 not in codes:
        codes.append(docker_task_handler.run_docker_container(docker_client, BASE_IMAGE, INSTANT_FAILURE, volumes={}))
    assert 0 in codes, f"kfp.local reported exit codes {codes}: kubeflow/pipelines#13332 looks fixed upstream"


def test_the_workaround_returns_the_real_exit_code_and_removes_the_container(docker_client, capsys):
    label = {"mlops-test": uuid.uuid4().hex}
    code = kfp_local_fixes.run_docker_container(docker_client, BASE_IMAGE, FAST_FAILURE, volumes={}, labels=label,
                                                auto_remove=True)  # a runner's auto_remove must not bring it back
    assert code == 3
    assert "about to fail" in capsys.readouterr().out
    assert docker_client.containers.list(all=True, filters={"label": f"mlops-test={label['mlops-test']}"}) == []


def test_the_workaround_is_installed_only_while_applied_and_only_on_affected_versions():
    from kfp.local import docker_task_handler

    upstream = docker_task_handler.run_docker_container
    with kfp_local_fixes.applied() as active:
        assert active and docker_task_handler.run_docker_container is kfp_local_fixes.run_docker_container
    assert docker_task_handler.run_docker_container is upstream
    with kfp_local_fixes.applied("2.99.0") as active:
        assert not active and docker_task_handler.run_docker_container is upstream


def test_compile_and_submit_import_neither_kfp_local_nor_docker(tmp_path):
    # `import kfp` itself loads a few kfp.local modules; compiling must load none beyond those, and no docker SDK.
    script = ("import sys\nsys.modules['docker'] = None  # unimportable\n"
              "import kfp, kfp.compiler, kfp.components, kfp.dsl, kfp.kubernetes\n"
              "before = {m for m in sys.modules if m.startswith('kfp.local')}\n"
              "from pipelines import monitoring\n"
              "monitoring.cli(['compile', '--output', sys.argv[1]], standalone_mode=False)\n"
              "after = {m for m in sys.modules if m.startswith('kfp.local')}\n"
              "assert after == before, sorted(after - before)\n")
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path / "m.yaml")], cwd=REPO, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
