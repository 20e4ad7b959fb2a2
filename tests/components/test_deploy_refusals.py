"""deploy refuses bad input: one stderr line naming the option, the documented exit code, nothing written."""
from __future__ import annotations

import pytest
from gate_fixtures import Candidate, deploy
from step_checks import assert_refused

from mlops_runtime import models, storage
from mlops_runtime.errors import ExitCode


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
