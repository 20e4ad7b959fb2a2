"""Drift detection benchmark: mlops_runtime.drift (detect_drift's engine) against Evidently's DataDriftPreset.

1. 1M rows x 12 columns (8 numerical, 4 categorical), some features drifted by design, the same Parquet
   files for both tools: time per run (data already in memory as pandas DataFrames, imports warmed up)
   and every feature's verdict from both tools beside the designed truth.
2. 10M rows x 100 columns (90 numerical, 10 categorical) Parquet files, ours only, read column by
   column: wall time, time loading columns and computing, CPU time and peak RSS against the size of
   the column data; with a raw reference table, then with a profile built from it.

Every measurement runs in a fresh subprocess, so its peak RSS (ru_maxrss) is its own.
Run: ``benchmarks/setup.sh`` once (Evidently in benchmarks/.venv), then
``.venv/bin/python benchmarks/drift_benchmark.py``. Results: benchmarks/results/.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
EVIDENTLY_PYTHON = HERE / ".venv" / "bin" / "python"
CATEGORIES = np.array(["a", "b", "c", "d"], dtype=object)
BASE = [0.4, 0.3, 0.2, 0.1]

# feature: (what changes in current, drift by design)
DESIGN = {
    "n0_normal": ("nothing", False),
    "n1_lognormal": ("nothing", False),
    "n2_small_integers": ("nothing", False),
    "n3_mean_shift": ("mean +0.5 sd", True),
    "n4_scale": ("std x1.5", True),
    "n5_uniform_nan": ("nothing (2% NaN both sides)", False),
    "n6_tiny_shift": ("mean +0.05 sd (negligible)", False),
    "n7_missing": ("NaN 2% -> 10%", True),
    "c0_stable": ("nothing", False),
    "c1_shift": ("shares 40/30/20/10 -> 25 each", True),
    "c2_unseen": ("2% of rows a new category", True),
    "c3_one_point": ("1-point share shift (negligible)", False),
}


def design_table(rows: int, current: bool, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)

    def with_nan(values: np.ndarray, rate: float) -> np.ndarray:
        values = values.astype(float)
        values[rng.random(rows) < rate] = np.nan
        return values

    def categories(shares: list[float], unseen: float = 0.0) -> np.ndarray:
        values = CATEGORIES[rng.choice(4, size=rows, p=shares)]
        if unseen:
            values[rng.random(rows) < unseen] = "new"
        return values

    return pd.DataFrame({
        "n0_normal": rng.normal(0, 1, rows),
        "n1_lognormal": rng.lognormal(0, 1, rows),
        "n2_small_integers": rng.poisson(3, rows),
        "n3_mean_shift": rng.normal(0.5 if current else 0, 1, rows),
        "n4_scale": rng.normal(0, 1.5 if current else 1, rows),
        "n5_uniform_nan": with_nan(rng.uniform(0, 10, rows), 0.02),
        "n6_tiny_shift": rng.normal(0.05 if current else 0, 1, rows),
        "n7_missing": with_nan(rng.exponential(1, rows), 0.10 if current else 0.02),
        "c0_stable": categories(BASE),
        "c1_shift": categories([0.25] * 4 if current else BASE),
        "c2_unseen": categories(BASE, unseen=0.02 if current else 0.0),
        "c3_one_point": categories([0.41, 0.29, 0.2, 0.1] if current else BASE),
    })


def write_large_table(path: Path, rows: int, columns: int, current: bool, seed: int) -> None:
    """A rows x columns Parquet file written one row group (1M rows) at a time; 10% categorical columns."""
    n_categorical = max(1, columns // 10)
    numerical = [f"x{i:03d}" for i in range(columns - n_categorical)]
    categorical = [f"c{i:02d}" for i in range(n_categorical)]
    dictionaries = {name: pa.array([f"{name}_v{k}" for k in range(5 + 5 * i)]) for i, name in enumerate(categorical)}
    schema = pa.schema([(name, pa.float64()) for name in numerical]
                       + [(name, pa.dictionary(pa.int32(), pa.string())) for name in categorical])
    rng = np.random.default_rng(seed)
    group = 1_000_000
    with pq.ParquetWriter(path, schema, compression="none", use_dictionary=categorical,
                          write_statistics=False) as writer:
        for start in range(0, rows, group):
            size = min(group, rows - start)
            arrays = []
            for i, _name in enumerate(numerical):
                shift = 0.3 if current and i % 9 == 0 else 0.0  # 10 of 90 numerical columns drift
                values = (rng.normal(shift, 1, size) if i % 3 == 0 else rng.lognormal(shift, 0.5, size)
                          if i % 3 == 1 else rng.uniform(shift, 1 + shift, size))
                if i % 10 == 5:
                    values[rng.random(size) < 0.01] = np.nan
                arrays.append(pa.array(values))
            for i, name in enumerate(categorical):
                cardinality = len(dictionaries[name])
                weights = np.linspace(2.0, 1.0, cardinality)
                if current and i < 2:  # 2 of 10 categorical columns drift
                    weights = weights[::-1]
                codes = rng.choice(cardinality, size=size, p=weights / weights.sum()).astype(np.int32)
                arrays.append(pa.DictionaryArray.from_arrays(pa.array(codes), dictionaries[name]))
            writer.write_table(pa.Table.from_arrays(arrays, schema=schema))


def designed_drifts(columns: int) -> int:
    n_categorical = max(1, columns // 10)
    return len(range(0, columns - n_categorical, 9)) + min(2, n_categorical)


def column_data_bytes(path: Path) -> int:
    """In-memory size of the decoded columns: 8 bytes a float64, 4 bytes a dictionary code (plus dictionaries)."""
    parquet = pq.ParquetFile(path)
    rows = parquet.metadata.num_rows
    total = 0
    for field in parquet.schema_arrow:
        total += rows * (4 if pa.types.is_dictionary(field.type) else field.type.bit_width // 8)
    return total


# ---------------------------------------------------------------------------------------------- workers


def peak_rss() -> int:
    """This process's peak RSS: VmHWM, which restarts at exec (ru_maxrss would carry over the RSS that the
    parent process had when it forked this worker)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def worker_ours(reference: str, current: str, repeats: int) -> dict:
    from mlops_runtime.columnar import ParquetColumns
    from mlops_runtime.drift import detect_drift

    ref, cur = pd.read_parquet(reference), pd.read_parquet(current)
    detect_drift(ref.head(2000), cur.head(2000))  # warm-up: imports stay out of the timing
    seconds, cpu_seconds, report = [], [], None
    for _ in range(repeats):
        started, cpu_started = time.perf_counter(), time.process_time()
        report = detect_drift(ref, cur)
        seconds.append(time.perf_counter() - started)
        cpu_seconds.append(time.process_time() - cpu_started)
    assert report is not None
    started = time.perf_counter()
    from_files = detect_drift(ParquetColumns(reference), ParquetColumns(current))
    parquet_seconds = time.perf_counter() - started
    assert {n: f["drift"] for n, f in from_files["features"].items()} == \
        {n: f["drift"] for n, f in report["features"].items()}
    columns = {}
    for name, feature in report["features"].items():
        distribution = feature["checks"]["distribution"]
        effects = {k: v["value"] for k, v in distribution["effects"].items()} if distribution else {}
        columns[name] = {"drift": feature["drift"], "reasons": feature["reasons"], "effects": effects,
                         "q_value": distribution["q_value"] if distribution else None,
                         "missing_change": feature["checks"]["missing_rate"]["change"]}
    return {"tool": "ours", "seconds": seconds, "cpu_seconds": cpu_seconds, "parquet_seconds": parquet_seconds,
            "peak_rss_bytes": peak_rss(), "drift_share": report["dataset"]["drift_share"],
            "dataset_drift": report["dataset"]["drift_detected"], "columns": columns}


