"""deploy: the gate, the registry it writes, champion/challenger, racing promotions, and every refusal."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest
from gate_fixtures import fit_forest, iris, listing, put_table, relabelled, write_model
from step_checks import COMPONENTS, assert_refused

from mlops_runtime import models, promotion, storage
from mlops_runtime.errors import ExitCode
from mlops_runtime.registry import ModelRegistry

APPROVED = "Model approved for production"
REJECTED = "Model needs improvement"
N_ROWS = 150  # iris: a candidate with k errors scores exactly (150 - k) / 150


@pytest.fixture(params=["local", "s3"])
def base(request: pytest.FixtureRequest, tmp_path) -> str:
    return str(tmp_path / "store") if request.param == "local" else request.getfixturevalue("s3_prefix")


@dataclass
class Candidate:
    model_uri: str
    metrics_uri: str
    accuracy: float
    sha256: str


@pytest.fixture
def candidate(step, base):
    """``candidate(name, errors=k)``: a model, and its metrics from evaluate on a table where it errs k times."""

    def make(name: str, *, errors: int, random_state: int = 0, profile: bytes | None = None) -> Candidate:
        data = iris()
        model = fit_forest(data, random_state=random_state)
        model_uri = f"{base}/{name}/model/model.skops"
        card = write_model(model, model_uri, train_uri=f"{base}/train.parquet", train=data)
        if profile is not None:
            storage.write_bytes(f"{base}/{name}/model/reference_profile.json", profile)
        test_uri = put_table(f"{base}/{name}/test.parquet", relabelled(model, data, errors))
        result = step("evaluate", "--model-uri", model_uri, "--test-uri", test_uri,
                      "--output-dir", f"{base}/{name}/eval")
        assert result.exit_code == 0, result.stderr
        metrics_uri = f"{base}/{name}/eval/metrics.json"
        accuracy = json.loads(storage.read_bytes(metrics_uri))["accuracy"]
        assert accuracy == (N_ROWS - errors) / N_ROWS
        return Candidate(model_uri, metrics_uri, accuracy, card["model_sha256"])

    return make


def deploy(step, who: Candidate, registry: str, *extra: str):
    return step("deploy", "--model-uri", who.model_uri, "--metrics-uri", who.metrics_uri, "--registry-uri", registry,
                *extra)


def outcome(result) -> dict:
    assert result.exit_code == 0, result.stderr
    [line] = result.stdout.splitlines()
    return json.loads(line)


def registry_files(registry: str) -> dict[str, bytes]:
    """The registry's objects; the local lock file of conditional replacements is an implementation detail."""
    return {name: data for name, data in listing(registry).items() if not name.endswith(".production.json.lock")}


def pointer(registry: str, model: str = "classifier") -> dict:
    return json.loads(storage.read_bytes(f"{registry}/{model}/production.json"))


def assert_complete(registry: str, model: str = "classifier") -> list[int]:
    """Every version in the registry is whole and consistent with its entry and the sha256 index."""
    store = ModelRegistry(registry, model)
    versions = store.versions()
    for version in versions:
        entry = store.entry(version)
        folder = store.version_uri(version)
        model_bytes = storage.read_bytes(f"{folder}/model.skops")
        assert entry["version"] == version and entry["model_uri"] == f"{folder}/model.skops"
        assert storage.sha256_hex(model_bytes) == entry["model_sha256"]
        assert json.loads(storage.read_bytes(f"{folder}/model_card.json"))["model_sha256"] == entry["model_sha256"]
        assert json.loads(storage.read_bytes(f"{folder}/metrics.json"))["model_sha256"] == entry["model_sha256"]
        assert store.find_by_sha(entry["model_sha256"]) == version
    return versions


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


