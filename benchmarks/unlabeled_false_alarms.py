"""False-alarm rate of the unlabeled path on batches with no drift (issue 11's closing note).

A model (a scikit-learn Pipeline: one-hot + random forest) is trained on 3,000 rows of a generated table
(2 numerical, 1 categorical feature, a noise feature); its profile holds out-of-fold reference predictions
as train stores them. Then ``--batches`` batches of ``--rows`` rows are drawn from the same distribution and
checked as detect_drift does with --model-uri: feature drift (dataset verdict), prediction drift, data
quality, and estimate_performance's estimated degradation. Every flag is a false alarm.

    PYTHONPATH=components/mlops_runtime .venv/bin/python benchmarks/unlabeled_false_alarms.py [--batches 200 --rows 300]
"""
from __future__ import annotations

import argparse

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder

from mlops_runtime import data_quality, drift, estimation, prediction_drift, signature


def draw(rng: np.random.Generator, n: int) -> pd.DataFrame:
    size, weight = rng.normal(0, 1, n), rng.lognormal(0, 0.5, n)
    colour = rng.choice(["red", "green", "blue"], n, p=[0.5, 0.3, 0.2])
    target = ((size + 0.5 * np.log(weight) + (colour == "red") + rng.normal(0, 0.7, n)) > 0.5).astype(int)
    return pd.DataFrame({"size": size, "weight": weight, "colour": colour, "noise": rng.normal(0, 1, n),
                         "target": target})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--rows", type=int, default=300)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    train, test = draw(rng, 3000), draw(rng, 1500)
    names = ["size", "weight", "colour", "noise"]
    model = Pipeline([("prep", ColumnTransformer([("cat", OneHotEncoder(handle_unknown="ignore"), ["colour"])],
                                                 remainder="passthrough")),
                      ("forest", RandomForestClassifier(n_estimators=100, min_samples_leaf=5, random_state=0))])
    model.fit(train[names], train["target"])
    profile = drift.build_profile(train, target_column="target",
                                  predictions=prediction_drift.out_of_fold_frame(model, train[names], train["target"]))
    kinds = {"size": "numeric", "weight": "numeric", "colour": "categorical", "noise": "numeric"}
    model_signature = signature.build_signature(train[names], train["target"], "classification", kinds=kinds,
                                                dropped=[])
    calibration = estimation.fit_calibration(model.predict_proba(test[names]), test["target"].to_numpy(), [0, 1])
    reference_accuracy = float((model.predict(test[names]) == test["target"]).mean())
    counts = dict.fromkeys(["feature drift (dataset)", "any feature drifted", "prediction drift", "data quality failed",
                            "estimated degradation (max drop 0.05)"], 0)
    for _ in range(args.batches):
        batch = draw(rng, args.rows).drop(columns=["target"])
        report = drift.detect_drift(profile, batch, workers=1)
        outputs = prediction_drift.prediction_frame(model, batch[names])
        predictions = drift.detect_drift(profile["predictions"], outputs, workers=1)
        quality = data_quality.check_quality(batch, model_signature, uri="batch")
        estimate = estimation.estimate(model.predict_proba(batch[names]), calibration)["metrics"]["accuracy"]
        counts["feature drift (dataset)"] += report["dataset"]["drift_detected"]
        counts["any feature drifted"] += report["dataset"]["n_drifted"] > 0
        counts["prediction drift"] += predictions["dataset"]["drift_detected"]
        counts["data quality failed"] += not quality["ok"]
        counts["estimated degradation (max drop 0.05)"] += (reference_accuracy - estimate["estimate"] > 0.05
                                                           and estimate["upper"] < reference_accuracy - 0.05)
    print(f"{args.batches} no-drift batches of {args.rows} rows (4 features; reference 3,000 rows)")
    print("| flag | false alarms | rate |")
    print("|---|---|---|")
    for name, count in counts.items():
        print(f"| {name} | {count} | {count / args.batches:.1%} |")


if __name__ == "__main__":
    main()
