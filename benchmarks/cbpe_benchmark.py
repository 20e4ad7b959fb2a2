"""Label-free performance estimation: ours (mlops_runtime.estimation) against NannyML 0.13.1's CBPE.

Generated 3-class data (scikit-learn make_classification), a random forest trained on 4,000 rows, the
calibration / NannyML reference on 4,000 held-out labeled rows, then analysis chunks of 2,000 rows with
growing covariate shift (rows drawn towards those the model is unsure about, so P(y | x) is unchanged).
For each chunk: the realised accuracy and macro F1, each tool's estimate and its absolute error.

    benchmarks/setup_nannyml.sh                     # once: NannyML 0.13.1 (+ statsmodels) in benchmarks/.venv-nannyml
    PYTHONPATH=components/mlops_runtime .venv/bin/python benchmarks/cbpe_benchmark.py [--seeds 3]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.datasets import make_classification
from sklearn.ensemble import RandomForestClassifier

from mlops_runtime import estimation

HERE = Path(__file__).resolve().parent
NANNYML = HERE / ".venv-nannyml" / "bin" / "python"
CHUNK, SHIFTS = 2_000, (0.0, 2.0, 4.0, 6.0, 8.0, 12.0)


def outputs(model, table: pd.DataFrame, features: list[str]) -> pd.DataFrame:
    probabilities = model.predict_proba(table[features])
    frame = pd.DataFrame({f"p{c}": probabilities[:, c] for c in range(probabilities.shape[1])})
    return frame.assign(y_pred=probabilities.argmax(axis=1), y_true=table["target"].to_numpy())


def run(seed: int, scratch: Path) -> list[dict]:
    x, y = make_classification(40_000, n_features=6, n_informative=4, n_redundant=0, n_classes=3,
                               n_clusters_per_class=1, class_sep=1.0, random_state=seed)
    features = [f"x{i}" for i in range(6)]
    table = pd.DataFrame(x, columns=features).assign(target=y)
    train, reference, pool = table.iloc[:4000], table.iloc[4000:8000], table.iloc[8000:].reset_index(drop=True)
    model = RandomForestClassifier(n_estimators=100, min_samples_leaf=3, random_state=seed, n_jobs=1)
    model.fit(train[features], train["target"])
    confidence = model.predict_proba(pool[features]).max(axis=1)
    rng = np.random.default_rng(seed)
    chunks = []
    for shift in SHIFTS:
        weights = np.exp(-shift * confidence)
        chunks.append(pool.iloc[rng.choice(len(pool), CHUNK, replace=False, p=weights / weights.sum())])
    ref_out = outputs(model, reference, features)
    analysis = pd.concat([outputs(model, c, features) for c in chunks], ignore_index=True)
    started = time.perf_counter()
    calibration = estimation.fit_calibration(ref_out[["p0", "p1", "p2"]].to_numpy(), ref_out["y_true"].to_numpy(),
                                             [0, 1, 2])
    ours = [estimation.estimate(analysis.iloc[i:i + CHUNK][["p0", "p1", "p2"]].to_numpy(), calibration)
            for i in range(0, len(analysis), CHUNK)]
    ours_seconds = time.perf_counter() - started
    ref_path, analysis_path = scratch / f"ref_{seed}.parquet", scratch / f"analysis_{seed}.parquet"
    ref_out.to_parquet(ref_path), analysis.to_parquet(analysis_path)
    started = time.perf_counter()
    done = subprocess.run([str(NANNYML), str(HERE / "nannyml_worker.py"), str(ref_path), str(analysis_path),
                           str(CHUNK), "3"], capture_output=True, text=True, check=True, timeout=1800)
    nannyml_seconds = time.perf_counter() - started
    theirs = json.loads(done.stdout.strip().splitlines()[-1])
    rows = []
    for index, shift in enumerate(SHIFTS):
        part = analysis.iloc[index * CHUNK:(index + 1) * CHUNK]
        realised = estimation.realised_metrics(part["y_pred"].to_numpy(), part["y_true"].to_numpy(), 3)
        for metric in ("accuracy", "f1_macro"):
            m = ours[index]["metrics"][metric]
            rows.append({"seed": seed, "shift": shift, "metric": metric, "realised": realised[metric],
                         "ours": m["estimate"], "ours_lower": m["lower"], "ours_upper": m["upper"],
                         "nannyml": theirs[metric][index], "ours_seconds": ours_seconds,
                         "nannyml_seconds": nannyml_seconds, "nannyml_version": theirs["nannyml"]})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="cbpe-") as scratch:
        for seed in range(args.seeds):
            rows.extend(run(seed, Path(scratch)))
    frame = pd.DataFrame(rows)
    frame["ours_error"] = (frame["ours"] - frame["realised"]).abs()
    frame["nannyml_error"] = (frame["nannyml"] - frame["realised"]).abs()
    frame["realised_in_ours_interval"] = (frame["ours_lower"] <= frame["realised"]) & (
        frame["realised"] <= frame["ours_upper"])
    print(f"NannyML {rows[0]['nannyml_version']}; {args.seeds} seeds x {len(SHIFTS)} chunks of {CHUNK} rows")
    print("| seed | shift | metric | realised | ours [95% interval] | ours error | NannyML CBPE | NannyML error |")
    print("|---|---|---|---|---|---|---|---|")
    for r in frame.itertuples():
        print(f"| {r.seed} | {r.shift:g} | {r.metric} | {r.realised:.4f} | {r.ours:.4f} [{r.ours_lower:.4f}, "
              f"{r.ours_upper:.4f}] | {r.ours_error:.4f} | {r.nannyml:.4f} | {r.nannyml_error:.4f} |")
    print("\n| metric | mean abs error ours | mean abs error NannyML | max abs error ours | max abs error NannyML "
          "| realised inside our interval |")
    print("|---|---|---|---|---|---|")
    for metric, part in frame.groupby("metric"):
        print(f"| {metric} | {part.ours_error.mean():.4f} | {part.nannyml_error.mean():.4f} | "
              f"{part.ours_error.max():.4f} | {part.nannyml_error.max():.4f} | "
              f"{int(part.realised_in_ours_interval.sum())}/{len(part)} |")
    print(f"\nwall seconds per seed: ours {frame.ours_seconds.mean():.2f} (in process), NannyML "
          f"{frame.nannyml_seconds.mean():.2f} (a subprocess, imports included)")


if __name__ == "__main__":
    main()