def race(registry: str, racers: list[Candidate], compare: bool, monkeypatch) -> list[dict]:
    """Run deploys in threads that all read production before any of them writes: a guaranteed race."""
    barrier = threading.Barrier(len(racers), timeout=60)
    waited = threading.local()
    read_production = ModelRegistry.production

    def production_then_wait(self):
        seen = read_production(self)
        if not getattr(waited, "done", False):
            waited.done = True
            barrier.wait()
        return seen

    monkeypatch.setattr(ModelRegistry, "production", production_then_wait)
    loaded = [promotion.read_candidate(who.model_uri, who.metrics_uri) for who in racers]
    gate = promotion.Gate("accuracy", 0.9, compare_to_production=compare)
    with ThreadPoolExecutor(len(racers)) as pool:
        futures = [pool.submit(promotion.deploy, c, ModelRegistry(registry, "classifier"), gate)
                   for c in loaded]
        return [future.result(timeout=120) for future in futures]


def test_racing_challengers_leave_the_best_in_production(base, candidate, monkeypatch):
    registry = f"{base}/registry"
    racers = [candidate(f"c{i}", errors=errors, random_state=i) for i, errors in enumerate((4, 1, 3, 2))]
    results = race(registry, racers, True, monkeypatch)
    production = pointer(registry)
    assert production["model_sha256"] == racers[1].sha256  # one error: the best
    assert results[1]["promoted"] is True
    # Each successful promotion replaced exactly the pointer it had read: none was lost.
    assert production["generation"] == sum(r["promoted"] for r in results)
    assert len(assert_complete(registry)) == len(racers)  # every racer registered before the race was decided


def test_racing_promotions_are_all_applied_in_turn(base, candidate, monkeypatch):
    registry = f"{base}/registry"
    racers = [candidate(f"c{i}", errors=i + 1, random_state=i) for i in range(4)]
    results = race(registry, racers, False, monkeypatch)
    assert [r["promoted"] for r in results] == [True] * 4
    assert pointer(registry)["generation"] == 4
    assert pointer(registry)["previous_version"] is not None
    assert assert_complete(registry) == [1, 2, 3, 4]


def test_racing_deploys_of_one_model_make_one_version(base, candidate, monkeypatch):
    registry = f"{base}/registry"
    who = candidate("m", errors=5)
    results = race(registry, [who] * 4, False, monkeypatch)
    [version] = assert_complete(registry)
    assert {r["registered_uri"] for r in results} == {f"{registry}/classifier/{version}"}
    assert all(r["promoted"] for r in results)
    assert pointer(registry)["generation"] == 1
    # The losers removed their copies: only their version claims remain.
    leftovers = [name for name in registry_files(registry) if not name.startswith(f"classifier/{version}/")]
    assert all(name.endswith("/.claim") for name in leftovers if name.split("/")[1].isdigit())


