"""The pushed step images, run as `docker run` users run them: read-only, no capabilities, as uid 10001.

The images are the ones build.py pushed for this session (conftest's ``built_images``), run by their
pinned ``@sha256`` references.
"""
from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path

import docker
import numpy as np
import pandas as pd
import pytest

from mlops_runtime import storage
from mlops_runtime.step_io import read_lineage
from tests.support import S3_ENV, step_names

CONTAINER_TIMEOUT_S = 300
HARDENING = {"read_only": True, "tmpfs": {"/tmp": ""}, "cap_drop": ["ALL"], "security_opt": ["no-new-privileges"]}


@dataclass
class Ran:
    code: int
    stdout: str
    stderr: str

    def outputs(self) -> dict:
        """The step's one JSON line on stdout."""
        assert self.code == 0, self.stderr
        lines = self.stdout.splitlines()
        assert len(lines) == 1, self.stdout
        return json.loads(lines[0])


@pytest.fixture(scope="module")
def client() -> docker.DockerClient:
    engine = docker.from_env(timeout=CONTAINER_TIMEOUT_S)
    yield engine
    engine.close()


def run(client: docker.DockerClient, image: str, *args: str, entrypoint: list[str] | None = None,
        volumes: dict | None = None) -> Ran:
    """``docker run --network host --read-only --tmpfs /tmp --cap-drop ALL IMAGE ARGS`` with the S3 settings."""
    container = client.containers.run(image, list(args), entrypoint=entrypoint, detach=True, network_mode="host",
                                      environment=S3_ENV, volumes=volumes or {}, **HARDENING)
    try:
        code = container.wait(timeout=CONTAINER_TIMEOUT_S)["StatusCode"]
        stdout = container.logs(stdout=True, stderr=False).decode()
        stderr = container.logs(stdout=False, stderr=True).decode()
    finally:
        container.remove(force=True)
    return Ran(code, stdout, stderr)


def separable_table(rows: int = 120, seed: int = 7) -> pd.DataFrame:
    """Two well separated classes: any forest scores 1.0 on them, so the gate's decision is known."""
    rng = np.random.default_rng(seed)
    label = np.arange(rows) % 2
    features = rng.normal(size=(rows, 4)) + label[:, None] * 8.0
    return pd.DataFrame(features, columns=[f"f{i}" for i in range(4)]).assign(label=label)


@pytest.mark.parametrize("name", step_names())
def test_help_works_in_every_image(client, built_images, name: str):
    ran = run(client, built_images.images[name], "--help")
    assert ran.code == 0, ran.stderr
    assert ran.stdout.startswith("Usage: ")
    assert "Options:" in ran.stdout and "--help" in ran.stdout


@pytest.mark.parametrize("name", step_names())
def test_images_run_as_non_root_and_cannot_change_their_code(client, built_images, name: str):
    image = client.images.get(built_images.images[name])
    assert image.attrs["Config"]["User"] == "10001:10001"
    probe = ("import os, sys; print(os.getuid(), os.getgid(), os.access('/app/main.py', os.W_OK), "
             "os.access(sys.prefix, os.W_OK), os.access('/opt/mlops/mlops_runtime', os.W_OK))")
    ran = run(client, built_images.images[name], "-c", probe, entrypoint=["python"])
    assert ran.code == 0, ran.stderr
    assert ran.stdout.split() == ["10001", "10001", "False", "False", "False"]


