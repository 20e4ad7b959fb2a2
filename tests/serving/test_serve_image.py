"""The pushed serve image answering real HTTP requests (Open Inference Protocol v2) on 127.0.0.1.

Each test starts the image with ``docker run`` (read-only, no capabilities) against a registry on the
real S3 server, with a model fitted and registered by tests/serving/serving_fixtures.py.
"""
from __future__ import annotations

import datetime as dt
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import docker
import numpy as np
import pytest
import requests

from mlops_runtime import prediction_log
from mlops_runtime.registry import ModelRegistry
from tests.serving.serving_fixtures import customers, fit_pipeline, register, request_body
from tests.support import S3_ENV

MODEL = "churn"
READY_TIMEOUT_S = 180
HARDENING = {"read_only": True, "tmpfs": {"/tmp": ""}, "cap_drop": ["ALL"], "security_opt": ["no-new-privileges"]}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Server:
    """One serve container on 127.0.0.1:<port>."""

    def __init__(self, client: docker.DockerClient, image: str, *args: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.container = client.containers.run(
            image, ["--host", "127.0.0.1", "--port", str(self.port), *args], detach=True, network_mode="host",
            environment=S3_ENV, **HARDENING)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            self.container.reload()
            if self.container.status == "exited":
                raise AssertionError(f"serve exited: {self.logs()}")
            try:
                if requests.get(f"{self.url}/v2/health/ready", timeout=2).status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.5)
        raise AssertionError(f"serve not ready after {READY_TIMEOUT_S}s: {self.logs()}")

    def infer(self, body, *, model: str = MODEL, **kwargs) -> requests.Response:
        return requests.post(f"{self.url}/v2/models/{model}/infer", json=body, timeout=30, **kwargs)

    def logs(self) -> str:
        return self.container.logs().decode(errors="replace")

    def stop(self) -> int:
        self.container.stop(timeout=60)  # SIGTERM, then SIGKILL after 60 s
        return self.container.wait(timeout=60)["StatusCode"]

    def remove(self) -> None:
        self.container.remove(force=True)


@pytest.fixture(scope="module")
def client() -> docker.DockerClient:
    engine = docker.from_env(timeout=300)
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def table():
    return customers()


@pytest.fixture(scope="module")
def model(table):
    return fit_pipeline(table)


@pytest.fixture
def registry_uri(s3_prefix, model, table) -> str:
    uri = f"{s3_prefix}/registry"
    register(uri, MODEL, model, table)
    return uri


@pytest.fixture
def serve(client, built_images):
    started: list[Server] = []

    def start(*args: str) -> Server:
        started.append(Server(client, built_images.images["serve"], *args))
        return started[-1]

    yield start
    for server in started:
        server.remove()


def test_health_metadata_and_predictions_equal_the_model(serve, registry_uri, model, table):
    server = serve("--registry-uri", registry_uri, "--model-name", MODEL)
    assert requests.get(f"{server.url}/v2/health/live", timeout=5).status_code == 200
    assert requests.get(f"{server.url}/v2/models/{MODEL}/ready", timeout=5).status_code == 200
    metadata = requests.get(f"{server.url}/v2/models/{MODEL}", timeout=5).json()
    assert metadata["versions"] == ["1"]
    assert [(t["name"], t["datatype"]) for t in metadata["inputs"]] == [
        ("age", "FP64"), ("balance", "FP64"), ("plan", "BYTES")]

    rows = table.drop(columns=["churned"]).head(25)
    answer = server.infer(request_body(rows))
    assert answer.status_code == 200, answer.text
    document = answer.json()
    assert document["model_version"] == "1" and document["model_name"] == MODEL
    outputs = {o["name"]: o for o in document["outputs"]}
    assert outputs["predict"]["data"] == model.predict(rows).tolist()
    proba = np.asarray(outputs["predict_proba"]["data"]).reshape(outputs["predict_proba"]["shape"])
    np.testing.assert_allclose(proba, model.predict_proba(rows))
    assert outputs["predict_proba"]["parameters"]["classes"] == ["no", "yes"]

    single = server.infer(request_body(rows.head(1)))
    assert single.status_code == 200 and single.json()["outputs"][0]["data"] == model.predict(rows.head(1)).tolist()


