#!/usr/bin/env python3
"""Build the step images with `docker buildx bake`, push them, and pin component.yaml to what was pushed."""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import click

from imagebuild import content, plan, publish
from imagebuild.registry import RegistryError

ROOT = Path(__file__).resolve().parent
COMPONENTS = ROOT / "components"
BAKE_FILE = ROOT / "docker-bake.hcl"
RUNTIME_DIR = "mlops_runtime"
IMAGE_NAMESPACE = "mlops-components"
DEFAULT_BASE = "python:3.11-slim"  # docker-bake.hcl's BASE_IMAGE default
SEMVER = re.compile(r"^\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?$")
# The one `image:` line of a component.yaml: indentation and key, the value, an optional comment.
IMAGE_LINE = re.compile(r"^(?P<key>[ \t]*image:[ \t]+)(?P<value>[^\s#]+)(?P<rest>[ \t]*(?:#[^\r\n]*)?)\r?$",
                        re.MULTILINE)


class BuildError(Exception):
    """A failure reported as one `error:` line; ``code`` is the exit status (2 usage, 1 otherwise)."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def discover_steps(components: Path = COMPONENTS) -> list[str]:
    """Every components/<step>/ directory that holds a component.yaml (the runtime is not a step)."""
    return sorted(p.parent.name for p in components.glob("*/component.yaml") if p.parent.name != RUNTIME_DIR)


def read_version(root: Path = ROOT) -> str:
    version = (root / "VERSION").read_text().strip()
    if not SEMVER.match(version):
        raise BuildError(f"VERSION: '{version}' is not a semantic version (MAJOR.MINOR.PATCH)")
    return version


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def git_sha() -> str:
    """The short commit sha, with ``-dirty`` when the build inputs differ from that commit; '' outside git."""
    sha = _git("rev-parse", "--short", "HEAD")
    if not sha:
        return ""
    changes = _git("status", "--porcelain", "--", "components", "docker-bake.hcl", "VERSION")
    return f"{sha}-dirty" if changes else sha


def git_source() -> str:
    """Where the source lives, for the org.opencontainers.image.source label.

    The origin remote as an https URL; else the GitHub Actions repository; else this checkout (file://).
    """
    url = _git("remote", "get-url", "origin") or ""
    match = re.match(r"^(?:ssh://)?git@([^:/]+)[:/](.+?)(?:\.git)?$", url)
    if match:
        return f"https://{match.group(1)}/{match.group(2)}"
    if url and "://" not in url:  # a local path: a clone of a clone on this machine
        return Path(url).resolve().as_uri()
    if url:
        return re.sub(r"^(https?://)[^@/]+@", r"\1", url).removesuffix(".git")
    if os.environ.get("GITHUB_SERVER_URL") and os.environ.get("GITHUB_REPOSITORY"):
        return f"{os.environ['GITHUB_SERVER_URL']}/{os.environ['GITHUB_REPOSITORY']}"
    return ROOT.as_uri()


def repository(registry: str, step: str) -> str:
    return f"{registry}/{IMAGE_NAMESPACE}/{step}" if registry else f"{IMAGE_NAMESPACE}/{step}"


def pin_text(text: str, image: str) -> str:
    """``text`` (a component.yaml) with its one ``image:`` value replaced by ``image``; nothing else changes."""
    matches = list(IMAGE_LINE.finditer(text))
    if len(matches) != 1:
        raise BuildError(f"expected exactly one 'image:' line, found {len(matches)}")
    match = matches[0]
    return text[: match.start("value")] + image + text[match.end("value"):]


def pin_spec(source: Path, target: Path, image: str) -> None:
    """Write ``source`` to ``target`` (possibly the same file) with its image pinned, atomically."""
    try:
        pinned = pin_text(source.read_bytes().decode("utf-8"), image)
    except BuildError as error:
        raise BuildError(f"{source}: {error}") from None
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial")
    partial.write_bytes(pinned.encode("utf-8"))
    os.replace(partial, target)


def bake_print(env: dict[str, str], override: dict | None = None) -> dict:
    """docker-bake.hcl's targets as bake renders them (`bake --print`, which builds nothing)."""
    with tempfile.TemporaryDirectory(prefix="mlops-bake-") as scratch:
        command = ["docker", "buildx", "bake", "--file", str(BAKE_FILE)]
        if override is not None:
            (Path(scratch) / "override.json").write_text(json.dumps(override))
            command += ["--file", str(Path(scratch) / "override.json")]
        done = subprocess.run([*command, "--print", "--progress", "quiet"], cwd=ROOT, env=env, capture_output=True,
                              text=True, check=False)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise BuildError(f"docker buildx bake --print failed: {last}")
    return json.loads(done.stdout)["target"]


HELP = f"""Build the images of STEPS (default: every step) with docker buildx bake.

\b
Steps are the components/<step>/ directories holding a component.yaml; each image is
the shared runtime layer (target "runtime", components/mlops_runtime/Dockerfile) plus
the step's main.py, named {IMAGE_NAMESPACE}/<step>, prefixed by --registry when given.

\b
Tags (semantic version from the VERSION file, then the git commit):
  <registry>/{IMAGE_NAMESPACE}/<step>:<VERSION>            e.g. :0.1.0
  <registry>/{IMAGE_NAMESPACE}/<step>:<VERSION>-<sha>      e.g. :0.1.0-1a2b3c4 (git short sha;
                                                       "-dirty" is appended when components/,
                                                       docker-bake.hcl or VERSION differ from it)
  <registry>/{IMAGE_NAMESPACE}/<step>:content-<hash>   hash of all the image is made of

\b
With --push, an image whose content tag is already in the registry is neither built nor
pushed (its version tags are moved to it); the others are built and pushed, and each
pushed image gets its CycloneDX SBOM and SLSA provenance attached as OCI referrers
(verify: python -m imagebuild.attest IMAGE@DIGEST). --no-cache rebuilds everything.

\b
With --push the images go to the registry, and each component.yaml's `image:` line is
pinned to what was pushed: <registry>/{IMAGE_NAMESPACE}/<step>@sha256:<digest> (no tag: kfp.local
compares the reference with the image's RepoDigests, which never hold a tag, and pulls again otherwise).
Only that line changes. By default the files are rewritten in place; --pin-dir DIR
writes copies to DIR/<step>/component.yaml instead and leaves the tree alone.

\b
The bake command is printed on stderr before it runs; the result (version, tags, the
pinned image of each step, the pinned spec files) is printed as one JSON line on stdout.
Exit status: 0 built, 1 docker or bake failed, 2 bad usage (an unknown step...).

\b
Examples:
  python build.py                                    # every step, local images
  python build.py train evaluate --base-image 127.0.0.1:5000/mlops-components/python-base:3.11-bookworm
  python build.py --registry 127.0.0.1:5000 --push --pin-dir /tmp/specs
  python build.py --registry ghcr.io/my-org --push   # pins components/*/component.yaml in place
"""


@click.command(help=HELP, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.argument("steps", nargs=-1)
@click.option("--registry", default="", metavar="HOST[:PORT][/PATH]",
              help="Registry prefix of the image names, e.g. 127.0.0.1:5000 or ghcr.io/my-org.")
@click.option("--base-image", default=None, metavar="IMAGE",
              help="Python 3.11 image the runtime layer starts from (the bake file's default: python:3.11-slim).")
@click.option("--push", is_flag=True, help="Push the images to --registry and pin the component specs.")
@click.option("--pin-dir", type=click.Path(file_okay=False, path_type=Path), default=None, metavar="DIR",
              help="With --push: write the pinned specs to DIR/<step>/component.yaml instead of in place.")
@click.option("--pin/--no-pin", default=True, show_default=True, help="With --push: pin the component specs.")
@click.option("--source", default=None, metavar="URL",
              help="org.opencontainers.image.source label (default: the git origin remote as https).")
@click.option("--no-cache", is_flag=True, help="Build every layer again (bake --no-cache).")
@click.option("--progress", type=click.Choice(["auto", "plain", "tty", "quiet"]), default="auto", show_default=True,
              help="Build output style (bake --progress).")
@click.option("--dry-run", is_flag=True, help="Print the bake command and exit without building.")
def cli(steps: tuple[str, ...], registry: str, base_image: str | None, push: bool, pin_dir: Path | None, pin: bool,
        source: str | None, no_cache: bool, progress: str, dry_run: bool) -> None:
    try:
        result = build(list(steps), registry=registry, base_image=base_image, push=push, pin_dir=pin_dir, pin=pin,
                       source=source, no_cache=no_cache, progress=progress, dry_run=dry_run)
    except BuildError as error:
        click.echo(f"error: {' '.join(str(error).split())}", err=True)
        sys.exit(error.code)
    if result is not None:
        click.echo(json.dumps(result, sort_keys=True))


def build(steps: list[str], *, registry: str = "", base_image: str | None = None, push: bool = False,
          pin_dir: Path | None = None, pin: bool = True, source: str | None = None, no_cache: bool = False,
          progress: str = "auto", dry_run: bool = False) -> dict | None:
    known = discover_steps()
    unknown = [s for s in steps if s not in known]
    if unknown:
        raise BuildError(f"unknown step(s): {', '.join(unknown)} (steps: {', '.join(known) or 'none'})", code=2)
    steps = list(dict.fromkeys(steps)) or known
    if not steps:
        raise BuildError(f"no step found under {COMPONENTS} (a step is a directory with a component.yaml)", code=2)
    missing = [s for s in steps if not (COMPONENTS / s / "Dockerfile").is_file()]
    if missing:
        raise BuildError(f"no Dockerfile in components/{', components/'.join(missing)}", code=2)
    registry = registry.rstrip("/")
    if registry != registry.lower():
        raise BuildError(f"--registry: '{registry}' must be lower case (a Docker reference rule)", code=2)
    if push and not registry:
        raise BuildError("--push needs --registry (where to push)", code=2)
    if pin_dir is not None and not push:
        raise BuildError("--pin-dir needs --push (specs are pinned to pushed digests)", code=2)
    if pin_dir is not None and not pin:
        raise BuildError("--pin-dir contradicts --no-pin", code=2)

    version = read_version()
    variables = {"REGISTRY": registry, "VERSION": version, "GIT_SHA": git_sha(),
                 "SOURCE": git_source() if source is None else source}
    if base_image:
        variables["BASE_IMAGE"] = base_image
    if shutil.which("docker") is None:
        raise BuildError("docker not found on PATH")
    env = {**os.environ, **variables}

    absent = [s for s in steps if s not in bake_print(env)]
    if absent:
        raise BuildError(f"no target for {', '.join(absent)} in {BAKE_FILE.name}: add it to steps() there", code=2)
    images = plan.plan(ROOT, steps, base_image=base_image or DEFAULT_BASE, render=lambda o: bake_print(env, o))
    tags = {s: [f"{repository(registry, s)}:{version}"]
            + ([f"{repository(registry, s)}:{version}-{variables['GIT_SHA']}"] if variables["GIT_SHA"] else [])
            for s in steps}
    if push and not no_cache and not dry_run:
        in_registry(publish.find_in_registry, registry, images, steps)
    to_build = [s for s in steps if not images[s].digest]
    # A push names only the content tag: the version tags are then moved in the registry to the digest
    # found under it, so a concurrent build on the same engine cannot swap the image behind a name.
    override = plan.with_content_tags(plan.overrides(images), images, tags, only=push)

    with tempfile.TemporaryDirectory(prefix="mlops-build-") as scratch:
        metadata_file, override_file = Path(scratch) / "metadata.json", Path(scratch) / "override.json"
        override_file.write_text(json.dumps(override))
        command = ["docker", "buildx", "bake", "--file", str(BAKE_FILE.relative_to(ROOT)), "--file", str(override_file),
                   "--metadata-file", str(metadata_file), "--progress", progress]
        command += ["--no-cache"] if no_cache else []
        command += ["--push"] if push else []
        command += to_build
        shown = " ".join(f"{name}={shlex.quote(value)}" for name, value in variables.items())
        click.echo(f"+ cd {shlex.quote(str(ROOT))} && {shown} {shlex.join(command)}", err=True)
        if dry_run:
            return None
        if to_build:
            for image in images.values():  # BuildKit copies file times into layers
                content.fix_times(image.context)
            done = subprocess.run(command, cwd=ROOT, env=env, check=False)
            if done.returncode != 0:
                raise BuildError(f"docker buildx bake failed with exit status {done.returncode} (its output is above)")
            metadata = json.loads(metadata_file.read_text())
        else:
            click.echo("every image is already in the registry: nothing to build or push", err=True)
            metadata = {}
    for s in to_build:
        images[s].built = True
        images[s].digest = metadata.get(s, {}).get("containerimage.digest", "")
    if push and to_build:
        in_registry(publish.find_in_registry, registry, images, to_build)

    result: dict = {"version": version, "git_sha": variables["GIT_SHA"], "pushed": push, "tags": tags,
                    "images": {s: tags[s][0] for s in steps}, "specs": {},
                    "built": to_build, "skipped": [s for s in steps if s not in to_build],
                    "content_tags": {s: images[s].content_tag for s in steps}, "attestations": {}}
    if not push:
        return result
    for s in steps:
        if not images[s].digest.startswith("sha256:"):
            raise BuildError(f"bake reported no pushed digest for {s}; cannot pin its component.yaml")
        result["images"][s] = f"{repository(registry, s)}@{images[s].digest}"
    try:
        publish.retag(registry, images, tags)
        result["attestations"] = publish.attach_attestations(registry, images, steps, base_image or DEFAULT_BASE,
                                                             variables["SOURCE"], metadata)
    except RegistryError as error:
        raise BuildError(f"registry {registry}: {error}") from None
    if pin:
        for s in steps:
            source_spec = COMPONENTS / s / "component.yaml"
            target_spec = pin_dir / s / "component.yaml" if pin_dir is not None else source_spec
            pin_spec(source_spec, target_spec, result["images"][s])
            result["specs"][s] = str(target_spec.resolve())
            click.echo(f"pinned {target_spec}: image: {result['images'][s]}", err=True)
    return result


def in_registry(call, registry: str, *args):
    try:
        return call(registry, *args)
    except RegistryError as error:
        raise BuildError(f"registry {registry}: {error}") from None


if __name__ == "__main__":
    cli()
