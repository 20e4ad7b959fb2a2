"""The detect_drift step in-process on the real S3 server: outputs, KFP parameters, HTML, bad inputs."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlops_runtime import drift, outputs, storage, tables
from mlops_runtime.errors import ExitCode

N_ROWS = 4_000


def put_table(uri: str, frame: pd.DataFrame) -> str:
    storage.write_bytes(uri, tables.table_bytes(frame))
    return uri


@pytest.fixture
def tables_on_s3(s3_prefix):
    rng = np.random.default_rng(21)
    reference = pd.DataFrame({"age": rng.normal(40, 10, N_ROWS), "income": rng.lognormal(10, 1, N_ROWS),
                              "city": rng.choice(["paris", "lyon", "nice"], N_ROWS, p=[0.5, 0.3, 0.2]),
                              "visits": rng.poisson(2, N_ROWS), "target": rng.integers(0, 2, N_ROWS)})
    current = reference.sample(frac=1.0, random_state=2).reset_index(drop=True)
    current["age"] += 8.0  # +0.8 sd: drifts
    current.loc[current.index[:600], "income"] = np.nan  # 0 % -> 15 % missing: drifts
    return (put_table(f"{s3_prefix}/in/reference.parquet", reference),
            put_table(f"{s3_prefix}/in/current.parquet", current), f"{s3_prefix}/out")


def kfp_paths(tmp_path: Path) -> tuple[list[str], dict[str, Path]]:
    paths = {name: tmp_path / "kfp" / name for name in ("drift_detected", "drift_share", "report_uri",
                                                         "html_report_uri", "report")}
    args = [arg for name, path in paths.items() for arg in (f"--{name.replace('_', '-')}-output-path", str(path))]
    return args, paths


def report_without_model_parts(uri: str) -> bool:
    report = json.loads(storage.read_bytes(uri))
    return report["predictions"] is None and report["data_quality"] is None


def assert_refused(result, code: int, option: str, output_dir: str) -> None:
    lines = result.stderr.splitlines()
    assert result.exit_code == code, (result.exit_code, result.stderr)
    assert len(lines) == 1 and lines[0].startswith("error: ") and option in lines[0], result.stderr
    if code != ExitCode.USAGE:
        assert lines[0].startswith(f"error: {option}: "), lines[0]
    assert result.stdout == ""
    assert storage.list_uris(output_dir) == []


def test_reports_drift_with_a_raw_reference(step, tables_on_s3, tmp_path):
    reference_uri, current_uri, output_dir = tables_on_s3
    args, paths = kfp_paths(tmp_path)
    executor_output = tmp_path / "executor_output.json"
    executor_input = {"outputs": {"outputFile": str(executor_output), "artifacts": {"metrics": {"artifacts": [
        {"name": "metrics", "type": {"schemaTitle": "system.Metrics"}, "uri": "s3://x/metrics", "metadata": {}}]}}}}
    result = step("detect_drift", "--reference-uri", reference_uri, "--current-uri", current_uri,
                  "--output-dir", output_dir, "--categorical-features", "visits", "--executor-input",
                  json.dumps(executor_input), *args)
    assert result.exit_code == 0, result.stderr
    report_uri, html_uri = f"{output_dir}/drift_report.json", f"{output_dir}/drift_report.html"
    assert storage.list_uris(output_dir) == [f"{output_dir}/_manifest.json", html_uri, report_uri]
    manifest = outputs.verify_published(output_dir)  # written last: the folder is complete
    assert sorted(entry["name"] for entry in manifest["objects"]) == ["drift_report.html", "drift_report.json"]
    # without --model-uri nothing is compared against a model: prediction drift false, data quality not failed
    assert result.stdout.splitlines() == [json.dumps({"drift_detected": True, "drift_share": 0.5,
                                                      "html_report_uri": html_uri, "report_uri": report_uri,
                                                      "prediction_drift_detected": False, "data_quality_ok": True},
                                                     sort_keys=True)]
    assert {name: path.read_text() for name, path in paths.items()} == {
        "drift_detected": "true", "drift_share": "0.5", "report_uri": report_uri, "html_report_uri": html_uri,
        "report": storage.read_bytes(html_uri).decode()}  # the HTML artifact the KFP UI renders: the page itself
    assert report_without_model_parts(report_uri)

    report = json.loads(storage.read_bytes(report_uri))
    assert report["feature_names"] == ["age", "income", "city", "visits"]  # in column order, target left out
    assert report["dataset"]["drifted_features"] == ["age", "income"]
    assert report["features"]["visits"]["kind"] == "categorical"
    income = report["features"]["income"]
    assert income["n_ref"] == income["n_cur"] == N_ROWS and income["n_cur_missing"] == 600
    assert income["checks"]["missing_rate"]["drift"] and not income["checks"]["distribution"]["drift"]
    age = report["features"]["age"]["checks"]["distribution"]
    assert {"statistic", "p_value", "q_value", "effects", "drift"} <= set(age)
    assert age["effects"]["psi"]["threshold"] == 0.2 and age["effects"]["wasserstein_normalized"]["passed"]
    assert report["lineage"]["component"] == "detect_drift"
    assert [record["name"] for record in report["lineage"]["inputs"]] == ["--reference-uri", "--current-uri"]
    assert report["lineage"]["inputs"][0]["sha256"] == storage.sha256_hex(storage.read_bytes(reference_uri))

    page = storage.read_bytes(html_uri).decode()
    assert page.startswith("<!DOCTYPE html>") and page.count("<svg ") == 4  # a plot per feature, inline
    assert "<script" not in page and "src=" not in page and "href=" not in page  # self-contained
    for name in ("age", "income", "city", "visits"):
        assert f"<title>{name}: reference vs current</title>" in page
    metadata = json.loads(executor_output.read_text())["artifacts"]["metrics"]["artifacts"][0]["metadata"]
    assert metadata == {"drift_share": 0.5, "n_drifted": 2.0, "n_features": 4.0, "drift_detected": 1.0}


def test_a_profile_reference_gives_the_same_verdicts(step, tables_on_s3, s3_prefix, tmp_path):
    reference_uri, current_uri, output_dir = tables_on_s3
    profile_uri = f"{s3_prefix}/model/drift_profile.json"
    drift.write_profile(tables.read_table(reference_uri), profile_uri, target_column="target",
                        categorical_features=["visits"])
    from_table = step("detect_drift", "--reference-uri", reference_uri, "--current-uri", current_uri,
                      "--output-dir", f"{output_dir}/table", "--categorical-features", "visits")
    from_profile = step("detect_drift", "--reference-profile-uri", profile_uri, "--current-uri", current_uri,
                        "--output-dir", f"{output_dir}/profile", "--critical-features", "city")
    assert from_table.exit_code == 0 and from_profile.exit_code == 0, from_profile.stderr
    table_report = json.loads(storage.read_bytes(f"{output_dir}/table/drift_report.json"))
    profile_report = json.loads(storage.read_bytes(f"{output_dir}/profile/drift_report.json"))
    assert profile_report["reference"] == {"mode": "profile", "n_rows": N_ROWS, "uri": profile_uri}
    assert {n: f["drift"] for n, f in profile_report["features"].items()} == \
        {n: f["drift"] for n, f in table_report["features"].items()}
    assert profile_report["features"]["city"]["critical"]


def test_refuses_bad_inputs(step, tables_on_s3, s3_prefix, tmp_path):
    reference_uri, current_uri, output_dir = tables_on_s3
    frame = tables.read_table(current_uri)
    extra_uri = put_table(f"{s3_prefix}/in/extra.parquet", frame.assign(new_column=1.0))
    empty_uri = put_table(f"{s3_prefix}/in/empty.parquet", frame.iloc[:0])
    profile_uri = f"{s3_prefix}/in/not_a_profile.json"
    storage.write_bytes(profile_uri, b'{"format": "something else"}')
    base = ["--current-uri", current_uri, "--output-dir", output_dir]
    cases = [
        (["--reference-uri", f"{s3_prefix}/in/missing.parquet", *base], ExitCode.BAD_INPUT, "--reference-uri"),
        (["--reference-uri", reference_uri, "--current-uri", extra_uri, "--output-dir", output_dir],
         ExitCode.BAD_INPUT, "--current-uri"),
        (["--reference-uri", reference_uri, "--current-uri", empty_uri, "--output-dir", output_dir],
         ExitCode.BAD_INPUT, "--current-uri"),
        (["--reference-profile-uri", profile_uri, *base], ExitCode.BAD_INPUT, "--reference-profile-uri"),
        (["--reference-uri", reference_uri, "--critical-features", "age,nope", *base], ExitCode.BAD_INPUT,
         "--critical-features"),
        (["--reference-uri", reference_uri, "--categorical-features", "nope", *base], ExitCode.BAD_INPUT,
         "--categorical-features"),
        (base, ExitCode.USAGE, "--reference-uri"),
        # Both given: the profile is used (the table is only a fallback), so its problem is the one reported.
        (["--reference-uri", reference_uri, "--reference-profile-uri", profile_uri, *base], ExitCode.BAD_INPUT,
         "--reference-profile-uri"),
        (["--reference-uri", reference_uri, "--alpha", "1", *base], ExitCode.USAGE, "--alpha"),
        (["--reference-uri", reference_uri, "--psi-threshold", "0", *base], ExitCode.USAGE, "--psi-threshold"),
        (["--reference-uri", reference_uri, "--js-threshold", "1.5", *base], ExitCode.USAGE, "--js-threshold"),
    ]
    for args, code, option in cases:
        assert_refused(step("detect_drift", *args), code, option, output_dir)
