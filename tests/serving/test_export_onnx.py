"""export_onnx: an exact ONNX model for the mixed-type Pipeline (parity checked with onnxruntime), and the
recorded reason when it is not exact or not convertible."""
from __future__ import annotations

import json

import numpy as np
import onnxruntime
import pytest

from mlops_runtime import models, onnx_export, outputs, signature, storage, tables
from tests.serving.serving_fixtures import CATEGORICAL, NUMERIC, TARGET, card_for, customers, fit_pipeline


def write_model(folder, model, table) -> str:
    payload = models.dumps(model)
    storage.write_bytes(str(folder / "model.skops"), payload)
    storage.write_bytes(str(folder / "model_card.json"), outputs.json_bytes(card_for(model, table, payload)))
    return str(folder / "model.skops")


@pytest.fixture(scope="module")
def table():
    return customers(600, seed=11)


def test_the_pipeline_exports_exactly(step, tmp_path, table):
    model = fit_pipeline(table)
    model_uri = write_model(tmp_path, model, table)
    test = customers(300, seed=12)
    test.to_csv(tmp_path / "test.csv", index=False)
    result = step("export_onnx", "--model-uri", model_uri, "--test-uri", tmp_path / "test.csv",
                  "--output-dir", tmp_path / "onnx", "--exported-output-path", tmp_path / "exported")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[-1])["exported"] is True
    assert (tmp_path / "exported").read_text() == "true"
    report = json.loads((tmp_path / "onnx" / "onnx_report.json").read_text())
    assert report["exported"] and report["labels_equal"] == 300 and report["max_abs_diff"] <= 1e-5
    data = (tmp_path / "onnx" / "model.onnx").read_bytes()
    assert report["onnx_sha256"] == storage.sha256_hex(data)
    # the file on its own answers like the model, with plain tensors (zipmap off)
    session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
    sig = signature.from_card(json.loads((tmp_path / "model_card.json").read_text()))
    features, _ = signature.check_table(test, sig, uri="", label="test")
    labels, proba = session.run(None, onnx_export.onnx_inputs(features, sig))
    assert labels.reshape(-1).tolist() == model.predict(features).tolist()
    np.testing.assert_allclose(proba, model.predict_proba(features), atol=1e-5)


def test_a_model_skl2onnx_cannot_convert_records_why(step, tmp_path, table):
    from sklearn.pipeline import Pipeline
    from sklearn.semi_supervised import LabelSpreading

    model = Pipeline([("prepare", fit_pipeline(table).named_steps["prepare"]), ("model", LabelSpreading())])
    model.fit(table[NUMERIC + CATEGORICAL], table[TARGET])
    model_uri = write_model(tmp_path, model, table)
    tables_uri = str(tmp_path / "test.parquet")
    storage.write_bytes(tables_uri, tables.table_bytes(table))
    result = step("export_onnx", "--model-uri", model_uri, "--test-uri", tables_uri, "--output-dir", tmp_path / "o",
                  "--onnx-uri-output-path", tmp_path / "onnx_uri")
    assert result.exit_code == 0, result.stderr
    report = json.loads((tmp_path / "o" / "onnx_report.json").read_text())
    assert report["exported"] is False and "LabelSpreading" in report["reason"]
    assert not (tmp_path / "o" / "model.onnx").exists() and (tmp_path / "onnx_uri").read_text() == ""


def test_a_failed_parity_check_keeps_no_onnx_file(tmp_path, table):
    model = fit_pipeline(table)
    sig = signature.from_card(card_for(model, table, models.dumps(model)))
    features, _ = signature.check_table(table, sig, uri="", label="t")
    result = onnx_export.export(model, sig, features, tolerance=1e-5)
    assert result.onnx is not None
    # the same converted file checked against another model: the check must notice
    other = fit_pipeline(table, n_estimators=3, random_state=9)
    parity = onnx_export.check_parity(other, result.onnx, sig, features, tolerance=1e-5, is_classifier=True)
    assert parity["max_abs_diff"] > 1e-5


def test_bad_inputs_fail_cleanly(step, tmp_path, table):
    model_uri = write_model(tmp_path, fit_pipeline(table), table)
    table.drop(columns=["plan"]).to_csv(tmp_path / "missing.csv", index=False)
    result = step("export_onnx", "--model-uri", model_uri, "--test-uri", tmp_path / "missing.csv",
                  "--output-dir", tmp_path / "o")
    assert result.exit_code == 3 and result.stderr.startswith("error: --test-uri: "), result.stderr
    (tmp_path / "model.skops").write_bytes(b"tampered")
    result = step("export_onnx", "--model-uri", model_uri, "--test-uri", tmp_path / "missing.csv",
                  "--output-dir", tmp_path / "o")
    assert result.exit_code == 5 and result.stderr.startswith("error: --model-uri: "), result.stderr
    assert not (tmp_path / "o").exists()


def test_deploy_registers_the_exact_onnx_model_beside_the_skops_one(step, tmp_path, table):
    model = fit_pipeline(table)
    model_uri = write_model(tmp_path, model, table)
    test = customers(300, seed=13)
    test.to_csv(tmp_path / "test.csv", index=False)
    exported = step("export_onnx", "--model-uri", model_uri, "--test-uri", tmp_path / "test.csv",
                    "--output-dir", tmp_path / "onnx")
    assert exported.exit_code == 0, exported.stderr
    evaluated = step("evaluate", "--model-uri", model_uri, "--test-uri", tmp_path / "test.csv",
                     "--output-dir", tmp_path / "eval")
    assert evaluated.exit_code == 0, evaluated.stderr
    deploy = ["deploy", "--model-uri", model_uri, "--metrics-uri", tmp_path / "eval" / "metrics.json",
              "--threshold", "0.5", "--onnx-dir"]
    # tampered: the ONNX file is not the one the parity report describes
    (tmp_path / "tampered").mkdir()
    (tmp_path / "tampered" / "onnx_report.json").write_bytes((tmp_path / "onnx" / "onnx_report.json").read_bytes())
    (tmp_path / "tampered" / "model.onnx").write_bytes(b"not the exported model")
    refused = step(*deploy, tmp_path / "tampered", "--registry-uri", tmp_path / "refused")
    assert refused.exit_code == 5 and refused.stderr.startswith("error: --onnx-dir: ")
    assert storage.list_uris(str(tmp_path / "refused")) == []

    promoted = step(*deploy, tmp_path / "onnx", "--registry-uri", tmp_path / "registry")
    assert promoted.exit_code == 0, promoted.stderr
    version = tmp_path / "registry" / "classifier" / "1"
    assert (version / "model.onnx").read_bytes() == (tmp_path / "onnx" / "model.onnx").read_bytes()
    assert json.loads((version / "onnx_report.json").read_text())["exported"] is True
