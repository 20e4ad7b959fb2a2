"""deploy under races: threads that all read production before any writes, and processes at once."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from gate_fixtures import Candidate, assert_complete, pointer, registry_files
from step_checks import COMPONENTS

from mlops_runtime import promotion
from mlops_runtime.registry import ModelRegistry


def race(registry: str, racers: list[Candidate], compare: bool, monkeypatch) -> list[dict]:
    """Run deploys in threads that all read production before any of them writes: a guaranteed race."""
    barrier = threading.Barrier(len(racers), timeout=60)
    waited = threading.local()
    read_production = ModelRegistry.production

    def production_then_wait(self):
        seen = read_production(self)
        if not getattr(waited, "done", False):
            waited.done = True
            barrier.wait()
        return seen

    monkeypatch.setattr(ModelRegistry, "production", production_then_wait)
    loaded = [promotion.read_candidate(who.model_uri, who.metrics_uri) for who in racers]
    gate = promotion.Gate("accuracy", 0.9, compare_to_production=compare)
    with ThreadPoolExecutor(len(racers)) as pool:
        futures = [pool.submit(promotion.deploy, c, ModelRegistry(registry, "classifier"), gate)
                   for c in loaded]
        return [future.result(timeout=120) for future in futures]


def test_racing_challengers_leave_the_best_in_production(base, candidate, monkeypatch):
    registry = f"{base}/registry"
    racers = [candidate(f"c{i}", errors=errors, random_state=i) for i, errors in enumerate((4, 1, 3, 2))]
    results = race(registry, racers, True, monkeypatch)
    production = pointer(registry)
    assert production["model_sha256"] == racers[1].sha256  # one error: the best
    assert results[1]["promoted"] is True
    # Each successful promotion replaced exactly the pointer it had read: none was lost.
    assert production["generation"] == sum(r["promoted"] for r in results)
    assert len(assert_complete(registry)) == len(racers)  # every racer registered before the race was decided


def test_racing_promotions_are_all_applied_in_turn(base, candidate, monkeypatch):
    registry = f"{base}/registry"
    racers = [candidate(f"c{i}", errors=i + 1, random_state=i) for i in range(4)]
    results = race(registry, racers, False, monkeypatch)
    assert [r["promoted"] for r in results] == [True] * 4
    assert pointer(registry)["generation"] == 4
    assert pointer(registry)["previous_version"] is not None
    assert assert_complete(registry) == [1, 2, 3, 4]


def test_racing_deploys_of_one_model_make_one_version(base, candidate, monkeypatch):
    registry = f"{base}/registry"
    who = candidate("m", errors=5)
    results = race(registry, [who] * 4, False, monkeypatch)
    [version] = assert_complete(registry)
    assert {r["registered_uri"] for r in results} == {f"{registry}/classifier/{version}"}
    assert all(r["promoted"] for r in results)
    assert pointer(registry)["generation"] == 1
    # The losers removed their copies: only their version claims remain.
    leftovers = [name for name in registry_files(registry) if not name.startswith(f"classifier/{version}/")]
    assert all(name.endswith("/.claim") for name in leftovers if name.split("/")[1].isdigit())


@pytest.mark.parametrize("base", ["s3"], indirect=True)  # the threads above race on both; processes cost ~10 s each
def test_racing_processes(base, candidate):
    registry = f"{base}/registry"
    racers = [candidate(f"c{i}", errors=errors, random_state=i) for i, errors in enumerate((3, 1, 2))]
    env = {key: value for key, value in os.environ.items() if key != "MLOPS_LOG_LEVEL"}
    processes = [subprocess.Popen([sys.executable, str(COMPONENTS / "deploy" / "main.py"), "--model-uri", who.model_uri,
                                   "--metrics-uri", who.metrics_uri, "--registry-uri", registry,
                                   "--compare-to-production"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True, env=env) for who in racers]
    results = []
    for process in processes:
        stdout, stderr = process.communicate(timeout=120)
        assert process.returncode == 0, stderr
        results.append(json.loads(stdout))
    assert pointer(registry)["model_sha256"] == racers[1].sha256
    assert pointer(registry)["generation"] == sum(r["promoted"] for r in results)
    assert assert_complete(registry)
