"""Read and write objects by URI: ``s3://bucket/key`` through boto3, or a local path (``file://`` allowed).

S3 goes through boto3's standard credential chain; ``AWS_ENDPOINT_URL`` (or ``AWS_ENDPOINT_URL_S3``)
selects any S3-compatible server (MinIO, SeaweedFS, Ceph...). Transient faults are retried by
botocore's own ``standard`` retry mode; ``MLOPS_S3_MAX_ATTEMPTS`` (default 5) sets its total attempts.

Every write is atomic for a reader: one S3 PUT, or a local temporary file renamed into place.
"""
from __future__ import annotations

import functools
import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from .errors import BadInputError, StorageError

DEFAULT_MAX_ATTEMPTS = 5


@dataclass(frozen=True)
class S3Location:
    bucket: str
    key: str


def parse(uri: str) -> S3Location | Path:
    """Return an ``S3Location`` for ``s3://`` URIs and a ``Path`` for local ones."""
    if not uri:
        raise BadInputError("empty URI")
    parsed = urlparse(uri)
    if parsed.scheme == "s3":
        key = parsed.path.lstrip("/")
        if not parsed.netloc or not key:
            raise BadInputError(f"{uri}: an s3 URI needs a bucket and a key (s3://bucket/key)")
        return S3Location(parsed.netloc, key)
    if parsed.scheme == "file":
        return Path(parsed.path)
    if parsed.scheme and len(parsed.scheme) > 1:  # "C:" style drive letters are not schemes
        raise BadInputError(f"{uri}: unsupported URI scheme '{parsed.scheme}' (use s3:// or a local path)")
    return Path(uri)


def join(base: str, *parts: str) -> str:
    """Join path segments onto a URI or a local path."""
    joined = base.rstrip("/")
    for part in parts:
        joined = f"{joined}/{part.strip('/')}"
    return joined


def max_attempts() -> int:
    return int(os.environ.get("MLOPS_S3_MAX_ATTEMPTS", DEFAULT_MAX_ATTEMPTS))


@functools.cache
def _s3_client(attempts: int):
    import boto3
    from botocore.config import Config

    config = Config(
        retries={"total_max_attempts": attempts, "mode": "standard"},
        connect_timeout=float(os.environ.get("MLOPS_S3_CONNECT_TIMEOUT", 5)),
        read_timeout=float(os.environ.get("MLOPS_S3_READ_TIMEOUT", 60)),
    )
    return boto3.client("s3", config=config)


def s3_client():
    return _s3_client(max_attempts())


def _s3_error(uri: str, error: Exception, *, reading: bool) -> Exception:
    """Map a boto3/botocore exception to a component error with a one-line message.

    A missing bucket is bad input when a step reads an input object (``reading``); for writes, listings,
    existence checks and the registry's pointers it is a storage misconfiguration.
    """
    from botocore.exceptions import BotoCoreError, ClientError

    if isinstance(error, ClientError):
        code = str(error.response.get("Error", {}).get("Code", ""))
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in ("NoSuchBucket",):
            return (BadInputError if reading else StorageError)(f"{uri}: no such bucket")
        if code in ("NoSuchKey", "404", "NotFound") or status == 404:
            return BadInputError(f"{uri}: no such object")
        if code in ("AccessDenied", "403", "Forbidden", "InvalidAccessKeyId", "SignatureDoesNotMatch") or status == 403:
            return StorageError(f"{uri}: access denied ({code})")
        return StorageError(f"{uri}: S3 error {code or status}")
    if isinstance(error, BotoCoreError):
        return StorageError(f"{uri}: storage unreachable after {max_attempts()} attempts ({type(error).__name__})")
    return error


def read_bytes(uri: str, *, label: str | None = None) -> bytes:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        location = parse(uri)
        if isinstance(location, Path):
            try:
                return location.read_bytes()
            except FileNotFoundError:
                raise BadInputError(f"{uri}: no such file") from None
            except IsADirectoryError:
                raise BadInputError(f"{uri}: is a directory, not a file") from None
            except PermissionError:
                raise StorageError(f"{uri}: permission denied") from None
        try:
            return s3_client().get_object(Bucket=location.bucket, Key=location.key)["Body"].read()
        except (ClientError, BotoCoreError) as error:
            raise _s3_error(uri, error, reading=True) from error
    except (BadInputError, StorageError) as error:
        if label:
            error.about(label)
        raise


