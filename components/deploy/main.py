"""The gate: register and promote a model to production when its accuracy clears the bar."""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

import click

from mlops_runtime import documents, models, outputs, step_io, storage
from mlops_runtime.cli import FloatRange, output_path_option, step
from mlops_runtime.errors import BadInputError, ComponentError, ModelError, StorageError
from mlops_runtime.log import get_logger
from mlops_runtime.registry import ModelRegistry, Production

APPROVED = "Model approved for production"
REJECTED = "Model needs improvement"
PROFILE_FILE = models.PROFILE_FILE
SCALAR_METRICS = ("accuracy", "precision_macro", "recall_macro", "f1_macro", "n_samples")
MAX_PROMOTION_ATTEMPTS = 5
MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")

log = get_logger("deploy")


@dataclass
class Candidate:
    model_uri: str
    metrics_uri: str
    model_bytes: bytes
    card_bytes: bytes
    sha256: str
    metrics_bytes: bytes
    metrics: dict[str, Any]
    accuracy: float
    extra_files: dict[str, bytes]


def read_candidate(model_uri: str, metrics_uri: str) -> Candidate:
    """The model (verified and loadable), its card, its metrics and its reference profile, if any."""
    stored = models.load_stored_model(model_uri, label="--model-uri")
    card, model_bytes, card_bytes = stored.card, stored.model_bytes, stored.card_bytes
    extra_files = {}
    profile_uri = models.profile_uri_for(model_uri)
    try:
        has_profile = storage.exists(profile_uri)
    except ComponentError as error:
        raise error.about("--model-uri") from None
    if has_profile:
        extra_files[PROFILE_FILE] = storage.read_bytes(profile_uri, label="--model-uri")
        expected = card.get("reference_profile", {}).get("sha256")
        if expected and storage.sha256_hex(extra_files[PROFILE_FILE]) != expected:
            raise ModelError(f"{profile_uri}: the reference profile does not match the model card's sha256",
                             label="--model-uri")
        try:
            json.loads(extra_files[PROFILE_FILE])
        except ValueError:
            raise BadInputError(f"{profile_uri}: the reference profile beside the model is not valid JSON",
                                label="--model-uri") from None

    metrics_bytes = storage.read_bytes(metrics_uri, label="--metrics-uri")
    metrics = documents.metrics(metrics_bytes, metrics_uri, label="--metrics-uri", require=("accuracy",))
    accuracy = metrics["accuracy"]
    if metrics.get("model_sha256") != card["model_sha256"]:
        evaluated = str(metrics.get("model_sha256"))[:12]
        raise BadInputError(f"{metrics_uri}: these metrics are of model sha256 {evaluated}…, not of {model_uri} "
                            f"(sha256 {card['model_sha256'][:12]}…)", label="--metrics-uri")
    return Candidate(model_uri, metrics_uri, model_bytes, card_bytes, card["model_sha256"], metrics_bytes,
                     metrics, float(accuracy), extra_files)


def numbers(a: float, b: float) -> tuple[str, str]:
    """Two numbers as short as possible while still telling them apart (0.967 and 0.9)."""
    for digits in range(3, 18):
        text_a, text_b = f"{a:.{digits}g}", f"{b:.{digits}g}"
        if text_a != text_b or a == b:
            return text_a, text_b
    return repr(a), repr(b)


def production_accuracy(registry: ModelRegistry, production: Production) -> float:
    assert production.pointer is not None
    accuracy = production.pointer.get("metrics", {}).get("accuracy")
    if accuracy is None:  # a pointer written without metrics: read them from the version itself
        accuracy = registry.entry(int(production.pointer["version"])).get("metrics", {}).get("accuracy")
    if isinstance(accuracy, bool) or not isinstance(accuracy, (int, float)) or math.isnan(accuracy):
        raise ModelError(f"{registry.base}: the production model (version {production.pointer['version']}) "
                         "has no recorded accuracy to compare with")
    return float(accuracy)


def result(promoted: bool, registered_uri: str, reason: str) -> dict[str, Any]:
    return {"decision": APPROVED if promoted else REJECTED, "promoted": promoted,
            "registered_uri": registered_uri, "reason": reason}


