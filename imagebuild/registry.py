"""The few OCI distribution API calls build.py needs: look up a tag, tag a manifest, push an artifact with a
``subject`` and list an image's referrers (the referrers API, or the OCI 1.1 fallback tag ``sha256-<hex>``
for registries without it, such as CNCF distribution 2.8)."""
from __future__ import annotations

import hashlib
import json
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
EMPTY_CONFIG = "application/vnd.oci.empty.v1+json"
EMPTY_JSON = b"{}"
MANIFEST_TYPES = ", ".join((OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST))
TIMEOUT_S = 60


class RegistryError(Exception):
    pass


@dataclass(frozen=True)
class Reference:
    """``host[:port]/path/name`` plus a tag and/or a digest."""

    host: str
    name: str
    tag: str = ""
    digest: str = ""

    @classmethod
    def parse(cls, text: str) -> Reference:
        rest, _, digest = text.partition("@")
        host, _, path = rest.partition("/")
        if not path or ("." not in host and ":" not in host and host != "localhost"):
            raise RegistryError(f"{text}: not a reference with a registry host (host[:port]/name[:tag][@digest])")
        name, _, tag = path.partition(":")
        return cls(host, name, tag, digest)

    def __str__(self) -> str:
        return f"{self.host}/{self.name}" + (f":{self.tag}" if self.tag else "") + (
            f"@{self.digest}" if self.digest else "")


