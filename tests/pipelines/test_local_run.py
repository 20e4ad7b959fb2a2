"""pipelines.local_run and pipelines.common: the pipeline root, local runs, task settings, the S3 wiring."""
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from pipelines import common, local_run
from tests.support import BASE_IMAGE

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
RESOURCES = common.Resources(cpu_request="100m", cpu_limit="1", memory_request="64Mi", memory_limit="256Mi")


@pytest.fixture
def exit_with(tmp_path: Path):
    from kfp import components

    spec = tmp_path / "exit.yaml"
    spec.write_text(EXIT_COMPONENT)
    return components.load_component_from_file(str(spec))


@pytest.fixture
def exit_pipeline(exit_with):
    from kfp import dsl

    @dsl.pipeline(name="exit-codes")
    def pipeline(code: int = 0) -> str:
        first = common.configure_task(exit_with(text="first", code=0), RESOURCES, caching=False, policy=common.LOCAL)
        second = common.configure_task(exit_with(text=first.output, code=code), RESOURCES, caching=False,
                                       policy=common.LOCAL)
        return second.output

    return pipeline


@pytest.mark.docker
def test_local_run_fails_when_a_step_exits_non_zero(exit_pipeline, tmp_path):
    with pytest.raises(RuntimeError, match="FAILURE"):
        local_run.run_local(exit_pipeline, {"code": 3}, pipeline_root=tmp_path / "root", environment={})


@pytest.mark.docker
def test_local_run_returns_outputs_and_steps_can_write_as_uid_10001(exit_pipeline, tmp_path, capsys):
    root = tmp_path / "root"
    outputs = local_run.run_local(exit_pipeline, {"code": 0}, pipeline_root=root, environment={},
                                  docker_args={"user": "10001:10001"})
    assert outputs == {"Output": "first"}
    assert "running as uid 10001" in capsys.readouterr().out
    assert oct(root.stat().st_mode & 0o777) == oct(0o777)


def test_an_existing_pipeline_root_is_never_re_moded(tmp_path):
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    with pytest.raises(ValueError, match="uid 10001"):
        local_run.prepare_pipeline_root(private)
    assert private.stat().st_mode & 0o777 == 0o700
    private.chmod(0o777)
    assert local_run.prepare_pipeline_root(private) == private


def test_runs_creating_one_pipeline_root_at_once_all_get_it_world_writable(tmp_path):
    # Four training runs started together once lost this race: one saw the folder between mkdir and chmod.
    root = tmp_path / "shared" / "root"
    with ThreadPoolExecutor(max_workers=8) as pool:
        created = list(pool.map(lambda _: local_run.prepare_pipeline_root(root), range(32)))
    assert created == [root] * 32
    assert root.stat().st_mode & 0o777 == 0o777
    assert [path.name for path in root.parent.iterdir()] == ["root"]  # no staging folder left behind


def test_configure_task_applies_resources_retries_caching_and_the_s3_secret(exit_with, tmp_path):
    from kfp import dsl

    policy = common.TaskPolicy(s3_endpoint="http://minio.kubeflow:9000", s3_secret="my-s3")

    @dsl.pipeline(name="settings")
    def pipeline() -> None:
        common.configure_task(exit_with(text="x", code=0), RESOURCES, caching=True, policy=policy)

    package = common.compile_pipeline(pipeline, tmp_path / "p.yaml")
    spec, platform = common.read_package(package)
    task = spec["root"]["dag"]["tasks"]["exit-with"]
    assert task["cachingOptions"] == {"enableCache": True}
    assert task["retryPolicy"] == {"maxRetryCount": 3, "backoffDuration": "60s", "backoffFactor": 2.0,
                                   "backoffMaxDuration": "3600s"}
    container = spec["deploymentSpec"]["executors"]["exec-exit-with"]["container"]
    assert container["resources"]["resourceCpuRequest"] == "100m" and container["resources"]["resourceCpuLimit"] == "1"
    assert container["resources"]["resourceMemoryRequest"] == "64Mi"
    assert container["env"] == [{"name": "AWS_ENDPOINT_URL", "value": "http://minio.kubeflow:9000"}]
    [secret] = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["exec-exit-with"]["secretAsEnv"]
    assert secret["secretNameParameter"] == {"runtimeValue": {"constant": "my-s3"}}
    assert {(m["secretKey"], m["envVar"]) for m in secret["keyToEnv"]} == {
        ("AWS_ACCESS_KEY_ID", "AWS_ACCESS_KEY_ID"), ("AWS_SECRET_ACCESS_KEY", "AWS_SECRET_ACCESS_KEY")}


def test_the_local_policy_sets_no_secret(exit_with, tmp_path):
    from kfp import dsl

    @dsl.pipeline(name="local")
    def pipeline() -> None:
        common.configure_task(exit_with(text="x", code=0), RESOURCES, caching=False, policy=common.LOCAL)

    _, platform = common.read_package(common.compile_pipeline(pipeline, tmp_path / "p.yaml"))
    assert platform == {}
    assert "env" not in yaml.safe_load((tmp_path / "p.yaml").read_text())["deploymentSpec"]["executors"][
        "exec-exit-with"]["container"]


def test_load_components_names_a_missing_spec(tmp_path):
    with pytest.raises(FileNotFoundError, match="no component spec for step 'nope'"):
        common.load_components(["nope"], tmp_path)


def test_container_environment_forwards_only_the_s3_settings(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:8333")
    monkeypatch.setenv("HOME", "/root")
    env = common.container_environment()
    assert env["AWS_ENDPOINT_URL"] == "http://127.0.0.1:8333"
    assert "HOME" not in env and set(env) <= set(common.FORWARDED_ENV)
