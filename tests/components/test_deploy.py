"""deploy: the gate, the registry it writes, champion/challenger, idempotence and the typed artifact."""
from __future__ import annotations

import json

import pytest
from gate_fixtures import APPROVED, REJECTED, Candidate, assert_complete, deploy, outcome, pointer, registry_files
from step_checks import assert_refused

from mlops_runtime import models, storage
from mlops_runtime.errors import ExitCode
from mlops_runtime.registry import ModelRegistry


def test_an_accurate_model_is_registered_and_promoted(step, base, candidate, tmp_path):
    profile = b'{"features": {}}\n'
    good = candidate("good", errors=5, profile=profile)
    registry = f"{base}/registry"
    files = {name: tmp_path / "kfp" / name for name in ("decision", "promoted", "registered_uri", "reason")}
    result = deploy(step, good, registry, *[arg for name, path in files.items()
                                             for arg in (f"--{name.replace('_', '-')}-output-path", path)])
    expected = {"decision": APPROVED, "promoted": True, "registered_uri": f"{registry}/classifier/1",
                "reason": "accuracy 0.967 > threshold 0.9"}
    assert outcome(result) == expected
    assert {name: path.read_bytes() for name, path in files.items()} == {
        "decision": APPROVED.encode(), "promoted": b"true", "registered_uri": f"{registry}/classifier/1".encode(),
        "reason": b"accuracy 0.967 > threshold 0.9"}

    stored = registry_files(registry)
    assert sorted(stored) == sorted(["classifier/1/.claim", "classifier/1/entry.json", "classifier/1/metrics.json",
                                     "classifier/1/model.skops", "classifier/1/model_card.json",
                                     "classifier/1/reference_profile.json", "classifier/1/test_data.parquet",
                                     f"classifier/sha256/{good.sha256}.json", "classifier/production.json"])
    assert stored["classifier/1/model.skops"] == storage.read_bytes(good.model_uri)
    # the evaluated test table: what unlabeled monitoring calibrates on, even once its run's folder is gone
    test_uri = f"{base}/good/test.parquet"
    assert stored["classifier/1/test_data.parquet"] == storage.read_bytes(test_uri)
    assert stored["classifier/1/model_card.json"] == storage.read_bytes(models.card_uri_for(good.model_uri))
    assert stored["classifier/1/metrics.json"] == storage.read_bytes(good.metrics_uri)
    assert stored["classifier/1/reference_profile.json"] == profile
    entry = json.loads(stored["classifier/1/entry.json"])
    assert entry["reason"] == "accuracy 0.967 > threshold 0.9" and entry["threshold"] == 0.9
    assert entry["metrics"]["accuracy"] == good.accuracy and entry["model_sha256"] == good.sha256
    assert entry["source"] == {"model_uri": good.model_uri, "metrics_uri": good.metrics_uri}
    production = pointer(registry)
    assert {k: production[k] for k in ("model", "version", "version_uri", "model_uri", "model_sha256",
                                        "previous_version", "generation", "reason")} == {
        "model": "classifier", "version": 1, "version_uri": f"{registry}/classifier/1",
        "model_uri": f"{registry}/classifier/1/model.skops", "model_sha256": good.sha256, "previous_version": None,
        "generation": 1, "reason": "accuracy 0.967 > threshold 0.9"}
    assert production["metrics"]["accuracy"] == good.accuracy
    assert assert_complete(registry) == [1]
    # What monitoring loads back is the very model that was evaluated.
    served, card = models.load_model(ModelRegistry(registry, "classifier").resolve_model_uri("production"))
    assert card["model_sha256"] == good.sha256 and list(served.classes_) == [0, 1, 2]


