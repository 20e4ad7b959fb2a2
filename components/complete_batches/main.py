"""complete_batches: record in the model's watermark that a monitoring run has checked its claimed batches."""
from __future__ import annotations

import click

from mlops_runtime import outputs, step_io, watermark
from mlops_runtime.cli import KfpOption, output_path_option, step
from mlops_runtime.errors import ComponentError
from mlops_runtime.log import get_logger

MAX_BATCHES = 1000

log = get_logger("complete_batches")


@step("complete_batches", help="Mark the batches a monitoring run claimed (claim_batches) as checked in the "
                               "model's watermark, so no later run checks them again.")
@click.option("--registry-uri", required=True, help="Model registry root (s3://... or a local folder).")
@click.option("--model-name", default="classifier", show_default=True, help="Name of the model in the registry.")
@click.option("--run-id", required=True, help="The monitoring run that claimed the batches.")
@click.option("--batch-uris", required=True, cls=KfpOption, kfp={"type": "JsonArray"},
              help="JSON list of the batch URIs the run checked (claim_batches' output).")
@output_path_option("n_completed", "How many batches were newly marked as checked (0 when repeated).", "Integer")
def cli(registry_uri: str, model_name: str, run_id: str, batch_uris: str, n_completed_output_path: str | None) -> None:
    uris = step_io.uri_list(batch_uris, label="--batch-uris", limit=MAX_BATCHES)
    if n_completed_output_path:
        outputs.check_output_path(n_completed_output_path, label=outputs.parameter_option("n_completed"))
    try:
        mark = watermark.Watermark(registry_uri, model_name)
    except ComponentError as error:
        raise error.about("--registry-uri") from None
    try:
        completed = mark.complete(uris, run_id=run_id)
    except ComponentError as error:
        raise error.about("--registry-uri") from None
    log.info("marked %d of %d batches as checked by run %s", completed, len(uris), run_id)
    with outputs.publication() as out:  # the watermark is this step's output; only KFP files are published here
        out.parameters({"n_completed": (n_completed_output_path, completed)})
    step_io.print_outputs({"n_completed": completed})


if __name__ == "__main__":
    cli()
