"""Fault injectors for the hardening tests: a private SeaweedFS that can be crashed and restarted, a TCP
proxy that holds one S3 request in flight, and helpers to run a step as a real process."""
from __future__ import annotations

import importlib.util
import os
import re
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
COMPONENTS = REPO / "components"
RUNTIME_DIR = COMPONENTS / "mlops_runtime"
# the venv's SeaweedFS binary: the repository's own .venv, else the venv running the tests (a worktree)
WEED = next((p for p in (REPO / ".venv" / "bin" / "weed", Path(sys.executable).parent / "weed") if p.exists()),
            REPO / ".venv" / "bin" / "weed")
PORT_FLAGS = ("master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port", "filer.port.grpc",
              "s3.port", "s3.port.grpc")


def free_ports(count: int) -> list[int]:
    """Distinct loopback ports that are free now (held open together so none is handed out twice)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


class SeaweedServer:
    """A private ``weed server -s3`` (master, volume, filer and S3 gateway in one process) on its own
    directory and loopback ports, which a test may stop with any signal and start again on the same
    directory and ports. Never the shared server on 8333."""

    bucket = "hardening"

    def __init__(self, data_dir: Path, *, s3_config: Path | None = None,
                 access_key: str = "hardening", secret_key: str = "hardening-secret") -> None:
        self.data_dir = data_dir
        self.log_path = data_dir.parent / f"{data_dir.name}.log"
        self.s3_config = s3_config
        self.access_key, self.secret_key = access_key, secret_key
        self.ports = dict(zip(PORT_FLAGS, free_ports(len(PORT_FLAGS)), strict=True))
        self.process: subprocess.Popen | None = None
        data_dir.mkdir(parents=True, exist_ok=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3.port']}"

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def command(self) -> list[str]:
        flags = [f"-{flag}={port}" for flag, port in self.ports.items()]
        # resumeState=false: a restarted single master elects itself in ~2 s instead of ~20 s; the volume
        # server re-registers the stored volumes, so objects survive restarts.
        extra = [f"-s3.config={self.s3_config}"] if self.s3_config else []
        sockets = self.data_dir.parent
        return [str(WEED), "server", f"-dir={self.data_dir}", "-s3", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
                "-volume.max=20", "-s3.port.iceberg=0", "-s3.port.lance=0", "-master.telemetry=false",
                "-master.resumeState=false", "-master.electionTimeout=1s", "-volume.preStopSeconds=0",
                f"-filer.localSocket={sockets}/filer.sock", f"-s3.localSocket={sockets}/s3.sock", *flags, *extra]

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, timeout: float = 60.0) -> float:
        """Start the server and wait until a real PUT succeeds; return the seconds that took."""
        assert not self.running(), "already running"
        began = time.monotonic()
        # SeaweedFS makes AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY its admin identity (and then refuses
        # every other key): give it this server's keys, never the tests' own settings.
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        if self.s3_config is None:
            env.update(AWS_ACCESS_KEY_ID=self.access_key, AWS_SECRET_ACCESS_KEY=self.secret_key)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT, env=env,
                                            stdin=subprocess.DEVNULL, start_new_session=True)
        client = self.client()
        last_error: Exception | None = None
        while time.monotonic() - began < timeout:
            if self.process.poll() is not None:
                raise RuntimeError(f"weed exited with {self.process.returncode}; see {self.log_path}")
            try:  # the gateway answers HTTP before it can store anything: only a stored object counts
                try:
                    client.head_bucket(Bucket=self.bucket)
                except client.exceptions.ClientError:
                    client.create_bucket(Bucket=self.bucket)
                client.put_object(Bucket=self.bucket, Key=".ready", Body=b"ok")
                return time.monotonic() - began
            except Exception as error:  # connection refused, 500s while the volume server registers...
                last_error = error
                time.sleep(0.1)
        self.stop(signal.SIGKILL)
        raise RuntimeError(f"SeaweedFS did not store an object within {timeout:.0f}s ({last_error}); "
                           f"see {self.log_path}")

    def stop(self, sig: int = signal.SIGKILL, timeout: float = 30.0) -> float:
        """Send ``sig`` and wait until the process is gone (SIGKILL after ``timeout``); return the seconds."""
        began = time.monotonic()
        if self.running():
            assert self.process is not None
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        return time.monotonic() - began

    def remove(self) -> None:
        """Stop for good and remove the gRPC sockets SeaweedFS leaves in /tmp, named after this server's ports."""
        self.stop(signal.SIGKILL)
        for port in self.ports.values():
            for stale in Path("/tmp").glob(f"seaweedfs-*-grpc-{port}.sock"):
                stale.unlink(missing_ok=True)

    def ensure_running(self) -> None:
        if not self.running():
            self.start()

    def client(self, access_key: str | None = None, secret_key: str | None = None):
        import boto3
        from botocore.config import Config

        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id=access_key or self.access_key,
                            aws_secret_access_key=secret_key or self.secret_key,
                            config=Config(retries={"total_max_attempts": 1}, connect_timeout=1, read_timeout=5))