@pytest.mark.parametrize("errors, approved, reason", [
    (15, False, "accuracy 0.9 ≤ threshold 0.9"),  # 135/150 is exactly the threshold: not better
    (14, True, "accuracy 0.907 > threshold 0.9"),
    (60, False, "accuracy 0.6 ≤ threshold 0.9"),
])
def test_the_default_threshold_is_exclusive(step, base, candidate, tmp_path, errors, approved, reason):
    who = candidate("m", errors=errors)
    registry = f"{base}/registry"
    files = {name: tmp_path / "kfp" / name for name in ("promoted", "registered_uri")}
    result = deploy(step, who, registry, "--promoted-output-path", files["promoted"],
                    "--registered-uri-output-path", files["registered_uri"])
    uri = f"{registry}/classifier/1" if approved else ""
    assert outcome(result) == {"decision": APPROVED if approved else REJECTED, "promoted": approved,
                               "registered_uri": uri, "reason": reason}
    assert files["promoted"].read_bytes() == (b"true" if approved else b"false")
    assert files["registered_uri"].read_bytes() == uri.encode()
    if not approved:  # a rejected model leaves no trace in the registry
        assert storage.list_uris(registry) == []


@pytest.mark.parametrize("threshold, approved", [("0", True), ("0.96", True), ("0.9666666666666667", False),
                                                 ("0.97", False), ("1", False)])
def test_a_custom_threshold(step, tmp_path, candidate, threshold, approved):
    who = candidate("m", errors=5)  # accuracy 145/150 = 0.9666666666666667
    result = outcome(deploy(step, who, str(tmp_path / "registry"), "--threshold", threshold))
    assert (result["promoted"], result["decision"]) == (approved, APPROVED if approved else REJECTED)


def test_a_rerun_is_idempotent(step, base, candidate):
    good = candidate("good", errors=5)
    registry = f"{base}/registry"
    first = outcome(deploy(step, good, registry))
    before = registry_files(registry)
    again = outcome(deploy(step, good, registry))
    assert again == {**first, "reason": "accuracy 0.967 > threshold 0.9; already in production (version 1)"}
    assert registry_files(registry) == before  # not a byte changed: no new version, the same pointer


def test_champion_and_challenger(step, base, candidate):
    registry = f"{base}/registry"
    champion = candidate("champion", errors=5, random_state=1)
    better = candidate("better", errors=2, random_state=2)
    worse = candidate("worse", errors=8, random_state=3)
    equal = candidate("equal", errors=2, random_state=4)

    assert outcome(deploy(step, champion, registry, "--compare-to-production"))["reason"] == (
        "accuracy 0.967 > threshold 0.9; no production model yet")
    assert outcome(deploy(step, better, registry, "--compare-to-production")) == {
        "decision": APPROVED, "promoted": True, "registered_uri": f"{registry}/classifier/2",
        "reason": "accuracy 0.987 > threshold 0.9 and > production 0.967 (version 1)"}
    assert (pointer(registry)["version"], pointer(registry)["previous_version"]) == (2, 1)

    before = registry_files(registry)
    assert outcome(deploy(step, worse, registry, "--compare-to-production")) == {
        "decision": REJECTED, "promoted": False, "registered_uri": "",
        "reason": "accuracy 0.947 ≤ production 0.987 (version 2)"}
    assert outcome(deploy(step, equal, registry, "--compare-to-production", "true")) == {
        "decision": REJECTED, "promoted": False, "registered_uri": "",
        "reason": "accuracy 0.987 ≤ production 0.987 (version 2)"}  # a tie keeps the champion
    assert registry_files(registry) == before

    # Without the comparison (the default, or said explicitly) the threshold alone decides.
    assert outcome(deploy(step, worse, registry, "--compare-to-production", "false"))["registered_uri"] == (
        f"{registry}/classifier/3")
    assert outcome(deploy(step, equal, registry, "--no-compare-to-production"))["registered_uri"] == (
        f"{registry}/classifier/4")
    assert pointer(registry)["generation"] == 4
    assert assert_complete(registry) == [1, 2, 3, 4]


def test_promoting_a_registered_model_again_reuses_its_version(step, base, candidate):
    registry = f"{base}/registry"
    first, second = candidate("first", errors=5, random_state=1), candidate("second", errors=4, random_state=2)
    for who in (first, second, first):
        outcome(deploy(step, who, registry))
    production = pointer(registry)
    assert (production["version"], production["previous_version"], production["generation"]) == (1, 2, 3)
    assert assert_complete(registry) == [1, 2]


