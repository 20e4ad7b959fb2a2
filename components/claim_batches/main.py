"""claim_batches: the oldest production batches no monitoring run has checked yet, claimed for this run."""
from __future__ import annotations

import datetime as dt

import click

from mlops_runtime import outputs, prediction_log, step_io, watermark
from mlops_runtime.cli import output_path_option, step
from mlops_runtime.errors import ComponentError
from mlops_runtime.log import get_logger
from mlops_runtime.registry import ModelRegistry

log = get_logger("claim_batches")
LOG_FILES = "prediction-log"


@step("claim_batches", help="Claim, for one monitoring run, the oldest batches under --batches-uri that the "
                            "model's watermark (<registry>/<model>/watermark.json) does not list as "
                            "checked, at most --max-batches of them, in URI order (name batch folders by time).")
@click.option("--batches-uri", required=True, help="Folder (s3://... or a local path) holding the production batches.")
@click.option("--file-name", default="batch.parquet", show_default=True,
              help="Name of a batch file below --batches-uri; '*.parquet' takes every Parquet file; 'prediction-log': "
                   "--batches-uri is the serve image's --log-uri and each partition file of --model-name is a batch, "
                   "oldest first.")
@click.option("--registry-uri", required=True, help="Model registry root (s3://... or a local folder).")
@click.option("--model-name", default="classifier", show_default=True, help="Name of the model in the registry.")
@click.option("--run-id", required=True, help="The monitoring run claiming the batches; the same id claims the "
                                              "same batches again (a retried task).")
@click.option("--max-batches", type=click.IntRange(1, 100), default=10, show_default=True,
              help="Most batches one run claims; the rest wait for the next run.")
@click.option("--lease-minutes", type=click.IntRange(1, 7 * 24 * 60), default=120, show_default=True,
              help="After this long without completion a claim may be taken over by another run.")
@output_path_option("batch_uris", "JSON list of the claimed batch URIs, oldest first.", "JsonArray")
@output_path_option("n_batches", "How many batches were claimed.", "Integer")
@output_path_option("n_pending", "Unchecked batches left for later runs.", "Integer")
@output_path_option("model_uri", "The production model the batches are checked against (model.skops; '' when "
                                 "there is none yet).")
@output_path_option("reference_profile_uri", "The production model's drift reference profile ('' if it has none).")
@output_path_option("calibration_uri", "A labeled table the production model never trained on (the copy of its "
                                       "test split in its registry version, else its comparison holdout or "
                                       "recorded test split; '' if unrecorded): for estimate_performance.")
def cli(batches_uri: str, file_name: str, registry_uri: str, model_name: str, run_id: str, max_batches: int,
        lease_minutes: int, batch_uris_output_path: str | None, n_batches_output_path: str | None,
        n_pending_output_path: str | None, model_uri_output_path: str | None,
        reference_profile_uri_output_path: str | None, calibration_uri_output_path: str | None) -> None:
    if not run_id.strip():
        raise click.BadParameter("must not be empty", param_hint="'--run-id'")
    paths = {"batch_uris": batch_uris_output_path, "n_batches": n_batches_output_path,
             "n_pending": n_pending_output_path, "model_uri": model_uri_output_path,
             "reference_profile_uri": reference_profile_uri_output_path,
             "calibration_uri": calibration_uri_output_path}
    for name, path in paths.items():
        if path:  # before the watermark changes: a claim nobody can read back would strand the batches
            outputs.check_output_path(path, label=outputs.parameter_option(name))
    try:
        mark = watermark.Watermark(registry_uri, model_name)
        production = ModelRegistry(registry_uri, model_name).monitoring_references()
    except ComponentError as error:
        raise error.about("--registry-uri") from None
    try:
        candidates = (prediction_log.list_partitions(batches_uri, model_name) if file_name == LOG_FILES
                      else watermark.list_batches(batches_uri, file_name))
    except ComponentError as error:
        raise error.about("--batches-uri") from None
    try:
        claim = mark.claim(candidates, run_id=run_id, limit=max_batches, lease=dt.timedelta(minutes=lease_minutes))
    except ComponentError as error:
        raise error.about("--registry-uri") from None
    log.info("claimed %d of %d batches under %s (%d left for later runs)", len(claim.batches), len(candidates),
             batches_uri, claim.pending)
    with outputs.publication() as out:  # the watermark is this step's output; only KFP files are published here
        values = {"batch_uris": claim.batches, "n_batches": len(claim.batches), "n_pending": claim.pending,
                  **production}
        out.parameters({name: (paths[name], value) for name, value in values.items()})
    step_io.print_outputs(values)


if __name__ == "__main__":
    cli()
