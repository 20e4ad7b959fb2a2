"""Run a monitoring pipeline on a schedule: a KFP recurring run, or an Argo CronWorkflow that submits it.

    python pipelines/schedule.py create --host http://kfp:8080 --batches-uri s3://prod/batches [--cron "0 0 2 * * *"]
    python pipelines/schedule.py render-argo --batches-uri s3://prod/batches > production-cron.yaml
    python pipelines/schedule.py create --pipeline monitoring --host http://kfp:8080 --batch-uri s3://prod/batches/

``--pipeline production`` (pipelines/production.py: every new unlabeled batch once, with alerts) takes
``--batches-uri`` and its options; ``--pipeline monitoring`` (pipelines/monitoring.py: the labeled path that
retrains) takes ``--batch-uri`` and its options. Without ``--pipeline`` the one whose batch option is given runs.

Cron expressions have six fields, seconds first, as KFP's scheduler (robfig/cron) reads them:
``second minute hour day-of-month month day-of-week``; the default ``0 0 2 * * *`` is every day at
02:00:00. An Argo CronWorkflow has minute resolution, so ``render-argo`` drops the seconds field and
requires it to be ``0``.

For monitoring, point ``--batch-uri`` at a folder (ending in '/'): each run checks the newest ``batch.parquet``
below it.
Both ways allow one run at a time (KFP ``max_concurrency`` 1, Argo ``concurrencyPolicy: Forbid``) and
never backfill missed runs (KFP ``no_catchup``; Argo runs a missed schedule only within its
``startingDeadlineSeconds``).
"""

import base64
import json
import sys
import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click
import yaml

if __package__ in (None, ""):  # run as a script: python pipelines/schedule.py
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipelines import monitoring, production  # noqa: E402
from pipelines.cli import fail, specs_dir_option, with_options  # noqa: E402
from pipelines.common import compile_pipeline, load_components, package_body, unpinned_images  # noqa: E402
from pipelines.cron import DEFAULT_CRON, argo_schedule, parse_cron  # noqa: E402

IN_CLUSTER_HOST = "http://ml-pipeline.kubeflow.svc.cluster.local:8888"
SUBMIT_IMAGE = "curlimages/curl:8.11.1"
RUN_NAME_PLACEHOLDER = "__MLOPS_RUN_NAME__"
REQUEST_PATH = "/tmp/mlops/run-request.b64"

