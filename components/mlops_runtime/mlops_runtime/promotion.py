"""deploy's decision: the candidate model read and checked, the gate it must clear, and the compare-and-swap
promotion that registers it and moves the production pointer (the step's CLI is components/deploy/main.py).

For a higher-is-better metric the threshold is a minimum, for a lower-is-better one a maximum; both exclusive.
Against a production model, a comparison table scores both on the same rows and a paired test decides
(mlops_runtime.comparison); without one the recorded metrics are compared, which is weaker.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from mlops_runtime import comparison, documents, metrics, models, step_io, storage
from mlops_runtime.errors import BadInputError, ComponentError, ModelError, StorageError, UsageError
from mlops_runtime.log import get_logger
from mlops_runtime.registry import ModelRegistry, Production, TrainingData, snapshot

APPROVED = "Model approved for production"
REJECTED = "Model needs improvement"
PROFILE_FILE = models.PROFILE_FILE
TEST_DATA_FILE = "test_data"  # + .parquet or .csv: the evaluated test table, registered beside the model
DEFAULT_MINIMUM = 0.9  # the bar of a higher-is-better metric when --threshold is absent
MAX_PROMOTION_ATTEMPTS = 5

log = get_logger("deploy")


@dataclass
class Candidate:
    model_uri: str
    metrics_uri: str
    stored: models.StoredModel
    metrics_bytes: bytes
    metrics: dict[str, Any]
    task: str
    extra_files: dict[str, bytes]
    training_data: TrainingData | None = None

    @property
    def sha256(self) -> str:
        return self.stored.card["model_sha256"]


@dataclass
class Gate:
    metric: str
    threshold: float
    compare_to_production: bool = False
    comparison_uri: str | None = None
    comparison_table: Any = None
    comparison_sha256: str | None = None
    alpha: float = 0.05
    min_improvement: float = 0.0
    n_bootstrap: int = 1000
    random_state: int = 0

    @property
    def higher(self) -> bool:
        return metrics.METRIC_DIRECTIONS[self.metric] == "higher"


def read_candidate(model_uri: str, metrics_uri: str) -> Candidate:
    """The model (verified and loadable), its card, its metrics (validated) and its reference profile, if any."""
    stored = models.load_stored_model(model_uri, label="--model-uri")
    extra_files = {}
    profile_uri = models.profile_uri_for(model_uri)
    try:
        has_profile = storage.exists(profile_uri)
    except ComponentError as error:
        raise error.about("--model-uri") from None
    if has_profile:
        extra_files[PROFILE_FILE] = storage.read_bytes(profile_uri, label="--model-uri")
        expected = stored.card.get("reference_profile", {}).get("sha256")
        if expected and storage.sha256_hex(extra_files[PROFILE_FILE]) != expected:
            raise ModelError(f"{profile_uri}: the reference profile does not match the model card's sha256",
                             label="--model-uri")
        try:
            json.loads(extra_files[PROFILE_FILE])
        except ValueError:
            raise BadInputError(f"{profile_uri}: the reference profile beside the model is not valid JSON",
                                label="--model-uri") from None

    metrics_bytes = storage.read_bytes(metrics_uri, label="--metrics-uri")
    document = documents.metrics(metrics_bytes, metrics_uri, label="--metrics-uri")
    document = metrics.check_metrics_document(document, uri=metrics_uri, label="--metrics-uri")
    card = stored.card
    if document.get("model_sha256") != card["model_sha256"]:
        evaluated = str(document.get("model_sha256"))[:12]
        raise BadInputError(f"{metrics_uri}: these metrics are of model sha256 {evaluated}…, not of {model_uri} "
                            f"(sha256 {card['model_sha256'][:12]}…)", label="--metrics-uri")
    task = metrics.task_of(card)
    if document.get("task", "classification") != task:
        raise BadInputError(f"{metrics_uri}: metrics of a {document.get('task')} model, but {model_uri} is a "
                            f"{task} model", label="--metrics-uri")
    extra_files.update(test_data_snapshot(document, metrics_uri))
    return Candidate(model_uri, metrics_uri, stored, metrics_bytes, document, task, extra_files)


def test_data_snapshot(document: dict[str, Any], metrics_uri: str) -> dict[str, bytes]:
    """The test table evaluate scored (checked against its recorded sha256), to register beside the model:
    the labeled rows the model never trained on, which unlabeled monitoring calibrates its estimates on. It
    may live in a pipeline run's root that is removed later; a table already gone is left out, with a log."""
    recorded = document.get("test_data") or {}
    uri, sha256 = recorded.get("uri"), recorded.get("sha256")
    if not isinstance(uri, str) or not uri or not isinstance(sha256, str):
        return {}
    try:
        if not storage.exists(uri):
            log.warning("the test table %s is gone: not registered (no calibration table for monitoring)", uri)
            return {}
    except ComponentError as error:
        raise error.about("--metrics-uri") from None
    data = storage.read_bytes(uri, label="--metrics-uri")
    if storage.sha256_hex(data) != sha256:
        raise BadInputError(f"{metrics_uri}: the test table {uri} is not the one evaluated (sha256 differs)",
                            label="--metrics-uri")
    return {TEST_DATA_FILE + (".csv" if uri.lower().endswith(".csv") else ".parquet"): data}


