"""history_report: a self-contained HTML dashboard of a model's monitoring history in the registry."""
from __future__ import annotations

import click

from mlops_runtime import history, outputs, step_io, storage
from mlops_runtime.cli import html_output_option, output_path_option, step
from mlops_runtime.errors import BadInputError
from mlops_runtime.lineage import lineage
from mlops_runtime.log import get_logger

HTML_FILE = "history_report.html"
JSON_FILE = "history.json"
log = get_logger("history_report")


@step("history_report", help="Render a model's monitoring history (drift share, estimated and realised metric, "
                             "alerts, per batch over time) from the registry's journals as one self-contained HTML "
                             "page. Writes <output-dir>/history_report.html and <output-dir>/history.json.")
@click.option("--registry-uri", required=True, help="Registry root (s3://... or a local folder).")
@click.option("--model-name", default="classifier", show_default=True, help="Model name in the registry.")
@click.option("--alerts-uri", default="", help="Where notify keeps its state (its --state-uri; empty: the registry).")
@click.option("--limit", type=click.IntRange(1, 5000), default=500, show_default=True,
              help="Newest records read from each journal.")
@click.option("--output-dir", required=True, help="URI prefix (s3://... or a local folder) for this step's objects.")
@output_path_option("html_report_uri", "URI of history_report.html.")
@html_output_option("history_report.html, for the KFP UI.")
def cli(registry_uri: str, model_name: str, alerts_uri: str, limit: int, output_dir: str,
        html_report_uri_output_path: str | None, report_output_path: str | None) -> None:
    html_uri = step_io.output_uri(output_dir, HTML_FILE)
    json_uri = step_io.output_uri(output_dir, JSON_FILE)
    for label, uri in (("--registry-uri", registry_uri), ("--alerts-uri", alerts_uri)):
        try:
            if uri:
                storage.parse(uri)
        except BadInputError as error:
            raise error.about(label) from None
    collected = history.collect(registry_uri, model_name, alerts_uri=alerts_uri or None, limit=limit)
    page = history.render(collected).encode()
    record = lineage("history_report", {"registry_uri": registry_uri, "model_name": model_name,
                                        "alerts_uri": alerts_uri, "limit": limit}, [])
    with outputs.publication(output_dir, lineage=record) as out:
        out.put(html_uri, page, label="--output-dir")
        out.put_json(json_uri, {**collected, "lineage": record}, label="--output-dir")
        out.parameters({"html_report_uri": (html_report_uri_output_path, html_uri)})
        if report_output_path:
            out.file(report_output_path, page, label="--report-output-path")
    log.info("history of %s: %d drift checks, %d estimates, %d labeled checks, %d alerts", model_name,
             len(collected["drift"]), len(collected["estimates"]), len(collected["performance"]),
             len(collected["alerts"]))
    step_io.print_outputs({"html_report_uri": html_uri})


if __name__ == "__main__":
    cli()