@pytest.mark.parametrize("base", ["s3"], indirect=True)  # the threads above race on both; processes cost ~10 s each
def test_racing_processes(base, candidate):
    registry = f"{base}/registry"
    racers = [candidate(f"c{i}", errors=errors, random_state=i) for i, errors in enumerate((3, 1, 2))]
    env = {key: value for key, value in os.environ.items() if key != "MLOPS_LOG_LEVEL"}
    processes = [subprocess.Popen([sys.executable, str(COMPONENTS / "deploy" / "main.py"), "--model-uri", who.model_uri,
                                   "--metrics-uri", who.metrics_uri, "--registry-uri", registry,
                                   "--compare-to-production"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True, env=env) for who in racers]
    results = []
    for process in processes:
        stdout, stderr = process.communicate(timeout=120)
        assert process.returncode == 0, stderr
        results.append(json.loads(stdout))
    assert pointer(registry)["model_sha256"] == racers[1].sha256
    assert pointer(registry)["generation"] == sum(r["promoted"] for r in results)
    assert assert_complete(registry)


@pytest.mark.parametrize("threshold", ["-0.1", "1.01", "nan", "high"])
def test_a_threshold_outside_0_1_is_a_usage_error(step, base, candidate, threshold):
    who = candidate("m", errors=5)
    assert_refused(deploy(step, who, f"{base}/registry", "--threshold", threshold), ExitCode.USAGE, "--threshold",
                   f"{base}/registry")


@pytest.mark.parametrize("args, option", [
    (("--model-name", "a/b"), "--model-name"),
    (("--model-name", ".."), "--model-name"),
    (("--compare-to-production", "maybe"), "--compare-to-production"),
    (("--compare-to-production", "--no-compare-to-production"), "--no-compare-to-production"),
])
def test_other_usage_errors(step, base, candidate, args, option):
    who = candidate("m", errors=5)
    assert_refused(deploy(step, who, f"{base}/registry", *args), ExitCode.USAGE, option, f"{base}/registry")


def test_a_tampered_model_is_refused(step, base, candidate):
    who = candidate("m", errors=5)
    model, _card = models.load_model(who.model_uri)
    model.n_estimators = 11
    storage.write_bytes(who.model_uri, models.dumps(model))
    line = assert_refused(deploy(step, who, f"{base}/registry"), ExitCode.MODEL, "--model-uri", f"{base}/registry")
    assert "does not match its model card" in line


def test_metrics_of_another_model_are_refused(step, base, candidate):
    one, other = candidate("one", errors=5, random_state=1), candidate("other", errors=1, random_state=2)
    mixed = Candidate(one.model_uri, other.metrics_uri, other.accuracy, one.sha256)
    line = assert_refused(deploy(step, mixed, f"{base}/registry"), ExitCode.BAD_INPUT, "--metrics-uri",
                          f"{base}/registry")
    assert f"not of {one.model_uri}" in line


@pytest.mark.parametrize("content, message", [
    (b"{not json", "not valid JSON"),
    (b'{"accuracy": "high"}', "accuracy: expected a finite number"),
    (b'{"accuracy": 1.5}', "accuracy: 1.5 is outside [0, 1]"),
    (b'{"accuracy": NaN}', "NaN is not a JSON value"),
    (b'{"accuracy": 0.99}', "these metrics are of model sha256 None"),
    (b'[0.99]', "not a valid metrics document"),
    (b'{"accuracy": 0.99, "task": "ranking"}', "not a valid metrics document (task"),
    (b'{"accuracy": 0.99, "rmse": 2.0}', "rmse is not a classification metric"),
    (b'{"accuracy": 0.99, "n_samples": 0}', "not a valid metrics document (n_samples"),
])
def test_invalid_metrics_are_refused(step, base, candidate, content, message):
    who = candidate("m", errors=5)
    storage.write_bytes(who.metrics_uri, content)
    line = assert_refused(deploy(step, who, f"{base}/registry"), ExitCode.BAD_INPUT, "--metrics-uri",
                          f"{base}/registry")
    assert message in line


@pytest.mark.parametrize("missing, option, code", [
    ("m/model/model.skops", "--model-uri", ExitCode.MODEL),
    ("m/model/model_card.json", "--model-uri", ExitCode.MODEL),
    ("m/eval/metrics.json", "--metrics-uri", ExitCode.BAD_INPUT),
])
def test_a_missing_object_is_refused(step, base, candidate, missing, option, code):
    who = candidate("m", errors=5)
    storage.delete(f"{base}/{missing}")
    assert_refused(deploy(step, who, f"{base}/registry"), code, option, f"{base}/registry")


def test_an_invalid_reference_profile_is_refused(step, base, candidate):
    who = candidate("m", errors=5, profile=b"{oops")
    line = assert_refused(deploy(step, who, f"{base}/registry"), ExitCode.BAD_INPUT, "--model-uri", f"{base}/registry")
    assert "reference_profile.json" in line


def test_a_corrupted_production_pointer_is_refused(step, base, candidate):
    who = candidate("m", errors=5)
    registry = f"{base}/registry"
    storage.write_bytes(f"{registry}/classifier/production.json", b"{broken")
    result = deploy(step, who, registry)
    assert result.exit_code == ExitCode.MODEL
    assert result.stderr.splitlines() == [f"error: --registry-uri: {registry}/classifier/production.json: "
                                          "corrupted production pointer"]
    assert storage.list_uris(registry) == [f"{registry}/classifier/production.json"]


def test_an_unknown_registry_scheme_is_refused(step, tmp_path, candidate):
    who = candidate("m", errors=5)
    result = deploy(step, who, "ftp://host/registry")
    assert result.exit_code == ExitCode.BAD_INPUT
    assert result.stderr.splitlines() == ["error: --registry-uri: ftp://host/registry: unsupported URI scheme 'ftp' "
                                          "(use s3:// or a local path)"]


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
