"""check_performance: the production model's metrics on a labeled production batch, against its baseline.

The verdict, for the chosen metric (accuracy by default) with baseline b (the model's test metric at
registration) and tolerance t:

    degraded  <=>  b - observed > t   and   upper end of the bootstrap interval < b - t

so a batch is called degraded only when the drop is both larger than the tolerance and too large to
be sampling noise at the given confidence (a small batch with a wide interval is not enough).

Every check is appended to the model's performance history, one JSON object per check under
``<registry>/<model>/performance/`` (an :mod:`mlops_runtime.journal`: named by time plus a random id,
created only if absent), so concurrent checks never overwrite each other.
"""
from __future__ import annotations

import base64
import datetime as dt
import html
import io
from typing import Any

import click
import pandas as pd

from mlops_runtime import documents, journal, metrics, models, outputs, step_io, storage
from mlops_runtime.cli import FloatRange, executor_input_option, output_path_option, step
from mlops_runtime.errors import BadInputError, ComponentError, UsageError
from mlops_runtime.lineage import input_record, lineage
from mlops_runtime.log import get_logger
from mlops_runtime.registry import METRICS_FILE, ModelRegistry

PERFORMANCE_FILE = "performance.json"
REPORT_FILE = "performance_report.html"
BATCH_FILE = "batch.parquet"
HISTORY_DIR = "performance"
HISTORY_PLOTTED = 100  # newest checks drawn in the report
MAX_SEED = 2**32 - 1

log = get_logger("check_performance")


# ------------------------------------------------------------------------------------------ inputs

def resolve_batch(batch_uri: str) -> str:
    """The batch itself, or for a folder URI (ending in '/') the greatest ``.../batch.parquet`` below it."""
    if not batch_uri.endswith("/"):
        return batch_uri
    found = [uri for uri in storage.list_uris(batch_uri) if uri.rsplit("/", 1)[-1] == BATCH_FILE]
    if not found:
        raise BadInputError(f"{batch_uri}: no {BATCH_FILE} below this folder", label="--batch-uri")
    return max(found)


def resolve_model(model_uri: str | None, registry_uri: str | None, model_name: str,
                  model_ref: str) -> tuple[str, dict[str, Any] | None, ModelRegistry | None]:
    """(model URI, its registry entry or None, the registry or None)."""
    if model_uri and registry_uri:
        raise UsageError("give --model-uri or --registry-uri, not both", label="--model-uri")
    if model_uri:
        return model_uri, None, None
    if not registry_uri:
        raise UsageError("give --registry-uri (with --model-name, --model-ref) or --model-uri", label="--registry-uri")
    try:
        registry = ModelRegistry(registry_uri, model_name)
        if model_ref == "production":
            pointer = registry.production().pointer
            if pointer is None:
                raise BadInputError(f"{registry.base}: no production model yet", label="--model-ref")
            version = int(pointer["version"])
        elif model_ref.isdigit() and int(model_ref) in registry.versions():
            version = int(model_ref)
        else:
            raise BadInputError(f"{registry.base}: no model version '{model_ref}'", label="--model-ref")
        entry = registry.entry(version)
    except ComponentError as error:
        raise error.about("--registry-uri") from None
    return entry["model_uri"], entry, registry


