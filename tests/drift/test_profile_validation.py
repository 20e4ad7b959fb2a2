"""A tampered reference profile is refused when read (issue 10): one line, exit 3, nothing written."""
from __future__ import annotations

import copy
import json

import numpy as np
import pandas as pd
import pytest

from mlops_runtime import drift, storage, tables
from mlops_runtime.errors import BadInputError, ExitCode


@pytest.fixture(scope="module")
def profile() -> dict:
    rng = np.random.default_rng(5)
    frame = pd.DataFrame({"x": rng.normal(size=500), "n": rng.integers(0, 5, 500).astype(float),
                          "c": rng.choice(["a", "b"], 500), "target": rng.integers(0, 2, 500)})
    frame.loc[::10, "x"] = np.nan
    return json.loads(json.dumps(drift.build_profile(frame, target_column="target")))


def tamper(profile: dict, change) -> bytes:
    copied = copy.deepcopy(profile)
    change(copied)
    return json.dumps(copied).encode()


def set_path(*path_and_value):
    *path, value = path_and_value

    def change(document):
        for key in path[:-1]:
            document = document[key]
        document[path[-1]] = value
    return change


TAMPERED = {
    "values emptied": (set_path("features", "x", "values", []), "its values count 0 observations"),
    "categorical counts emptied": (set_path("features", "c", "counts", {}), "add up to 0"),
    "n_missing > n_rows": (set_path("features", "x", "n_missing", 501), "n_missing 501 > n_rows 500"),
    "string where a number belongs": (set_path("features", "x", "mean", "0.1"), "mean must be a finite number"),
    "string count": (set_path("features", "n", "counts", ["3"] * 5), "counts must be a list of integers"),
    "string n_rows": (set_path("n_rows", "500"), "n_rows must be an integer >= 1"),
    "n_rows = 0": (set_path("n_rows", 0), "n_rows must be an integer >= 1"),
    "feature n_rows differs": (set_path("features", "c", "n_rows", 400), "differs from the profile's 500"),
    "NaN value": (set_path("features", "x", "std", float("nan")), "std must be a finite number"),
    "boolean count": (set_path("features", "c", "n_missing", True), "n_missing must be an integer"),
    "PSI counts off": (set_path("features", "x", "psi_counts", [0] * 13), "PSI counts do not match"),
    "unknown kind": (set_path("features", "x", "kind", "weird"), "unknown kind"),
    "no features": (set_path("features", {}), "features must be a non-empty object"),
    "feature names off": (set_path("feature_names", ["x"]), "feature_names do not match"),
}


@pytest.mark.parametrize("case", list(TAMPERED), ids=list(TAMPERED))
def test_a_tampered_profile_is_refused_with_one_line(profile, case):
    change, message = TAMPERED[case]
    with pytest.raises(BadInputError, match="invalid drift profile") as error:
        drift.parse_profile(tamper(profile, change), "s3://b/p.json", label="--reference-profile-uri")
    assert message in str(error.value) and "\n" not in error.value.one_line()


def test_an_untouched_profile_is_accepted(profile):
    assert drift.parse_profile(json.dumps(profile).encode(), "p.json") == profile


def test_the_step_refuses_a_tampered_profile(step, profile, s3_prefix):
    rng = np.random.default_rng(6)
    current_uri = f"{s3_prefix}/current.parquet"
    storage.write_bytes(current_uri, tables.table_bytes(pd.DataFrame({
        "x": rng.normal(size=300), "n": rng.integers(0, 5, 300).astype(float), "c": rng.choice(["a", "b"], 300)})))
    for case in ("values emptied", "n_missing > n_rows", "string where a number belongs", "n_rows = 0"):
        profile_uri = f"{s3_prefix}/tampered.json"
        storage.write_bytes(profile_uri, tamper(profile, TAMPERED[case][0]))
        output_dir = f"{s3_prefix}/out"
        result = step("detect_drift", "--reference-profile-uri", profile_uri, "--current-uri", current_uri,
                      "--output-dir", output_dir)
        lines = result.stderr.splitlines()
        assert result.exit_code == ExitCode.BAD_INPUT, (case, result.stderr)
        assert len(lines) == 1 and lines[0].startswith("error: --reference-profile-uri: "), lines
        assert storage.list_uris(output_dir) == []
