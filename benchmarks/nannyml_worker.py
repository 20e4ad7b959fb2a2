"""Runs NannyML's CBPE (in benchmarks/.venv-nannyml) for cbpe_benchmark.py: reads the reference and analysis
tables with the model's outputs, prints {metric: [estimate per chunk]} as JSON."""
from __future__ import annotations

import json
import sys

import nannyml as nml
import pandas as pd


def main(reference_path: str, analysis_path: str, chunk_size: int, n_classes: int) -> None:
    reference, analysis = pd.read_parquet(reference_path), pd.read_parquet(analysis_path)
    estimator = nml.CBPE(y_pred_proba={c: f"p{c}" for c in range(n_classes)}, y_pred="y_pred", y_true="y_true",
                         problem_type="classification_multiclass", metrics=["accuracy", "f1"], chunk_size=chunk_size)
    estimator.fit(reference)
    frame = estimator.estimate(analysis.drop(columns=["y_true"])).to_df()
    frame = frame[frame[("chunk", "period")] == "analysis"]
    print(json.dumps({"accuracy": frame[("accuracy", "value")].tolist(), "f1_macro": frame[("f1", "value")].tolist(),
                      "nannyml": nml.__version__}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