def baseline_metrics(metric: str, model_uri: str, card: dict[str, Any], entry: dict[str, Any] | None,
                     baseline_uri: str | None) -> tuple[float, str]:
    """(baseline value of ``metric``, where it came from): --baseline-metrics-uri, the registry, metrics.json."""
    if not baseline_uri and entry is not None and _number(entry.get("metrics", {}).get(metric)) is not None:
        return float(entry["metrics"][metric]), f"registry entry of version {entry.get('version')}"
    label = "--baseline-metrics-uri" if baseline_uri else "--model-uri"
    uri = baseline_uri or storage.join(model_uri.rsplit("/", 1)[0], METRICS_FILE)
    if not baseline_uri and not storage.exists(uri):
        raise BadInputError(f"no baseline: no {METRICS_FILE} beside the model and no registry entry; "
                            "pass --baseline-metrics-uri (evaluate's metrics.json)", label=label)
    document = documents.metrics(storage.read_bytes(uri, label=label), uri, label=label, require=(metric,))
    value = float(document[metric])
    if document.get("model_sha256") not in (None, card["model_sha256"]):
        raise BadInputError(f"{uri}: these metrics are of model sha256 {str(document['model_sha256'])[:12]}…, not of "
                            f"{model_uri} (sha256 {card['model_sha256'][:12]}…)", label=label)
    return value, uri


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def complete_rows(table: pd.DataFrame, card: dict[str, Any]) -> tuple[pd.DataFrame, int]:
    """The rows with every feature and the label present (a model cannot score the others)."""
    columns = [c for c in [*card.get("feature_names", []), card.get("target_column")] if c in table.columns]
    kept = table.dropna(subset=columns)
    return kept, len(table) - len(kept)


def comparable(record: dict[str, Any], metric: str) -> bool:
    """Whether an earlier history record is a check of ``metric`` with every field the report draws."""
    try:
        dt.datetime.fromisoformat(record["checked_at"])
        numbers = [record["value"], record["baseline"], record["tolerance"], record["ci"]["lower"],
                   record["ci"]["upper"]]
        return record["metric"] == metric and all(_number(n) is not None for n in numbers)
    except (KeyError, TypeError, ValueError):
        return False


# ------------------------------------------------------------------------------------------ report

def history_png(history: list[dict[str, Any]], metric: str) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    times = [dt.datetime.fromisoformat(r["checked_at"]) for r in history]
    values = [r["value"] for r in history]
    lower = [max(0.0, r["value"] - r["ci"]["lower"]) for r in history]
    upper = [max(0.0, r["ci"]["upper"] - r["value"]) for r in history]
    figure, axes = plt.subplots(figsize=(8, 3.6), dpi=100)
    axes.step(times, [r["baseline"] for r in history], where="post", color="#2b7a2b", label="baseline")
    axes.step(times, [r["baseline"] - r["tolerance"] for r in history], where="post", color="#c77c02",
              linestyle="--", label="baseline − tolerance")
    axes.errorbar(times, values, yerr=[lower, upper], fmt="none", ecolor="#888888", capsize=3,
                  label=f"{history[-1]['ci']['confidence']:.0%} bootstrap interval")
    colours = ["#c0392b" if r["degraded"] else "#1f5fa8" for r in history]
    axes.scatter(times, values, c=colours, zorder=3, label=f"{metric} (red: degraded)")
    axes.set_ylabel(metric)
    axes.set_title(f"{metric} of {history[-1]['model']} on production batches")
    axes.legend(loc="lower left", fontsize=8)
    axes.grid(alpha=0.3)
    locator = mdates.AutoDateLocator()
    axes.xaxis.set_major_locator(locator)
    axes.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    figure.tight_layout()
    sink = io.BytesIO()
    figure.savefig(sink, format="png", metadata={"Software": None})
    plt.close(figure)
    return sink.getvalue()


