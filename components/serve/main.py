"""Serve a registered model over the Open Inference Protocol v2 (MLServer with a skops runtime)."""
from __future__ import annotations

import tempfile

import click

from mlops_runtime.cli import FloatRange, Terminated, step
from mlops_runtime.prediction_log import PredictionLog
from mlops_runtime.served_model import ModelSource

MB = 2**20


@step("serve", help="Serve the registry's production model (or a given version or model URI) over the Open "
                    "Inference Protocol v2 on HTTP, following the production pointer, logging every prediction.")
@click.option("--registry-uri", default=None, help="Registry root (s3://... or a local folder).")
@click.option("--model-name", default="model", show_default=True, help="Registered model name; also the served name.")
@click.option("--model-ref", default="production", show_default=True,
              help="'production' (followed while serving: a promotion or rollback is picked up) or a version number.")
@click.option("--model-uri", default=None, help="Serve this model file instead of the registry's (its card beside it).")
@click.option("--host", default="0.0.0.0", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(1, 65535), default=8080, show_default=True, help="HTTP port.")
@click.option("--poll-seconds", type=FloatRange(0.5, 3600), default=10.0, show_default=True,
              help="How often the production pointer is checked.")
@click.option("--log-uri", default=None, help="Prediction log root (s3://... or a local folder); none: no log.")
@click.option("--log-max-rows", type=click.IntRange(1, 1_000_000), default=10_000, show_default=True,
              help="Rows per prediction-log file at most.")
@click.option("--log-max-seconds", type=FloatRange(0.1, 3600), default=60.0, show_default=True,
              help="A buffered prediction-log batch is written at the latest after this long.")
@click.option("--log-max-buffered-mb", type=click.IntRange(1, 4096), default=64, show_default=True,
              help="Buffered prediction-log records at most; beyond, records are dropped and counted.")
@click.option("--max-body-mb", type=click.IntRange(1, 1024), default=10, show_default=True,
              help="Request bodies over this size are refused with 413.")
def cli(registry_uri, model_name, model_ref, model_uri, host, port, poll_seconds, log_uri, log_max_rows,
        log_max_seconds, log_max_buffered_mb, max_body_mb):
    source = ModelSource(registry_uri=registry_uri, model_name=model_name, model_ref=model_ref, model_uri=model_uri)
    first = source.load()  # before the server starts: a bad model is exit 5 with one error line
    from mlops_runtime import serving  # MLServer is only in the serve image

    prediction_log = None
    if log_uri:
        prediction_log = PredictionLog(log_uri, model_name, max_rows=log_max_rows, max_seconds=log_max_seconds,
                                       max_buffered_bytes=log_max_buffered_mb * MB)
    with tempfile.TemporaryDirectory(prefix="serve-") as workdir:
        try:
            serving.run(serving.serve(source, first, host=host, port=port, poll_seconds=poll_seconds,
                                      prediction_log=prediction_log, max_body_bytes=max_body_mb * MB,
                                      workdir=workdir))
        except Terminated:  # SIGTERM is how a server is stopped: in-flight requests and the log are done
            pass


if __name__ == "__main__":
    cli()
