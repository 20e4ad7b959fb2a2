"""Bad input, step by step: one table of cases, each with its documented exit code, exactly one stderr
line ``error: --option: ...`` naming the offending input, and nothing written at any output URI (objects,
KFP parameter files, the KFP executor output).

The good inputs are made once per module by the real steps (load_data -> split -> train -> evaluate ->
deploy). Access is denied by a private SeaweedFS with IAM identities (a reader and a key with no rights),
and locally by a folder of uid 10001 with mode 0700: the tests run as root, so that step runs as its own
process with CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH dropped from its bounding set (``setpriv``), which
makes file permissions apply to it as to any user (the venv's interpreter lives under root's 0700 home,
so it cannot simply run as another uid).
"""
from __future__ import annotations

import io
import json
import os
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from hardening_support import (
    SeaweedServer,
    fresh_clients,
    load_step,
    run_in_process,
    step_command,
    step_env,
    the_error_line,
)

from mlops_runtime import models, storage, tables
from mlops_runtime.errors import ExitCode

USAGE, BAD_INPUT, STORAGE, MODEL = ExitCode.USAGE, ExitCode.BAD_INPUT, ExitCode.STORAGE, ExitCode.MODEL
FILE_OWNER = 10001
WITHOUT_DAC_OVERRIDE = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]
# Where each step writes; a case may replace one of them with a bad URI.
OUTPUT_OPTIONS = {"deploy": ("--registry-uri",), "decide_retrain": ("--output-dir", "--registry-uri"),
                  "claim_batches": ("--registry-uri",), "complete_batches": ("--registry-uri",),
                  "notify": ("--state-uri",),
                  "serve": ()}  # serve writes only prediction logs, once it serves
IAM_KEYS = {"admin": ["Admin", "Read", "List", "Tagging", "Write"], "reader": ["Read", "List"], "nobody": []}


def iam_config(path: Path) -> Path:
    identities = [{"name": name, "actions": actions,
                   "credentials": [{"accessKey": f"battery-{name}", "secretKey": f"battery-{name}-secret"}]}
                  for name, actions in IAM_KEYS.items()]
    path.write_text(json.dumps({"identities": identities}))
    return path


@dataclass
class World:
    """Good and bad inputs: local paths, copies on the IAM server (``iam/...`` keys)."""

    root: Path
    iam: SeaweedServer
    iris: pd.DataFrame = field(default_factory=pd.DataFrame)

    def path(self, *parts: str) -> str:
        return str(self.root.joinpath(*parts))

    def table(self, name: str) -> str:
        return self.path("bad", f"{name}.csv")

    def iam_uri(self, name: str) -> str:
        return self.iam.uri(f"inputs/{name}")


def csv_bytes(frame: pd.DataFrame) -> bytes:
    sink = io.BytesIO()
    frame.to_csv(sink, index=False)
    return sink.getvalue()


def must(result) -> None:
    assert result.exit_code == 0, result.stderr


def write_model(folder: Path, model_bytes: bytes, card: dict[str, Any] | None) -> None:
    folder.mkdir(parents=True)
    (folder / models.MODEL_FILE).write_bytes(model_bytes)
    if card is not None:
        (folder / models.CARD_FILE).write_text(json.dumps(card))


