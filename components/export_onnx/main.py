"""export_onnx: model.onnx beside a parity report when skl2onnx converts the model exactly; else the reason."""
from __future__ import annotations

import click

from mlops_runtime import models, onnx_export, outputs, signature, step_io, storage
from mlops_runtime.cli import FloatRange, output_path_option, step
from mlops_runtime.errors import BadInputError
from mlops_runtime.lineage import input_record, lineage
from mlops_runtime.log import get_logger

ONNX_FILE = "model.onnx"
REPORT_FILE = "onnx_report.json"
MAX_ROWS = 200_000

log = get_logger("export_onnx")


@step("export_onnx", help="Convert the model with skl2onnx (zipmap off) and keep <output-dir>/model.onnx only when "
                          "it agrees with the skops model on the test table (labels equal, probabilities within "
                          "--tolerance); <output-dir>/onnx_report.json says which, and why not.")
@click.option("--model-uri", required=True, help="URI of the model (model.skops, its model_card.json beside it).")
@click.option("--test-uri", required=True, help="Table to check parity on (CSV or Parquet), e.g. split's test set.")
@click.option("--tolerance", type=FloatRange(0, 0.1), default=1e-5, show_default=True,
              help="Largest accepted difference of a probability (or a regression prediction).")
@click.option("--output-dir", required=True, help="URI prefix (s3://... or a local folder) for this step's objects.")
@output_path_option("onnx_uri", "URI of model.onnx; '' when the model was not exported.")
@output_path_option("exported", "Whether model.onnx was written.", "Boolean")
def cli(model_uri, test_uri, tolerance, output_dir, onnx_uri_output_path, exported_output_path):
    onnx_uri = step_io.output_uri(output_dir, ONNX_FILE)
    report_uri = step_io.output_uri(output_dir, REPORT_FILE)
    stored = models.load_stored_model(model_uri, label="--model-uri")
    sig = signature.from_card(stored.card, label="--model-uri")
    table, test_record = step_io.read_input_table(test_uri, label="--test-uri")
    if len(table) > MAX_ROWS:
        raise BadInputError(f"{test_uri}: {len(table)} rows; parity is checked on at most {MAX_ROWS}",
                            label="--test-uri")
    features, _ = signature.check_table(table, sig, uri=test_uri, label="--test-uri")
    result = onnx_export.export(stored.model, sig, features, tolerance=tolerance)
    report = {**result.report, "model_sha256": stored.card["model_sha256"]}
    if result.onnx is not None:
        report["onnx_sha256"] = storage.sha256_hex(result.onnx)
    records = [input_record("--model-uri", model_uri, stored.model_bytes), test_record]
    step_lineage = lineage("export_onnx", {"model_uri": model_uri, "test_uri": test_uri, "tolerance": tolerance},
                           records)
    with outputs.publication(output_dir, lineage=step_lineage) as out:
        if result.onnx is not None:
            out.put(onnx_uri, result.onnx, label="--output-dir")
        out.put_json(report_uri, report, label="--output-dir")
        written = onnx_uri if result.onnx is not None else ""
        out.parameters({"onnx_uri": (onnx_uri_output_path, written),
                        "exported": (exported_output_path, result.onnx is not None)})
    log.info("%s: %s", "exported" if result.onnx is not None else "not exported", report["reason"])
    step_io.print_outputs({"exported": result.onnx is not None, "onnx_uri": written, "report_uri": report_uri,
                           "reason": report["reason"]})


if __name__ == "__main__":
    cli()