def test_bad_requests_get_a_clear_4xx(serve, registry_uri, table):
    server = serve("--registry-uri", registry_uri, "--model-name", MODEL)
    rows = table.drop(columns=["churned"]).head(3)
    good = request_body(rows)

    missing = request_body(rows.drop(columns=["balance"]))
    answer = server.infer(missing)
    assert answer.status_code == 400 and "balance" in answer.json()["error"], answer.text

    wrong_type = request_body(rows.assign(age=["old", "young", "old"]))
    answer = server.infer(wrong_type)
    assert answer.status_code == 400 and "'age'" in answer.json()["error"], answer.text

    undecodable = {**good, "inputs": [{**good["inputs"][0], "data": ["x", "y", "z"]}, *good["inputs"][1:]]}
    answer = server.infer(undecodable)
    assert answer.status_code == 400 and "'age'" in answer.json()["error"], answer.text

    headers = {"content-type": "application/json"}
    answer = requests.post(f"{server.url}/v2/models/{MODEL}/infer", data=b'{"inputs": [', headers=headers, timeout=10)
    assert answer.status_code == 400 and "malformed" in answer.json()["error"], answer.text
    answer = requests.post(f"{server.url}/v2/models/{MODEL}/infer", data=b'{"rows": 1}', headers=headers, timeout=10)
    assert answer.status_code == 400 and "inputs" in answer.json()["error"], answer.text

    ten_mb = b'{"inputs": [' + b" " * (10 * 2**20) + b"]}"
    answer = requests.post(f"{server.url}/v2/models/{MODEL}/infer", data=ten_mb, headers=headers, timeout=60)
    assert answer.status_code == 413, answer.text
    chunks = (ten_mb[i:i + 2**20] for i in range(0, len(ten_mb), 2**20))  # no Content-Length: chunked
    answer = requests.post(f"{server.url}/v2/models/{MODEL}/infer", data=chunks, headers=headers, timeout=60)
    assert answer.status_code == 413, answer.text

    assert server.infer(good, model="nope").status_code == 404
    assert server.infer(good).status_code == 200  # still serving


def versions_answered(server: Server, body: dict, wanted: str, timeout_s: float = 60) -> str:
    deadline = time.monotonic() + timeout_s
    seen = ""
    while time.monotonic() < deadline:
        answer = server.infer(body)
        assert answer.status_code == 200, answer.text
        seen = answer.json()["model_version"]
        if seen == wanted:
            return seen
        time.sleep(0.5)
    return seen


def test_a_promotion_and_a_rollback_are_picked_up_while_serving(serve, registry_uri, table):
    server = serve("--registry-uri", registry_uri, "--model-name", MODEL, "--poll-seconds", "1")
    body = request_body(table.drop(columns=["churned"]).head(2))
    assert server.infer(body).json()["model_version"] == "1"

    version = register(registry_uri, MODEL, fit_pipeline(table, n_estimators=7, random_state=5), table)
    assert version == 2
    assert versions_answered(server, body, "2") == "2"
    metadata = requests.get(f"{server.url}/v2/models/{MODEL}", timeout=5).json()
    assert metadata["versions"] == ["2"]

    registry = ModelRegistry(registry_uri, MODEL)
    assert registry.promote(1, reason="rollback", expected=registry.production())
    assert versions_answered(server, body, "1") == "1"


def test_a_pinned_version_is_not_moved_by_promotions(serve, registry_uri, table):
    server = serve("--registry-uri", registry_uri, "--model-name", MODEL, "--model-ref", "1", "--poll-seconds", "1")
    register(registry_uri, MODEL, fit_pipeline(table, n_estimators=7, random_state=5), table)
    body = request_body(table.drop(columns=["churned"]).head(2))
    time.sleep(3)
    assert server.infer(body).json()["model_version"] == "1"