def report_html(result: dict[str, Any], history: list[dict[str, Any]]) -> bytes:
    e = html.escape
    metric = result["metric"]
    verdict = "DEGRADED" if result["degraded"] else "OK"
    colour = "#c0392b" if result["degraded"] else "#2b7a2b"
    rows = [("model", f"{result['model']} version {result['model_version'] or '—'}"),
            ("model URI", result["model_uri"]), ("batch", result["batch"]["uri"]),
            ("rows scored", f"{result['n_rows']} ({result['n_rows_skipped']} skipped: missing values)"),
            (metric, f"{result['value']:.4f}"),
            (f"{result['ci']['confidence']:.0%} bootstrap interval",
             f"[{result['ci']['lower']:.4f}, {result['ci']['upper']:.4f}] ({result['ci']['n_resamples']} resamples)"),
            ("baseline", f"{result['baseline']:.4f} ({result['baseline_source']})"),
            ("drop", f"{result['drop']:+.4f} (tolerance {result['tolerance']:.4f})")]
    details = "".join(f"<tr><th>{e(k)}</th><td>{e(str(v))}</td></tr>" for k, v in rows)
    scores = "".join(f"<tr><th>{e(name)}</th><td>{result['metrics'][name]:.4f}</td></tr>"
                     for name in metrics.SCALAR_METRICS)
    matrix = result["metrics"]["confusion_matrix"]
    header = "".join(f"<th>{e(str(label))}</th>" for label in matrix["labels"])
    body = "".join(f"<tr><th>{e(str(label))}</th>{''.join(f'<td>{v}</td>' for v in row)}</tr>"
                   for label, row in zip(matrix["labels"], matrix["matrix"], strict=True))
    chart = base64.b64encode(history_png(history, metric)).decode()
    past = "".join(
        f"<tr><td>{e(r['checked_at'])}</td><td>{e(str(r.get('model_version')))}</td><td>{r['value']:.4f}</td>"
        f"<td>[{r['ci']['lower']:.4f}, {r['ci']['upper']:.4f}]</td><td>{r['baseline']:.4f}</td>"
        f"<td>{'degraded' if r['degraded'] else 'ok'}</td><td>{e(r['batch']['uri'])}</td></tr>"
        for r in reversed(history))
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Performance of {e(result['model'])}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:60em}}table{{border-collapse:collapse;margin:1em 0}}
th,td{{border:1px solid #ccc;padding:.3em .6em;text-align:left}}.verdict{{color:#fff;background:{colour};
padding:.5em 1em;display:inline-block}}</style></head><body>
<h1>Production performance of {e(result['model'])}</h1>
<p class="verdict">{verdict}: {e(result['reason'])}</p>
<table>{details}</table>
<p>Rule: degraded when baseline − {e(metric)} &gt; tolerance and the interval's upper end &lt; baseline − tolerance.</p>
<h2>Metrics on this batch</h2><table>{scores}</table>
<h2>Confusion matrix (rows: true, columns: predicted)</h2><table><tr><th></th>{header}</tr>{body}</table>
<h2>History</h2><img alt="{e(metric)} history" src="data:image/png;base64,{chart}">
<table><tr><th>checked at (UTC)</th><th>version</th><th>{e(metric)}</th><th>interval</th><th>baseline</th>
<th>verdict</th><th>batch</th></tr>{past}</table>
</body></html>
"""
    return page.encode()


# ------------------------------------------------------------------------------------------ step

def verdict(value: float, low: float, high: float, baseline: float, tolerance: float) -> tuple[bool, str]:
    drop = baseline - value
    floor = baseline - tolerance
    if drop > tolerance and high < floor:
        return True, (f"dropped by {drop:.4f} > tolerance {tolerance:.4f}, and the interval's upper end "
                      f"{high:.4f} < {floor:.4f}")
    if drop > tolerance:
        return False, (f"dropped by {drop:.4f} > tolerance {tolerance:.4f}, but the interval [{low:.4f}, {high:.4f}] "
                       f"reaches {floor:.4f}: not significant")
    return False, f"within tolerance (drop {drop:+.4f} ≤ {tolerance:.4f})"


@step("check_performance", help="Score the production model on a labeled production batch, compare with its "
                                "baseline (tolerance and bootstrap interval), append the result to the model's "
                                "performance history and write <output-dir>/performance.json and "
                                "performance_report.html.")
@click.option("--batch-uri", required=True,
              help="Labeled batch (Parquet or CSV); a URI ending in '/' means the newest batch.parquet below it "
                   "(the greatest URI: name batch folders by time).")
@click.option("--registry-uri", default=None, help="Model registry root (s3://... or a local folder); empty: none.")
@click.option("--model-name", default="classifier", show_default=True, help="Name of the model in the registry.")
@click.option("--model-ref", default="production", show_default=True,
              help="'production' or a version number in the registry.")
@click.option("--model-uri", default=None, help="A model.skops to check instead of a registry model; empty: none.")
@click.option("--baseline-metrics-uri", default=None,
              help="metrics.json (from evaluate) with the baseline [default: the registry entry's metrics, else "
                   "metrics.json beside the model].")
@click.option("--history-uri", default=None,
              help="Folder of the performance history [default: <registry>/<model>/performance; none without a "
                   "registry].")
@click.option("--metric", type=click.Choice(metrics.SCALAR_METRICS), default="accuracy", show_default=True,
              help="Metric the verdict is about.")
@click.option("--tolerance", type=FloatRange(0, 1), default=0.05, show_default=True,
              help="Largest acceptable absolute drop of the metric below the baseline.")
@click.option("--n-bootstrap", type=click.IntRange(100, 10000), default=1000, show_default=True,
              help="Bootstrap resamples of the batch for the confidence interval.")
@click.option("--confidence", type=FloatRange(0.5, 0.999), default=0.95, show_default=True,
              help="Confidence level of the two-sided percentile interval.")
@click.option("--random-state", type=click.IntRange(0, MAX_SEED), default=0, show_default=True,
              help="Seed of the bootstrap: the same batch and seed give the same interval.")
@click.option("--output-dir", required=True, help="URI prefix (s3://... or a local folder) for this step's objects.")
@executor_input_option()
@output_path_option("degraded", "Whether the model's performance is significantly below its baseline.")
@output_path_option("accuracy", "Accuracy on the batch.")
@output_path_option("report_uri", "URI of performance_report.html.")
@output_path_option("checked_batch_uri", "URI of the batch that was checked (resolved when a folder was given).")
@output_path_option("training_data_uri", "The checked model's training table, from its card ('' if unrecorded): "
                                         "the reference for drift detection and retraining.")
@output_path_option("reference_profile_uri", "The checked model's drift reference profile, stored beside it "
                                             "('' if it has none): the reference for drift detection.")
@click.option("--report-output-path", type=click.Path(dir_okay=False), default=None,
              help="File to write a copy of the HTML report to (KFP outputPath of the HTML artifact 'report').")
def cli(batch_uri: str, registry_uri: str | None, model_name: str, model_ref: str, model_uri: str | None,
        baseline_metrics_uri: str | None, history_uri: str | None, metric: str, tolerance: float, n_bootstrap: int,
        confidence: float, random_state: int, output_dir: str, executor_input: str | None,
        degraded_output_path: str | None, accuracy_output_path: str | None, report_uri_output_path: str | None,
        checked_batch_uri_output_path: str | None, training_data_uri_output_path: str | None,
        reference_profile_uri_output_path: str | None, report_output_path: str | None) -> None:
    performance_uri = step_io.output_uri(output_dir, PERFORMANCE_FILE)
    report_uri = step_io.output_uri(output_dir, REPORT_FILE)
    model_uri, entry, registry = resolve_model(model_uri or None, registry_uri or None, model_name, model_ref)
    model_label = "--model-uri" if registry is None else "--registry-uri"
    stored = models.load_stored_model(model_uri, label=model_label)
    model, card = stored.model, stored.card
    baseline, baseline_source = baseline_metrics(metric, model_uri, card, entry, baseline_metrics_uri or None)

    batch_uri = resolve_batch(batch_uri)
    table, batch_record = step_io.read_input_table(batch_uri, label="--batch-uri")
    kept, skipped = complete_rows(table, card)
    if kept.empty:
        raise BadInputError(f"{batch_uri}: no row has every feature and the label", label="--batch-uri")
    if skipped:
        log.warning("%d of %d rows have missing values and are not scored", skipped, len(table))
    features, target = metrics.aligned_features(kept, card, batch_uri, label="--batch-uri", model_label=model_label)
    scores, predicted = metrics.compute_metrics_with_predictions(model, card, features, target, batch_uri,
                                                                 label="--batch-uri", model_label=model_label)
    low, high = metrics.bootstrap_interval(target.to_numpy(), predicted, metric, n_resamples=n_bootstrap,
                                           confidence=confidence, seed=random_state)
    value = float(scores[metric])
    degraded, reason = verdict(value, low, high, baseline, tolerance)

    training_data_uri = str((card.get("training_data") or {}).get("uri") or "")
    reference_profile_uri = models.profile_uri_for(model_uri)
    if not storage.exists(reference_profile_uri):
        reference_profile_uri = ""
    history_uri = history_uri or (storage.join(registry.base, HISTORY_DIR) if registry else None)
    checked_at = dt.datetime.now(dt.UTC)
    parameters = {"metric": metric, "tolerance": tolerance, "n_bootstrap": n_bootstrap, "confidence": confidence,
                  "random_state": random_state, "model_ref": model_ref if registry else None}
    result = {
        "checked_at": checked_at.isoformat(), "model": model_name,
        "model_version": entry["version"] if entry else None, "model_uri": model_uri,
        "model_sha256": card["model_sha256"], "batch": {"uri": batch_uri, "sha256": batch_record["sha256"]},
        "n_rows": int(len(kept)), "n_rows_skipped": int(skipped), "metric": metric, "value": value,
        "ci": {"lower": low, "upper": high, "confidence": confidence, "n_resamples": n_bootstrap,
               "method": "percentile bootstrap over rows"},
        "baseline": baseline, "baseline_source": baseline_source, "tolerance": tolerance,
        "drop": baseline - value, "degraded": degraded, "reason": reason, "metrics": scores,
        "report_uri": report_uri, "history_uri": history_uri,
        "lineage": lineage("check_performance", parameters,
                           [batch_record, input_record(model_label, model_uri, stored.model_bytes)]),
    }
    earlier = journal.read_recent(history_uri, HISTORY_PLOTTED - 1, parse=documents.performance_record,
                                  label="--history-uri") if history_uri else []
    history = [record for record in earlier if comparable(record, metric)] + [result]
    report = report_html(result, history)

    with outputs.publication(output_dir, lineage=result["lineage"]) as out:
        record_uri = (journal.append(out, history_uri, result, at=checked_at, label="--history-uri")
                      if history_uri else None)
        out.put_json(performance_uri, {**result, "history_record_uri": record_uri}, label="--output-dir")
        out.put(report_uri, report, label="--output-dir")
        values = {"degraded": degraded, "accuracy": float(scores["accuracy"]), "report_uri": report_uri,
                  "checked_batch_uri": batch_uri, "training_data_uri": training_data_uri,
                  "reference_profile_uri": reference_profile_uri}
        ui_metrics = {name: scores[name] for name in metrics.SCALAR_METRICS}
        ui_metrics.update({f"baseline_{metric}": baseline, f"{metric}_ci_lower": low, f"{metric}_ci_upper": high,
                           "degraded": float(degraded)})
        out.executor_output(
            executor_input, metrics=ui_metrics,
            confusion_matrix=(scores["confusion_matrix"]["labels"], scores["confusion_matrix"]["matrix"]),
            parameters=values)
        out.parameters({name: (path, values[name]) for name, path in (
            ("degraded", degraded_output_path), ("accuracy", accuracy_output_path),
            ("report_uri", report_uri_output_path), ("checked_batch_uri", checked_batch_uri_output_path),
            ("training_data_uri", training_data_uri_output_path),
            ("reference_profile_uri", reference_profile_uri_output_path))})
        if report_output_path:
            out.file(report_output_path, report, label="--report-output-path")
    log.info("%s %s: %s = %.4f, interval [%.4f, %.4f], baseline %.4f: %s", "DEGRADED" if degraded else "ok",
             model_uri, metric, value, low, high, baseline, reason)
    step_io.print_outputs(values)


if __name__ == "__main__":
    cli()
