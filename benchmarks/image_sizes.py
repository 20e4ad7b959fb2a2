#!/usr/bin/env python3
"""Sizes of pushed images, measured from the registry: per image its compressed size (the layer blobs as
pushed, what a node downloads) and uncompressed size (the layers' tar streams, what it stores), and the
same for its largest layer (the shared dependency layer) and for the base image's layers.

    python benchmarks/image_sizes.py 127.0.0.1:5000/mlops-components/train@sha256:... [more images]
    python benchmarks/image_sizes.py --specs-dir DIR        # every image pinned in build.py's --pin-dir

Prints a Markdown table and, with --json FILE, writes the numbers. Shared layers are read once.
"""
from __future__ import annotations

import json
import re
import sys
import zlib
from pathlib import Path

import click

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from imagebuild.registry import Reference, Registry  # noqa: E402

MB = 1_000_000
_uncompressed: dict[str, int] = {}


def uncompressed_size(registry: Registry, name: str, digest: str) -> int:
    """Bytes of the layer's tar stream (gzip inflated on the fly; nothing is written)."""
    if digest not in _uncompressed:
        blob = registry.blob(name, digest)
        inflater = zlib.decompressobj(wbits=31)
        total = 0
        for start in range(0, len(blob), 1 << 20):
            total += len(inflater.decompress(blob[start:start + (1 << 20)]))
        _uncompressed[digest] = total + len(inflater.flush())
    return _uncompressed[digest]


def measure(text: str, base_layers: int) -> dict:
    reference = Reference.parse(text)
    registry = Registry(reference.host)
    found = registry.manifest(reference.name, reference.digest or reference.tag or "latest")
    if found is None:
        raise click.ClickException(f"{text}: not in the registry")
    layers = json.loads(found[0])["layers"]
    sizes = [(layer["size"], uncompressed_size(registry, reference.name, layer["digest"])) for layer in layers]
    base = sizes[:base_layers]
    largest = max(sizes[base_layers:], key=lambda pair: pair[1])
    return {"image": text, "layers": len(sizes),
            "compressed": sum(c for c, _ in sizes), "uncompressed": sum(u for _, u in sizes),
            "base_compressed": sum(c for c, _ in base), "base_uncompressed": sum(u for _, u in base),
            "dependency_layer_compressed": largest[0], "dependency_layer_uncompressed": largest[1]}


def pinned_images(specs_dir: Path) -> list[str]:
    return sorted(re.search(r"^\s*image:\s*(\S+)", path.read_text(), re.MULTILINE).group(1)
                  for path in specs_dir.glob("*/component.yaml"))


@click.command()
@click.argument("images", nargs=-1)
@click.option("--specs-dir", type=click.Path(file_okay=False, path_type=Path), help="build.py's --pin-dir.")
@click.option("--base-layers", type=click.IntRange(0, 50), default=3, show_default=True,
              help="How many of each image's first layers are the base image's (the provisioned base has 3).")
@click.option("--json", "json_file", type=click.Path(dir_okay=False, path_type=Path), help="Write the numbers here.")
def main(images: tuple[str, ...], specs_dir: Path | None, base_layers: int, json_file: Path | None) -> None:
    refs = list(images) + (pinned_images(specs_dir) if specs_dir else [])
    if not refs:
        raise click.UsageError("give images or --specs-dir")
    rows = [measure(ref, base_layers) for ref in refs]
    click.echo("| image | layers | compressed MB | uncompressed MB | base (c / u) MB | dependency layer (c / u) MB |")
    click.echo("|---|---|---|---|---|---|")
    for row in rows:
        name = row["image"].split("/")[-1].split("@")[0]
        click.echo(f"| {name} | {row['layers']} | {row['compressed'] / MB:.1f} | {row['uncompressed'] / MB:.1f} | "
                   f"{row['base_compressed'] / MB:.1f} / {row['base_uncompressed'] / MB:.1f} | "
                   f"{row['dependency_layer_compressed'] / MB:.1f} / {row['dependency_layer_uncompressed'] / MB:.1f} |")
    if json_file:
        json_file.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