def _cron_option(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    try:
        parse_cron(value)
    except ValueError as error:
        raise click.BadParameter(str(error)) from None
    return value


PIPELINES = {"production": production, "monitoring": monitoring}
BATCH_OPTION = {"production": "batches_uri", "monitoring": "batch_uri"}


def _parameter_names(module: Any) -> list[str]:
    return [p.name for p in click.command()(with_options(module.PARAMETER_OPTIONS)(lambda **_: None)).params]


def add_pipeline_parameters(command: click.Command) -> click.Command:
    """Both pipelines' run parameters as options of ``command`` (once each; the batch options not required)."""
    known = {p.name for p in command.params}
    for module in PIPELINES.values():
        for option in click.command()(with_options(module.PARAMETER_OPTIONS)(lambda **_: None)).params:
            if option.name not in known:
                option.required = False
                command.params.append(option)
                known.add(option.name)
    return command


def selected_pipeline(pipeline: str | None, parameters: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """The pipeline module to schedule and its run parameters; a usage error for a missing or foreign option."""
    if pipeline is None:
        pipeline = "monitoring" if parameters.get("batch_uri") and not parameters.get("batches_uri") else "production"
    names = _parameter_names(PIPELINES[pipeline])
    if not parameters.get(BATCH_OPTION[pipeline]):
        raise click.UsageError(f"--pipeline {pipeline} needs --{BATCH_OPTION[pipeline].replace('_', '-')}")
    context = click.get_current_context()
    for name in parameters:
        if name not in names and context.get_parameter_source(name) is click.core.ParameterSource.COMMANDLINE:
            raise click.UsageError(f"--{name.replace('_', '-')} is not an option of the {pipeline} pipeline")
    return PIPELINES[pipeline], {name: value for name, value in parameters.items() if name in names}


def pipeline_package(module: Any, folder: Path, specs_dir: Path | None) -> Path:
    """The compiled pipeline; exits 2 (one line) when its images are not pinned to digests."""
    pipeline = module.build_pipeline(load_components(module.DEFINITION.steps, specs_dir))
    package = compile_pipeline(pipeline, folder / "pipeline.yaml")
    unpinned = unpinned_images(package)
    if unpinned:
        fail(f"--specs-dir: image {unpinned[0]} is not pinned to a digest ({len(unpinned)} unpinned); build with "
             "build.py --push --pin-dir DIR and pass --specs-dir DIR", code=2)
    return package


def run_request(package: Path, parameters: Mapping[str, Any], experiment_id: str | None) -> dict[str, Any]:
    """The body of KFP's ``POST /apis/v2beta1/runs`` for one run of the compiled pipeline."""
    body: dict[str, Any] = {"display_name": RUN_NAME_PLACEHOLDER,
                            "pipeline_spec": package_body(package),
                            "runtime_config": {"parameters": dict(parameters)}}
    if experiment_id:
        body["experiment_id"] = experiment_id
    return body


SUBMIT_SCRIPT = """\
set -eu
name="%(pipeline)s {{workflow.scheduledTime}}"
body="$(mktemp)"
base64 -d "%(request)s" | sed "s/%(placeholder)s/${name}/" > "${body}"
if [ -n "${KFP_TOKEN:-}" ]; then set -- -H "Authorization: Bearer ${KFP_TOKEN}"; fi
curl --fail-with-body --silent --show-error --max-time 60 --retry 3 --retry-connrefused \\
  -X POST -H "Content-Type: application/json" "$@" --data "@${body}" "${KFP_HOST%%/}/apis/v2beta1/runs"
echo
"""


def cron_workflow(*, name: str, namespace: str, schedule: str, timezone: str, host: str, request: dict[str, Any],
                  image: str, token_secret: str | None, service_account: str | None,
                  pipeline: str = monitoring.PIPELINE_NAME) -> dict[str, Any]:
    """An Argo CronWorkflow whose one step submits a run of the compiled pipeline to KFP.

    The run request travels base64-encoded: the compiled pipeline is full of ``{{$.inputs...}}``
    placeholders that Argo would otherwise try to substitute.
    """
    env: list[dict[str, Any]] = [{"name": "KFP_HOST", "value": host}]
    if token_secret:
        secret, _, key = token_secret.partition("/")
        env.append({"name": "KFP_TOKEN", "valueFrom": {"secretKeyRef": {"name": secret, "key": key or "token",
                                                                        "optional": False}}})
    encoded = base64.encodebytes(json.dumps(request, sort_keys=True).encode()).decode()  # 76-column lines
    workflow: dict[str, Any] = {
        "entrypoint": "submit",
        "activeDeadlineSeconds": 900,
        "podGC": {"strategy": "OnPodSuccess"},
        "templates": [{
            "name": "submit",
            "retryStrategy": {"limit": "3", "retryPolicy": "Always",
                              "backoff": {"duration": "30s", "factor": "2", "maxDuration": "10m"}},
            "inputs": {"artifacts": [{"name": "run-request", "path": REQUEST_PATH, "raw": {"data": encoded}}]},
            "container": {
                "image": image,
                "command": ["sh", "-c"],
                "args": [SUBMIT_SCRIPT % {"request": REQUEST_PATH, "placeholder": RUN_NAME_PLACEHOLDER,
                                          "pipeline": pipeline}],
                "env": env,
                "resources": {"requests": {"cpu": "50m", "memory": "32Mi"},
                              "limits": {"cpu": "200m", "memory": "64Mi"}},
                "securityContext": {"runAsNonRoot": True, "allowPrivilegeEscalation": False,
                                    "capabilities": {"drop": ["ALL"]}},
            },
        }],
    }
    if service_account:
        workflow["serviceAccountName"] = service_account
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "CronWorkflow",
        "metadata": {"name": name, "namespace": namespace,
                     "labels": {"app.kubernetes.io/name": pipeline,
                                "app.kubernetes.io/part-of": "mlops-components"}},
        "spec": {
            "schedule": schedule,
            "timezone": timezone,
            "concurrencyPolicy": "Forbid",
            "startingDeadlineSeconds": 3600,
            "successfulJobsHistoryLimit": 3,
            "failedJobsHistoryLimit": 3,
            "workflowSpec": workflow,
        },
    }


# ---------------------------------------------------------------------------------------------- CLI

pipeline_option = click.option(
    "--pipeline", type=click.Choice(sorted(PIPELINES)), default=None,
    help="production: every new unlabeled batch (--batches-uri); monitoring: the labeled path (--batch-uri) "
         "[default: the one whose batch option is given, production if neither].")
cron_option = click.option("--cron", default=DEFAULT_CRON, show_default=True, callback=_cron_option,
                           help="Six-field cron, seconds first: second minute hour day-of-month month day-of-week.")


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
def cli() -> None:
    """Schedule the production (unlabeled) or monitoring (labeled) pipeline: a KFP recurring run, or an Argo
    CronWorkflow manifest."""


@cli.command("create")
@click.option("--host", required=True, envvar="KFP_HOST", help="KFP API endpoint, e.g. http://127.0.0.1:8080.")
@pipeline_option
@click.option("--experiment", default=None, help="Experiment (created if missing) [default: the pipeline's name].")
@click.option("--job-name", default=None, help="Name of the recurring run [default: the pipeline's name].")
@cron_option
@click.option("--max-concurrency", type=click.IntRange(1, 10), default=1, show_default=True,
              help="Runs allowed at the same time.")
@click.option("--catchup/--no-catchup", default=False, show_default=True,
              help="Backfill the runs missed while the schedule was paused.")
@click.option("--disabled", is_flag=True, default=False, help="Create the recurring run paused.")
@click.option("--namespace", default=None, help="Kubernetes namespace of a multi-user deployment.")
@click.option("--token", default=None, envvar="KFP_TOKEN", help="Bearer token for the KFP API.")
@specs_dir_option
def create_command(pipeline: str | None, host: str, experiment: str | None, job_name: str | None, cron: str,
                   max_concurrency: int, catchup: bool, disabled: bool, namespace: str | None, token: str | None,
                   specs_dir: Path | None, **parameters: Any) -> None:
    """Compile the pipeline and create a KFP recurring run of it."""
    import kfp

    module, parameters = selected_pipeline(pipeline, parameters)
    experiment, job_name = experiment or module.PIPELINE_NAME, job_name or module.PIPELINE_NAME
    with tempfile.TemporaryDirectory(prefix="mlops-schedule-") as folder:
        package = pipeline_package(module, Path(folder), specs_dir)
        try:
            with warnings.catch_warnings():  # kfp.Client warns on every construction that it needs KFP >= 2.0
                warnings.filterwarnings("ignore", "This client only works with Kubeflow Pipeline", FutureWarning)
                client = kfp.Client(host=host, existing_token=token, **({"namespace": namespace} if namespace else {}))
            experiment_id = client.create_experiment(experiment, namespace=namespace).experiment_id
            job = client.create_recurring_run(
                experiment_id=experiment_id, job_name=job_name, cron_expression=cron, max_concurrency=max_concurrency,
                no_catchup=not catchup, params=parameters, pipeline_package_path=str(package), enabled=not disabled)
        except Exception as error:  # the client raises urllib3, ApiException, ValueError...
            fail(f"cannot create the recurring run on {host}: {type(error).__name__}: {error}")
    click.echo(f"recurring_run_id: {job.recurring_run_id}")


@cli.command("render-argo")
@pipeline_option
@click.option("--name", default=None, help="Name of the CronWorkflow [default: the pipeline's name].")
@click.option("--namespace", default="kubeflow", show_default=True, help="Namespace of the CronWorkflow.")
@cron_option
@click.option("--timezone", default="UTC", show_default=True, help="IANA time zone the schedule is read in.")
@click.option("--host", default=IN_CLUSTER_HOST, show_default=True, help="KFP API endpoint seen from the cluster.")
@click.option("--experiment-id", default=None, help="KFP experiment for the runs [default: KFP's default].")
@click.option("--image", default=SUBMIT_IMAGE, show_default=True, help="Image with sh, base64, sed and curl.")
@click.option("--token-secret", default=None, metavar="SECRET[/KEY]",
              help="Kubernetes secret (key 'token' unless given) holding a bearer token for the KFP API.")
@click.option("--service-account", default=None, help="Service account the submitting pod runs as.")
@specs_dir_option
def render_argo_command(pipeline: str | None, name: str | None, namespace: str, cron: str, timezone: str, host: str,
                        experiment_id: str | None, image: str, token_secret: str | None, service_account: str | None,
                        specs_dir: Path | None, **parameters: Any) -> None:
    """Print an Argo CronWorkflow that submits a run of the compiled pipeline on the schedule."""
    module, parameters = selected_pipeline(pipeline, parameters)
    try:
        schedule = argo_schedule(cron)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="'--cron'") from None
    with tempfile.TemporaryDirectory(prefix="mlops-schedule-") as folder:
        request = run_request(pipeline_package(module, Path(folder), specs_dir), parameters, experiment_id)
    manifest = cron_workflow(name=name or module.PIPELINE_NAME, namespace=namespace, schedule=schedule,
                             timezone=timezone, host=host, request=request, image=image, token_secret=token_secret,
                             service_account=service_account, pipeline=module.PIPELINE_NAME)
    click.echo(yaml.dump(manifest, Dumper=_BlockDumper, sort_keys=False, width=1000), nl=False)


add_pipeline_parameters(create_command)
add_pipeline_parameters(render_argo_command)


class _BlockDumper(yaml.SafeDumper):
    """Writes multi-line strings (the script, the encoded request) as literal blocks, one line per line."""


def _represent_text(dumper: yaml.SafeDumper, text: str) -> yaml.Node:
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style="|" if "\n" in text else None)


_BlockDumper.add_representer(str, _represent_text)


if __name__ == "__main__":
    cli()