def worker_large(reference: str, current: str, mode: str, profile_path: str) -> dict:
    from mlops_runtime import drift
    from mlops_runtime.columnar import ParquetColumns
    from mlops_runtime.outputs import json_bytes

    drift.detect_drift(pd.DataFrame({"x": [1.0, 2.0, 3.0]}), pd.DataFrame({"x": [1.0, 2.5, 3.0]}))  # warm-up
    baseline_rss = peak_rss()
    started, cpu_started = time.perf_counter(), time.process_time()
    timings: dict[str, float] = {}
    result: dict = {"tool": "ours", "mode": mode}
    if mode == "build-profile":
        profile = drift.build_profile(ParquetColumns(reference))
        Path(profile_path).write_bytes(json_bytes(profile))
        result["profile_bytes"] = Path(profile_path).stat().st_size
    else:
        reference_input = (drift.parse_profile(Path(profile_path).read_bytes(), profile_path)
                           if mode == "profile" else ParquetColumns(reference))
        report = drift.detect_drift(reference_input, ParquetColumns(current), timings=timings)
        result.update(n_features=report["dataset"]["n_features"], n_drifted=report["dataset"]["n_drifted"],
                      drifted=report["dataset"]["drifted_features"])
    result.update(wall_seconds=time.perf_counter() - started, cpu_seconds=time.process_time() - cpu_started,
                  load_seconds=timings.get("load_seconds"), compute_seconds=timings.get("compute_seconds"),
                  baseline_rss_bytes=baseline_rss, peak_rss_bytes=peak_rss())
    return result