def digest_of(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


class Registry:
    """One registry over plain HTTP on loopback, HTTPS elsewhere (anonymous: push to loopback in tests)."""

    def __init__(self, host: str) -> None:
        loopback = host.split(":")[0] in ("127.0.0.1", "localhost", "::1")
        self.host = host
        self.base = f"{'http' if loopback else 'https'}://{host}/v2"
        self.token = ""

    def _login(self, challenge: str) -> bool:
        """Registry token auth (ghcr.io, Docker Hub): a bearer token for the challenged scope, asked with
        the credentials `docker login` stored for this host, if any. False when there is no such challenge."""
        if not challenge.lower().startswith("bearer "):
            return False
        fields = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
        query = urllib.parse.urlencode({k: v for k, v in fields.items() if k in ("service", "scope")})
        headers = {}
        stored = docker_credentials(self.host)
        if stored:
            headers["Authorization"] = f"Basic {stored}"
        request = urllib.request.Request(f"{fields.get('realm', '')}?{query}", headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_S) as answer:
                document = json.loads(answer.read())
        except (urllib.error.HTTPError, OSError, ValueError) as error:
            raise RegistryError(f"token for {self.host}: {error}") from None
        self.token = document.get("token") or document.get("access_token") or ""
        return bool(self.token)

    def _request(self, method: str, path: str, data: bytes | None = None, headers: dict | None = None,
                 retried: bool = False):
        headers = dict(headers or {})
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        request = urllib.request.Request(self.base + path, data=data, method=method, headers=headers)
        try:
            return urllib.request.urlopen(request, timeout=TIMEOUT_S)
        except urllib.error.HTTPError as error:
            if error.code == 404:
                return None
            if error.code == 401 and not retried and self._login(error.headers.get("WWW-Authenticate", "")):
                return self._request(method, path, data, headers, retried=True)
            raise RegistryError(f"{method} {self.base}{path}: HTTP {error.code} {error.read()[:200]!r}") from None
        except OSError as error:
            raise RegistryError(f"{method} {self.base}{path}: {error}") from None

    def manifest(self, name: str, reference: str) -> tuple[bytes, str] | None:
        """The manifest's bytes and media type, or None when the tag or digest is not there."""
        answer = self._request("GET", f"/{name}/manifests/{reference}", headers={"Accept": MANIFEST_TYPES})
        if answer is None:
            return None
        with answer:
            return answer.read(), answer.headers.get("Content-Type", "").split(";")[0]

    def put_manifest(self, name: str, reference: str, data: bytes, media_type: str) -> str:
        answer = self._request("PUT", f"/{name}/manifests/{reference}", data, {"Content-Type": media_type})
        if answer is None:
            raise RegistryError(f"PUT manifest {name}:{reference}: not found")
        with answer:
            return answer.headers.get("Docker-Content-Digest") or digest_of(data)

    def push_blob(self, name: str, data: bytes) -> dict:
        """Upload ``data`` (monolithic), unless the registry has it; its descriptor without media type."""
        digest = digest_of(data)
        if self._request("HEAD", f"/{name}/blobs/{digest}") is None:
            answer = self._request("POST", f"/{name}/blobs/uploads/", b"", {"Content-Length": "0"})
            if answer is None:
                raise RegistryError(f"blob upload to {name}: not found")
            location = answer.headers["Location"]
            answer.close()
            separator = "&" if "?" in location else "?"
            url = urllib.parse.urljoin(self.base, location) + f"{separator}digest={urllib.parse.quote(digest)}"
            headers = {"Content-Type": "application/octet-stream"}
            if self.token:
                headers["Authorization"] = f"Bearer {self.token}"
            request = urllib.request.Request(url, data=data, method="PUT", headers=headers)
            try:
                urllib.request.urlopen(request, timeout=TIMEOUT_S).close()
            except (urllib.error.HTTPError, OSError) as error:
                raise RegistryError(f"blob upload to {name}: {error}") from None
        return {"digest": digest, "size": len(data)}

    def blob(self, name: str, digest: str) -> bytes:
        answer = self._request("GET", f"/{name}/blobs/{digest}")
        if answer is None:
            raise RegistryError(f"{name}@{digest}: no such blob")
        with answer:
            data = answer.read()
        if digest_of(data) != digest:
            raise RegistryError(f"{name}@{digest}: the blob's content does not match its digest")
        return data

    def referrers(self, name: str, digest: str) -> list[dict]:
        """Descriptors of the manifests whose ``subject`` is ``digest``."""
        answer = self._request("GET", f"/{name}/referrers/{digest}", headers={"Accept": OCI_INDEX})
        if answer is not None and answer.headers.get("Content-Type", "").startswith(OCI_INDEX):
            with answer:
                return json.loads(answer.read()).get("manifests", [])
        found = self.manifest(name, fallback_tag(digest))
        return json.loads(found[0]).get("manifests", []) if found else []

    def push_referrer(self, subject: Reference, artifact_type: str, payload: bytes, title: str,
                      annotations: dict[str, str] | None = None) -> str:
        """Push ``payload`` as an OCI artifact whose subject is ``subject`` (a digest reference); its digest."""
        found = self.manifest(subject.name, subject.digest)
        if found is None:
            raise RegistryError(f"{subject}: no such manifest to attach to")
        subject_bytes, subject_type = found
        config = {"mediaType": EMPTY_CONFIG, **self.push_blob(subject.name, EMPTY_JSON)}
        layer = {"mediaType": artifact_type, **self.push_blob(subject.name, payload),
                 "annotations": {"org.opencontainers.image.title": title}}
        manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": artifact_type,
                    "config": config, "layers": [layer],
                    "subject": {"mediaType": subject_type, "digest": subject.digest, "size": len(subject_bytes)},
                    "annotations": annotations or {}}
        data = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
        digest = self.put_manifest(subject.name, digest_of(data), data, OCI_MANIFEST)
        descriptor = {"mediaType": OCI_MANIFEST, "digest": digest, "size": len(data), "artifactType": artifact_type,
                      "annotations": manifest["annotations"]}
        if not any(d.get("digest") == digest for d in self.referrers(subject.name, subject.digest)):
            self._add_to_fallback_index(subject, descriptor)
        return digest

    def _add_to_fallback_index(self, subject: Reference, descriptor: dict) -> None:
        tag = fallback_tag(subject.digest)
        found = self.manifest(subject.name, tag)
        index = json.loads(found[0]) if found else {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}
        index["manifests"] = [d for d in index["manifests"] if d.get("digest") != descriptor["digest"]] + [descriptor]
        data = json.dumps(index, sort_keys=True, separators=(",", ":")).encode()
        self.put_manifest(subject.name, tag, data, OCI_INDEX)


def docker_credentials(host: str) -> str:
    """The base64 ``user:password`` `docker login` stored in ~/.docker/config.json for ``host`` ('' if none)."""
    config = Path(os.environ.get("DOCKER_CONFIG", Path.home() / ".docker")) / "config.json"
    try:
        return json.loads(config.read_text()).get("auths", {}).get(host, {}).get("auth", "")
    except (OSError, ValueError):
        return ""


def fallback_tag(digest: str) -> str:
    """The OCI 1.1 referrers tag schema: ``sha256:abc...`` -> ``sha256-abc...``."""
    return digest.replace(":", "-")
