"""The registry side of build.py: find images already pushed (by content tag), move the version tags to
them, and attach each image's SBOM and provenance."""
from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

from imagebuild import attest, content, plan
from imagebuild.registry import Reference, Registry, digest_of

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "components" / "mlops_runtime" / "requirements.lock"
IMAGE_NAMESPACE = "mlops-components"


def repository(registry: str, step: str) -> str:
    return f"{registry}/{IMAGE_NAMESPACE}/{step}" if registry else f"{IMAGE_NAMESPACE}/{step}"


def _head() -> str:
    done = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False)
    return done.stdout.strip() if done.returncode == 0 else ""


def find_in_registry(registry: str, images: dict[str, plan.Image], steps: list[str]) -> None:
    """Record the digest of every step whose content tag the registry already has (it is not rebuilt)."""
    host, _, prefix = registry.partition("/")
    client = Registry(host)
    for s in steps:
        found = client.manifest(f"{prefix}/{IMAGE_NAMESPACE}/{s}".lstrip("/"), images[s].content_tag)
        if found is not None:
            images[s].digest = digest_of(found[0])


def retag(registry: str, images: dict[str, plan.Image], tags: dict[str, list[str]]) -> None:
    """Point the version tags of every image at its digest (a manifest PUT; no layer moves)."""
    for s, image in images.items():
        if s not in tags:
            continue
        reference = Reference.parse(f"{repository(registry, s)}@{image.digest}")
        client = Registry(reference.host)
        data, media_type = client.manifest(reference.name, image.digest)
        for tag in tags[s]:
            current = client.manifest(reference.name, tag.rsplit(":", 1)[1])
            if current is None or digest_of(current[0]) != image.digest:
                client.put_manifest(reference.name, tag.rsplit(":", 1)[1], data, media_type)


def attach_attestations(registry: str, images: dict[str, plan.Image], steps: list[str], base_image: str,
                        source: str, metadata: dict) -> dict:
    """SBOM and provenance referrers for every step image (pushed now or found), unless already attached."""
    lock = LOCK.read_bytes()
    commit = _head()
    base_id = content.base_image_id(base_image)
    found = {}
    for s in steps:
        reference = Reference.parse(f"{repository(registry, s)}@{images[s].digest}")
        if {attest.SBOM_TYPE, attest.PROVENANCE_TYPE} <= set(attest.attached(reference)):
            found[s] = attest.attached(reference)
            continue
        sbom = attest.image_file(str(reference), attest.SBOM_PATH)
        target = bake_target_record(metadata, s)
        statement = attest.provenance(reference, target=target, content_hash=images[s].content_hash,
                                      revision=images[s].revision, commit=commit, source=source, base_image=base_image,
                                      base_image_id=base_id, lock_sha256=hashlib.sha256(lock).hexdigest())
        found[s] = attest.attach(reference, sbom, statement)
    return found


def bake_target_record(metadata: dict, step: str) -> dict:
    """What bake reported for ``step`` (its build reference and digests), for the provenance."""
    record = metadata.get(step, {})
    return {"name": step, **{k: v for k, v in record.items() if k in ("buildx.build.ref", "containerimage.digest")}}