def write_bytes(uri: str, data: bytes, *, label: str | None = None, if_absent: bool = False,
                if_match: str | None = None) -> bool:
    """Write ``data`` at ``uri`` atomically.

    Conditional writes return False, writing nothing, when their condition fails: ``if_absent``
    when an object is already there (S3 ``If-None-Match: *``), ``if_match`` when the object's
    current ETag (see :func:`read_with_etag`) is another one (S3 ``If-Match``). Locally the same
    holds through an exclusive hard link and a lock file.
    """
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        location = parse(uri)
        if isinstance(location, Path):
            if if_match is not None:
                return _replace_local_if_match(location, data, if_match)
            return _write_local(location, data, if_absent=if_absent)
        extra: dict[str, str] = {"IfNoneMatch": "*"} if if_absent else {}
        if if_match is not None:
            extra["IfMatch"] = if_match
        try:
            s3_client().put_object(Bucket=location.bucket, Key=location.key, Body=data, **extra)
            return True
        except ClientError as error:
            code = str(error.response.get("Error", {}).get("Code", ""))
            conditional = if_absent or if_match is not None
            if conditional and code in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
                return False
            raise _s3_error(uri, error, reading=False) from error
        except BotoCoreError as error:
            raise _s3_error(uri, error, reading=False) from error
    except (BadInputError, StorageError) as error:
        if label:
            error.about(label)
        raise


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def _write_local(path: Path, data: bytes, *, if_absent: bool) -> bool:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    except OSError as error:
        raise StorageError(f"{path}: cannot write ({error.strerror})") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the mode open() would
        if if_absent:
            try:
                os.link(tmp, path)
            except FileExistsError:
                return False
        else:
            os.replace(tmp, path)
        return True
    except OSError as error:
        raise StorageError(f"{path}: cannot write ({error.strerror})") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _replace_local_if_match(path: Path, data: bytes, etag: str) -> bool:
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(f".{path.name}.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        current = sha256_hex(path.read_bytes()) if path.is_file() else None
        if current != etag:
            return False
        return _write_local(path, data, if_absent=False)


def read_with_etag(uri: str, *, label: str | None = None) -> tuple[bytes, str] | None:
    """The object's bytes and an ETag for a later ``write_bytes(if_match=...)``; None if absent."""
    from botocore.exceptions import BotoCoreError, ClientError

    location = parse(uri)
    if isinstance(location, Path):
        if not location.is_file():
            return None
        data = location.read_bytes()
        return data, sha256_hex(data)
    try:
        response = s3_client().get_object(Bucket=location.bucket, Key=location.key)
        return response["Body"].read(), response["ETag"]
    except (ClientError, BotoCoreError) as error:
        mapped = _s3_error(uri, error, reading=False)
        if isinstance(mapped, BadInputError):
            return None
        raise (mapped.about(label) if label and isinstance(mapped, StorageError) else mapped) from error


def exists(uri: str) -> bool:
    from botocore.exceptions import BotoCoreError, ClientError

    location = parse(uri)
    if isinstance(location, Path):
        return location.is_file()
    try:
        s3_client().head_object(Bucket=location.bucket, Key=location.key)
        return True
    except ClientError as error:
        mapped = _s3_error(uri, error, reading=False)
        if isinstance(mapped, BadInputError):
            return False
        raise mapped from error
    except BotoCoreError as error:
        raise _s3_error(uri, error, reading=False) from error


def delete(uri: str) -> None:
    """Remove one object; a missing object is not an error."""
    from botocore.exceptions import BotoCoreError, ClientError

    location = parse(uri)
    if isinstance(location, Path):
        location.unlink(missing_ok=True)
        return
    try:
        s3_client().delete_object(Bucket=location.bucket, Key=location.key)
    except (ClientError, BotoCoreError) as error:
        mapped = _s3_error(uri, error, reading=False)
        if not isinstance(mapped, BadInputError):
            raise mapped from error


def list_uris(prefix: str) -> list[str]:
    """Every object URI under ``prefix`` (a folder-like URI), sorted."""
    from botocore.exceptions import BotoCoreError, ClientError

    location = parse(join(prefix, "x"))
    if isinstance(location, Path):
        root = location.parent
        if not root.is_dir():
            return []
        return sorted(str(p) for p in root.rglob("*") if p.is_file() and not p.name.endswith(".partial"))
    folder = location.key[: -len("x")]
    uris: list[str] = []
    try:
        pages = s3_client().get_paginator("list_objects_v2").paginate(Bucket=location.bucket, Prefix=folder)
        for page in pages:
            uris.extend(f"s3://{location.bucket}/{item['Key']}" for item in page.get("Contents", []))
    except (ClientError, BotoCoreError) as error:
        raise _s3_error(prefix, error, reading=False) from error
    return sorted(uris)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