def test_chain_on_s3(client, built_images, s3_prefix: str):
    """load_data -> split -> train -> evaluate -> deploy, every object on S3, each step its own container."""
    images = built_images.images
    source = storage.join(s3_prefix, "source.csv")
    storage.write_bytes(source, separable_table().to_csv(index=False).encode())

    loaded = run(client, images["load_data"], "--source-uri", source, "--target-column", "label",
                 "--output-dir", f"{s3_prefix}/load").outputs()
    split = run(client, images["split"], "--data-uri", loaded["data_uri"], "--target-column", "label",
                "--output-dir", f"{s3_prefix}/split").outputs()
    trained = run(client, images["train"], "--train-uri", split["train_uri"], "--target-column", "label",
                  "--n-estimators", "25", "--output-dir", f"{s3_prefix}/train").outputs()
    evaluated = run(client, images["evaluate"], "--model-uri", trained["model_uri"], "--test-uri", split["test_uri"],
                    "--output-dir", f"{s3_prefix}/evaluate").outputs()
    deployed = run(client, images["deploy"], "--model-uri", trained["model_uri"], "--metrics-uri",
                   evaluated["metrics_uri"], "--registry-uri", f"{s3_prefix}/registry", "--model-name", "separable",
                   "--threshold", "0.9").outputs()

    objects = set(storage.list_uris(s3_prefix))
    for uri in (f"{s3_prefix}/load/data.parquet", f"{s3_prefix}/split/train.parquet", f"{s3_prefix}/split/test.parquet",
                f"{s3_prefix}/train/model.skops", f"{s3_prefix}/train/model_card.json",
                f"{s3_prefix}/evaluate/metrics.json", f"{s3_prefix}/registry/separable/production.json"):
        assert uri in objects, uri
    assert evaluated["accuracy"] == 1.0
    assert deployed["promoted"] is True
    assert deployed["decision"] == "Model approved for production"
    production = json.loads(storage.read_bytes(f"{s3_prefix}/registry/separable/production.json"))
    card = json.loads(storage.read_bytes(f"{s3_prefix}/train/model_card.json"))
    assert production["version"] == 1 and production["model_sha256"] == card["model_sha256"]
    assert storage.sha256_hex(storage.read_bytes(production["model_uri"])) == card["model_sha256"]

    lineage = read_lineage(storage.read_bytes(loaded["data_uri"]))
    assert lineage["component"] == "load_data"
    assert lineage["component_version"] == built_images.version
    assert lineage["image"] == f'{built_images.images["load_data"].split("@")[0]}:{built_images.version}'
    assert lineage["git_revision"]


def test_chain_on_local_paths(client, built_images, tmp_path: Path):
    """The same chain on a bind-mounted folder, with KFP's parameter output files, and a gate that says no."""
    images = built_images.images
    store = tmp_path / "store"
    store.mkdir()
    store.chmod(0o777)  # the containers write as uid 10001
    mount = {str(store): {"bind": "/work", "mode": "rw"}}

    def step(name: str, *args: str) -> dict:
        return run(client, images[name], *args, volumes=mount).outputs()

    loaded = step("load_data", "--dataset", "wine", "--output-dir", "/work/load",
                  "--data-uri-output-path", "/work/kfp/data_uri")
    split = step("split", "--data-uri", loaded["data_uri"], "--output-dir", "/work/split")
    trained = step("train", "--train-uri", split["train_uri"], "--n-estimators", "25", "--output-dir", "/work/train")
    evaluated = step("evaluate", "--model-uri", trained["model_uri"], "--test-uri", split["test_uri"],
                     "--output-dir", "/work/evaluate", "--accuracy-output-path", "/work/kfp/accuracy")
    deployed = step("deploy", "--model-uri", trained["model_uri"], "--metrics-uri", evaluated["metrics_uri"],
                    "--registry-uri", "/work/registry", "--threshold", "1.0",
                    "--promoted-output-path", "/work/kfp/promoted", "--decision-output-path", "/work/kfp/decision")

    assert loaded["data_uri"] == "/work/load/data.parquet"
    for relative in ("load/data.parquet", "split/train.parquet", "split/test.parquet", "train/model.skops",
                     "train/model_card.json", "evaluate/metrics.json"):
        assert (store / relative).is_file(), relative
    assert pd.read_parquet(io.BytesIO((store / "load/data.parquet").read_bytes())).shape == (178, 14)
    # accuracy is at most 1.0, and the threshold is exclusive: this gate can only refuse.
    assert deployed["promoted"] is False
    assert deployed["decision"] == "Model needs improvement"
    assert not (store / "registry" / "classifier" / "production.json").exists()
    assert (store / "kfp/data_uri").read_bytes() == b"/work/load/data.parquet"
    assert (store / "kfp/accuracy").read_bytes() == str(evaluated["accuracy"]).encode()
    assert (store / "kfp/promoted").read_bytes() == b"false"
    assert (store / "kfp/decision").read_bytes() == b"Model needs improvement"


