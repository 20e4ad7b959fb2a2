"""The same inputs and seeds give byte-identical model files, metrics and tables: run after run in-process,
from scratch, and in the step images (conftest's ``built_images``) against the same S3 objects.

Lineage records the image, its version and revision (``MLOPS_*`` in the image); the in-process runs get
the image's values so that both sides describe the same thing and only real differences remain.
"""
from __future__ import annotations

import json
import uuid

import pytest
from hardening_support import docker_run, image_config, make_upstream, recipe, run_in_process

from mlops_runtime import models, storage
from mlops_runtime.outputs import MANIFEST_FILE

BUCKET = "mlops-test"
SEEDED_STEPS = ("load_data", "split", "train", "evaluate", "make_batch")
LINEAGE_ENV = ("MLOPS_IMAGE", "MLOPS_IMAGE_DIGEST", "MLOPS_GIT_REVISION")
METRICS = ("accuracy", "precision_macro", "recall_macro", "f1_macro", "confusion_matrix", "n_samples")


@pytest.fixture(scope="module")
def upstream() -> str:
    return make_upstream(f"s3://{BUCKET}/hardening-repro-{uuid.uuid4().hex[:8]}/upstream")


def published(output_dir: str) -> dict[str, bytes]:
    """Every object under ``output_dir`` by its name; a manifest is reduced to what does not name the folder."""
    objects = {}
    for uri in storage.list_uris(output_dir):
        name, data = uri[len(output_dir) + 1:], storage.read_bytes(uri)
        if name == MANIFEST_FILE:
            manifest = json.loads(data)
            data = json.dumps({"objects": {o["name"]: o["sha256"] for o in manifest["objects"]},
                               "lineage": manifest["lineage"]}).encode()
        objects[name] = data
    return objects


def run_ok(step: str, *args: str) -> None:
    result = run_in_process(step, *args)
    assert result.exit_code == 0, result.stderr


@pytest.mark.parametrize("step", SEEDED_STEPS)
def test_in_process_reruns_are_byte_identical(upstream, step):
    root = upstream.rsplit("/", 1)[0]
    first, second = f"{root}/rerun-a/{step}", f"{root}/rerun-b/{step}"
    run_ok(step, *recipe(step, upstream, first))
    run_ok(step, *recipe(step, upstream, second))
    assert published(first) == published(second)


def test_another_seed_gives_another_model(upstream):
    root = upstream.rsplit("/", 1)[0]
    args = recipe("train", upstream, f"{root}/seed-a")
    run_ok("train", *args)
    other = [*args[:args.index("--random-state") + 1], "6", *args[args.index("--random-state") + 2:]]
    run_ok("train", *[a.replace("seed-a", "seed-b") for a in other])
    assert storage.read_bytes(f"{root}/seed-a/model.skops") != storage.read_bytes(f"{root}/seed-b/model.skops")


def test_a_chain_from_scratch_gives_the_same_model_and_metrics(tmp_path):
    """load_data -> split -> train -> evaluate twice in two folders: the inputs' URIs differ (so do the
    lineages), the model file and the metrics do not."""
    results = []
    for run in ("one", "two"):
        root = tmp_path / run
        run_ok("load_data", "--dataset", "breast_cancer", "--output-dir", root / "data")
        run_ok("split", "--data-uri", root / "data/data.parquet", "--random-state", "11",
               "--output-dir", root / "split")
        run_ok("train", "--train-uri", root / "split/train.parquet", "--n-estimators", "30", "--max-depth", "6",
               "--random-state", "11", "--output-dir", root / "model")
        run_ok("evaluate", "--model-uri", root / "model/model.skops", "--test-uri", root / "split/test.parquet",
               "--output-dir", root / "eval")
        metrics = json.loads((root / "eval/metrics.json").read_text())
        results.append(((root / "model/model.skops").read_bytes(), {name: metrics[name] for name in METRICS}))
    assert results[0] == results[1]


@pytest.mark.docker
@pytest.mark.parametrize("step", SEEDED_STEPS)
def test_docker_and_in_process_give_byte_identical_outputs(built_images, upstream, monkeypatch, step):
    image = built_images.images[step]
    env = dict(item.split("=", 1) for item in image_config(image).get("Env") or [])
    for name in LINEAGE_ENV:
        if name in env:
            monkeypatch.setenv(name, env[name])
        else:
            monkeypatch.delenv(name, raising=False)
    root = upstream.rsplit("/", 1)[0]
    local, container = f"{root}/local/{step}", f"{root}/docker/{step}"
    run_ok(step, *recipe(step, upstream, local))
    ran = docker_run(image, *recipe(step, upstream, container), s3=True)
    assert ran.returncode == 0, ran.stderr

    mine, theirs = published(local), published(container)
    assert mine.keys() == theirs.keys()
    if models.CARD_FILE in mine:
        # the card records the interpreter; the venv's and the image's Python may differ in the patch release
        cards = [json.loads(objects.pop(models.CARD_FILE)) for objects in (mine, theirs)]
        versions = [card["library_versions"].pop("python") for card in cards]
        assert versions[0].rsplit(".", 1)[0] == versions[1].rsplit(".", 1)[0] == "3.11"
        assert cards[0] == cards[1]
        if MANIFEST_FILE in mine:  # which lists the card's sha256
            manifests = [json.loads(objects.pop(MANIFEST_FILE)) for objects in (mine, theirs)]
            for manifest in manifests:
                manifest["objects"].pop(models.CARD_FILE)
            assert manifests[0] == manifests[1]
    assert mine == theirs
