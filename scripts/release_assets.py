#!/usr/bin/env python3
"""The release asset of pinned specs: pinned-specs-<tag>.tar.gz, made from build.py's --pin-dir.

    python scripts/release_assets.py --pin-dir pinned-specs --build-json pinned-specs.json --tag v0.1.0

The tarball holds pinned-specs/<step>/component.yaml for every step and pinned-specs.json (build.py's
result), with fixed owners and times, so the same specs always give the same bytes. A spec whose image
is not pinned by digest alone (``repo@sha256:…``) is refused: exit 3 and one line on stderr.
"""
from __future__ import annotations

import gzip
import io
import re
import sys
import tarfile
from pathlib import Path

import click

PINNED = re.compile(r"^\s*image:\s*(?P<image>[^\s:@]+(?::\d+)?(?:/[^\s:@]+)+@sha256:[0-9a-f]{64})\s*$", re.MULTILINE)
IMAGE_LINE = re.compile(r"^\s*image:\s*(\S+)", re.MULTILINE)


def _add(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 0, 0o644
    archive.addfile(info, io.BytesIO(data))


def make_tarball(pin_dir: Path, build_json: Path, target: Path) -> list[str]:
    """Write the tarball; return the pinned images, in step order."""
    specs = sorted(pin_dir.glob("*/component.yaml"))
    if not specs:
        raise click.BadParameter(f"no <step>/component.yaml below {pin_dir}", param_hint="--pin-dir")
    images = []
    for spec in specs:
        text = spec.read_text(encoding="utf-8")
        pinned = PINNED.search(text)
        if pinned is None:
            found = IMAGE_LINE.search(text)
            raise click.BadParameter(f"{spec}: image {found[1] if found else '(none)'} is not pinned as repo@sha256:…",
                                     param_hint="--pin-dir")
        images.append(pinned["image"])
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for spec in specs:
            _add(archive, f"pinned-specs/{spec.parent.name}/component.yaml", spec.read_bytes())
        _add(archive, "pinned-specs.json", build_json.read_bytes())
    partial = target.with_name(target.name + ".partial")
    partial.write_bytes(gzip.compress(buffer.getvalue(), mtime=0))
    partial.replace(target)
    return images


@click.command()
@click.option("--pin-dir", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--build-json", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="build.py's JSON result.")
@click.option("--tag", required=True, help="The release tag, e.g. v0.1.0.")
@click.option("--output-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("."), show_default=True)
def main(pin_dir: Path, build_json: Path, tag: str, output_dir: Path) -> None:
    if not re.fullmatch(r"v\d+\.\d+\.\d+", tag):
        raise click.BadParameter(f"'{tag}' is not v<MAJOR.MINOR.PATCH>", param_hint="--tag")
    target = output_dir / f"pinned-specs-{tag}.tar.gz"
    try:
        images = make_tarball(pin_dir, build_json, target)
    except click.BadParameter as error:
        click.echo(f"error: {error.param_hint}: {error.message}", err=True)
        sys.exit(3)
    click.echo(f"{target}: {len(images)} pinned specs")


if __name__ == "__main__":
    main()
