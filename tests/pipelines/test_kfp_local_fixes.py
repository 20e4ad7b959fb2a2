"""pipelines.kfp_local_fixes: each workaround is needed on this kfp (a test on STOCK kfp fails once upstream fixes
the bug) and works; only run-local applies them."""
import subprocess
import sys
import time
import uuid

import docker
import pytest

from pipelines import kfp_local_fixes
from tests.support import BASE_IMAGE, REPO

pytestmark = pytest.mark.docker
FAST_FAILURE = ["python", "-c", "import sys; print('about to fail'); sys.exit(3)"]


@pytest.fixture(scope="module")
def docker_client():
    client = docker.from_env()
    yield client
    client.close()


class ContainerGoneBeforeWait:
    """The real Docker client, except that a container's ``wait`` starts only once the container is gone: what
    happens by chance when a container exits quickly (kfp's auto-remove wins the race), made certain."""

    def __init__(self, client):
        self.client, self.images = client, client.images
        self.containers = self

    def run(self, *args, **kwargs):
        container = self.client.containers.run(*args, **kwargs)
        real_wait = container.wait

        def wait_after_removal(**wait_args):
            for _ in range(100):  # at most 10 s
                try:
                    self.client.containers.get(container.id)
                except docker.errors.NotFound:
                    break
                time.sleep(0.1)
            return real_wait(**wait_args)

        container.wait = wait_after_removal
        return container


def test_bug_13332_stock_kfp_local_reports_a_fast_failing_container_as_success(docker_client):
    """When this fails, kfp.local returns the real exit code: delete the workaround (and this test)."""
    from kfp.local import docker_task_handler

    assert kfp_local_fixes.affected()
    code = docker_task_handler.run_docker_container(ContainerGoneBeforeWait(docker_client), BASE_IMAGE,
                                                    ["sh", "-c", "exit 3"], volumes={})
    assert code == 0, f"kfp.local reported exit code {code}: kubeflow/pipelines#13332 looks fixed upstream"


def test_the_workaround_survives_the_same_race(docker_client):
    code = kfp_local_fixes.run_docker_container(ContainerGoneBeforeWait(docker_client), BASE_IMAGE,
                                                ["sh", "-c", "exit 3"], volumes={})
    assert code == 3


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