# ---------------------------------------------------------------------------------------------- driver


def run_worker(python: Path | str, script: Path, *args: str) -> dict:
    env = {**os.environ, "MLOPS_LOG_LEVEL": "WARNING"}
    completed = subprocess.run([str(python), str(script), *args], capture_output=True, text=True, env=env,
                               timeout=3600, check=False)
    if completed.returncode != 0:
        raise SystemExit(f"worker {' '.join(args[:2])} failed ({completed.returncode}):\n{completed.stderr[-3000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def gib(value: float) -> str:
    return f"{value / 2**30:.2f} GiB"


def compare_small(data_dir: Path, rows: int, repeats: int, evidently: bool) -> tuple[list[str], dict]:
    reference, current = data_dir / "small_reference.parquet", data_dir / "small_current.parquet"
    design_table(rows, False, 1).to_parquet(reference)
    design_table(rows, True, 2).to_parquet(current)
    ours = run_worker(sys.executable, Path(__file__), "--worker", "ours", "--reference", str(reference),
                      "--current", str(current), "--repeats", str(repeats))
    theirs = (run_worker(EVIDENTLY_PYTHON, HERE / "evidently_worker.py", "--reference", str(reference),
                         "--current", str(current), "--repeats", str(max(1, repeats // 2)))
              if evidently else None)
    lines = [f"### {rows:,} rows x 12 columns (8 numerical, 4 categorical), reference and current", "",
             "| tool | seconds per run (min / median) | CPU seconds (median) | peak RSS | dataset drift (share) |",
             "|---|---|---|---|---|"]
    for result in filter(None, (ours, theirs)):
        lines.append(f"| {result['tool']} | {min(result['seconds']):.3f} / {np.median(result['seconds']):.3f} | "
                     f"{np.median(result['cpu_seconds']):.3f} | {gib(result['peak_rss_bytes'])} | "
                     f"{result['dataset_drift']} ({result['drift_share']:.2f}) |")
    lines += ["", f"ours reading the same Parquet files column by column: {ours['parquet_seconds']:.3f} s", "",
              "| feature | change in current | drift by design | ours | ours: effect sizes, q | Evidently | "
              "Evidently: method = score |", "|---|---|---|---|---|---|---|"]
    correct = {"ours": 0, "evidently": 0}
    for name, (change, expected) in DESIGN.items():
        mine = ours["columns"][name]
        effects = ", ".join(f"{k} {v:.3g}" for k, v in mine["effects"].items() if v is not None)
        if abs(mine["missing_change"]) > 0.005:
            effects += f", missing {mine['missing_change']:+.3f}"
        other = theirs["columns"].get(name) if theirs else None
        correct["ours"] += mine["drift"] == expected
        correct["evidently"] += bool(other) and other["drift"] == expected
        lines.append(f"| {name} | {change} | {expected} | {mine['drift']} | {effects}; q {mine['q_value']:.2g} | "
                     f"{other['drift'] if other else '-'} | "
                     f"{(other['method'] + ' = ' + format(other['score'], '.3g')) if other else '-'} |")
    lines += ["", f"verdicts matching the design: ours {correct['ours']}/12"
              + (f", Evidently {correct['evidently']}/12" if theirs else "")]
    return lines, {"ours": ours, "evidently": theirs}


def benchmark_large(data_dir: Path, rows: int, columns: int) -> tuple[list[str], dict]:
    reference, current = data_dir / "large_reference.parquet", data_dir / "large_current.parquet"
    profile = data_dir / "large_profile.json"
    generated = {}
    for path, is_current, seed in ((reference, False, 11), (current, True, 12)):
        if not path.exists() or pq.ParquetFile(path).metadata.num_rows != rows:
            started = time.perf_counter()
            write_large_table(path, rows, columns, is_current, seed)
            generated[path.name] = time.perf_counter() - started
    data_bytes = column_data_bytes(reference) + column_data_bytes(current)
    results = {mode: run_worker(sys.executable, Path(__file__), "--worker", "large", "--mode", mode, "--reference",
                                str(reference), "--current", str(current), "--profile", str(profile))
               for mode in ("table", "build-profile", "profile")}
    lines = [f"### {rows:,} rows x {columns} columns ({columns - max(1, columns // 10)} numerical, "
             f"{max(1, columns // 10)} categorical), Parquet read column by column, ours only", "",
             f"Column data (decoded, reference + current): {gib(data_bytes)} "
             f"(each table {gib(data_bytes / 2)}); Parquet files "
             f"{gib(reference.stat().st_size + current.stat().st_size)}.",
             "", "| run | wall s | loading columns s | computing s | CPU s | peak RSS | RSS after imports | "
             "peak RSS / column data |", "|---|---|---|---|---|---|---|---|"]
    names = {"table": "detect, raw reference table", "build-profile": "build the reference profile (train step)",
             "profile": "detect, reference profile"}
    for mode, result in results.items():
        data = data_bytes if mode == "table" else data_bytes / 2
        load = f"{result['load_seconds']:.1f}" if result["load_seconds"] is not None else "-"
        compute = f"{result['compute_seconds']:.1f}" if result["compute_seconds"] is not None else "-"
        lines.append(f"| {names[mode]} | {result['wall_seconds']:.1f} | {load} | {compute} | "
                     f"{result['cpu_seconds']:.1f} | {gib(result['peak_rss_bytes'])} | "
                     f"{gib(result['baseline_rss_bytes'])} | {result['peak_rss_bytes'] / data:.3f} |")
    lines += ["", "(loading and computing are summed over the 2 worker threads, so they can exceed the wall time; "
              "the ratio divides by the column data the run reads: both tables, or the current one with a profile)",
              "", f"drifted features found with the raw table: {results['table']['n_drifted']} of "
              f"{results['table']['n_features']}; with the profile: {results['profile']['n_drifted']} "
              f"(by design: {designed_drifts(columns)})"]
    if results["profile"].get("drifted") != results["table"].get("drifted"):
        lines.append("NOTE: the profile and the table disagree on the drifted features")
    return lines, {"generated_seconds": generated, "column_data_bytes": data_bytes, **results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of the 12-column comparison")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of ours (Evidently: half as many)")
    parser.add_argument("--large-rows", type=int, default=10_000_000)
    parser.add_argument("--large-columns", type=int, default=100)
    parser.add_argument("--skip-evidently", action="store_true")
    parser.add_argument("--skip-large", action="store_true")
    parser.add_argument("--data-dir", default="/tmp/mlops-drift-benchmark",
                        help="where the generated Parquet files go (the large ones take ~15 GiB)")
    parser.add_argument("--keep-data", action="store_true", help="keep the generated files for another run")
    parser.add_argument("--worker", choices=["ours", "large"], help=argparse.SUPPRESS)
    parser.add_argument("--reference", help=argparse.SUPPRESS)
    parser.add_argument("--current", help=argparse.SUPPRESS)
    parser.add_argument("--mode", help=argparse.SUPPRESS)
    parser.add_argument("--profile", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker == "ours":
        print(json.dumps(worker_ours(args.reference, args.current, args.repeats)))
        return
    if args.worker == "large":
        print(json.dumps(worker_large(args.reference, args.current, args.mode, args.profile)))
        return
    if not args.skip_evidently and not EVIDENTLY_PYTHON.exists():
        raise SystemExit(f"{EVIDENTLY_PYTHON} not found: run benchmarks/setup.sh first (or pass --skip-evidently)")
    data_dir = Path(args.data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    load = os.getloadavg()
    lines = ["# Drift benchmark", "",
             f"{platform.node()}: {os.cpu_count()} cores, Python {platform.python_version()}, "
             f"load average at start {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}", ""]
    results: dict = {}
    small_lines, results["small"] = compare_small(data_dir, args.rows, args.repeats, not args.skip_evidently)
    lines += small_lines
    print("\n".join(lines), flush=True)
    if not args.skip_large:
        large_lines, results["large"] = benchmark_large(data_dir, args.large_rows, args.large_columns)
        lines += ["", *large_lines]
        print("\n".join(["", *large_lines]), flush=True)
    results_dir = HERE / "results"
    results_dir.mkdir(exist_ok=True)
    (results_dir / "drift_benchmark.md").write_text("\n".join(lines) + "\n")
    (results_dir / "drift_benchmark.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    if not args.keep_data:
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
