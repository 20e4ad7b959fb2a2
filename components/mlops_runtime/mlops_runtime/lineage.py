"""Lineage recorded with every output: which step, which version and image, which parameters and inputs."""
from __future__ import annotations

import os
from typing import Any

from . import __version__


def input_record(label: str, uri: str, data: bytes) -> dict[str, Any]:
    from .storage import sha256_hex

    return {"name": label, "uri": uri, "sha256": sha256_hex(data), "bytes": len(data)}


def lineage(component: str, parameters: dict[str, Any], inputs: list[dict[str, Any]]) -> dict[str, Any]:
    """A deterministic lineage record (no timestamps, so reruns give identical bytes)."""
    return {
        "component": component,
        "component_version": __version__,
        "image": os.environ.get("MLOPS_IMAGE") or None,
        "image_digest": os.environ.get("MLOPS_IMAGE_DIGEST") or None,
        "git_revision": os.environ.get("MLOPS_GIT_REVISION") or None,
        "parameters": parameters,
        "inputs": inputs,
    }
