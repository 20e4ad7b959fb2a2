#!/usr/bin/env python3
"""Wall time of build.py --push in three situations, on a copy of this tree (the checkout is not touched)
and a registry namespace of its own:

1. first push of every image (layers from the engine's build cache when it has them);
2. a no-op build: nothing changed, so every image is found by its content tag and nothing is built or pushed;
3. a one-component change: one step's main.py gains a line; only that image is built and pushed.

    python benchmarks/build_timing.py [--base-image IMAGE] [--registry 127.0.0.1:5000] [--step train]

Prints one JSON line per build: seconds, the images built and the images skipped.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parents[1]
IGNORED = shutil.ignore_patterns(".venv", "__pycache__", ".pytest_cache", ".ruff_cache", "results")


def timed_build(tree: Path, registry: str, base_image: str) -> dict:
    command = [sys.executable, str(tree / "build.py"), "--registry", registry, "--base-image", base_image,
               "--push", "--no-pin", "--progress", "quiet"]
    started = time.perf_counter()
    done = subprocess.run(command, cwd=tree, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise click.ClickException(f"build.py failed: {done.stderr[-2000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return {"seconds": round(seconds, 1), "built": result["built"], "skipped": result["skipped"]}


@click.command()
@click.option("--registry", default="127.0.0.1:5000", show_default=True)
@click.option("--base-image", default="127.0.0.1:5000/mlops-components/python-base:3.11-bookworm", show_default=True)
@click.option("--step", default="train", show_default=True, help="The step whose main.py changes in build 3.")
def main(registry: str, base_image: str, step: str) -> None:
    namespace = f"{registry}/build-timing-{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory(prefix="build-timing-") as scratch:
        tree = Path(scratch) / "tree"
        shutil.copytree(ROOT, tree, ignore=IGNORED, symlinks=True)
        for name, change in (("first push", None), ("no-op", None), (f"one component ({step})", step)):
            if change:
                with (tree / "components" / change / "main.py").open("a") as main_py:
                    main_py.write("# a one-line change\n")
            click.echo(json.dumps({"build": name, **timed_build(tree, namespace, base_image)}))


if __name__ == "__main__":
    main()
