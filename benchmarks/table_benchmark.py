"""Large-table benchmark: load_data and split on a 5M x 20 Parquet table on S3, beside a bare boto3 GET + PUT.

The bare transfer is what any step has to pay at least: one boto3 ``get_object`` of the table into memory
and one ``put_object`` of the same bytes. Against it, the real steps run as their containers run them
(``python components/<step>/main.py ...`` in a fresh process, the local SeaweedFS as the store):

- load_data ``--source-uri s3://.../source.parquet`` (the table re-written with its lineage);
- split ``--data-uri`` load_data's output (stratified on the 3-class target, as ``--task auto`` decides).

Each measurement is its own subprocess: wall time, CPU time and peak RSS as GNU time (``/usr/bin/time``)
reports them for it. Targets (issue 7): each step at most 3x the bare transfer's time and at most 2x the table's size
(its Parquet bytes) in peak memory.

Tables (``--table``): ``mixed`` (9 float64 with NaNs, 3 int64, 3 strings, 2 bools one with nulls, 1
timestamp, 1 float amount, an int target) or ``numeric`` (10 float64, 9 int64, an int target; no
missing values: what split before issue 7 accepted). ``--repo`` runs another checkout's steps (e.g.
``--repo ../main-before`` for the numbers before a change), with that checkout's runtime on PYTHONPATH.

Run: ``.venv/bin/python benchmarks/table_benchmark.py [--table mixed|numeric] [--repeat 3]``.
Results: benchmarks/results/table_benchmark_<table>.{md,json} (git-ignored).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
CHUNK_ROWS = 1 << 20
GNU_TIME = "/usr/bin/time"
S3_DEFAULTS = {"AWS_ENDPOINT_URL": "http://127.0.0.1:8333", "AWS_ACCESS_KEY_ID": "mlops-test",
               "AWS_SECRET_ACCESS_KEY": "mlops-test-secret", "AWS_DEFAULT_REGION": "us-east-1"}
BARE_TRANSFER = """
import sys, boto3
source_bucket, source_key, target_key = sys.argv[1:4]
client = boto3.client("s3")
data = client.get_object(Bucket=source_bucket, Key=source_key)["Body"].read()
client.put_object(Bucket=source_bucket, Key=target_key, Body=data)
"""


def mixed_chunk(rng: np.random.Generator, start: int, rows: int) -> pa.Table:
    columns: dict[str, pa.Array] = {}
    for i in range(9):
        values = rng.normal(i, 1 + i, rows)
        mask = rng.random(rows) < 0.05 if i % 3 == 0 else None
        columns[f"f{i}"] = pa.array(values, mask=mask)
    for i, high in enumerate((10, 1000, 100_000)):
        columns[f"i{i}"] = pa.array(rng.integers(0, high, rows))
    for i, cardinality in enumerate((5, 60, 2000)):
        levels = np.array([f"level-{i}-{j}" for j in range(cardinality)], dtype=object)
        columns[f"s{i}"] = pa.array(levels[rng.integers(0, cardinality, rows)], type=pa.string())
    columns["b0"] = pa.array(rng.random(rows) < 0.3)
    columns["b1"] = pa.array(rng.random(rows) < 0.5, mask=rng.random(rows) < 0.1)
    seconds = np.sort(rng.integers(0, 365 * 86_400, rows)) + 1_700_000_000 + start
    columns["event_time"] = pa.array(seconds * 1_000_000, type=pa.timestamp("us"))
    columns["amount"] = pa.array(np.round(rng.lognormal(3, 1, rows), 2))
    columns["target"] = pa.array(rng.integers(0, 3, rows))
    return pa.table(columns)


def numeric_chunk(rng: np.random.Generator, start: int, rows: int) -> pa.Table:
    columns = {f"f{i}": pa.array(rng.normal(i, 1 + i, rows)) for i in range(10)}
    columns.update({f"i{i}": pa.array(rng.integers(0, 10 * (i + 1), rows)) for i in range(9)})
    columns["target"] = pa.array(rng.integers(0, 3, rows))
    return pa.table(columns)


def generate(path: Path, kind: str, rows: int) -> None:
    rng = np.random.default_rng(0)
    make = mixed_chunk if kind == "mixed" else numeric_chunk
    writer = None
    try:
        for start in range(0, rows, CHUNK_ROWS):
            chunk = make(rng, start, min(CHUNK_ROWS, rows - start))
            writer = writer or pq.ParquetWriter(path.with_suffix(".partial"), chunk.schema, compression="zstd")
            writer.write_table(chunk)
    finally:
        if writer:
            writer.close()
    path.with_suffix(".partial").rename(path)


def measure(command: list[str], env: dict[str, str]) -> dict:
    """Run one child under GNU time; its wall time, exit status, stderr tail, CPU time and peak RSS.

    GNU time reports its own child's ru_maxrss: a child forked straight from this process would inherit
    this process's RSS at the fork as its starting maximum (Linux folds the pre-exec high-water mark in).
    """
    with tempfile.NamedTemporaryFile("r", suffix=".time") as report:
        started = time.perf_counter()
        done = subprocess.run([GNU_TIME, "-f", "%M %U %S", "-o", report.name, *command], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
        wall = time.perf_counter() - started
        max_kb, user, system = report.read().split()[-3:]
    stderr = done.stderr.decode(errors="replace").strip()
    return {"seconds": wall, "peak_rss_bytes": int(max_kb) * 1024, "exit_code": done.returncode,
            "cpu_seconds": float(user) + float(system),
            "stderr": stderr.splitlines()[-1] if done.returncode and stderr else ""}


def summarise(runs: list[dict]) -> dict:
    return {"seconds_min": min(r["seconds"] for r in runs),
            "seconds_median": statistics.median(r["seconds"] for r in runs),
            "cpu_seconds_median": statistics.median(r["cpu_seconds"] for r in runs),
            "peak_rss_bytes_max": max(r["peak_rss_bytes"] for r in runs),
            "exit_codes": sorted({r["exit_code"] for r in runs}), "error": next((r["stderr"] for r in runs
                                                                                 if r["stderr"]), "")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", choices=("mixed", "numeric"), default="mixed")
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--repo", type=Path, default=REPO, help="checkout whose steps run (default: this one)")
    parser.add_argument("--bucket", default="mlops-bench")
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/mlops-table-benchmark"))
    parser.add_argument("--label", default="", help="name of this run in the results file (default: --repo)")
    args = parser.parse_args()

    env = {**S3_DEFAULTS, **os.environ}
    env.pop("MLOPS_LOG_LEVEL", None)
    os.environ.update(env)
    import boto3

    args.data_dir.mkdir(parents=True, exist_ok=True)
    source = args.data_dir / f"{args.table}-{args.rows}.parquet"
    if not source.exists():
        print(f"generating {source} ...", flush=True)
        generate(source, args.table, args.rows)
    size = source.stat().st_size
    client = boto3.client("s3")
    try:
        client.head_bucket(Bucket=args.bucket)
    except client.exceptions.ClientError:
        client.create_bucket(Bucket=args.bucket)
    prefix = f"table-benchmark/{uuid.uuid4().hex[:8]}"
    source_key = f"{prefix}/source.parquet"
    client.upload_file(str(source), args.bucket, source_key)
    root = f"s3://{args.bucket}/{prefix}"

    repo = args.repo.resolve()
    step_env = {**env, "PYTHONPATH": f"{repo}/components/mlops_runtime:{repo}"}
    python = sys.executable
    commands = {
        "bare boto3 GET + PUT": [python, "-c", BARE_TRANSFER, args.bucket, source_key, f"{prefix}/copy.parquet"],
        "load_data": [python, str(repo / "components/load_data/main.py"), "--source-uri", f"{root}/source.parquet",
                      "--output-dir", f"{root}/load_data"],
        "split": [python, str(repo / "components/split/main.py"), "--data-uri", f"{root}/load_data/data.parquet",
                  "--output-dir", f"{root}/split"],
    }
    runs: dict[str, list[dict]] = {name: [] for name in commands}
    for _ in range(args.repeat):
        for name, command in commands.items():
            runs[name].append(measure(command, step_env))
            print(name, json.dumps(runs[name][-1]), flush=True)
    results = {name: summarise(rs) for name, rs in runs.items()}
    bare = results["bare boto3 GET + PUT"]["seconds_median"]

    lines = [f"## {args.label or repo}: {args.rows:,} rows x 20 columns ({args.table}), Parquet {size / 1e6:.0f} MB",
             "", f"vm: {os.cpu_count()} cores, Python {platform.python_version()}, pyarrow {pa.__version__}, "
             f"load average at start {' '.join(f'{x:.2f}' for x in os.getloadavg())}, {args.repeat} runs", "",
             "| step | seconds (min / median) | x bare transfer | CPU s (median) | peak RSS | x table size | exit |",
             "|---|---|---|---|---|---|---|"]
    for name, result in results.items():
        rss = result["peak_rss_bytes_max"]
        exits = ",".join(map(str, result["exit_codes"])) + (f" ({result['error']})" if result["error"] else "")
        lines.append(f"| {name} | {result['seconds_min']:.1f} / {result['seconds_median']:.1f} | "
                     f"{result['seconds_median'] / bare:.2f} | {result['cpu_seconds_median']:.1f} | "
                     f"{rss / 1e9:.2f} GB | {rss / size:.2f} | {exits} |")
    report = "\n".join(lines)
    print(report)
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    stem = f"table_benchmark_{args.table}"
    (out / f"{stem}.md").open("a").write(report + "\n\n")
    with (out / f"{stem}.json").open("a") as handle:
        handle.write(json.dumps({"label": args.label or str(repo), "table_bytes": size, "rows": args.rows,
                                 "results": results, "runs": runs}) + "\n")
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=args.bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            client.delete_object(Bucket=args.bucket, Key=item["Key"])


if __name__ == "__main__":
    main()