def test_models_are_kept_apart_by_name(step, tmp_path, candidate):
    registry = str(tmp_path / "registry")
    who = candidate("m", errors=5)
    assert outcome(deploy(step, who, registry, "--model-name", "iris-v2"))["registered_uri"] == (
        f"{registry}/iris-v2/1")
    assert pointer(registry, "iris-v2")["model_sha256"] == who.sha256
    assert not (tmp_path / "registry" / "classifier").exists()


@pytest.mark.parametrize("spelling", ["relative", "file"])
def test_a_rerun_is_idempotent_however_a_local_registry_is_spelled(step, tmp_path, candidate, monkeypatch, spelling):
    monkeypatch.chdir(tmp_path)
    registry = "./registry/" if spelling == "relative" else f"file://{tmp_path}/registry"
    who = candidate("m", errors=5)
    first, second = outcome(deploy(step, who, registry)), outcome(deploy(step, who, registry))
    assert sorted(p.name for p in (tmp_path / "registry" / "classifier").iterdir()) == [
        "1", "production.json", "sha256"]
    assert second["reason"].endswith("already in production (version 1)")
    store = ModelRegistry(registry, "classifier")
    assert store.versions() == [1] and models.load_model(store.resolve_model_uri("1"))[1]["model_sha256"] == who.sha256
    # Local registry URIs come back normalised (what storage.list_uris spells), still pointing at the same folder.
    version_uri = "registry/classifier/1" if spelling == "relative" else f"{tmp_path}/registry/classifier/1"
    assert first["registered_uri"] == second["registered_uri"] == version_uri


def test_the_registry_version_is_a_typed_model_artifact_for_kfp(step, base, candidate, tmp_path):
    registry = f"{base}/registry"

    def reported(model: Candidate) -> dict:
        output_file = tmp_path / "kfp" / f"{model.sha256}.json"
        executor_input = {"outputs": {"outputFile": str(output_file), "artifacts": {"registered_model": {
            "artifacts": [{"name": "registered_model", "type": {"schemaTitle": "system.Model"},
                           "uri": str(tmp_path / "root" / model.sha256), "metadata": {}}]}}}}
        assert deploy(step, model, registry, "--executor-input", json.dumps(executor_input)).exit_code == 0
        [artifact] = json.loads(output_file.read_text())["artifacts"]["registered_model"]["artifacts"]
        assert artifact["uri"] == str(tmp_path / "root" / model.sha256)  # KFP's location: in the pipeline root
        return artifact["metadata"]

    good = candidate("good", errors=5)
    assert reported(good) == {
        "promoted": True, "registered_uri": f"{registry}/classifier/1", "registry_uri": registry,
        "model_name": "classifier", "version": 1, "model_sha256": good.sha256, "task": "classification",
        "metric": "accuracy", "value": good.accuracy, "reason": "accuracy 0.967 > threshold 0.9"}
    assert reported(candidate("poor", errors=20)) == {"promoted": False, "reason": "accuracy 0.867 ≤ threshold 0.9"}


def test_the_test_table_is_registered_for_calibration_unless_gone_and_refused_when_tampered(step, base, candidate):
    registry = f"{base}/registry"
    good = candidate("good", errors=5)
    gone = candidate("gone", errors=4)
    storage.delete(f"{base}/gone/test.parquet")  # its run's folder was removed before deploying
    assert outcome(deploy(step, gone, registry))["promoted"] is True
    assert "classifier/1/test_data.parquet" not in registry_files(registry)
    assert "snapshot" not in ModelRegistry(registry, "classifier").entry(1)["test_data"]

    storage.write_bytes(f"{base}/good/test.parquet", b"PAR1 not the evaluated table")
    assert_refused(deploy(step, good, registry), ExitCode.BAD_INPUT, "--metrics-uri", f"{registry}/classifier/2")

    better = candidate("better", errors=1, random_state=1)  # another model: a new version
    assert outcome(deploy(step, better, registry))["promoted"] is True
    references = ModelRegistry(registry, "classifier").monitoring_references()
    assert references["calibration_uri"] == f"{registry}/classifier/2/test_data.parquet"
    assert ModelRegistry(registry, "classifier").entry(2)["test_data"]["snapshot"] == "test_data.parquet"