def choose_metric(candidate: Candidate, metric: str, threshold: float | None) -> tuple[str, float]:
    """(metric, threshold) for this model, refused when the metric is not of its task or the bar is impossible."""
    task = candidate.task
    metric = metrics.DEFAULT_METRIC[task] if metric == "auto" else metric
    if metric not in metrics.TASK_METRICS[task]:
        raise UsageError(f"{metric} is not a {task} metric (use one of {', '.join(metrics.TASK_METRICS[task])})",
                         label="--metric")
    low, high = metrics.METRIC_RANGES[metric]
    if threshold is None:
        if metrics.METRIC_DIRECTIONS[metric] == "lower":
            raise UsageError(f"{metric} is lower-is-better: give its maximum (there is no default)",
                             label="--threshold")
        threshold = DEFAULT_MINIMUM
    if not low <= threshold <= high:
        raise UsageError(f"{threshold:g} is outside the range of {metric} ({low:g} to {high:g})", label="--threshold")
    if candidate.metrics.get(metric) is None:
        raise BadInputError(f"{candidate.metrics_uri}: {metric} is null (undefined on the test data, or not "
                            "recorded): choose another --metric", label="--metrics-uri")
    return metric, threshold


def numbers(a: float, b: float) -> tuple[str, str]:
    """Two numbers as short as possible while still telling them apart (0.967 and 0.9)."""
    for digits in range(3, 18):
        text_a, text_b = f"{a:.{digits}g}", f"{b:.{digits}g}"
        if text_a != text_b or a == b:
            return text_a, text_b
    return repr(a), repr(b)


def better(value: float, bar: float, higher: bool) -> bool:
    return value > bar if higher else value < bar


def production_value(registry: ModelRegistry, production: Production, metric: str) -> float:
    assert production.pointer is not None
    value = production.pointer.get("metrics", {}).get(metric)
    if value is None:  # a pointer written without metrics: read them from the version itself
        value = registry.entry(int(production.pointer["version"])).get("metrics", {}).get(metric)
    if not metrics.is_number(value):
        raise ModelError(f"{registry.base}: the production model (version {production.pointer['version']}) "
                         f"has no recorded {metric} to compare with")
    return float(value)


def result(promoted: bool, registered_uri: str, reason: str, version: int | None = None) -> dict[str, Any]:
    return {"decision": APPROVED if promoted else REJECTED, "promoted": promoted,
            "registered_uri": registered_uri, "reason": reason, "version": version}


def registered_model(outcome: dict[str, Any], candidate: Candidate, registry_uri: str, model_name: str,
                     metric: str) -> dict[str, Any]:
    """The metadata of the 'registered_model' artifact: which registry version it stands for (its URI stays in
    the pipeline root: KFP's launcher refuses an output artifact URI outside the pipeline root's bucket)."""
    if not outcome["promoted"]:
        return {"promoted": False, "reason": outcome["reason"]}
    return {"promoted": True, "registered_uri": outcome["registered_uri"], "registry_uri": registry_uri,
            "model_name": model_name, "version": outcome["version"],
            "model_sha256": candidate.sha256, "task": candidate.task, "metric": metric,
            "value": float(candidate.metrics[metric]), "reason": outcome["reason"]}


def fair_comparison(candidate: Candidate, registry: ModelRegistry, production: Production, gate: Gate) -> dict:
    """Both models scored on the comparison table, with the paired test (see mlops_runtime.comparison)."""
    assert production.pointer is not None
    champion = models.load_stored_model(production.pointer["model_uri"], label="--registry-uri")
    record = comparison.compare(
        comparison.Contender("challenger", candidate.stored.model, candidate.stored.card, "--model-uri"),
        comparison.Contender("champion", champion.model, champion.card, "--registry-uri"),
        gate.comparison_table, gate.comparison_uri, label="--comparison-data-uri", metric=gate.metric,
        alpha=gate.alpha, min_improvement=gate.min_improvement, n_resamples=gate.n_bootstrap, seed=gate.random_state)
    return {**record, "champion_version": int(production.pointer["version"]),
            "data": {"uri": gate.comparison_uri, "sha256": gate.comparison_sha256}}


