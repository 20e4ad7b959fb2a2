"""The history report over a registry filled by the real steps: drift checks, estimates and alerts of three
batches, one drifted, rendered as one self-contained page."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pandas as pd
from sklearn.ensemble import RandomForestClassifier

from mlops_runtime import drift, storage, tables
from tests.components.gate_fixtures import put_table, write_model


class Quiet(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 -- http.server's name
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_args) -> None:
        pass


def table(rng: np.random.Generator, n: int, shift: float = 0.0) -> pd.DataFrame:
    x = rng.normal(shift, 1, (n, 3))
    return pd.DataFrame(x, columns=["a", "b", "c"]).assign(target=(x[:, 0] + rng.normal(0, 0.7, n) > 0).astype(int))


def test_history_of_three_batches(step, s3_prefix, tmp_path):
    rng = np.random.default_rng(8)
    train, test = table(rng, 2000), table(rng, 1000)
    model = RandomForestClassifier(n_estimators=20, min_samples_leaf=5, random_state=0, n_jobs=1)
    model.fit(train[["a", "b", "c"]], train["target"])
    model_uri = f"{s3_prefix}/model/model.skops"
    write_model(model, model_uri, train_uri=f"{s3_prefix}/train.parquet", train=train)
    profile_uri = f"{s3_prefix}/model/reference_profile.json"
    drift.write_profile(train, profile_uri, target_column="target")
    test_uri = put_table(f"{s3_prefix}/test.parquet", test)
    registry = f"{s3_prefix}/registry"
    server = ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        for index, shift in enumerate((0.0, 0.0, 1.5)):
            batch_uri = f"{s3_prefix}/batch{index}.parquet"
            storage.write_bytes(batch_uri, tables.table_bytes(table(rng, 800, shift).drop(columns=["target"])))
            detected = step("detect_drift", "--reference-profile-uri", profile_uri, "--current-uri", batch_uri,
                            "--output-dir", f"{s3_prefix}/runs/{index}/drift", "--registry-uri", registry,
                            "--model-name", "m", "--drift-share-threshold", "0.3",
                            "--drift-detected-output-path", str(tmp_path / f"drift{index}"))
            assert detected.exit_code == 0, detected.stderr
            estimated = step("estimate_performance", "--model-uri", model_uri, "--reference-uri", test_uri,
                             "--current-uri", batch_uri, "--output-dir", f"{s3_prefix}/runs/{index}/estimate",
                             "--registry-uri", registry, "--model-name", "m")
            assert estimated.exit_code == 0, estimated.stderr
            notified = step("notify", "--event", "drift", "--active", (tmp_path / f"drift{index}").read_text(),
                            "--webhook-url", f"http://127.0.0.1:{server.server_address[1]}/", "--labels", "model=m",
                            "--state-uri", registry, "--summary", f"batch {index}")
            assert notified.exit_code == 0, notified.stderr
    finally:
        server.shutdown()
        server.server_close()
    result = step("history_report", "--registry-uri", registry, "--model-name", "m",
                  "--output-dir", f"{s3_prefix}/history", "--report-output-path", str(tmp_path / "kfp" / "report"))
    assert result.exit_code == 0, result.stderr
    collected = json.loads(storage.read_bytes(f"{s3_prefix}/history/history.json"))
    assert [r["drift_detected"] for r in collected["drift"]] == [False, False, True]
    assert len(collected["estimates"]) == 3 and [a["status"] for a in collected["alerts"]] == ["sent"]
    page = storage.read_bytes(f"{s3_prefix}/history/history_report.html").decode()
    assert page.startswith("<!DOCTYPE html>") and page.count("<svg ") == 2
    assert (tmp_path / "kfp" / "report").read_text() == page  # the HTML artifact the KFP UI renders
    assert "<script" not in page and "src=" not in page and "href=" not in page
    assert page.count("<polyline") == 2 and "stroke-dasharray" in page  # drift and estimate lines, an alert mark
    assert "3 drift checks, 3 estimates" in page and "batch 2" in page