def test_bad_input_exits_3_with_one_line_and_publishes_nothing(client, built_images, s3_prefix: str):
    missing = f"{s3_prefix}/no-such-table.csv"
    ran = run(client, built_images.images["load_data"], "--source-uri", missing, "--output-dir", f"{s3_prefix}/out")
    assert ran.code == 3
    assert ran.stdout == ""
    assert ran.stderr.splitlines() == [f"error: --source-uri: {missing}: no such object"]
    assert storage.list_uris(s3_prefix) == []


def test_usage_error_exits_2(client, built_images):
    ran = run(client, built_images.images["split"], "--data-uri", "x.csv", "--output-dir", "/tmp/out",
              "--test-size", "1.5")
    assert ran.code == 2
    lines = ran.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "--test-size" in lines[0], ran.stderr


def test_specs_are_pinned_by_digest_alone(built_images):
    """``repo@sha256:…`` with no tag: kfp.local compares the reference with RepoDigests (tagless) and
    would pull a ``repo:tag@sha256:…`` again for every task."""
    for name, image in built_images.images.items():
        repository, digest = image.split("@")
        assert repository.endswith(f"/mlops-components/{name}") and ":" not in repository.rsplit("/", 1)[1]
        assert len(digest) == len("sha256:") + 64 and digest.startswith("sha256:")
        assert f"image: {image}\n" in built_images.spec(name).read_text()


# Every runtime module, each pyarrow module the runtime reaches, and a client of S3 and of each service
# botocore's credential providers call: what slim_venv.sh keeps must be all of it; what it removed
# (Arrow Flight, pyarrow's S3 filesystem, other AWS services' models, test-only extension modules, the source
# of imported modules) must be gone.
SLIM_PROBE = """
import importlib, pkgutil, boto3, mlops_runtime
for module in pkgutil.iter_modules(mlops_runtime.__path__):
    if module.name != "serving":  # needs the serve image's own packages
        importlib.import_module("mlops_runtime." + module.name)
import pyarrow, pyarrow.compute, pyarrow.csv, pyarrow.dataset, pyarrow.fs, pyarrow.parquet, pyarrow.json
for service in ("s3", "sts", "sso", "sso-oidc", "signin"):
    boto3.client(service, region_name="us-east-1")
try:
    pyarrow.fs.S3FileSystem
except ImportError:
    pass
else:
    raise AssertionError("pyarrow's S3FileSystem is still in the image")
try:
    import pyarrow.flight
except ImportError:
    pass
else:
    raise AssertionError("pyarrow.flight is still in the image")
try:
    boto3.client("dynamodb", region_name="us-east-1")
except Exception as error:
    assert type(error).__name__ == "UnknownServiceError", error
import numpy, pandas, sklearn
for package in (numpy, pandas, sklearn):  # imported modules ship as bytecode in place of their source
    assert package.__file__.endswith("__init__.pyc"), package.__file__
for test_only in ("numpy._core._simd", "numpy._core._multiarray_tests", "scipy.special._test_internal"):
    try:
        importlib.import_module(test_only)
    except ImportError:
        pass
    else:
        raise AssertionError(test_only + " is still in the image")
print("ok")
"""


def test_the_slimmed_venv_has_everything_the_steps_load(client, built_images):
    ran = run(client, built_images.images["train"], "-c", SLIM_PROBE, entrypoint=["python"])
    assert (ran.code, ran.stdout.strip()) == (0, "ok"), ran.stderr