def deploy(candidate: Candidate, registry: ModelRegistry, gate: Gate) -> dict:
    value = float(candidate.metrics[gate.metric])
    shown, threshold_text = numbers(value, gate.threshold)
    kind = "" if gate.higher else " (maximum)"
    if not better(value, gate.threshold, gate.higher):
        return result(False, "", f"{gate.metric} {shown} {'≤' if gate.higher else '≥'} threshold {threshold_text}"
                                 f"{kind}")
    gate_text = f"{gate.metric} {shown} {'>' if gate.higher else '<'} threshold {threshold_text}{kind}"
    version: int | None = None
    compared: dict[str, dict] = {}  # by champion sha256: a retry against the same champion reuses the test
    for attempt in range(1, MAX_PROMOTION_ATTEMPTS + 1):
        production = registry.production()
        current = production.pointer
        if current is not None and current["model_sha256"] == candidate.sha256:
            return result(True, registry.version_uri(int(current["version"])),
                          f"{gate_text}; already in production (version {current['version']})", int(current["version"]))
        reason, record = gate_text, None
        if gate.compare_to_production and current is not None and gate.comparison_uri:
            record = compared.setdefault(current["model_sha256"], fair_comparison(candidate, registry, production,
                                                                                  gate))
            if not record["challenger_better"]:
                return result(False, "", f"{comparison.summary(record)}: the champion stays")
            reason = f"{gate_text}; {comparison.summary(record)}"
        elif gate.compare_to_production and current is not None:
            champion = production_value(registry, production, gate.metric)
            mine, theirs = numbers(value, champion)
            if not better(value, champion, gate.higher):  # a tie keeps the champion
                return result(False, "", f"{gate.metric} {mine} {'≤' if gate.higher else '≥'} production {theirs} "
                                         f"(version {current['version']})")
            reason = f"{gate_text} and {'>' if gate.higher else '<'} production {theirs} (version {current['version']})"
        elif gate.compare_to_production:
            reason = f"{gate_text}; no production model yet"
        if version is None:
            version, created = registry.register(
                model=candidate.stored.model_bytes, card=candidate.stored.card_bytes, metrics=candidate.metrics_bytes,
                extra_files=candidate.extra_files, entry=entry_record(candidate, gate, reason, record),
                training_data=candidate.training_data)
            log.info("%s version %d of %s", "registered" if created else "found", version, registry.base)
        if registry.promote(version, reason=reason, expected=production):
            log.info("promoted version %d: %s", version, reason)
            return result(True, registry.version_uri(version), reason, version)
        log.info("production changed while promoting (attempt %d of %d); deciding again", attempt,
                 MAX_PROMOTION_ATTEMPTS)
    raise StorageError(f"{registry.base}: production changed {MAX_PROMOTION_ATTEMPTS} times while promoting; "
                       "run the step again")


def entry_record(candidate: Candidate, gate: Gate, reason: str, record: dict | None) -> dict[str, Any]:
    scalars = metrics.TASK_METRICS[candidate.task] + ("n_samples",)
    recorded = {name: candidate.metrics[name] for name in scalars if name in candidate.metrics}
    entry = {"reason": reason, "metric": gate.metric, "direction": metrics.METRIC_DIRECTIONS[gate.metric],
             "threshold": gate.threshold, "task": candidate.task, "metrics": recorded,
             "source": {"model_uri": candidate.model_uri, "metrics_uri": candidate.metrics_uri},
             "test_data": test_data_record(candidate)}
    if record is not None:
        entry["comparison"] = record
    return entry


def test_data_record(candidate: Candidate) -> dict[str, Any] | None:
    """evaluate's record of its test table, with the name of its copy in the version when there is one."""
    recorded = candidate.metrics.get("test_data")
    copies = [name for name in candidate.extra_files if name.startswith(TEST_DATA_FILE + ".")]
    return {**recorded, "snapshot": copies[0]} if recorded and copies else recorded


def training_snapshot(uri: str, comparison: tuple[Any, dict | None]) -> TrainingData | None:
    """The rows to snapshot with the version: the training table, then the comparison rows (history too)."""
    if not uri:
        return None
    parts = [step_io.read_input_table(uri, label="--training-data-uri")]
    if comparison[1] is not None:
        parts.append(comparison)
    return snapshot(parts, label="--comparison-data-uri")
