#!/usr/bin/env python3
"""Serving latency and throughput: our serve step vs MLServer's scikit-learn runtime vs a bare predict.

One run, same model (a Pipeline: imputer + one-hot + RandomForest on mixed columns), same client, same
requests (Open Inference Protocol v2, ``content_type: pd``, both ``predict`` and ``predict_proba``):
- ``serve``: components/serve (MLServer data plane + skops runtime + signature checks + prediction log),
  and ``serve, no log`` without ``--log-uri``;
- ``mlserver-sklearn``: ``mlserver start`` with ``mlserver_sklearn.SKLearnModel`` on a joblib of the model
  (inference in the server process, ``parallel_workers: 0``, as ours: MLServer 1.7.1's default worker
  process fails to start with uvloop 0.23, "There is no current event loop");
- ``in-process``: ``pipeline.predict`` + ``predict_proba`` on the DataFrame, no HTTP (a floor).
Both servers run from benchmarks/.venv-mlserver (benchmarks/serve_setup.sh), bind 127.0.0.1 and get a
bounded, closed-loop load (a fixed number of requests from a fixed number of client threads). On a shared
machine the load of other work changes from minute to minute, so all servers stay up and are measured in
turn, round after round (A B C D, A B C D, ...); the table has each server's median over the rounds and
the load average seen during the run.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import joblib
import requests

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "components" / "mlops_runtime")]

from tests.serving.serving_fixtures import customers, fit_pipeline, register, request_body  # noqa: E402

MODEL = "churn"
VENV = REPO / "benchmarks" / ".venv-mlserver"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_ready(url: str, process: subprocess.Popen, log_file: Path, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server exited with {process.returncode}: {log_file.read_text()[-3000:]}")
        try:
            if requests.get(f"{url}/v2/models/{MODEL}/ready", timeout=2).status_code == 200:
                return
        except requests.RequestException:  # not listening yet, or busy loading
            pass
        time.sleep(0.5)
    raise SystemExit(f"{url} not ready after {timeout_s}s")


def start_serve(workdir: Path, registry: str, *, log: bool = True) -> tuple[str, subprocess.Popen]:
    port = free_port()
    logging = ["--log-uri", str(workdir / "predictions")] if log else []
    env = {**os.environ, "PYTHONPATH": str(REPO / "components" / "mlops_runtime")}
    process = subprocess.Popen([str(VENV / "bin/python"), str(REPO / "components/serve/main.py"),
                                "--registry-uri", registry, "--model-name", MODEL, "--host", "127.0.0.1",
                                "--port", str(port), *logging],
                               env=env, stdout=subprocess.DEVNULL,
                               stderr=open(workdir / ("serve.log" if log else "serve, no log.log"), "w"))
    return f"http://127.0.0.1:{port}", process


def start_mlserver(workdir: Path, model) -> tuple[str, subprocess.Popen]:
    folder = workdir / "mlserver"
    folder.mkdir()
    joblib.dump(model, folder / "model.joblib")
    port = free_port()
    (folder / "settings.json").write_text(json.dumps({
        "host": "127.0.0.1", "http_port": port, "grpc_port": free_port(), "metrics_port": free_port(),
        "parallel_workers": 0}))
    (folder / "model-settings.json").write_text(json.dumps({
        "name": MODEL, "implementation": "mlserver_sklearn.SKLearnModel", "parameters": {"uri": "./model.joblib"}}))
    process = subprocess.Popen([str(VENV / "bin/mlserver"), "start", str(folder)], cwd=folder,
                               stdout=subprocess.DEVNULL, stderr=open(workdir / "mlserver-sklearn.log", "w"))
    return f"http://127.0.0.1:{port}", process


def load(url: str, body: dict, *, requests_total: int, threads: int, warmup: int = 5) -> dict:
    """Closed-loop load: ``threads`` clients send ``requests_total`` requests in all; per-request latencies."""
    payload = json.dumps(body).encode()
    headers = {"content-type": "application/json"}
    with requests.Session() as session:
        for _ in range(warmup):
            session.post(f"{url}/v2/models/{MODEL}/infer", data=payload, headers=headers, timeout=60).raise_for_status()

    def worker(count: int) -> list[float]:
        latencies = []
        with requests.Session() as session:
            for _ in range(count):
                began = time.perf_counter()
                answer = session.post(f"{url}/v2/models/{MODEL}/infer", data=payload, headers=headers, timeout=60)
                latencies.append(time.perf_counter() - began)
                answer.raise_for_status()
        return latencies

    shares = [requests_total // threads + (i < requests_total % threads) for i in range(threads)]
    began = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        latencies = [x for part in pool.map(worker, shares) for x in part]
    return summary(latencies, time.perf_counter() - began)


def in_process(model, rows, *, requests_total: int) -> dict:
    latencies = []
    began = time.perf_counter()
    for _ in range(requests_total):
        start = time.perf_counter()
        model.predict(rows)
        model.predict_proba(rows)
        latencies.append(time.perf_counter() - start)
    return summary(latencies, time.perf_counter() - began)


def summary(latencies: list[float], wall_s: float) -> dict:
    ordered = sorted(latencies)
    return {"requests": len(ordered), "p50_ms": 1000 * statistics.median(ordered),
            "p99_ms": 1000 * ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))],
            "throughput_rps": len(ordered) / wall_s}


SERVERS = ("serve", "serve, no log", "mlserver-sklearn", "in-process")


def median_of_rounds(rounds: list[dict]) -> dict:
    """Per server and case: the median over rounds of each number, and every round's throughput."""
    return {"requests_per_round": rounds[0]["requests"], "rounds": len(rounds),
            **{key: statistics.median(r[key] for r in rounds) for key in ("p50_ms", "p99_ms", "throughput_rps")},
            "throughput_by_round": [round(r["throughput_rps"], 1) for r in rounds]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, choices=range(1, 21), default=5, metavar="1..20",
                        help="Interleaved rounds: every server measured once per round, in turn.")
    parser.add_argument("--single-requests", type=int, choices=range(10, 10_001), default=200, metavar="10..10000",
                        help="Single-row requests per server and round.")
    parser.add_argument("--batch-requests", type=int, choices=range(5, 1_001), default=20, metavar="5..1000",
                        help="1,000-row requests per server and round.")
    parser.add_argument("--threads", type=int, choices=range(1, 17), default=4, metavar="1..16")
    parser.add_argument("--n-estimators", type=int, choices=range(1, 1_001), default=100, metavar="1..1000")
    args = parser.parse_args()
    if not (VENV / "bin/mlserver").exists():
        raise SystemExit(f"{VENV} missing: run benchmarks/serve_setup.sh first")

    table = customers(rows=5000)
    model = fit_pipeline(table, n_estimators=args.n_estimators)
    features = table.drop(columns=["churned"])
    cases = {"1 row": features.head(1), "1,000 rows": features.head(1000)}
    counts = {"1 row": args.single_requests, "1,000 rows": args.batch_requests}
    bodies = {case: request_body(rows, outputs=[{"name": "predict"}, {"name": "predict_proba"}])
              for case, rows in cases.items()}
    rounds: dict[str, dict[str, list[dict]]] = {case: {server: [] for server in SERVERS} for case in cases}
    load_averages = [os.getloadavg()]
    with tempfile.TemporaryDirectory(prefix="serve-benchmark-") as scratch:
        workdir = Path(scratch)
        registry = str(workdir / "registry")
        register(registry, MODEL, model, table)
        starters = {"serve": lambda: start_serve(workdir, registry),
                    "serve, no log": lambda: start_serve(workdir, registry, log=False),
                    "mlserver-sklearn": lambda: start_mlserver(workdir, model)}
        processes: dict[str, tuple[str, subprocess.Popen]] = {}
        try:
            for name, start in starters.items():  # all up at once, so every round measures each in turn
                processes[name] = start()
            for name, (url, process) in processes.items():
                wait_ready(url, process, workdir / f"{name}.log")
            for number in range(args.rounds):
                for server in SERVERS:
                    for case, rows in cases.items():
                        if server == "in-process":
                            measured = in_process(model, rows, requests_total=counts[case])
                        else:
                            measured = load(processes[server][0], bodies[case], requests_total=counts[case],
                                            threads=args.threads)
                        rounds[case][server].append(measured)
                load_averages.append(os.getloadavg())
                print(f"round {number + 1}/{args.rounds} done, load average {load_averages[-1][0]:.2f}",
                      file=sys.stderr)
        finally:
            for _, process in processes.values():
                process.terminate()
            for _, process in processes.values():
                process.wait(timeout=60)

    results = {case: {server: median_of_rounds(measured) for server, measured in by_server.items()}
               for case, by_server in rounds.items()}
    one_minute = [average[0] for average in load_averages]
    lines = [f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC; RandomForest({args.n_estimators}) Pipeline, "
             f"{args.threads} client threads, {os.cpu_count()} CPUs; {args.rounds} interleaved rounds "
             f"({' / '.join(SERVERS)}), medians over rounds; 1-minute load average "
             f"{min(one_minute):.2f}-{max(one_minute):.2f} (start {one_minute[0]:.2f})", "",
             "| request | server | requests/round | p50 ms | p99 ms | throughput req/s | req/s by round |",
             "|---|---|---:|---:|---:|---:|---|"]
    for case, by_server in results.items():
        for server, row in by_server.items():
            lines.append(f"| {case} | {server} | {row['requests_per_round']} | {row['p50_ms']:.1f} | "
                         f"{row['p99_ms']:.1f} | {row['throughput_rps']:.1f} | "
                         f"{', '.join(map(str, row['throughput_by_round']))} |")
    print("\n".join(lines))
    out = REPO / "benchmarks" / "results"
    out.mkdir(exist_ok=True)
    (out / "serve_benchmark.md").write_text("\n".join(lines) + "\n")
    (out / "serve_benchmark.json").write_text(json.dumps({"load_average_1m": one_minute, "results": results},
                                                         indent=1) + "\n")


if __name__ == "__main__":
    main()
