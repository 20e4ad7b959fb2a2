"""detect_drift against a profile on wide, short tables: wall time by number of columns (issue 10).

Target: linear in the number of columns, 10,000 features x 60 rows in under 30 s. Each size runs the real
step (components/detect_drift/main.py) in a fresh process on local Parquet and profile files.

    PYTHONPATH=components/mlops_runtime .venv/bin/python benchmarks/drift_wide_benchmark.py [--columns 1000,2000,10000]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]


def tables(columns: int, rows: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    names = [f"f{i:05d}" for i in range(columns)]
    reference = pd.DataFrame(rng.normal(size=(rows, columns)), columns=names)
    current = pd.DataFrame(rng.normal(size=(rows, columns)), columns=names)
    current.iloc[:, : columns // 10] += 1.0  # a tenth of the features drift by 1 sd
    return reference, current


def run(columns: int, rows: int, scratch: Path) -> dict[str, float]:
    from mlops_runtime import drift

    reference, current = tables(columns, rows, columns)
    profile_path, current_path = scratch / f"profile_{columns}.json", scratch / f"current_{columns}.parquet"
    started = time.perf_counter()
    drift.write_profile(reference, str(profile_path))
    profile_seconds = time.perf_counter() - started
    current.to_parquet(current_path, index=False)
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'components' / 'mlops_runtime'}:{REPO}"}
    command = [sys.executable, str(REPO / "components" / "detect_drift" / "main.py"),
               "--reference-profile-uri", str(profile_path), "--current-uri", str(current_path),
               "--output-dir", str(scratch / f"out_{columns}")]
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=1800, check=False)
    wall = time.perf_counter() - started
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    if done.returncode != 0:
        raise SystemExit(f"detect_drift failed on {columns} columns: {done.stderr.strip()}")
    report = json.loads((scratch / f"out_{columns}" / "drift_report.json").read_text())
    return {"columns": columns, "rows": rows, "build_profile_s": round(profile_seconds, 2),
            "detect_drift_wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "n_drifted": report["dataset"]["n_drifted"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--columns", default="1000,2000,10000")
    parser.add_argument("--rows", type=int, default=60)
    args = parser.parse_args()
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print("| columns | rows | build profile s | detect_drift wall s (process, incl. imports) | its CPU s | drifted |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="drift-wide-") as scratch:
        for columns in (int(c) for c in args.columns.split(",")):
            r = run(columns, args.rows, Path(scratch))
            print(f"| {r['columns']} | {r['rows']} | {r['build_profile_s']} | {r['detect_drift_wall_s']} | "
                  f"{r['cpu_s']} | {r['n_drifted']} |", flush=True)


if __name__ == "__main__":
    main()