def test_sigterm_loses_no_acknowledged_log_record(serve, registry_uri, s3_prefix, table):
    log_uri = f"{s3_prefix}/predictions"
    server = serve("--registry-uri", registry_uri, "--model-name", MODEL, "--log-uri", log_uri,
                   "--log-max-seconds", "3600", "--log-max-rows", "1000000")
    started = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    rows = table.drop(columns=["churned"])
    acknowledged = {}
    for start in range(0, 60, 3):
        answer = server.infer(request_body(rows.iloc[start:start + 3]))
        assert answer.status_code == 200
        acknowledged[answer.json()["id"]] = answer.json()["outputs"][0]["data"]
    stats = requests.get(f"{server.url}/metrics/prediction-log", timeout=5).json()
    assert stats["buffered_rows"] == 60 and stats["logged_rows"] == 0  # nothing written before the stop

    assert server.stop() == 0, server.logs()
    logged = prediction_log.read_prediction_logs(log_uri, MODEL, start=started,
                                                 end=dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1))
    assert len(logged) == 60
    assert set(logged["request_id"]) == set(acknowledged)
    for request_id, predictions in acknowledged.items():
        assert logged[logged["request_id"] == request_id].sort_values("row")["prediction"].tolist() == predictions
    assert list(logged.columns[:4]) == prediction_log.META_COLUMNS
    assert {"age", "balance", "plan", "prediction", "proba_no", "proba_yes"} <= set(logged.columns)
    assert set(logged["model_version"]) == {1}


def test_a_storage_outage_drops_logs_not_requests(serve, registry_uri, table):
    server = serve("--registry-uri", registry_uri, "--model-name", MODEL, "--log-uri", "s3://no-such-bucket-mlops/x",
                   "--log-max-seconds", "0.5")
    body = request_body(table.drop(columns=["churned"]).head(4))
    for _ in range(5):
        assert server.infer(body).status_code == 200
    deadline, stats = time.monotonic() + 60, {}
    while time.monotonic() < deadline:
        stats = requests.get(f"{server.url}/metrics/prediction-log", timeout=5).json()
        if stats["dropped_rows"] == 20:
            break
        time.sleep(0.5)
    assert stats["dropped_rows"] == 20 and stats["logged_rows"] == 0 and stats["failed_writes"] >= 1, stats
    assert server.infer(body).status_code == 200


def test_bounded_load_on_localhost(serve, registry_uri, s3_prefix, table):
    log_uri = f"{s3_prefix}/predictions"
    server = serve("--registry-uri", registry_uri, "--model-name", MODEL, "--log-uri", log_uri,
                   "--log-max-rows", "100")
    started = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    rows = table.drop(columns=["churned"])
    bodies = [request_body(rows.iloc[i % 300:i % 300 + 5]) for i in range(200)]
    with requests.Session() as session, ThreadPoolExecutor(4) as pool:
        codes = list(pool.map(lambda body: session.post(f"{server.url}/v2/models/{MODEL}/infer", json=body,
                                                        timeout=60).status_code, bodies))
    assert codes == [200] * 200
    assert server.stop() == 0
    logged = prediction_log.read_prediction_logs(log_uri, MODEL, start=started,
                                                 end=dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1))
    assert len(logged) == 1000 and logged["request_id"].nunique() == 200


def test_a_bad_model_reference_exits_with_one_error_line(client, built_images, registry_uri):
    container = client.containers.run(built_images.images["serve"],
                                      ["--registry-uri", registry_uri, "--model-name", MODEL, "--model-ref", "9"],
                                      detach=True, network_mode="host", environment=S3_ENV, **HARDENING)
    try:
        code = container.wait(timeout=300)["StatusCode"]
        stderr = container.logs(stdout=False, stderr=True).decode().strip().splitlines()
    finally:
        container.remove(force=True)
    assert code == 3 and stderr[-1].startswith("error: --model-ref: ") and "'9'" in stderr[-1], stderr