_REQUEST_LINE = re.compile(rb"^([A-Z]+) (\S+) HTTP/1\.[01]\r\n")


class HoldingProxy:
    """A loopback TCP proxy in front of an S3 endpoint that holds the first ``PUT /<bucket>/<key>``:

    - ``hold="request"``: the request is never forwarded (nothing is stored), the client waits;
    - ``hold="response"``: the request is forwarded (the server stores the object) but its final
      response is withheld, so the client is still waiting after the object exists.

    :attr:`held` is set once the hold is in place. Every other request passes through untouched.
    """

    def __init__(self, upstream_port: int, bucket: str, key: str, hold: str) -> None:
        assert hold in ("request", "response")
        self.upstream_port = upstream_port
        self.path = f"/{bucket}/{key}".encode()
        self.hold = hold
        self.held = threading.Event()
        self._claimed = False
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self._closed.set()
        self._listener.close()
        for thread in self._threads:
            thread.join(5)

    def __enter__(self) -> HoldingProxy:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _accept(self) -> None:
        self._listener.settimeout(0.2)
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except (TimeoutError, OSError):
                continue
            thread = threading.Thread(target=self._serve, args=(client,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _claims(self, chunk: bytes) -> bool:
        match = _REQUEST_LINE.match(chunk)
        if not match or match.group(1) != b"PUT" or match.group(2).split(b"?")[0] != self.path:
            return False
        with self._lock:
            if self._claimed:
                return False
            self._claimed = True
            return True

    def _serve(self, client: socket.socket) -> None:
        upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
        selector = selectors.DefaultSelector()
        selector.register(client, selectors.EVENT_READ)
        selector.register(upstream, selectors.EVENT_READ)
        holding_request = holding_response = False
        withheld = b""
        try:
            while not self._closed.is_set():
                for key, _ in selector.select(timeout=0.2):
                    chunk = key.fileobj.recv(65536)
                    if not chunk:
                        return
                    if key.fileobj is client:
                        if not (holding_request or holding_response) and self._claims(chunk):
                            holding_request = self.hold == "request"
                            holding_response = self.hold == "response"
                            if holding_request:
                                self.held.set()
                        if not holding_request:
                            upstream.sendall(chunk)
                    elif holding_response:
                        withheld += chunk
                        # pass "100 Continue" through (the client then sends the body); keep the final answer
                        while withheld.startswith(b"HTTP/1.1 100") and b"\r\n\r\n" in withheld:
                            interim, withheld = withheld.split(b"\r\n\r\n", 1)
                            client.sendall(interim + b"\r\n\r\n")
                        if withheld.startswith(b"HTTP/1."):
                            self.held.set()
                    else:
                        client.sendall(chunk)
        except OSError:
            return
        finally:
            selector.close()
            client.close()
            upstream.close()


def load_step(name: str):
    """components/<name>/main.py as module ``step_<name>``, shared with tests/conftest.py's load_step."""
    module_name = f"step_{name}"
    if module_name not in sys.modules:
        spec = importlib.util.spec_from_file_location(module_name, COMPONENTS / name / "main.py")
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
    return sys.modules[module_name]


def run_in_process(name: str, *args: object):
    """Run a step in-process as its CLI would (click's CliRunner): exit code, stdout and stderr."""
    from click.testing import CliRunner

    return CliRunner().invoke(load_step(name).cli, [str(a) for a in args], catch_exceptions=False)


def step_env(**overrides: str) -> dict[str, str]:
    """The environment of a step run as its own process: this one's (S3 settings included) plus the runtime."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(RUNTIME_DIR), env.get("PYTHONPATH")]))
    env.update(overrides)
    return env


def step_command(name: str, *args: str) -> list[str]:
    return [sys.executable, str(COMPONENTS / name / "main.py"), *map(str, args)]


def run_step_process(name: str, *args: str, timeout: float = 120, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(step_command(name, *args), env=step_env(**env), capture_output=True, text=True,
                          timeout=timeout, cwd=REPO)


_LOG_RECORD = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) ")


def the_error_line(stderr: str) -> str:
    """The single ``error:`` line of a failed step's stderr: its last line; every other line is a log record."""
    lines = stderr.splitlines()
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1 and lines[-1] == errors[0], f"not exactly one final error line:\n{stderr}"
    strays = [line for line in lines[:-1] if not _LOG_RECORD.match(line)]
    assert not strays, f"stderr lines that are neither the error nor log records:\n{stderr}"
    return errors[0]


# --- Step images -------------------------------------------------------------------------------------

HARDENED_RUN = ["--read-only", "--tmpfs", "/tmp", "--cap-drop", "ALL"]
S3_SETTINGS = ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION",
               "MLOPS_S3_RETRY_SECONDS")


def docker_run(image: str, *args: str, flags: tuple[str, ...] = (), s3: bool = False,
               timeout: float = 300) -> subprocess.CompletedProcess:
    """``docker run --rm --read-only --tmpfs /tmp --cap-drop ALL [flags] IMAGE ARGS``; with ``s3`` the
    container shares the host network and gets this process's S3 settings."""
    name = f"hardening-{os.getpid()}-{time.monotonic_ns()}"
    command = ["docker", "run", "--rm", "--name", name, *HARDENED_RUN, *flags]
    if s3:
        command += ["--network", "host"]
        command += [item for key in S3_SETTINGS if key in os.environ for item in ("-e", f"{key}={os.environ[key]}")]
    try:
        return subprocess.run([*command, image, *args], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        subprocess.run(["docker", "rm", "--force", name], capture_output=True, check=False)
        raise


def image_config(image: str) -> dict:
    import json

    done = subprocess.run(["docker", "image", "inspect", image], capture_output=True, text=True, check=True)
    return json.loads(done.stdout)[0]["Config"]


# A small real run of every step, reading upstream objects made by :func:`make_upstream` under ``{in}``
# and writing under ``{out}``.
RECIPES: dict[str, tuple[str, ...]] = {
    "load_data": ("--dataset", "iris", "--output-dir", "{out}"),
    "split": ("--data-uri", "{in}/data/data.parquet", "--random-state", "3", "--output-dir", "{out}"),
    "train": ("--train-uri", "{in}/split/train.parquet", "--n-estimators", "15", "--random-state", "5",
              "--output-dir", "{out}"),
    "evaluate": ("--model-uri", "{in}/model/model.skops", "--test-uri", "{in}/split/test.parquet", "--output-dir",
                 "{out}"),
    "deploy": ("--model-uri", "{in}/model/model.skops", "--metrics-uri", "{in}/eval/metrics.json", "--registry-uri",
               "{out}/registry", "--threshold", "0.5"),
    "detect_drift": ("--reference-uri", "{in}/split/train.parquet", "--current-uri", "{in}/batch/batch.parquet",
                     "--output-dir", "{out}"),
    "check_performance": ("--model-uri", "{in}/model/model.skops", "--baseline-metrics-uri", "{in}/eval/metrics.json",
                          "--batch-uri", "{in}/batch/batch.parquet", "--n-bootstrap", "100", "--output-dir", "{out}"),
    "make_batch": ("--dataset", "iris", "--n-rows", "40", "--random-state", "9", "--shift",
                   "petal length (cm):mean=+0.5", "--output-dir", "{out}"),
    "decide_retrain": ("--drift-detected", "true", "--degraded", "false", "--batch-uri", "{in}/batch/batch.parquet",
                       "--registry-uri", "{out}/registry", "--output-dir", "{out}"),
    "export_onnx": ("--model-uri", "{in}/model/model.skops", "--test-uri", "{in}/split/test.parquet",
                    "--output-dir", "{out}"),
    "join_labels": ("--log-uri", "{in}/predictions", "--model-name", "classifier", "--start", "2026-01-01T00:00Z",
                    "--end", "2026-01-01T01:00Z", "--output-dir", "{out}"),
    "build_training_set": ("--history-uri", "{in}/split/train.parquet", "--batch-uris", '["{in}/batch/batch.parquet"]',
                           "--output-dir", "{out}"),
    "claim_batches": ("--batches-uri", "{in}/batch", "--registry-uri", "{out}/registry", "--run-id", "hardening"),
    "complete_batches": ("--registry-uri", "{out}/registry", "--run-id", "hardening", "--batch-uris",
                         '["{in}/batch/batch.parquet"]'),
    "estimate_performance": ("--model-uri", "{in}/model/model.skops", "--reference-uri", "{in}/data/data.parquet",
                             "--current-uri", "{in}/batch/batch.parquet", "--output-dir", "{out}"),
    "history_report": ("--registry-uri", "{in}/registry", "--output-dir", "{out}"),
    "notify": ("--event", "drift", "--state-uri", "{out}/state"),
    "render_serving": ("--registry-uri", "{in}/registry", "--model-name", "classifier", "--serve-image",
                       "mlops-components/serve:0.1.0", "--output-dir", "{out}"),
}


def recipe(step: str, upstream: str, output_dir: str) -> list[str]:
    return [arg.replace("{in}", upstream).replace("{out}", output_dir) for arg in RECIPES[step]]


def make_upstream(root: str) -> str:
    """The objects the recipes read, made in-process by the real steps under ``root``."""
    for step, args in (("load_data", ["--dataset", "iris", "--output-dir", f"{root}/data"]),
                       ("split", ["--data-uri", f"{root}/data/data.parquet", "--output-dir", f"{root}/split"]),
                       ("train", ["--train-uri", f"{root}/split/train.parquet", "--n-estimators", "10",
                                  "--output-dir", f"{root}/model"]),
                       ("evaluate", ["--model-uri", f"{root}/model/model.skops", "--test-uri",
                                     f"{root}/split/test.parquet", "--output-dir", f"{root}/eval"]),
                       ("make_batch", ["--dataset", "iris", "--n-rows", "60", "--output-dir", f"{root}/batch"]),
                       ("deploy", ["--model-uri", f"{root}/model/model.skops", "--metrics-uri",
                                   f"{root}/eval/metrics.json", "--registry-uri", f"{root}/registry",
                                   "--threshold", "0.5"])):
        result = run_in_process(step, *args)
        assert result.exit_code == 0, f"{step}: {result.stderr}"
    write_prediction_log(f"{root}/predictions", f"{root}/split/test.parquet")
    # the batch claimed by run "hardening" in the registry complete_batches' recipe marks it done in
    claimed = run_in_process("claim_batches", "--batches-uri", f"{root}/batch", "--registry-uri",
                             f"{root.rsplit('/', 1)[0]}/complete_batches/registry", "--run-id", "hardening")
    assert claimed.exit_code == 0, f"claim_batches: {claimed.stderr}"
    return root


def write_prediction_log(log_uri: str, table_uri: str) -> None:
    """What the serve image logs, for join_labels: the test rows predicted at 2026-01-01 00:10 UTC."""
    import datetime as dt

    from mlops_runtime import tables
    from mlops_runtime.prediction_log import PredictionLog

    rows = tables.read_table(table_uri).drop(columns=["target"])
    log = PredictionLog(log_uri, "classifier")
    log.record("request-1", 1, rows, {"prediction": [0] * len(rows)},
               timestamp=dt.datetime(2026, 1, 1, 0, 10, tzinfo=dt.UTC))
    assert log.close()["logged_rows"] == len(rows)


def fresh_clients() -> None:
    """Forget the runtime's cached client and boto3's default session, which keeps the first credentials it found."""
    import boto3

    from mlops_runtime import storage

    boto3.DEFAULT_SESSION = None
    storage._s3_client.cache_clear()
