"""Which images a build makes: each one's labels from its own last commit, its content hash and tag, and
whether the registry already holds it (then it is neither rebuilt nor pushed)."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

from imagebuild import content

RUNTIME = "runtime"
# What every image is built from besides its own directory (a step's component.yaml is not in its image).
SHARED_INPUTS = ["components/mlops_runtime", "docker-bake.hcl", "VERSION"]


@dataclass
class Image:
    target: str
    context: Path
    revision: str = ""
    epoch: int = 0
    content_hash: str = ""
    digest: str = ""            # in the registry, when found there or pushed
    built: bool = False
    attestations: dict[str, str] = field(default_factory=dict)

    @property
    def content_tag(self) -> str:
        return f"content-{self.content_hash[:32]}"


def git_paths(target: str) -> list[str]:
    if target == RUNTIME:
        return SHARED_INPUTS
    return [f"components/{target}", f":(exclude)components/{target}/component.yaml", *SHARED_INPUTS]


def created(epoch: int) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if epoch else ""


def overrides(images: dict[str, Image]) -> dict:
    """A bake file (JSON) giving each target the labels and SOURCE_DATE_EPOCH of its own commit."""
    targets = {}
    for name, image in images.items():
        labels = {"org.opencontainers.image.revision": image.revision,
                  "org.opencontainers.image.created": created(image.epoch)}
        args = {"SOURCE_DATE_EPOCH": str(image.epoch)}
        if name != RUNTIME:
            args["MLOPS_GIT_REVISION"] = image.revision
        targets[name] = {"labels": {k: v for k, v in labels.items() if v}, "args": args}
    return {"target": targets}


def plan(root: Path, steps: list[str], *, base_image: str, render) -> dict[str, Image]:
    """``render(override)`` returns bake's targets (``bake --print``) with that override file applied."""
    images = {RUNTIME: Image(RUNTIME, root / "components" / "mlops_runtime")}
    images.update({s: Image(s, root / "components" / s) for s in steps})
    for image in images.values():
        image.revision, image.epoch = content.revision(root, git_paths(image.target))
    rendered = render(overrides(images))
    base = content.base_image_id(base_image)
    runtime = images[RUNTIME]
    runtime.content_hash = content.image_hash(rendered[RUNTIME], {"context": content.tree_hash(runtime.context)}, base)
    for s in steps:
        contexts = {"context": content.tree_hash(images[s].context), RUNTIME: runtime.content_hash}
        images[s].content_hash = content.image_hash(rendered[s], contexts, base)
    return images


def with_content_tags(override: dict, images: dict[str, Image], tags: dict[str, list[str]], *, only: bool) -> dict:
    """``override`` plus each step's tags: ``content-<hash>``, after bake's own unless ``only``."""
    for name, image in images.items():
        if name in tags:
            content_tag = tags[name][0].rsplit(":", 1)[0] + ":" + image.content_tag
            override["target"][name]["tags"] = [content_tag] if only else [*tags[name], content_tag]
    return override
