"""Times Evidently's DataDriftPreset on two Parquet tables; run by drift_benchmark.py with benchmarks/.venv's python.

Prints one JSON line: seconds per run, peak RSS, and Evidently's per-column method, score, threshold
and verdict (a distance drifts at or above its threshold, a p-value below it, as Evidently decides).
"""
from __future__ import annotations

import argparse
import json
import resource
import time

import pandas as pd
from evidently import Report
from evidently.presets import DataDriftPreset


def peak_rss() -> int:
    """VmHWM: restarts at exec, unlike ru_maxrss, which carries over the forking parent's RSS."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def column_results(snapshot: dict) -> dict[str, dict]:
    results = {}
    for metric in snapshot["metrics"]:
        config = metric["config"]
        if not config["type"].endswith("ValueDrift"):
            continue
        method, threshold, score = config["method"], config["threshold"], float(metric["value"])
        is_p_value = "p_value" in method.lower()
        results[config["column"]] = {"method": method, "score": score, "threshold": threshold,
                                     "drift": score < threshold if is_p_value else score >= threshold}
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reference", required=True)
    parser.add_argument("--current", required=True)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    reference, current = pd.read_parquet(args.reference), pd.read_parquet(args.current)
    small = Report([DataDriftPreset()])  # warm-up: imports and first-call costs stay out of the timing
    small.run(current_data=current.head(2000), reference_data=reference.head(2000))
    seconds, cpu_seconds, snapshot = [], [], None
    for _ in range(args.repeats):
        started, cpu_started = time.perf_counter(), time.process_time()
        snapshot = Report([DataDriftPreset()]).run(current_data=current, reference_data=reference).dict()
        seconds.append(time.perf_counter() - started)
        cpu_seconds.append(time.process_time() - cpu_started)
    assert snapshot is not None
    dataset = next(m for m in snapshot["metrics"] if m["config"]["type"].endswith("DriftedColumnsCount"))
    print(json.dumps({"tool": "evidently", "seconds": seconds, "cpu_seconds": cpu_seconds,
                      "peak_rss_bytes": peak_rss(),
                      "drift_share": dataset["value"]["share"],
                      "dataset_drift": dataset["value"]["share"] >= dataset["config"]["drift_share"],
                      "columns": column_results(snapshot)}))


if __name__ == "__main__":
    main()
