"""documents: every JSON document a step reads back is checked against its schema."""
import json

import pytest

from mlops_runtime import documents
from mlops_runtime.errors import BadInputError, ModelError

SHA = "a" * 64
GOOD_METRICS = {"accuracy": 0.9, "precision_macro": 0.9, "recall_macro": 0.9, "f1_macro": 0.9, "n_samples": 30,
                "model_sha256": SHA, "confusion_matrix": {"labels": ["0", "1"], "matrix": [[10, 5], [0, 15]]}}
GOOD_POINTER = {"model": "m", "version": 2, "version_uri": "r/m/2", "model_uri": "r/m/2/model.skops",
                "model_sha256": SHA, "metrics": {"accuracy": 0.9}, "previous_version": 1, "generation": 2,
                "reason": "ok", "promoted_at": "2026-01-01T00:00:00+00:00"}
GOOD_RECORD = {"checked_at": "2026-01-01T00:00:00+00:00", "metric": "accuracy", "value": 0.9, "baseline": 0.95,
               "tolerance": 0.05, "ci": {"lower": 0.8, "upper": 0.95}, "degraded": False, "model_version": 1}


def raw(document) -> bytes:
    return json.dumps(document).encode()


def test_good_documents_pass():
    assert documents.metrics(raw(GOOD_METRICS), "m.json", label="--metrics-uri", require=("accuracy",))
    assert documents.production_pointer(raw(GOOD_POINTER), "p.json")["generation"] == 2
    assert documents.performance_record(raw(GOOD_RECORD), "r.json", label="--history-uri")
    assert documents.model_card(raw({"model_sha256": SHA, "feature_names": ["a"], "classes": [0, 1]}), "c.json",
                                label="--model-uri")


@pytest.mark.parametrize(("text", "problem"), [
    (b'{"accuracy": NaN}', "NaN is not a JSON value"),
    (b'{"accuracy": Infinity}', "Infinity is not a JSON value"),
    (b'{"accuracy": 0.5, "accuracy": 0.9}', "accuracy: appears twice"),
    (b'[0.9]', "expected a JSON object"),
    (b'{"accuracy": true}', "accuracy: expected a finite number"),
    (b'{"accuracy": -0.1}', "accuracy: -0.1 is outside [0, 1]"),
    (b'{"accuracy": null}', "accuracy: expected a finite number"),
    (b'{"f1_macro": 0.5}', "accuracy: missing"),
    (b'{"accuracy": 0.9, "n_samples": 0}', "n_samples: 0 is outside"),
    (b'{"accuracy": 0.9, "n_samples": 2.5}', "n_samples: expected an integer"),
    (b'{"accuracy": 0.9, "model_sha256": "abc"}', "model_sha256:"),
    (b'{"accuracy": 0.9, "confusion_matrix": {"labels": ["a", "b"], "matrix": [[1, 2]]}}', "2 rows of 2 counts"),
    (b'{"accuracy": 0.9, "confusion_matrix": {"labels": ["a"], "matrix": [[-1]]}}', "item 0: item 0: -1"),
    (b'{"accuracy": 0.9, "log_loss": -1}', "log_loss: -1 is outside"),
    (b'\xff\xfe', "not valid JSON"),
    (b'[' * 100_000, "not valid JSON"),
])
def test_tampered_metrics_are_bad_input_naming_the_field(text, problem):
    with pytest.raises(BadInputError) as raised:
        documents.metrics(text, "s3://b/metrics.json", label="--metrics-uri", require=("accuracy",))
    line = raised.value.one_line()
    assert line.startswith("--metrics-uri: s3://b/metrics.json: not a valid metrics document (") and problem in line
    assert "\n" not in line


@pytest.mark.parametrize(("change", "problem"), [
    ({"generation": "x"}, "generation: expected an integer"),
    ({"generation": 0}, "generation: 0 is outside"),
    ({"version": "2"}, "version: expected an integer"),
    ({"model_sha256": None}, "model_sha256: expected a non-empty string"),
    ({"metrics": {"accuracy": 2}}, "metrics: accuracy: 2 is outside"),
    ({"promoted_at": "yesterday"}, "promoted_at: 'yesterday' is not an ISO 8601 time"),
    ({"previous_version": -1}, "previous_version: -1 is outside"),
])
def test_a_tampered_production_pointer_is_a_model_error(change, problem):
    with pytest.raises(ModelError, match="corrupted production pointer") as raised:
        documents.production_pointer(raw({**GOOD_POINTER, **change}), "r/m/production.json")
    assert problem in str(raised.value)


@pytest.mark.parametrize(("change", "problem"), [
    ({"baseline": "high"}, "baseline: expected a finite number"),
    ({"ci": {"lower": 0.1}}, "ci: upper: missing"),
    ({"degraded": "no"}, "degraded: expected true or false"),
    ({"checked_at": 5}, "checked_at: expected an ISO 8601 time"),
    ({"tolerance": -0.1}, "tolerance: -0.1 is outside"),
])
def test_a_tampered_performance_record_is_bad_input(change, problem):
    with pytest.raises(BadInputError, match="not a valid performance history record") as raised:
        documents.performance_record(raw({**GOOD_RECORD, **change}), "h/1.json", label="--history-uri")
    assert problem in str(raised.value)


@pytest.mark.parametrize(("card", "problem"), [
    ({"feature_names": ["a"]}, "model_sha256: missing"),
    ({"model_sha256": SHA, "feature_names": "a"}, "feature_names: expected a list"),
    ({"model_sha256": SHA, "feature_names": [1]}, "feature_names: item 0"),
    ({"model_sha256": SHA, "task": "ranking"}, "task: 'ranking' is not one of"),
    ({"model_sha256": SHA, "signature": {"features": [{"kind": "numeric"}]}}, "signature: features: item 0: name"),
])
def test_a_tampered_model_card_is_a_model_error(card, problem):
    with pytest.raises(ModelError, match="not a valid model card") as raised:
        documents.model_card(raw(card), "m/model_card.json", label="--model-uri")
    assert problem in str(raised.value)