def build_world(root: Path, iam: SeaweedServer) -> World:
    world = World(root, iam)
    good = root / "good"
    must(run_in_process("load_data", "--dataset", "iris", "--output-dir", good / "data"))
    must(run_in_process("split", "--data-uri", good / "data/data.parquet", "--output-dir", good / "split"))
    must(run_in_process("train", "--train-uri", good / "split/train.parquet", "--n-estimators", "10",
                        "--output-dir", good / "model"))
    must(run_in_process("evaluate", "--model-uri", good / "model/model.skops", "--test-uri",
                        good / "split/test.parquet", "--output-dir", good / "eval"))
    must(run_in_process("load_data", "--dataset", "wine", "--output-dir", good / "wine"))
    must(run_in_process("train", "--train-uri", good / "wine/data.parquet", "--n-estimators", "5",
                        "--output-dir", good / "wine-model"))
    must(run_in_process("evaluate", "--model-uri", good / "wine-model/model.skops", "--test-uri",
                        good / "wine/data.parquet", "--output-dir", good / "wine-eval"))
    must(run_in_process("make_batch", "--dataset", "iris", "--n-rows", "80", "--output-dir", good / "batch"))

    iris = tables.read_table(str(good / "data/data.parquet"))
    world.iris = iris
    feature = "petal width (cm)"
    bad_tables = {
        "single_class": iris[iris.target == 0],
        "one_row_class": pd.concat([iris[iris.target < 2], iris[iris.target == 2].head(1)]),
        "two_rows_per_class": iris.groupby("target").head(2),
        "nan_feature": iris.assign(**{feature: iris[feature].where(iris.index != 3)}),
        "inf_feature": iris.assign(**{feature: iris[feature].where(iris.index != 3, float("inf"))}),
        "text_feature": iris.assign(species=["setosa"] * len(iris)),
        "text_labels": iris.assign(target=["setosa"] * len(iris)),
        "nan_target": iris.assign(target=iris.target.where(iris.index != 5)),
        "no_target_values": iris.assign(target=float("nan")),
        "float_target": iris.assign(target=iris[feature] + 0.05),
        "all_targets_missing": iris.assign(target=float("nan")),
        "fractional_target": iris.assign(target=iris[feature]),
        "no_target": iris.drop(columns=["target"]),
        "header_only": iris.head(0),
        "target_only": iris[["target"]],
        "missing_feature": iris.drop(columns=[feature]),
        "extra_feature": iris.assign(extra=1.0),
        "unknown_class": iris.assign(target=iris.target.where(iris.index != 0, 7)),
        "wrong_type_feature": iris.assign(**{feature: "wide"}),
        "all_nan_target": iris.assign(target=float("nan")),
    }
    (root / "bad").mkdir()
    for name, frame in bad_tables.items():
        (root / "bad" / f"{name}.csv").write_bytes(csv_bytes(frame))
    (root / "bad/ragged.csv").write_bytes(b"a,b,target\n1,2,0\n3,4,1,5,6\n\"7,8\n")
    (root / "bad/empty.csv").write_bytes(b"")
    (root / "bad/watermark/classifier").mkdir(parents=True)
    (root / "bad/watermark/classifier/watermark.json").write_text('{"format": "mlops-components/watermark/v1", '
                                                                 '"generation": 3, "batches": {"x": "done"}}')
    parquet = (good / "split/train.parquet").read_bytes()
    (root / "bad/truncated.parquet").write_bytes(parquet[: len(parquet) // 2])
    (root / "bad/not_json.json").write_bytes(b"{accuracy: high")

    model_bytes = (good / "model/model.skops").read_bytes()
    card = json.loads((good / "model/model_card.json").read_text())
    wine_card = json.loads((good / "wine-model/model_card.json").read_text())
    flipped = bytearray(model_bytes)
    flipped[len(flipped) // 2] ^= 0xFF
    write_model(root / "bad/tampered", bytes(flipped), card)
    write_model(root / "bad/no_card", model_bytes, None)
    write_model(root / "bad/wrong_card", model_bytes, wine_card)
    write_model(root / "bad/card_features", model_bytes, {**card, "feature_names": card["feature_names"][::-1]})
    junk = b"this is not a skops file"
    write_model(root / "bad/corrupted", junk, {**card, "model_sha256": storage.sha256_hex(junk)})
    malicious = untrusted_model_bytes()
    write_model(root / "bad/untrusted", malicious, {**card, "model_sha256": storage.sha256_hex(malicious)})
    metrics = json.loads((good / "eval/metrics.json").read_text())
    (root / "bad/accuracy_above_one.json").write_text(json.dumps({**metrics, "accuracy": 1.7}))
    (root / "bad/accuracy_nan.json").write_text(json.dumps({**metrics, "accuracy": float("nan")}))
    (root / "bad/accuracy_null.json").write_text(json.dumps({**metrics, "accuracy": None}))
    (root / "bad/n_samples_negative.json").write_text(json.dumps({**metrics, "n_samples": -3}))
    (root / "bad/confusion_ragged.json").write_text(json.dumps(
        {**metrics, "confusion_matrix": {**metrics["confusion_matrix"], "matrix": [[1, 2], [3]]}}))
    (root / "bad/duplicate_accuracy.json").write_bytes(b'{"accuracy": 0.1, ' + json.dumps(metrics).encode()[1:])
    write_model(root / "bad/card_features_text", model_bytes, {**card, "feature_names": "petal width (cm)"})
    write_model(root / "bad/card_sha_number", model_bytes, {**card, "model_sha256": 12345})
    write_model(root / "bad/card_list", model_bytes, None)
    (root / "bad/card_list" / models.CARD_FILE).write_text(json.dumps([card]))
    names = {0: "setosa", 1: "versicolor", 2: "virginica"}
    (root / "bad/text_labels.csv").write_bytes(csv_bytes(iris.assign(target=iris.target.map(names))))
    (root / "bad/fractional_labels.csv").write_bytes(csv_bytes(iris.assign(target=iris.target + 0.5)))
    (root / "bad/boolean_feature.csv").write_bytes(csv_bytes(iris.assign(**{feature: iris[feature] > 1})))
    (root / "bad/a_file").write_text("not a folder")
    build_registries(root, good)
    build_histories(root)

    locked = root / "locked"  # another user's private folder
    locked.mkdir()
    (locked / "data.csv").write_bytes(csv_bytes(iris))
    for item in (locked, locked / "data.csv"):
        os.chown(item, FILE_OWNER, FILE_OWNER)
    locked.chmod(0o700)

    admin = iam.client()
    for name, path in (("data.csv", root / "locked/data.csv"), ("train.parquet", good / "split/train.parquet"),
                       ("model.skops", good / "model/model.skops"), ("model_card.json", good / "model/model_card.json"),
                       ("metrics.json", good / "eval/metrics.json")):
        admin.put_object(Bucket=iam.bucket, Key=f"inputs/{name}", Body=path.read_bytes())
    return world


def build_registries(root: Path, good: Path) -> None:
    """A registry with one promoted version per tampering of its production pointer or entry."""
    def registry(name: str) -> Path:
        folder = root / "bad/registries" / name
        must(run_in_process("deploy", "--model-uri", good / "model/model.skops", "--metrics-uri",
                            good / "eval/metrics.json", "--registry-uri", folder, "--threshold", "0.5"))
        return folder / "classifier"

    for name, change in (("generation_text", {"generation": "two"}), ("generation_zero", {"generation": 0}),
                         ("version_text", {"version": "1"}), ("accuracy_nan", {"metrics": {"accuracy": float("nan")}}),
                         ("pointer_list", None)):
        pointer_file = registry(name) / "production.json"
        pointer = json.loads(pointer_file.read_text())
        pointer_file.write_text(json.dumps([pointer] if change is None else {**pointer, **change}))
    entry_file = registry("entry_sha") / "1" / "entry.json"
    entry_file.write_text(json.dumps({**json.loads(entry_file.read_text()), "model_sha256": "not a digest"}))


def build_histories(root: Path) -> None:
    """Performance histories, each with one tampered record."""
    record = {"checked_at": "2026-01-01T00:00:00+00:00", "metric": "accuracy", "value": 0.9, "baseline": 0.95,
              "tolerance": 0.05, "ci": {"lower": 0.8, "upper": 0.95}, "degraded": False, "model_version": None}
    for name, content in (("baseline_text", json.dumps({**record, "baseline": "high"})),
                          ("ci_missing", json.dumps({k: v for k, v in record.items() if k != "ci"})),
                          ("value_nan", json.dumps({**record, "value": float("nan")})),
                          ("not_json", "{checked_at")):
        folder = root / "bad/histories" / name
        folder.mkdir(parents=True)
        (folder / "20260101T000000000000Z-000000000000.json").write_text(content)


def untrusted_model_bytes() -> bytes:
    """A skops file that would call os.system when loaded with every type trusted."""
    import skops.io as sio
    from sklearn.preprocessing import FunctionTransformer

    return sio.dumps(FunctionTransformer(func=os.system))


@pytest.fixture(scope="module")
def iam_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedServer]:
    root = tmp_path_factory.mktemp("iam-seaweedfs")
    server = SeaweedServer(root / "data", s3_config=iam_config(root / "iam.json"), access_key="battery-admin",
                           secret_key="battery-admin-secret")
    server.start()
    yield server
    server.remove()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, iam_s3: SeaweedServer) -> World:
    return build_world(tmp_path_factory.mktemp("battery"), iam_s3)


@dataclass(frozen=True)
class Case:
    step: str
    what: str
    code: int
    option: str
    args: Callable[[World], list[str]]
    outputs: dict[str, str] = field(default_factory=dict)  # output option -> a bad value for it
    key: str | None = None  # run against the IAM server with battery-<key>
    unprivileged: bool = False  # run as its own process without root's file-access override
    kfp: Callable[[World], dict[str, str]] | None = None  # KFP output options -> a bad path for them
    env: dict[str, str] = field(default_factory=dict)  # e.g. an S3 endpoint where nothing answers
    preserved: Callable[[World], str] | None = None  # a location the failing step must leave exactly as it was

    @property
    def id(self) -> str:
        return f"{self.step}: {self.what}"


GOOD_MODEL = "good/model/model.skops"


def model_args(model: str) -> Callable[[World], list[str]]:
    return lambda w: ["--model-uri", w.path(model), "--test-uri", w.path("good/split/test.parquet")]


def evaluate_on(table: str) -> Callable[[World], list[str]]:
    return lambda w: ["--model-uri", w.path(GOOD_MODEL), "--test-uri", w.table(table)]


def deploy_args(model: str = GOOD_MODEL, metrics: str = "good/eval/metrics.json",
                *extra: str) -> Callable[[World], list[str]]:
    return lambda w: ["--model-uri", w.path(model), "--metrics-uri", w.path(metrics), "--threshold", "0.5", *extra]


def drift_args(current: Callable[[World], str] | None = None, *extra: str) -> Callable[[World], list[str]]:
    return lambda w: ["--reference-uri", w.path("good/split/train.parquet"),
                      "--current-uri", current(w) if current else w.path("good/split/test.parquet"), *extra]


def performance_args(*extra: str, batch: Callable[[World], str] | None = None, model: str = GOOD_MODEL,
                     baseline: str = "good/eval/metrics.json") -> Callable[[World], list[str]]:
    return lambda w: ["--model-uri", w.path(model), "--baseline-metrics-uri", w.path(baseline),
                      "--batch-uri", batch(w) if batch else w.path("good/batch/batch.parquet"),
                      "--n-bootstrap", "100", *extra]


def retrain_args(*extra: str) -> Callable[[World], list[str]]:
    return lambda w: ["--drift-detected", "true", "--degraded", "false",
                      "--batch-uri", w.path("good/batch/batch.parquet"), *extra]


def training_set_args(batch: Callable[[World], str]) -> Callable[[World], list[str]]:
    return lambda w: ["--history-uri", w.path("good/split/train.parquet"), "--batch-uris", json.dumps([batch(w)])]


def estimate_args(*extra: str, model: str = GOOD_MODEL, reference: Callable[[World], str] | None = None,
                  current: Callable[[World], str] | None = None) -> Callable[[World], list[str]]:
    return lambda w: ["--model-uri", w.path(model),
                      "--reference-uri", reference(w) if reference else w.path("good/data/data.parquet"),
                      "--current-uri", current(w) if current else w.path("good/batch/batch.parquet"), *extra]


def bad_registry(name: str) -> Callable[[World], list[str]]:
    return lambda w: deploy_args()(w) + ["--compare-to-production", "true"]


def history(name: str) -> Callable[[World], list[str]]:
    return lambda w: performance_args("--history-uri", w.path("bad/histories", name))(w)


DEAD_S3 = {"AWS_ENDPOINT_URL": "http://127.0.0.1:9", "MLOPS_S3_RETRY_SECONDS": "1"}  # the discard port


def table(name: str) -> Callable[[World], str]:
    return lambda w: w.table(name)


def path(*parts: str) -> Callable[[World], str]:
    return lambda w: w.path(*parts)


CASES = [
    # load_data
    Case("load_data", "malformed CSV", BAD_INPUT, "--source-uri", lambda w: ["--source-uri", w.table("ragged")]),
    Case("load_data", "truncated Parquet", BAD_INPUT, "--source-uri",
         lambda w: ["--source-uri", w.path("bad/truncated.parquet")]),
    Case("load_data", "empty file", BAD_INPUT, "--source-uri", lambda w: ["--source-uri", w.table("empty")]),
    Case("load_data", "target column missing", BAD_INPUT, "--target-column",
         lambda w: ["--source-uri", w.table("no_target")]),
    Case("load_data", "unknown URI scheme", BAD_INPUT, "--source-uri", lambda w: ["--source-uri", "gs://bucket/x.csv"]),
    Case("load_data", "missing S3 key", BAD_INPUT, "--source-uri",
         lambda w: ["--source-uri", "s3://mlops-test/hardening-battery/no-such-key.csv"]),
    Case("load_data", "missing S3 bucket", BAD_INPUT, "--source-uri",
         lambda w: ["--source-uri", "s3://no-such-bucket-hardening/x.csv"]),
    Case("load_data", "unknown dataset", USAGE, "--dataset", lambda w: ["--dataset", "titanic"]),
    Case("load_data", "output on an unknown scheme", BAD_INPUT, "--output-dir", lambda w: [],
         outputs={"--output-dir": "ftp://host/out"}),
    Case("load_data", "output bucket missing", STORAGE, "--output-dir", lambda w: [],
         outputs={"--output-dir": "s3://no-such-bucket-hardening/out"}),
    Case("load_data", "S3 read access denied", STORAGE, "--source-uri",
         lambda w: ["--source-uri", w.iam_uri("data.csv")], key="nobody"),
    Case("load_data", "S3 write access denied", STORAGE, "--output-dir", lambda w: ["--dataset", "iris"],
         key="reader"),
    Case("load_data", "local file unreadable", STORAGE, "--source-uri",
         lambda w: ["--source-uri", w.path("locked/data.csv")], unprivileged=True),
    # split
    Case("split", "malformed CSV", BAD_INPUT, "--data-uri", lambda w: ["--data-uri", w.table("ragged")]),
    Case("split", "single class", BAD_INPUT, "--data-uri", lambda w: ["--data-uri", w.table("single_class")]),
    Case("split", "a class with one row", BAD_INPUT, "--data-uri", lambda w: ["--data-uri", w.table("one_row_class")]),
    Case("split", "fewer test rows than classes", BAD_INPUT, "--test-size",
         lambda w: ["--data-uri", w.table("two_rows_per_class"), "--test-size", "0.2"]),
    # split takes NaN, infinite and text features and leaves rows without a target out (issue 7)
    Case("split", "target all missing", BAD_INPUT, "--target-column",
         lambda w: ["--data-uri", w.table("no_target_values")]),
    Case("split", "float target as classification", BAD_INPUT, "--task",
         lambda w: ["--data-uri", w.table("float_target"), "--task", "classification"]),
    Case("split", "unknown time column", BAD_INPUT, "--time-column",
         lambda w: ["--data-uri", w.table("nan_feature"), "--time-column", "when"]),
    Case("split", "time column of text", BAD_INPUT, "--time-column",
         lambda w: ["--data-uri", w.table("text_feature"), "--time-column", "species"]),
    Case("split", "unknown task", USAGE, "--task", lambda w: ["--data-uri", w.table("nan_feature"), "--task", "rank"]),
    Case("split", "target column missing", BAD_INPUT, "--target-column",
         lambda w: ["--data-uri", w.table("no_target")]),
    Case("split", "header only", BAD_INPUT, "--data-uri", lambda w: ["--data-uri", w.table("header_only")]),
    Case("split", "test size above 1", USAGE, "--test-size",
         lambda w: ["--data-uri", w.path("good/data/data.parquet"), "--test-size", "1.5"]),
    Case("split", "negative seed", USAGE, "--random-state",
         lambda w: ["--data-uri", w.path("good/data/data.parquet"), "--random-state", "-1"]),
    Case("split", "local file unreadable", STORAGE, "--data-uri",
         lambda w: ["--data-uri", w.path("locked/data.csv")], unprivileged=True),
    # train
    Case("train", "single class", BAD_INPUT, "--train-uri", lambda w: ["--train-uri", w.table("single_class")]),
    # NaN, infinite and text features are trained on since issue 7 (preprocessing inside the model)
    Case("train", "all targets missing", BAD_INPUT, "--target-column",
         lambda w: ["--train-uri", w.table("all_targets_missing")]),
    Case("train", "fractional target as classes", BAD_INPUT, "--task",
         lambda w: ["--train-uri", w.table("fractional_target"), "--task", "classification"]),
    Case("train", "no feature columns", BAD_INPUT, "--train-uri", lambda w: ["--train-uri", w.table("target_only")]),
    Case("train", "truncated Parquet", BAD_INPUT, "--train-uri",
         lambda w: ["--train-uri", w.path("bad/truncated.parquet")]),
    Case("train", "missing file", BAD_INPUT, "--train-uri", lambda w: ["--train-uri", w.path("bad/absent.parquet")]),
    Case("train", "zero trees", USAGE, "--n-estimators",
         lambda w: ["--train-uri", w.path("good/split/train.parquet"), "--n-estimators", "0"]),
    Case("train", "depth above the bound", USAGE, "--max-depth",
         lambda w: ["--train-uri", w.path("good/split/train.parquet"), "--max-depth", "1001"]),
    Case("train", "negative depth", USAGE, "--max-depth",
         lambda w: ["--train-uri", w.path("good/split/train.parquet"), "--max-depth", "-1"]),
    Case("train", "10**12 trees", USAGE, "--n-estimators",
         lambda w: ["--train-uri", w.path("good/split/train.parquet"), "--n-estimators", str(10**12)]),
    Case("train", "seed above 2**32-1", USAGE, "--random-state",
         lambda w: ["--train-uri", w.path("good/split/train.parquet"), "--random-state", str(2**32)]),
    Case("train", "S3 write access denied", STORAGE, "--output-dir",
         lambda w: ["--train-uri", w.iam_uri("train.parquet"), "--n-estimators", "3"], key="reader"),
    # evaluate
    Case("evaluate", "tampered model file", MODEL, "--model-uri", model_args("bad/tampered/model.skops")),
    Case("evaluate", "model card missing", MODEL, "--model-uri", model_args("bad/no_card/model.skops")),
    Case("evaluate", "card of another model", MODEL, "--model-uri", model_args("bad/wrong_card/model.skops")),
    Case("evaluate", "card features differ from the model's", MODEL, "--model-uri",
         model_args("bad/card_features/model.skops")),
    Case("evaluate", "corrupted model file", MODEL, "--model-uri", model_args("bad/corrupted/model.skops")),
    Case("evaluate", "model with untrusted types", MODEL, "--model-uri", model_args("bad/untrusted/model.skops")),
    Case("evaluate", "model file missing", MODEL, "--model-uri", model_args("bad/absent/model.skops")),
    Case("evaluate", "test table lacks a feature", BAD_INPUT, "--test-uri", evaluate_on("missing_feature")),
    Case("evaluate", "feature of another type than in training", BAD_INPUT, "--test-uri",
         evaluate_on("wrong_type_feature")),
    Case("evaluate", "class the model does not know", BAD_INPUT, "--test-uri", evaluate_on("unknown_class")),
    Case("evaluate", "no row has a target value", BAD_INPUT, "--test-uri", evaluate_on("all_nan_target")),
    Case("evaluate", "S3 read access denied", STORAGE, "--model-uri",
         lambda w: ["--model-uri", w.iam_uri("model.skops"), "--test-uri", w.path("good/split/test.parquet")],
         key="nobody"),
    # deploy
    Case("deploy", "threshold above 1", USAGE, "--threshold", deploy_args(GOOD_MODEL, "good/eval/metrics.json",
                                                                        "--threshold", "1.5")),
    Case("deploy", "threshold NaN", USAGE, "--threshold", deploy_args(GOOD_MODEL, "good/eval/metrics.json",
                                                                    "--threshold", "nan")),
    Case("deploy", "metrics of another model", BAD_INPUT, "--metrics-uri",
         deploy_args(GOOD_MODEL, "good/wine-eval/metrics.json")),
    Case("deploy", "metrics not JSON", BAD_INPUT, "--metrics-uri", deploy_args(GOOD_MODEL, "bad/not_json.json")),
    Case("deploy", "accuracy above 1 in the metrics", BAD_INPUT, "--metrics-uri",
         deploy_args(GOOD_MODEL, "bad/accuracy_above_one.json")),
    Case("deploy", "tampered model file", MODEL, "--model-uri", deploy_args("bad/tampered/model.skops")),
    Case("deploy", "model name with a slash", USAGE, "--model-name",
         lambda w: deploy_args()(w) + ["--model-name", "../escape"]),
    Case("deploy", "registry on an unknown scheme", BAD_INPUT, "--registry-uri", deploy_args(),
         outputs={"--registry-uri": "hdfs://namenode/registry"}),
    Case("deploy", "registry bucket missing", STORAGE, "--registry-uri", deploy_args(),
         outputs={"--registry-uri": "s3://no-such-bucket-hardening/registry"}),
    Case("deploy", "S3 registry write access denied", STORAGE, "--registry-uri",
         lambda w: ["--model-uri", w.iam_uri("model.skops"), "--metrics-uri", w.iam_uri("metrics.json"),
                    "--threshold", "0.5"], key="reader"),
    # detect_drift
    Case("detect_drift", "alpha of 1", USAGE, "--alpha", drift_args(None, "--alpha", "1")),
    Case("detect_drift", "PSI threshold of 0", USAGE, "--psi-threshold", drift_args(None, "--psi-threshold", "0")),
    Case("detect_drift", "Jensen-Shannon threshold above 1", USAGE, "--js-threshold",
         drift_args(None, "--js-threshold", "1.5")),
    Case("detect_drift", "current table lacks a feature", BAD_INPUT, "--current-uri",
         drift_args(table("missing_feature"))),
    Case("detect_drift", "malformed current table", BAD_INPUT, "--current-uri", drift_args(table("ragged"))),
    Case("detect_drift", "truncated current Parquet", BAD_INPUT, "--current-uri",
         drift_args(path("bad/truncated.parquet"))),
    Case("detect_drift", "reference profile not JSON", BAD_INPUT, "--reference-profile-uri",
         lambda w: ["--reference-profile-uri", w.path("bad/not_json.json"),
                    "--current-uri", w.path("good/split/test.parquet")]),
    # estimate_performance
    Case("estimate_performance", "unlabeled reference", BAD_INPUT, "--reference-uri",
         estimate_args(reference=table("no_target"))),
    Case("estimate_performance", "tampered model file", MODEL, "--model-uri",
         estimate_args(model="bad/tampered/model.skops")),
    Case("estimate_performance", "batch lacks a feature", BAD_INPUT, "--current-uri",
         estimate_args(current=table("missing_feature"))),
    Case("estimate_performance", "maximum drop above 1", USAGE, "--max-drop", estimate_args("--max-drop", "2")),
    # notify
    Case("notify", "webhook not http", USAGE, "--webhook-url",
         lambda w: ["--event", "drift", "--webhook-url", "file:///etc/passwd"]),
    Case("notify", "malformed labels", USAGE, "--labels", lambda w: ["--event", "drift", "--labels", "model"]),
    Case("notify", "details not a JSON object", USAGE, "--details", lambda w: ["--event", "drift", "--details", "[]"]),
    Case("notify", "unknown event", USAGE, "--event", lambda w: ["--event", "earthquake"]),
    # history_report
    Case("history_report", "limit of 0", USAGE, "--limit",
         lambda w: ["--registry-uri", w.path("good"), "--limit", "0"]),
    Case("history_report", "unknown registry URI scheme", BAD_INPUT, "--registry-uri",
         lambda w: ["--registry-uri", "gs://bucket/registry"]),
    # check_performance
    Case("check_performance", "tolerance above 1", USAGE, "--tolerance", performance_args("--tolerance", "1.5")),
    Case("check_performance", "too few bootstrap resamples", USAGE, "--n-bootstrap",
         performance_args("--n-bootstrap", "10")),
    Case("check_performance", "confidence of 1", USAGE, "--confidence", performance_args("--confidence", "1")),
    Case("check_performance", "unlabeled batch", BAD_INPUT, "--batch-uri", performance_args(batch=table("no_target"))),
    Case("check_performance", "batch lacks a feature", BAD_INPUT, "--batch-uri",
         performance_args(batch=table("missing_feature"))),
    Case("check_performance", "tampered model file", MODEL, "--model-uri",
         performance_args(model="bad/tampered/model.skops")),
    Case("check_performance", "baseline metrics not JSON", BAD_INPUT, "--baseline-metrics-uri",
         performance_args(baseline="bad/not_json.json")),
    # make_batch
    Case("make_batch", "zero rows", USAGE, "--n-rows", lambda w: ["--dataset", "iris", "--n-rows", "0"]),
    Case("make_batch", "label noise above 1", USAGE, "--label-noise",
         lambda w: ["--dataset", "iris", "--label-noise", "1.5"]),
    Case("make_batch", "malformed shift", USAGE, "--shift", lambda w: ["--dataset", "iris", "--shift", "sepal"]),
    Case("make_batch", "shift of an unknown feature", BAD_INPUT, "--shift",
         lambda w: ["--dataset", "iris", "--shift", "no such feature:mean=+1"]),
    Case("make_batch", "malformed source CSV", BAD_INPUT, "--source-uri",
         lambda w: ["--source-uri", w.table("ragged")]),
    # decide_retrain
    Case("decide_retrain", "verdict not a boolean", USAGE, "--drift-detected",
         lambda w: retrain_args()(w) + ["--drift-detected", "maybe"]),
    Case("decide_retrain", "production version is text", MODEL, "--registry-uri", retrain_args(),
         outputs={"--registry-uri": "{bad}/registries/version_text"}),
    # join_labels
    Case("join_labels", "start not a time", BAD_INPUT, "--start",
         lambda w: ["--log-uri", w.path("good/logs"), "--model-name", "m", "--start", "soon", "--end", "2026-01-02"]),
    Case("join_labels", "range over 92 days", BAD_INPUT, "--end",
         lambda w: ["--log-uri", w.path("good/logs"), "--model-name", "m", "--start", "2026-01-01",
                    "--end", "2026-06-01"]),
    Case("join_labels", "nothing logged in the range", BAD_INPUT, "--log-uri",
         lambda w: ["--log-uri", w.path("good/logs"), "--model-name", "m", "--start", "2026-01-01",
                    "--end", "2026-01-02"]),
    # export_onnx
    Case("export_onnx", "tampered model file", MODEL, "--model-uri",
         lambda w: ["--model-uri", w.path("bad/tampered/model.skops"),
                    "--test-uri", w.path("good/split/test.parquet")]),
    Case("export_onnx", "test table lacks a feature", BAD_INPUT, "--test-uri",
         lambda w: ["--model-uri", w.path(GOOD_MODEL), "--test-uri", w.table("missing_feature")]),
    Case("export_onnx", "tolerance above 0.1", USAGE, "--tolerance",
         lambda w: ["--model-uri", w.path(GOOD_MODEL), "--test-uri", w.path("good/split/test.parquet"),
                    "--tolerance", "0.5"]),
    # render_serving
    Case("render_serving", "apply without a kubeconfig", BAD_INPUT, "--kubeconfig",
         lambda w: ["--registry-uri", w.path("good/registry"), "--model-name", "m", "--serve-image", "img",
                    "--apply"]),
    Case("render_serving", "no production model in the registry", BAD_INPUT, "--model-ref",
         lambda w: ["--registry-uri", w.path("good/registry"), "--model-name", "m", "--serve-image", "img"]),
    Case("render_serving", "canary above 100 percent", USAGE, "--canary-traffic-percent",
         lambda w: ["--registry-uri", w.path("good/registry"), "--model-name", "m", "--serve-image", "img",
                    "--canary-traffic-percent", "150"]),
    # serve (every case fails while loading the model, before the server starts)
    Case("serve", "neither a registry nor a model URI", BAD_INPUT, "--registry-uri", lambda w: ["--port", "8080"]),
    Case("serve", "model ref neither production nor a number", BAD_INPUT, "--model-ref",
         lambda w: ["--registry-uri", w.path("good/registry"), "--model-ref", "latest"]),
    Case("serve", "model version not in the registry", BAD_INPUT, "--model-ref",
         lambda w: ["--registry-uri", w.path("good/registry"), "--model-ref", "3"]),
    Case("serve", "tampered model file", MODEL, "--model-uri",
         lambda w: ["--model-uri", w.path("bad/tampered/model.skops")]),
    Case("serve", "model with untrusted types", MODEL, "--model-uri",
         lambda w: ["--model-uri", w.path("bad/untrusted/model.skops")]),
    Case("serve", "port 0", USAGE, "--port", lambda w: ["--model-uri", w.path(GOOD_MODEL), "--port", "0"]),
    Case("serve", "poll interval of 0", USAGE, "--poll-seconds",
         lambda w: ["--model-uri", w.path(GOOD_MODEL), "--poll-seconds", "0"]),
]

# Cases added for issue 10, one group per class of contract break the hostile battery found.
CASES += [
    # exit 1 for bad input: undecodable options, unbounded sizes, unwritable KFP files, label types
    Case("load_data", "non-UTF-8 byte in the output folder", USAGE, "--output-dir", lambda w: [],
         outputs={"--output-dir": "/tmp/battery-\udcff/out"}),
    Case("load_data", "non-UTF-8 byte in the target column", USAGE, "--target-column",
         lambda w: ["--source-uri", w.path("good/data/data.parquet"), "--target-column", "t\udcffrget"]),
    Case("deploy", "non-UTF-8 byte in the model name", USAGE, "--model-name",
         lambda w: deploy_args()(w) + ["--model-name", "caf\udce9"]),
    Case("decide_retrain", "non-UTF-8 byte in the run id", USAGE, "--run-id",
         lambda w: retrain_args()(w) + ["--run-id", "run-\udcff"]),
    Case("make_batch", "a trillion rows", USAGE, "--n-rows", lambda w: ["--dataset", "iris", "--n-rows", str(10**12)]),
    Case("make_batch", "more values than the batch bound", USAGE, "--n-rows",
         lambda w: ["--dataset", "digits", "--n-rows", "5000000"]),
    Case("load_data", "KFP output file under a file", BAD_INPUT, "--data-uri-output-path",
         lambda w: ["--dataset", "iris"], kfp=lambda w: {"--data-uri-output-path": w.path("bad/a_file/data_uri")}),
    Case("split", "KFP output file is a folder", USAGE, "--test-uri-output-path",
         lambda w: ["--data-uri", w.path("good/data/data.parquet")],
         kfp=lambda w: {"--test-uri-output-path": w.path("bad")}),
    Case("evaluate", "KFP executor output file under a file", BAD_INPUT, "--executor-input",
         model_args(GOOD_MODEL),
         kfp=lambda w: {"--executor-input": json.dumps({"outputs": {"outputFile": w.path("bad/a_file/out.json")}})}),
    Case("evaluate", "KFP executor input of the wrong shape", BAD_INPUT, "--executor-input", model_args(GOOD_MODEL),
         kfp=lambda w: {"--executor-input": json.dumps({"outputs": {"outputFile": "/tmp/o.json",
                                                                    "artifacts": {"metrics": []}}})}),
    Case("train", "KFP output file in a read-only folder", STORAGE, "--model-uri-output-path",
         lambda w: ["--train-uri", w.path("good/split/train.parquet"), "--n-estimators", "3"],
         kfp=lambda w: {"--model-uri-output-path": w.path("locked/model_uri")}, unprivileged=True),
    Case("build_training_set", "batch labels are fractions, the history's integers", BAD_INPUT, "--batch-uris",
         training_set_args(table("fractional_labels"))),
    Case("build_training_set", "a numeric feature arrives as booleans", BAD_INPUT, "--batch-uris",
         training_set_args(table("boolean_feature"))),
    Case("build_training_set", "batch without a column of the history", BAD_INPUT, "--batch-uris",
         training_set_args(table("missing_feature"))),
    # tampered or inconsistent documents
    Case("deploy", "accuracy NaN in the metrics", BAD_INPUT, "--metrics-uri",
         deploy_args(metrics="bad/accuracy_nan.json")),
    Case("deploy", "accuracy null in the metrics", BAD_INPUT, "--metrics-uri",
         deploy_args(metrics="bad/accuracy_null.json")),
    Case("deploy", "negative sample count in the metrics", BAD_INPUT, "--metrics-uri",
         deploy_args(metrics="bad/n_samples_negative.json")),
    Case("deploy", "ragged confusion matrix in the metrics", BAD_INPUT, "--metrics-uri",
         deploy_args(metrics="bad/confusion_ragged.json")),
    Case("deploy", "a metric given twice", BAD_INPUT, "--metrics-uri",
         deploy_args(metrics="bad/duplicate_accuracy.json")),
    Case("check_performance", "baseline accuracy NaN", BAD_INPUT, "--baseline-metrics-uri",
         performance_args(baseline="bad/accuracy_nan.json")),
    Case("check_performance", "baseline accuracy null", BAD_INPUT, "--baseline-metrics-uri",
         performance_args(baseline="bad/accuracy_null.json")),
    Case("check_performance", "history record with a text baseline", BAD_INPUT, "--history-uri",
         history("baseline_text"), preserved=path("bad/histories/baseline_text")),
    Case("check_performance", "history record without its interval", BAD_INPUT, "--history-uri",
         history("ci_missing"), preserved=path("bad/histories/ci_missing")),
    Case("check_performance", "history record with a NaN value", BAD_INPUT, "--history-uri", history("value_nan"),
         preserved=path("bad/histories/value_nan")),
    Case("check_performance", "history record not JSON", BAD_INPUT, "--history-uri", history("not_json"),
         preserved=path("bad/histories/not_json")),
    Case("evaluate", "card's feature names not a list", MODEL, "--model-uri",
         model_args("bad/card_features_text/model.skops")),
    Case("evaluate", "card's sha256 a number", MODEL, "--model-uri", model_args("bad/card_sha_number/model.skops")),
    Case("check_performance", "card is a list", MODEL, "--model-uri",
         performance_args(model="bad/card_list/model.skops")),
    Case("deploy", "production generation is text", MODEL, "--registry-uri", bad_registry("generation_text"),
         outputs={"--registry-uri": "{bad}/registries/generation_text"}),
    Case("deploy", "production generation is 0", MODEL, "--registry-uri", bad_registry("generation_zero"),
         outputs={"--registry-uri": "{bad}/registries/generation_zero"}),
    Case("deploy", "production version is text", MODEL, "--registry-uri", bad_registry("version_text"),
         outputs={"--registry-uri": "{bad}/registries/version_text"}),
    Case("deploy", "production accuracy NaN", MODEL, "--registry-uri", bad_registry("accuracy_nan"),
         outputs={"--registry-uri": "{bad}/registries/accuracy_nan"}),
    Case("deploy", "production pointer is a list", MODEL, "--registry-uri", bad_registry("pointer_list"),
         outputs={"--registry-uri": "{bad}/registries/pointer_list"}),
    Case("check_performance", "registry entry with a malformed sha256", MODEL, "--registry-uri",
         lambda w: ["--registry-uri", w.path("bad/registries/entry_sha"), "--batch-uri",
                    w.path("good/batch/batch.parquet"), "--n-bootstrap", "100"]),
    Case("decide_retrain", "production pointer is a list", MODEL, "--registry-uri",
         lambda w: ["--drift-detected", "true", "--degraded", "false", "--batch-uri",
                    w.path("good/batch/batch.parquet")],
         outputs={"--registry-uri": "{bad}/registries/pointer_list"}),
    # hosts in URIs and invalid bucket names: refused at once, never written elsewhere or retried
    Case("load_data", "file URI with a host", BAD_INPUT, "--output-dir", lambda w: ["--dataset", "iris"],
         outputs={"--output-dir": "file://w/o"}),
    Case("split", "input file URI with a host", BAD_INPUT, "--data-uri", lambda w: ["--data-uri", "file://host/tmp/x.csv"]),
    Case("train", "output bucket name with capitals", BAD_INPUT, "--output-dir",
         lambda w: ["--train-uri", w.path("good/split/train.parquet"), "--n-estimators", "3"],
         outputs={"--output-dir": "s3://Bad_Bucket/out"}),
    Case("deploy", "registry bucket name with a port", BAD_INPUT, "--registry-uri", deploy_args(),
         outputs={"--registry-uri": "s3://mlops-test:9000/registry"}),
    Case("detect_drift", "current table in a bucket named like an IP address", BAD_INPUT, "--current-uri",
         drift_args(lambda w: "s3://192.168.0.1/batch.parquet")),
    Case("make_batch", "source bucket name too short", BAD_INPUT, "--source-uri", lambda w: ["--source-uri", "s3://ab/x.csv"]),
    # storage down: exit 4 with exactly one stderr line
    Case("load_data", "S3 endpoint down", STORAGE, "--output-dir", lambda w: ["--dataset", "iris"],
         outputs={"--output-dir": "s3://mlops-test/battery-dead/out"}, env=DEAD_S3),
    Case("evaluate", "S3 endpoint down for an input", STORAGE, "--test-uri",
         lambda w: ["--model-uri", w.path(GOOD_MODEL), "--test-uri", "s3://mlops-test/battery-dead/test.parquet"],
         env=DEAD_S3),
    Case("decide_retrain", "S3 registry down", STORAGE, "--registry-uri",
         lambda w: retrain_args()(w), outputs={"--registry-uri": "s3://mlops-test/battery-dead/registry"}, env=DEAD_S3),
    # the monitoring watermark and the retraining table
    Case("claim_batches", "more batches per run than the bound", USAGE, "--max-batches",
         lambda w: ["--batches-uri", w.path("good/batch"), "--run-id", "r", "--max-batches", "1000"]),
    Case("claim_batches", "a lease of no time", USAGE, "--lease-minutes",
         lambda w: ["--batches-uri", w.path("good/batch"), "--run-id", "r", "--lease-minutes", "0"]),
    Case("claim_batches", "batches on an unknown scheme", BAD_INPUT, "--batches-uri",
         lambda w: ["--batches-uri", "gs://bucket/batches", "--run-id", "r"]),
    Case("claim_batches", "tampered watermark", BAD_INPUT, "--registry-uri",
         lambda w: ["--batches-uri", w.path("good/batch"), "--run-id", "r"],
         outputs={"--registry-uri": "{bad}/watermark"}),
    Case("complete_batches", "batch list not JSON", BAD_INPUT, "--batch-uris",
         lambda w: ["--run-id", "r", "--batch-uris", "[oops"]),
    Case("complete_batches", "a batch never claimed", BAD_INPUT, "--batch-uris",
         lambda w: ["--run-id", "r", "--batch-uris", json.dumps([w.path("good/batch/batch.parquet")])]),
    Case("complete_batches", "tampered watermark", BAD_INPUT, "--registry-uri",
         lambda w: ["--run-id", "r", "--batch-uris", json.dumps(["x"])], outputs={"--registry-uri": "{bad}/watermark"}),
    Case("build_training_set", "unknown window", USAGE, "--window", lambda w: ["--window", "weeks:3"]),
    Case("build_training_set", "days window without a time column", USAGE, "--window",
         lambda w: ["--history-uri", w.path("good/split/train.parquet"), "--window", "days:7"]),
    Case("build_training_set", "labels of another type than the history", BAD_INPUT, "--batch-uris",
         lambda w: ["--history-uri", w.path("good/split/train.parquet"),
                    "--batch-uris", json.dumps([w.table("text_labels")])]),
    Case("build_training_set", "history missing", BAD_INPUT, "--history-uri",
         lambda w: ["--history-uri", w.path("good/split/nothing.parquet")]),
    Case("build_training_set", "nothing to train on", BAD_INPUT, "--batch-uris", lambda w: []),
    Case("build_training_set", "history unreadable", BAD_INPUT, "--history-uri",
         lambda w: ["--history-uri", w.table("ragged")]),
]


def parameter_files(step: str, folder: Path, overrides: dict[str, str]) -> list[str]:
    """Every KFP output file option of the step (and a valid executor input), all pointing into ``folder``."""
    args: list[str] = []
    for param in load_step(step).cli.params:
        option = f"--{param.name.replace('_', '-')}"
        if option in overrides:
            args += [option, overrides[option]]
        elif param.name.endswith("_output_path"):
            args += [option, str(folder / param.name)]
        elif param.name == "executor_input":
            args += ["--executor-input", json.dumps({"outputs": {"outputFile": str(folder / "executor_output.json"),
                                                                 "artifacts": {}}})]
    return args


def listing(uri: str) -> dict[str, str] | None:
    """Every object under ``uri`` with its sha256 (None where it cannot be listed)."""
    try:
        return {item: storage.sha256_hex(storage.read_bytes(item)) for item in storage.list_uris(uri)}
    except Exception:
        return None


@pytest.fixture
def scratch(tmp_path: Path) -> Path:
    return tmp_path


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_bad_input_fails_cleanly(case: Case, world: World, use_s3, iam_s3: SeaweedServer, scratch: Path,
                                 monkeypatch: pytest.MonkeyPatch):
    kfp_files = scratch / "kfp"
    kfp_files.mkdir()
    outputs = {}
    for option in OUTPUT_OPTIONS.get(case.step, ("--output-dir",)):
        if option in case.outputs:
            outputs[option] = case.outputs[option].replace("{bad}", world.path("bad"))
        elif case.key:
            outputs[option] = iam_s3.uri(f"out/{scratch.name}/{option.strip('-')}")
        else:
            outputs[option] = str(scratch / option.strip("-"))
    kfp_overrides = case.kfp(world) if case.kfp else {}
    args = [*case.args(world), *(a for pair in outputs.items() for a in pair),
            *parameter_files(case.step, kfp_files, kfp_overrides)]
    # outputs the case replaced (an existing registry...) and inputs it must not touch: unchanged afterwards
    watched = [outputs[option] for option in case.outputs if option in outputs]
    watched += [case.preserved(world)] if case.preserved else []
    before = {uri: listing(uri) for uri in watched}
    environment = monkeypatch.context()
    patch = environment.__enter__()
    for name, value in case.env.items():
        patch.setenv(name, value)
    if case.env:
        fresh_clients()

    if case.unprivileged:
        done = subprocess.run([*WITHOUT_DAC_OVERRIDE, *step_command(case.step, *args)], env=step_env(),
                              cwd=scratch, capture_output=True, text=True, timeout=120)
        code, stderr = done.returncode, done.stderr
    else:
        if case.key:
            use_s3(iam_s3, access_key=f"battery-{case.key}", secret_key=f"battery-{case.key}-secret")
        result = run_in_process(case.step, *args)
        code, stderr = result.exit_code, result.stderr
        if case.key:
            use_s3(iam_s3)  # the admin key, to look at what is there
    environment.__exit__(None, None, None)  # the S3 settings as they were
    if case.env:
        fresh_clients()

    assert code == case.code, stderr
    line = the_error_line(stderr)
    assert stderr.count("\n") == 1, f"more than the error line on stderr:\n{stderr}"
    if case.code == USAGE:  # click's own wording: "error: Invalid value for '--opt': ..."
        assert case.option in line, line
    else:
        assert line.startswith(f"error: {case.option}: "), line
    assert sorted(p.name for p in kfp_files.iterdir()) == []
    for path in kfp_overrides.values():
        assert not path.startswith("/") or not Path(path).is_file(), f"{path} was written"
    for option, uri in outputs.items():
        if option not in case.outputs:
            assert storage.list_uris(uri) == [], f"{option} has objects after a failure"
    for uri in watched:
        assert listing(uri) == before[uri], f"{uri} changed after a failure"


def test_the_battery_covers_every_step_and_enough_cases():
    steps = {p.parent.name for p in Path(__file__).resolve().parents[2].glob("components/*/main.py")}
    assert {case.step for case in CASES} == steps
    assert len(CASES) >= 120
    assert len({case.id for case in CASES}) == len(CASES)
