"""Two uncached builds of the same tree give byte-identical image digests (issue 10: reproducible).

build.py --no-cache rebuilds every layer (runtime and step) and pushes; the digests bake reports for the
second build must equal the first's. Pushed under a prefix of its own, so no other test's tags move."""
from __future__ import annotations

import json
import subprocess
import sys

from tests.support import BASE_IMAGE, REGISTRY, REPO

BUILD_TIMEOUT_S = 1800


def uncached_build(specs_dir) -> dict:
    command = [sys.executable, str(REPO / "build.py"), "train", "--registry", f"{REGISTRY}/reproducibility",
               "--base-image", BASE_IMAGE, "--push", "--pin-dir", str(specs_dir), "--no-cache", "--progress", "quiet"]
    done = subprocess.run(command, cwd=REPO, stdout=subprocess.PIPE, text=True, timeout=BUILD_TIMEOUT_S, check=False)
    assert done.returncode == 0, "build.py failed (its log is in the captured stderr)"
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_two_uncached_builds_give_the_same_digest(tmp_path):
    first = uncached_build(tmp_path / "first")
    second = uncached_build(tmp_path / "second")
    assert first["built"] == second["built"] == ["train"]
    assert first["images"]["train"] == second["images"]["train"]
    assert first["images"]["train"].split("@")[1].startswith("sha256:")
