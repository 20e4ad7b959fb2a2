"""Train benchmark: the train step on 1M rows x 20 mixed columns, each estimator and task, beside plain scikit-learn.

The table: 12 numeric columns (3 with 5-20 % NaN), 5 text columns (5 to 1000 categories, one with 3 % NaN),
1 boolean, 1 integer code (marked with --categorical-features) and 1 ISO date-time text column, plus a
binary label and a numeric amount. 80 % of the rows train, 20 % test (the same split for every run).

For each estimator and task, in a fresh process each (so peak RSS, ``ru_maxrss`` from ``wait4``, is its own):

- **train step**: ``python components/train/main.py`` on the train Parquet file (read, preprocessing,
  fit, permutation importances, drift profile, skops file, card), wall time and peak RSS; then its model
  scores the test rows through the signature (accuracy or r2);
- **plain scikit-learn**: what a user would write by hand with the same estimator and hyperparameters:
  read the Parquet file with pandas, a ColumnTransformer of SimpleImputer(median) for numbers and
  OneHotEncoder(handle_unknown="ignore") for text ("missing" for NaN), the date column dropped; for
  gradient boosting its native categorical support (``categorical_features="from_dtype"`` on pandas
  category columns, which refuse more than 255 categories, so the 1000-category column is left out)
  instead. Same split, same metric.

Run: ``.venv/bin/python benchmarks/train_benchmark.py [--rows 1000000] [--estimators ...] [--tasks ...]``.
Results: benchmarks/results/train_benchmark.{md,json}.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
TRAIN = REPO / "components" / "train" / "main.py"
NUMERIC = [f"n{i}" for i in range(12)]
TEXT = {"t0": 5, "t1": 10, "t2": 30, "t3": 100, "t4": 1000}
# Reduced forest: 100 fully grown trees on 800k rows take over an hour on one core and gigabytes of nodes.
HYPERPARAMETERS = {"random_forest": ["--n-estimators", "10", "--max-depth", "12"],
                   "hist_gradient_boosting": ["--max-iter", "100"], "linear": []}


def make_table(rows: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    table = {name: rng.normal(0, 1, rows) for name in NUMERIC}
    for name, cardinality in TEXT.items():
        table[name] = np.array([f"{name}_{i}" for i in range(cardinality)], dtype=object)[
            np.minimum(rng.zipf(1.6, rows) - 1, cardinality - 1)]
    table["flag"] = rng.random(rows) < 0.3
    table["code"] = rng.integers(1, 8, rows)
    table["when"] = (np.datetime64("2024-01-01T00:00") + rng.integers(0, 365 * 24 * 60, rows).astype(
        "timedelta64[m]")).astype(str)
    frame = pd.DataFrame(table)
    signal = (frame["n0"] + 0.5 * frame["n1"] - 0.7 * frame["n2"] + np.where(frame["t0"] == "t0_0", 1.0, -0.5)
              + np.where(frame["flag"], 0.8, 0.0) + 0.3 * (frame["code"] % 3)
              + 0.02 * pd.to_datetime(frame["when"]).dt.month)
    frame["label"] = np.where(signal + rng.normal(0, 0.7, rows) > np.median(signal), "yes", "no")
    frame["amount"] = 100 + 10 * signal + rng.normal(0, 3, rows)
    for name, rate in [("n3", 0.05), ("n4", 0.1), ("n5", 0.2)]:
        frame.loc[rng.random(rows) < rate, name] = np.nan
    frame.loc[rng.random(rows) < 0.03, "t1"] = None
    return frame


def measured(command: list[str]) -> tuple[float, float, str]:
    """Wall seconds, peak RSS in GiB and stdout of one process."""
    import tempfile

    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if process.returncode != 0:
            raise RuntimeError(f"{command[:3]} failed ({process.returncode}): {err.read()[-2000:]}")
        return seconds, usage.ru_maxrss / 2**20, out.read()


def baseline_main(args: argparse.Namespace) -> None:
    """The plain scikit-learn run (in its own process): fit on train, score test, print the metric."""
    from sklearn.compose import make_column_transformer
    from sklearn.ensemble import (
        HistGradientBoostingClassifier,
        HistGradientBoostingRegressor,
        RandomForestClassifier,
        RandomForestRegressor,
    )
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.metrics import accuracy_score, r2_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    target = "label" if args.task == "classification" else "amount"
    drop = ["label", "amount", "when"]
    train, test = pd.read_parquet(args.train), pd.read_parquet(args.test)
    text = [*TEXT, "flag", "code"]
    classify = args.task == "classification"
    if args.estimator == "hist_gradient_boosting":
        # native categories allow at most 255 values: a user has to leave the 1000-category column out
        drop.append("t4")
        text.remove("t4")
        for frame in (train, test):
            for name in text:
                frame[name] = frame[name].astype(str).astype("category")
        model = (HistGradientBoostingClassifier if classify else HistGradientBoostingRegressor)(
            max_iter=100, random_state=42, categorical_features="from_dtype")
    else:
        for frame in (train, test):
            for name in text:
                frame[name] = frame[name].astype(str).fillna("missing")
        steps = [SimpleImputer(strategy="median")] + ([StandardScaler()] if args.estimator == "linear" else [])
        encode = make_column_transformer((make_pipeline(*steps), NUMERIC),
                                         (OneHotEncoder(handle_unknown="ignore", sparse_output=False), text))
        if args.estimator == "random_forest":
            estimator = (RandomForestClassifier if classify else RandomForestRegressor)(
                n_estimators=10, max_depth=12, random_state=42, n_jobs=1)
        else:
            estimator = LogisticRegression(max_iter=1000) if classify else Ridge()
        model = make_pipeline(encode, estimator)
    model.fit(train.drop(columns=drop), train[target])
    predicted = model.predict(test.drop(columns=drop))
    score = accuracy_score(test[target], predicted) if classify else r2_score(test[target], predicted)
    print(json.dumps({"score": float(score)}))


def score_step_model(model_uri: str, test_path: Path, task: str) -> float:
    sys.path.insert(0, str(REPO / "components" / "mlops_runtime"))
    from sklearn.metrics import accuracy_score, r2_score

    from mlops_runtime import models, signature

    model, card = models.load_model(model_uri)
    features, truth = signature.check_table(pd.read_parquet(test_path), card["signature"], uri="", label="--test")
    predicted = model.predict(features)
    return float(accuracy_score(truth, predicted) if task == "classification" else r2_score(truth, predicted))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--estimators", nargs="+", default=list(HYPERPARAMETERS))
    parser.add_argument("--tasks", nargs="+", default=["classification", "regression"])
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/mlops-train-benchmark"))
    parser.add_argument("--baseline", nargs=4, metavar=("ESTIMATOR", "TASK", "TRAIN", "TEST"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.baseline:
        estimator, task, train, test = args.baseline
        return baseline_main(argparse.Namespace(estimator=estimator, task=task, train=train, test=test))

    args.data_dir.mkdir(parents=True, exist_ok=True)
    train_path, test_path = args.data_dir / f"train_{args.rows}.parquet", args.data_dir / f"test_{args.rows}.parquet"
    if not train_path.exists():
        table = make_table(args.rows)
        cut = int(len(table) * 0.8)
        table.iloc[:cut].to_parquet(train_path, index=False)
        table.iloc[cut:].to_parquet(test_path, index=False)
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'components' / 'mlops_runtime'}:{REPO}"}
    os.environ.update(env)
    results = []
    for estimator in args.estimators:
        for task in args.tasks:
            target, other = ("label", "amount") if task == "classification" else ("amount", "label")
            out = args.data_dir / f"out_{estimator}_{task}"
            seconds, rss, _ = measured([sys.executable, str(TRAIN), "--train-uri", str(train_path),
                                        "--target-column", target, "--drop-columns", other, "--estimator", estimator,
                                        "--categorical-features", "code", *HYPERPARAMETERS[estimator],
                                        "--output-dir", str(out)])
            score = score_step_model(str(out / "model.skops"), test_path, task)
            base_seconds, base_rss, printed = measured([sys.executable, __file__, "--baseline", estimator, task,
                                                        str(train_path), str(test_path)])
            base_score = json.loads(printed.strip().splitlines()[-1])["score"]
            row = {"estimator": estimator, "task": task, "step_seconds": round(seconds, 1),
                   "step_peak_rss_gib": round(rss, 2), "step_score": round(score, 4),
                   "baseline_seconds": round(base_seconds, 1), "baseline_peak_rss_gib": round(base_rss, 2),
                   "baseline_score": round(base_score, 4)}
            results.append(row)
            print(json.dumps(row), flush=True)
    write_results(args, results)


def write_results(args: argparse.Namespace, results: list[dict]) -> None:
    folder = HERE / "results"
    folder.mkdir(exist_ok=True)
    header = (f"vm: {os.cpu_count()} cores, Python {platform.python_version()}, load average at end "
              f"{' '.join(f'{v:.2f}' for v in os.getloadavg())}; {args.rows:,} rows x 20 feature columns, 80/20 split")
    lines = [header, "", "| estimator | task | train step s | step peak RSS GiB | step score | plain sklearn s | "
             "plain sklearn peak RSS GiB | plain sklearn score |", "|---|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['estimator']} | {r['task']} | {r['step_seconds']} | {r['step_peak_rss_gib']} | "
                     f"{r['step_score']} | {r['baseline_seconds']} | {r['baseline_peak_rss_gib']} | "
                     f"{r['baseline_score']} |")
    (folder / "train_benchmark.md").write_text("\n".join(lines) + "\n")
    (folder / "train_benchmark.json").write_text(json.dumps({"header": header, "results": results}, indent=2))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
