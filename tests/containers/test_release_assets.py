"""The release asset (scripts/release_assets.py, run by .github/workflows/release.yml) from this session's
pinned specs: a reproducible tarball whose specs load with kfp's public API and name the pushed digests."""
from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from pathlib import Path

from kfp import components

from tests.support import REPO, step_names

SCRIPT = REPO / "scripts" / "release_assets.py"


def make_assets(pin_dir: Path, build_json: Path, output_dir: Path, tag: str = "v0.1.0"):
    return subprocess.run([sys.executable, str(SCRIPT), "--pin-dir", str(pin_dir), "--build-json", str(build_json),
                           "--tag", tag, "--output-dir", str(output_dir)], capture_output=True, text=True, check=False)


def test_the_tarball_holds_every_pinned_spec_and_is_reproducible(built_images, tmp_path):
    build_json = tmp_path / "pinned-specs.json"
    build_json.write_text(json.dumps({"images": built_images.images, "version": built_images.version}))
    first, second = tmp_path / "first", tmp_path / "second"
    for folder in (first, second):
        folder.mkdir()
        done = make_assets(built_images.specs_dir, build_json, folder)
        assert done.returncode == 0, done.stderr
    tarball = first / "pinned-specs-v0.1.0.tar.gz"
    assert tarball.read_bytes() == (second / "pinned-specs-v0.1.0.tar.gz").read_bytes()

    with tarfile.open(tarball) as archive:
        archive.extractall(tmp_path / "unpacked", filter="data")
    unpacked = tmp_path / "unpacked"
    assert json.loads((unpacked / "pinned-specs.json").read_text())["images"] == built_images.images
    for step in step_names():
        component = components.load_component_from_file(str(unpacked / "pinned-specs" / step / "component.yaml"))
        assert component.component_spec.implementation.container.image == built_images.images[step]


def test_an_unpinned_spec_is_refused_and_nothing_written(tmp_path):
    spec = tmp_path / "specs" / "train" / "component.yaml"
    spec.parent.mkdir(parents=True)
    spec.write_text((REPO / "components" / "train" / "component.yaml").read_text())  # tag only, no digest
    build_json = tmp_path / "build.json"
    build_json.write_text("{}")
    done = make_assets(tmp_path / "specs", build_json, tmp_path)
    assert done.returncode == 3
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("error: --pin-dir: ")
    assert not list(tmp_path.glob("*.tar.gz*"))
