"""Attestations of a pushed image, attached as OCI referrers (artifacts whose ``subject`` is the image):
the CycloneDX SBOM of its locked environment (written by cyclonedx-bom inside the build, at
/opt/mlops/sbom.cdx.json) and an in-toto SLSA v1 provenance statement of how build.py made it.

Verify:  python -m imagebuild.attest 127.0.0.1:5000/mlops-components/train@sha256:...
"""
from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile

from imagebuild.registry import Reference, Registry, RegistryError

SBOM_TYPE = "application/vnd.cyclonedx+json"
PROVENANCE_TYPE = "application/vnd.in-toto+json"
SBOM_PATH = "/opt/mlops/sbom.cdx.json"
SLSA_PROVENANCE = "https://slsa.dev/provenance/v1"


def image_file(image: str, path: str) -> bytes:
    """One file of a local image, read without running it (docker create + docker cp)."""
    created = subprocess.run(["docker", "create", image], capture_output=True, text=True, check=False)
    if created.returncode != 0:
        raise RegistryError(f"docker create {image}: {created.stderr.strip()}")
    container = created.stdout.strip()
    try:
        copied = subprocess.run(["docker", "cp", f"{container}:{path}", "-"], capture_output=True, check=False)
        if copied.returncode != 0:
            raise RegistryError(f"{image}: no {path} ({copied.stderr.decode().strip()})")
        with tarfile.open(fileobj=io.BytesIO(copied.stdout)) as archive:
            member = archive.next()
            return archive.extractfile(member).read()
    finally:
        subprocess.run(["docker", "rm", "-f", container], capture_output=True, check=False)


def provenance(subject: Reference, *, target: dict, content_hash: str, revision: str, commit: str, source: str,
               base_image: str, base_image_id: str, lock_sha256: str) -> bytes:
    """An in-toto statement with a SLSA v1 provenance predicate; no clock time, so it is reproducible too."""
    statement = {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": f"{subject.host}/{subject.name}", "digest": {"sha256": subject.digest.split(":", 1)[1]}}],
        "predicateType": SLSA_PROVENANCE,
        "predicate": {
            "buildDefinition": {
                "buildType": f"{source}/blob/{commit or 'HEAD'}/build.py",
                "externalParameters": {"target": target, "source": source, "revision": revision},
                "internalParameters": {"content_hash": content_hash},
                "resolvedDependencies": [
                    {"uri": f"git+{source}", "digest": {"gitCommit": commit}} if commit else {"uri": source},
                    {"uri": base_image, "digest": {"sha256": base_image_id.split(":")[-1]}},
                    {"uri": "components/mlops_runtime/requirements.lock", "digest": {"sha256": lock_sha256}},
                ],
            },
            "runDetails": {"builder": {"id": "build.py (docker buildx bake)"},
                           "metadata": {"invocationId": content_hash}},
        },
    }
    return json.dumps(statement, sort_keys=True, indent=1).encode()


def attached(reference: Reference) -> dict[str, str]:
    """Artifact type -> digest of the referrers of ``reference``."""
    found = Registry(reference.host).referrers(reference.name, reference.digest)
    return {d.get("artifactType", ""): d["digest"] for d in found}


def attach(reference: Reference, sbom: bytes, statement: bytes) -> dict[str, str]:
    """Push the SBOM and the provenance as referrers of ``reference`` unless they are there already."""
    registry = Registry(reference.host)
    have = attached(reference)
    result = {}
    for kind, artifact_type, payload, title in (("sbom", SBOM_TYPE, sbom, "sbom.cdx.json"),
                                                ("provenance", PROVENANCE_TYPE, statement, "provenance.json")):
        result[kind] = have.get(artifact_type) or registry.push_referrer(reference, artifact_type, payload, title)
    return result


def fetch(reference: Reference, artifact_type: str) -> bytes:
    """The payload of ``reference``'s referrer of ``artifact_type``, digests checked on the way."""
    registry = Registry(reference.host)
    digest = attached(reference).get(artifact_type)
    if digest is None:
        raise RegistryError(f"{reference}: no {artifact_type} referrer")
    manifest = json.loads(registry.manifest(reference.name, digest)[0])
    if manifest.get("subject", {}).get("digest") != reference.digest:
        raise RegistryError(f"{reference}: referrer {digest} has another subject")
    return registry.blob(reference.name, manifest["layers"][0]["digest"])


def verify(text: str) -> dict:
    """Check the SBOM and provenance of an image pinned by digest; a summary, or RegistryError."""
    reference = Reference.parse(text)
    if not reference.digest:
        raise RegistryError(f"{text}: give the image by digest (…@sha256:…)")
    sbom = json.loads(fetch(reference, SBOM_TYPE))
    if sbom.get("bomFormat") != "CycloneDX" or not sbom.get("components"):
        raise RegistryError(f"{reference}: the SBOM is not a CycloneDX document with components")
    statement = json.loads(fetch(reference, PROVENANCE_TYPE))
    subject = statement["subject"][0]["digest"]["sha256"]
    if statement.get("predicateType") != SLSA_PROVENANCE or f"sha256:{subject}" != reference.digest:
        raise RegistryError(f"{reference}: the provenance is not a SLSA statement about this image")
    return {"image": str(reference), "sbom_components": len(sbom["components"]),
            "sbom_spec_version": sbom.get("specVersion"),
            "provenance_dependencies": statement["predicate"]["buildDefinition"]["resolvedDependencies"]}


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m imagebuild.attest REGISTRY/NAME@sha256:DIGEST")
    try:
        print(json.dumps(verify(sys.argv[1]), indent=1))
    except RegistryError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
