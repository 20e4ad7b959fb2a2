"""pipelines/schedule.py: cron validation, the Argo CronWorkflow (rendered, then its script run for real),
and `create` against a small real HTTP server on 127.0.0.1 that records what kfp.Client sends."""
import base64
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from pipelines import monitoring, production, schedule
from tests.support import REPO


@pytest.fixture(autouse=True)
def pinned_specs(made_up_pinned_specs, monkeypatch):
    """Scheduling, like submit, refuses images not pinned to digests (test_..._refuse_unpinned_images)."""
    monkeypatch.setenv("MLOPS_SPECS_DIR", str(made_up_pinned_specs))

BATCHES = "s3://prod/batches/"


class KfpApi:
    """Just enough of the KFP v2beta1 REST API for kfp.Client: answers, and records every request."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                self._answer()

            def do_POST(self) -> None:  # noqa: N802
                self._answer()

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw else None
                api.requests.append({"method": self.command, "path": self.path, "headers": dict(self.headers),
                                     "body": body})
                status, answer = api.route(self.command, self.path.split("?")[0], body)
                payload = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.timeout = 5
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    @staticmethod
    def route(method: str, path: str, body: Any) -> tuple[int, dict[str, Any]]:
        if (method, path) == ("GET", "/apis/v2beta1/healthz"):
            return 200, {"multi_user": False}
        if (method, path) == ("GET", "/apis/v2beta1/experiments"):
            return 200, {"experiments": [], "total_size": 0}
        if (method, path) == ("POST", "/apis/v2beta1/experiments"):
            return 200, {"experiment_id": "exp-1", "display_name": body["display_name"]}
        if (method, path) == ("POST", "/apis/v2beta1/recurringruns"):
            return 200, {"recurring_run_id": "rr-1", "display_name": body["display_name"]}
        if (method, path) == ("POST", "/apis/v2beta1/runs"):
            return 200, {"run_id": "run-1", "display_name": body["display_name"], "experiment_id": "exp-1"}
        return 404, {"error": f"no route {method} {path}"}

    def posted(self, path: str) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["method"] == "POST" and r["path"] == path]


@pytest.fixture
def kfp_api(monkeypatch, tmp_path) -> Iterator[KfpApi]:
    for name in list(os.environ):
        if name.startswith("KF_PIPELINES") or name in ("KFP_HOST", "KFP_TOKEN"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path))  # kfp.Client reads ~/.config/kfp/context.json
    api = KfpApi()
    thread = threading.Thread(target=api.server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    yield api
    api.server.shutdown()
    api.server.server_close()
    thread.join(timeout=10)


def invoke(*args: str):
    return CliRunner().invoke(schedule.cli, list(args), catch_exceptions=False)


# ------------------------------------------------------------------------------------------- cron

@pytest.mark.parametrize("expression", ["0 0 2 * * *", "0 */15 * * * ?", "0 0 9 ? * MON-FRI", "0 30 1 1,15 JAN-JUN *",
                                        "59 59 23 31 12 6", "0 0 0 1 1 0", "0 0-30/5 8-18 * * 1-5"])
def test_valid_six_field_crons(expression):
    assert len(schedule.parse_cron(expression)) == 6


@pytest.mark.parametrize(("expression", "complaint"), [
    ("0 2 * * *", "has 5 field(s)"),
    ("0 0 0 2 * * *", "has 7 field(s)"),
    ("@daily", "has 1 field(s)"),
    ("60 0 2 * * *", "second value '60' is outside 0-59"),
    ("0 0 24 * * *", "hour value '24' is outside 0-23"),
    ("0 0 2 0 * *", "day-of-month value '0' is outside 1-31"),
    ("0 0 2 * 13 *", "month value '13' is outside 1-12"),
    ("0 0 2 * * 7", "day-of-week value '7' is outside 0-6"),
    ("0 0 2 * * MOON", "day-of-week value 'MOON'"),
    ("0 */0 * * * *", "step of 0"),
    ("0 5-1 * * * *", "runs backwards"),
    ("0 ? * * * *", "minute field '?' is not valid"),
    ("0 0 2 * * 1;2", "is not valid cron syntax"),
])
def test_invalid_crons(expression, complaint):
    with pytest.raises(ValueError) as raised:
        schedule.parse_cron(expression)
    assert complaint in str(raised.value)


def test_argo_schedule_drops_the_seconds():
    assert schedule.argo_schedule("0 0 2 * * *") == "0 2 * * *"
    assert schedule.argo_schedule("0 0 9 ? * MON-FRI") == "0 9 * * MON-FRI"
    with pytest.raises(ValueError, match="seconds field must be 0"):
        schedule.argo_schedule("30 0 2 * * *")


@pytest.mark.parametrize("command", ["create", "render-argo"])
def test_a_bad_cron_is_refused_before_anything_is_sent(kfp_api, command):
    result = invoke(command, "--host", kfp_api.url, "--batch-uri", BATCHES, "--cron", "0 2 * * *")
    assert result.exit_code == 2
    assert "Invalid value for '--cron': '0 2 * * *' has 5 field(s)" in result.stderr
    assert kfp_api.requests == []


# ------------------------------------------------------------------------------------------- create

def test_create_sends_a_cron_recurring_run_of_the_monitoring_pipeline(kfp_api):
    result = invoke("create", "--host", kfp_api.url, "--batch-uri", BATCHES, "--tolerance", "0.02",
                    "--job-name", "nightly", "--token", "secret-token")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-1] == "recurring_run_id: rr-1"
    [experiment] = kfp_api.posted("/apis/v2beta1/experiments")
    assert experiment["body"]["display_name"] == "mlops-monitoring"
    [created] = kfp_api.posted("/apis/v2beta1/recurringruns")
    assert created["headers"]["authorization"] == "Bearer secret-token"
    body = created["body"]
    assert body["display_name"] == "nightly" and body["experiment_id"] == "exp-1"
    assert body["trigger"] == {"cron_schedule": {"cron": "0 0 2 * * *"}}
    assert int(body["max_concurrency"]) == 1 and body["no_catchup"] is True and body["mode"] == "ENABLE"
    assert body["pipeline_spec"]["pipeline_spec"]["pipelineInfo"]["name"] == monitoring.PIPELINE_NAME
    secrets = body["pipeline_spec"]["platform_spec"]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert {e["secretAsEnv"][0]["secretNameParameter"]["runtimeValue"]["constant"] for e in secrets.values()} == {
        "mlops-s3"}
    parameters = body["runtime_config"]["parameters"]
    assert parameters["batch_uri"] == BATCHES and parameters["tolerance"] == 0.02
    assert parameters["model_name"] == "classifier"


def test_create_with_another_schedule_paused_and_catching_up(kfp_api):
    result = invoke("create", "--host", kfp_api.url, "--batch-uri", BATCHES, "--cron", "0 30 */6 * * MON-FRI",
                    "--disabled", "--catchup", "--max-concurrency", "2")
    assert result.exit_code == 0, result.output
    [created] = kfp_api.posted("/apis/v2beta1/recurringruns")
    body = created["body"]
    assert body["trigger"]["cron_schedule"]["cron"] == "0 30 */6 * * MON-FRI"
    assert body["mode"] == "DISABLE" and body["no_catchup"] is False and int(body["max_concurrency"]) == 2


def test_create_against_a_closed_port_fails_with_one_line(tmp_path):
    """As a user runs it (a fresh process: in-process, earlier steps' log handlers would add urllib3's retries)."""
    done = subprocess.run([sys.executable, str(REPO / "pipelines" / "schedule.py"), "create", "--host",
                           "http://127.0.0.1:9", "--batch-uri", BATCHES], capture_output=True, text=True,
                          timeout=120, check=False, env={**os.environ, "HOME": str(tmp_path)})
    assert done.returncode == 1
    assert done.stderr.startswith("error: cannot create the recurring run on http://127.0.0.1:9: ")
    assert done.stderr.count("\n") == 1


# -------------------------------------------------------------------------------------- render-argo

def render(*args: str) -> dict[str, Any]:
    result = invoke("render-argo", "--batch-uri", BATCHES, *args)
    assert result.exit_code == 0, result.output
    return yaml.safe_load(result.stdout)


def test_rendered_cron_workflow(tmp_path):
    manifest = render("--cron", "0 15 3 * * *", "--timezone", "Europe/Paris", "--namespace", "ml",
                      "--token-secret", "kfp-auth/bearer", "--service-account", "monitor")
    assert manifest["apiVersion"] == "argoproj.io/v1alpha1" and manifest["kind"] == "CronWorkflow"
    assert manifest["metadata"]["name"] == "mlops-monitoring" and manifest["metadata"]["namespace"] == "ml"
    spec = manifest["spec"]
    assert spec["schedule"] == "15 3 * * *" and spec["timezone"] == "Europe/Paris"
    assert spec["concurrencyPolicy"] == "Forbid"
    workflow = spec["workflowSpec"]
    assert workflow["serviceAccountName"] == "monitor"
    [template] = workflow["templates"]
    assert workflow["entrypoint"] == template["name"]
    env = {item["name"]: item for item in template["container"]["env"]}
    assert env["KFP_HOST"]["value"] == schedule.IN_CLUSTER_HOST
    assert env["KFP_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "kfp-auth", "key": "bearer", "optional": False}
    [artifact] = template["inputs"]["artifacts"]
    request = json.loads(base64.b64decode(artifact["raw"]["data"]))
    assert request["pipeline_spec"]["pipeline_spec"]["pipelineInfo"]["name"] == monitoring.PIPELINE_NAME
    assert request["runtime_config"]["parameters"]["batch_uri"] == BATCHES
    # The only Argo expression in the manifest is the run name's: the pipeline's own {{$...}} are encoded.
    text = yaml.safe_dump(manifest)
    assert text.count("{{") == 1 and "{{workflow.scheduledTime}}" in text


def test_default_schedule_is_two_in_the_morning_utc():
    spec = render()["spec"]
    assert spec["schedule"] == "0 2 * * *" and spec["timezone"] == "UTC"
    assert "KFP_TOKEN" not in {item["name"] for item in spec["workflowSpec"]["templates"][0]["container"]["env"]}


@pytest.mark.parametrize("command", [[monitoring.cli, "submit"], [schedule.cli, "create"],
                                     [schedule.cli, "render-argo"]], ids=["submit", "create", "render-argo"])
def test_submitting_and_scheduling_refuse_unpinned_images(kfp_api, monkeypatch, command):
    monkeypatch.delenv("MLOPS_SPECS_DIR")
    group, name = command
    refused = CliRunner().invoke(group, [name, "--host", kfp_api.url, "--batch-uri", BATCHES])
    assert refused.exit_code == 2
    assert refused.stderr.count("\n") == 1 and "is not pinned to a digest" in refused.stderr
    assert kfp_api.posted("/apis/v2beta1/runs") == [] and kfp_api.posted("/apis/v2beta1/recurringruns") == []


def test_the_workflow_script_submits_what_kfp_client_would(kfp_api, tmp_path):
    """Run the template's shell script (sh, base64, sed, curl) here; compare its request with kfp.Client's."""
    template = render("--experiment-id", "exp-9")["spec"]["workflowSpec"]["templates"][0]
    request_file = tmp_path / "run-request.b64"
    request_file.write_text(template["inputs"]["artifacts"][0]["raw"]["data"])
    script = template["container"]["args"][0].replace(schedule.REQUEST_PATH, str(request_file))
    script = script.replace("{{workflow.scheduledTime}}", "2025-06-01T02:00:00Z")
    env = {"PATH": os.environ["PATH"], "KFP_HOST": kfp_api.url + "/", "KFP_TOKEN": "t0ken"}
    done = subprocess.run(["sh", "-c", script], env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    [sent] = kfp_api.posted("/apis/v2beta1/runs")
    assert sent["headers"]["Authorization"] == "Bearer t0ken"
    assert sent["body"]["display_name"] == "mlops-monitoring 2025-06-01T02:00:00Z"
    assert sent["body"]["experiment_id"] == "exp-9"

    submitted = CliRunner().invoke(monitoring.cli, ["submit", "--host", kfp_api.url, "--batch-uri", BATCHES],
                                   catch_exceptions=False)
    assert submitted.exit_code == 0, submitted.output
    [_, by_client] = kfp_api.posted("/apis/v2beta1/runs")
    assert by_client["body"]["pipeline_spec"] == sent["body"]["pipeline_spec"]
    assert by_client["body"]["runtime_config"]["parameters"] == sent["body"]["runtime_config"]["parameters"]
    assert set(sent["body"]) <= set(by_client["body"])


def test_script_fails_when_kfp_refuses(kfp_api, tmp_path):
    template = render()["spec"]["workflowSpec"]["templates"][0]
    request_file = tmp_path / "run-request.b64"
    request_file.write_text(template["inputs"]["artifacts"][0]["raw"]["data"])
    script = template["container"]["args"][0].replace(schedule.REQUEST_PATH, str(request_file))
    env = {"PATH": os.environ["PATH"], "KFP_HOST": kfp_api.url + "/wrong-prefix"}
    done = subprocess.run(["sh", "-c", script], env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode != 0 and "404" in done.stderr


def test_render_argo_help_names_the_cron_format():
    assert "seconds first" in invoke("render-argo", "--help").stdout


# ------------------------------------------------------------------------------- the production pipeline

def test_the_unlabeled_production_pipeline_is_scheduled_with_its_own_options():
    result = invoke("render-argo", "--batches-uri", "s3://prod/batches", "--max-batches", "5", "--webhook-url",
                    "https://hooks.example/x")
    assert result.exit_code == 0, result.output
    manifest = yaml.safe_load(result.stdout)
    assert manifest["metadata"]["name"] == production.PIPELINE_NAME
    [template] = manifest["spec"]["workflowSpec"]["templates"]
    assert f'name="{production.PIPELINE_NAME} {{{{workflow.scheduledTime}}}}"' in template["container"]["args"][0]
    request = json.loads(base64.b64decode(template["inputs"]["artifacts"][0]["raw"]["data"]))
    assert request["pipeline_spec"]["pipeline_spec"]["pipelineInfo"]["name"] == production.PIPELINE_NAME
    parameters = request["runtime_config"]["parameters"]
    assert parameters["batches_uri"] == "s3://prod/batches" and parameters["max_batches"] == 5
    assert "batch_uri" not in parameters and "tolerance" not in parameters


@pytest.mark.parametrize(("args", "message"), [
    ((), "--pipeline production needs --batches-uri"),
    (("--pipeline", "monitoring", "--batches-uri", "s3://b/x"), "--pipeline monitoring needs --batch-uri"),
    (("--batches-uri", "s3://b/x", "--tolerance", "0.1"), "--tolerance is not an option of the production pipeline"),
])
def test_a_missing_or_foreign_pipeline_option_is_a_usage_error(args, message):
    result = CliRunner().invoke(schedule.cli, ["render-argo", *args])
    assert result.exit_code == 2 and message in result.output
