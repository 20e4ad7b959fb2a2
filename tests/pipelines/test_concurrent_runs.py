"""Four training pipelines at once in one pipeline root and one registry: per-run artifact folders keep their
objects apart, and
the registry's conditional writes give every approved model its own complete version and lose no promotion."""
import subprocess
import sys
from pathlib import Path

from mlops_runtime import outputs, storage
from mlops_runtime.registry import ModelRegistry
from tests.support import REPO

RUNS = 4
RUN_TIMEOUT_S = 900


def test_four_concurrent_training_runs_do_not_clobber_each_other(built_images, s3_prefix, tmp_path):
    def start(seed: int) -> subprocess.Popen:
        command = [sys.executable, str(REPO / "pipelines" / "training.py"), "run-local", "--specs-dir",
                   str(built_images.specs_dir), "--pipeline-root", str(tmp_path / "root"), "--no-cache",
                   "--registry-uri", f"{s3_prefix}/registry", "--random-state", str(seed), "--threshold", "0.5"]
        return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    processes = [start(seed) for seed in range(1, RUNS + 1)]
    results = [process.communicate(timeout=RUN_TIMEOUT_S) for process in processes]
    for process, (stdout, stderr) in zip(processes, results, strict=True):
        assert process.returncode == 0, stdout[-3000:] + stderr
    summaries = [dict(line.split(": ", 1) for line in stdout.splitlines() if ": " in line) for stdout, _ in results]

    # Each run wrote under its own run id, and every step's folder there is complete and intact.
    run_folders = {Path(summary["model_uri"]).parents[2] for summary in summaries}  # <run>/train/model/model.skops
    assert len(run_folders) == RUNS
    for run in run_folders:
        for artifact in ("load-data/data", "split/splits", "train/model", "evaluate/metrics"):
            outputs.verify_published(str(run / artifact))

    # Four different models (different seeds), four complete versions, one pointer moved four times.
    registry = ModelRegistry(f"{s3_prefix}/registry", "classifier")
    assert all(summary["promoted"] == "true" for summary in summaries)
    assert sorted(summary["registered_uri"] for summary in summaries) == [
        registry.version_uri(version) for version in registry.versions()]
    assert registry.versions() == list(range(1, RUNS + 1))
    for version in registry.versions():
        entry = registry.entry(version)
        assert storage.sha256_hex(storage.read_bytes(entry["model_uri"])) == entry["model_sha256"]
    pointer = registry.production().pointer
    assert pointer["generation"] == RUNS  # no promotion was lost to a concurrent one
    assert pointer["version"] in registry.versions()
