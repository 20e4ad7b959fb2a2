"""train's reference profile carries the model's out-of-fold outputs, so detect_drift can check prediction drift
on a real public table (palmerpenguins) scored by the trained model."""
from __future__ import annotations

import json
from importlib import resources

import numpy as np
import pytest

from mlops_runtime import storage, tables


def penguins(tmp_path) -> tuple[str, str]:
    table = tables.parse_table(resources.files("palmerpenguins").joinpath("data", "penguins.csv").read_bytes(),
                               "penguins.csv")
    test = np.zeros(len(table), dtype=bool)
    test[np.random.default_rng(1).choice(len(table), 100, replace=False)] = True
    train_uri, test_uri = str(tmp_path / "train.parquet"), str(tmp_path / "test.parquet")
    storage.write_bytes(train_uri, tables.table_bytes(table[~test].reset_index(drop=True)))
    storage.write_bytes(test_uri, tables.table_bytes(table[test].reset_index(drop=True)))
    return train_uri, test_uri


@pytest.mark.parametrize(("target", "outputs"), [("species", {"predicted_class", "probability:Adelie"}),
                                                 ("body_mass_g", {"prediction"})])
def test_the_profile_holds_prediction_references_and_drift_uses_them(step, tmp_path, target, outputs):
    train_uri, test_uri = penguins(tmp_path)
    trained = step("train", "--train-uri", train_uri, "--target-column", target, "--n-estimators", "20",
                   "--output-dir", tmp_path / "model")
    assert trained.exit_code == 0, trained.stderr
    profile = json.loads((tmp_path / "model" / "reference_profile.json").read_text())
    assert outputs <= set(profile["predictions"]["features"])
    checked = step("detect_drift", "--reference-profile-uri", tmp_path / "model" / "reference_profile.json",
                   "--current-uri", test_uri, "--model-uri", tmp_path / "model" / "model.skops",
                   "--target-column", target, "--output-dir", tmp_path / "drift")
    assert checked.exit_code == 0, checked.stderr
    verdict = json.loads(checked.stdout.splitlines()[-1])
    assert verdict["prediction_drift_detected"] is False and verdict["data_quality_ok"] is True
    assert verdict["drift_detected"] is False  # held-out rows of the same table
