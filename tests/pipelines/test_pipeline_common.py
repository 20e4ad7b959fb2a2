"""pipelines.common: the guard for kfp bug 13332, the pipeline root, task settings and local runs."""

import uuid
from pathlib import Path

import docker
import pytest
import yaml

from pipelines import common

BASE_IMAGE = "127.0.0.1:5000/mlops-components/python-base:3.11-bookworm"

# A tiny v1 component on the base image: writes its text input to an output, then exits with `code`.
EXIT_COMPONENT = f"""
name: exit with
inputs:
- {{name: text, type: String}}
- {{name: code, type: Integer}}
outputs:
- {{name: echoed, type: String}}
implementation:
  container:
    image: {BASE_IMAGE}
    command:
    - python
    - -c
    - |
      import os, pathlib, sys
      out = pathlib.Path(sys.argv[2])
      out.parent.mkdir(parents=True, exist_ok=True)
      out.write_text(sys.argv[1])
      print("running as uid", os.getuid())
      sys.exit(int(sys.argv[3]))
    args: [{{inputValue: text}}, {{outputPath: echoed}}, {{inputValue: code}}]
"""

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def docker_client():
    client = docker.from_env()
    yield client
    client.close()


@pytest.fixture
def exit_pipeline(tmp_path: Path):
    from kfp import components, dsl

    spec = tmp_path / "exit.yaml"
    spec.write_text(EXIT_COMPONENT)
    exit_with = components.load_component_from_file(str(spec))

    @dsl.pipeline(name="exit-codes")
    def pipeline(code: int = 0) -> str:
        first = common.configure_task(exit_with(text="first", code=0), RESOURCES, caching=False, policy=common.LOCAL)
        second = common.configure_task(exit_with(text=first.output, code=code), RESOURCES, caching=False,
                                       policy=common.LOCAL)
        return second.output

    return pipeline


RESOURCES = common.Resources(cpu_request="100m", cpu_limit="1", memory_request="64Mi", memory_limit="256Mi")


def test_guard_returns_the_real_exit_code_and_removes_the_container(docker_client, capsys):
    label = {"mlops-test": uuid.uuid4().hex}
    code = common.run_docker_container(
        docker_client, BASE_IMAGE, ["python", "-c", "import sys; print('about to fail'); sys.exit(3)"], volumes={},
        labels=label, auto_remove=True)  # auto_remove from a runner's arguments must not bring the bug back
    assert code == 3
    assert "about to fail" in capsys.readouterr().out
    assert docker_client.containers.list(all=True, filters={"label": f"mlops-test={label['mlops-test']}"}) == []


def test_guard_is_installed_only_while_active():
    from kfp.local import docker_task_handler

    upstream = docker_task_handler.run_docker_container
    with common.local_runner_fixes():
        assert docker_task_handler.run_docker_container is common.run_docker_container
    assert docker_task_handler.run_docker_container is upstream


def test_local_run_fails_when_a_step_exits_non_zero(exit_pipeline, tmp_path):
    with pytest.raises(RuntimeError, match="FAILURE"):
        common.run_local(exit_pipeline, {"code": 3}, pipeline_root=tmp_path / "root", environment={})


def test_local_run_returns_outputs_and_steps_can_write_as_uid_10001(exit_pipeline, tmp_path, capsys):
    # The step images run as uid 10001; run the base image as that user to check the pipeline root.
    root = tmp_path / "root"
    outputs = common.run_local(exit_pipeline, {"code": 0}, pipeline_root=root, environment={},
                               docker_args={"user": "10001:10001"})
    assert outputs == {"Output": "first"}
    assert "running as uid 10001" in capsys.readouterr().out
    assert oct(root.stat().st_mode & 0o777) == oct(0o777)


OPTIONAL_INPUT_COMPONENT = f"""
name: optional input
inputs:
- {{name: depth, type: Integer, optional: true}}
outputs:
- {{name: argv, type: String}}
implementation:
  container:
    image: {BASE_IMAGE}
    command:
    - python
    - -c
    - |
      import json, pathlib, sys
      out = pathlib.Path(sys.argv[1])
      out.parent.mkdir(parents=True, exist_ok=True)
      out.write_text(json.dumps(sys.argv[2:]))
    args:
    - {{outputPath: argv}}
    - if:
        cond: {{isPresent: depth}}
        then: [--depth, {{inputValue: depth}}]
"""


def test_an_unset_optional_integer_input_is_absent_in_local_runs(tmp_path):
    from kfp import components, dsl

    spec = tmp_path / "optional.yaml"
    spec.write_text(OPTIONAL_INPUT_COMPONENT)
    optional_input = components.load_component_from_file(str(spec))

    @dsl.pipeline(name="unset")
    def unset() -> str:
        return optional_input().set_caching_options(False).output

    @dsl.pipeline(name="set")
    def given() -> str:
        return optional_input(depth=5).set_caching_options(False).output

    assert common.run_local(unset, {}, pipeline_root=tmp_path / "a", environment={}) == {"Output": "[]"}
    assert common.run_local(given, {}, pipeline_root=tmp_path / "b", environment={}) == {"Output": '["--depth", "5"]'}


def test_the_task_command_replaces_the_image_entrypoint(docker_client, built_images, capsys):
    # The step images' ENTRYPOINT is `python /app/main.py`; a task's command must run instead of it.
    code = common.run_docker_container(docker_client, built_images.images["load_data"],
                                       ["python", "-c", "print('the command ran')"], volumes={})
    assert code == 0
    assert "the command ran" in capsys.readouterr().out


def test_an_existing_pipeline_root_is_never_re_moded(tmp_path):
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    with pytest.raises(ValueError, match="uid 10001"):
        common.prepare_pipeline_root(private)
    assert private.stat().st_mode & 0o777 == 0o700
    private.chmod(0o777)
    assert common.prepare_pipeline_root(private) == private


def test_configure_task_applies_resources_retries_and_caching(tmp_path):
    from kfp import components, dsl

    spec = tmp_path / "exit.yaml"
    spec.write_text(EXIT_COMPONENT)
    exit_with = components.load_component_from_file(str(spec))

    @dsl.pipeline(name="settings")
    def pipeline() -> None:
        common.configure_task(exit_with(text="x", code=0), RESOURCES, caching=True, policy=common.CLUSTER)

    package = common.compile_pipeline(pipeline, tmp_path / "p.yaml")
    spec_doc = yaml.safe_load(package.read_text())
    task = spec_doc["root"]["dag"]["tasks"]["exit-with"]
    assert task["cachingOptions"] == {"enableCache": True}
    assert task["retryPolicy"] == {"maxRetryCount": 3, "backoffDuration": "60s", "backoffFactor": 2.0,
                                   "backoffMaxDuration": "3600s"}
    resources = spec_doc["deploymentSpec"]["executors"]["exec-exit-with"]["container"]["resources"]
    assert resources["resourceCpuRequest"] == "100m" and resources["resourceCpuLimit"] == "1"
    assert resources["resourceMemoryRequest"] == "64Mi" and resources["resourceMemoryLimit"] == "256Mi"


def test_load_components_names_a_missing_spec(tmp_path):
    with pytest.raises(FileNotFoundError, match="no component spec for step 'nope'"):
        common.load_components(["nope"], tmp_path)


def test_container_environment_forwards_only_the_s3_settings(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:8333")
    monkeypatch.setenv("HOME", "/root")
    env = common.container_environment()
    assert env["AWS_ENDPOINT_URL"] == "http://127.0.0.1:8333"
    assert "HOME" not in env and set(env) <= set(common.FORWARDED_ENV)