def deploy(candidate: Candidate, registry: ModelRegistry, threshold: float, compare_to_production: bool) -> dict:
    accuracy, threshold_text = numbers(candidate.accuracy, threshold)
    if not candidate.accuracy > threshold:
        return result(False, "", f"accuracy {accuracy} ≤ threshold {threshold_text}")
    gate = f"accuracy {accuracy} > threshold {threshold_text}"
    version: int | None = None
    for attempt in range(1, MAX_PROMOTION_ATTEMPTS + 1):
        production = registry.production()
        current = production.pointer
        if current is not None and current["model_sha256"] == candidate.sha256:
            return result(True, registry.version_uri(int(current["version"])),
                          f"{gate}; already in production (version {current['version']})")
        reason = gate
        if compare_to_production and current is not None:
            champion = production_accuracy(registry, production)
            mine, theirs = numbers(candidate.accuracy, champion)
            if not candidate.accuracy > champion:  # a tie keeps the champion
                return result(False, "", f"accuracy {mine} ≤ production {theirs} (version {current['version']})")
            reason = f"{gate} and > production {theirs} (version {current['version']})"
        elif compare_to_production:
            reason = f"{gate}; no production model yet"
        if version is None:
            version, created = registry.register(
                model=candidate.model_bytes, card=candidate.card_bytes, metrics=candidate.metrics_bytes,
                extra_files=candidate.extra_files, entry=entry_record(candidate, threshold, reason))
            log.info("%s version %d of %s", "registered" if created else "found", version, registry.base)
        if registry.promote(version, reason=reason, expected=production):
            log.info("promoted version %d: %s", version, reason)
            return result(True, registry.version_uri(version), reason)
        log.info("production changed while promoting (attempt %d of %d); deciding again", attempt,
                 MAX_PROMOTION_ATTEMPTS)
    raise StorageError(f"{registry.base}: production changed {MAX_PROMOTION_ATTEMPTS} times while promoting; "
                       "run the step again")


def entry_record(candidate: Candidate, threshold: float, reason: str) -> dict[str, Any]:
    metrics = {name: candidate.metrics[name] for name in SCALAR_METRICS if name in candidate.metrics}
    return {"reason": reason, "threshold": threshold, "metrics": metrics,
            "source": {"model_uri": candidate.model_uri, "metrics_uri": candidate.metrics_uri},
            "test_data": candidate.metrics.get("test_data")}


def check_model_name(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    if not MODEL_NAME.match(value):
        raise click.BadParameter("use letters, digits, '.', '_' or '-' (starting with a letter or digit)")
    return value


@step("deploy", help="Gate a model: when its accuracy is above --threshold (and, with --compare-to-production, "
                     "above the production model's), register it and point production at it.")
@click.option("--model-uri", required=True, help="URI of the model (model.skops, its model_card.json beside it).")
@click.option("--metrics-uri", required=True, help="URI of the model's metrics.json (from evaluate).")
@click.option("--registry-uri", required=True, help="URI prefix (s3://... or a local folder) of the model registry.")
@click.option("--model-name", default="classifier", show_default=True, callback=check_model_name,
              help="Name of the model in the registry.")
@click.option("--threshold", type=FloatRange(0, 1), default=0.9, show_default=True,
              help="Minimum accuracy, exclusive: the model must be strictly better.")
# A value-taking option (bare flag = true) because KFP can only pass a Boolean input as a value.
@click.option("--compare-to-production", type=click.BOOL, is_flag=False, flag_value=True, default=False,
              show_default=True, metavar="[BOOLEAN]",
              help="Also require a strictly higher accuracy than the current production model's.")
@click.option("--no-compare-to-production", is_flag=True, default=False,
              help="Same as --compare-to-production false (the default).")
@output_path_option("decision", f"'{APPROVED}' or '{REJECTED}'.")
@output_path_option("promoted", "Whether production now points at this model.")
@output_path_option("registered_uri", "URI of the registry version now in production ('' when not promoted).")
@output_path_option("reason", "Why the model was or was not promoted.")
def cli(model_uri: str, metrics_uri: str, registry_uri: str, model_name: str, threshold: float,
        compare_to_production: bool, no_compare_to_production: bool, decision_output_path: str | None,
        promoted_output_path: str | None, registered_uri_output_path: str | None,
        reason_output_path: str | None) -> None:
    if compare_to_production and no_compare_to_production:
        raise click.UsageError("--compare-to-production and --no-compare-to-production contradict each other")
    try:
        registry = ModelRegistry(registry_uri, model_name)
    except ComponentError as error:
        raise error.about("--registry-uri") from None
    candidate = read_candidate(model_uri, metrics_uri)
    try:
        outcome = deploy(candidate, registry, threshold, compare_to_production)
    except ComponentError as error:
        raise error.about("--registry-uri") from None
    with outputs.publication() as out:  # the registry is this step's output; only KFP files are published here
        out.parameters({name: (path, outcome[name]) for name, path in (
            ("decision", decision_output_path), ("promoted", promoted_output_path),
            ("registered_uri", registered_uri_output_path), ("reason", reason_output_path))})
    step_io.print_outputs(outcome)


if __name__ == "__main__":
    cli()
