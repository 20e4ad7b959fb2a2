"""Read and write objects by URI: ``s3://bucket/key`` through boto3, or a local path (``file://`` allowed).

S3 goes through boto3's standard credential chain; ``AWS_ENDPOINT_URL`` (or ``AWS_ENDPOINT_URL_S3``)
selects any S3-compatible server (MinIO, SeaweedFS, Ceph...). A transient fault (connection refused or
reset, a timeout, a 5xx or throttling answer) is retried with capped exponential backoff until
``MLOPS_S3_RETRY_SECONDS`` (default 30) have passed since the call's first attempt; the step then
fails with exit 4. Each attempt also waits at most ``MLOPS_S3_CONNECT_TIMEOUT`` (5 s) to connect and
``MLOPS_S3_READ_TIMEOUT`` (60 s) for an answer, so a call gives up at the latest after the window plus
one attempt's timeouts.

Every write is atomic for a reader: one S3 PUT, or a local temporary file renamed into place.
"""
from __future__ import annotations

import errno
import hashlib
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .errors import BadInputError, ComponentError, StorageError
from .s3 import (  # noqa: F401 (re-exported: the runtime's S3 client and retry policy)
    BACKOFF_CAP_SECONDS,
    DEFAULT_RETRY_SECONDS,
    Unreachable,
    _s3_client,
    _s3_error,
    _s3_failures,
    _with_retries,
    retry_seconds,
    s3_client,
)

# S3's bucket naming rules (the ones every current bucket follows): 3-63 lowercase letters, digits,
# '.' and '-', starting and ending with a letter or digit, no '..' and not an IPv4 address.
BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
IPV4 = re.compile(r"^\d+\.\d+\.\d+\.\d+$")
LOCAL_HOSTS = ("", "localhost")


@dataclass(frozen=True)
class S3Location:
    bucket: str
    key: str


def parse(uri: str) -> S3Location | Path:
    """Return an ``S3Location`` for ``s3://`` URIs and a ``Path`` for local ones.

    The URI is split by hand, not by ``urllib``: '?' and '#' are ordinary characters of an S3 key or
    a file name, never a query or fragment to drop.
    """
    if not uri:
        raise BadInputError("empty URI")
    scheme, colon, rest = uri.partition(":")
    scheme = scheme.lower() if colon else ""
    if scheme == "s3":
        bucket, _, key = rest.removeprefix("//").partition("/")
        if not rest.startswith("//") or not bucket or not key.strip("/"):
            raise BadInputError(f"{uri}: an s3 URI needs a bucket and a key (s3://bucket/key)")
        check_bucket_name(bucket, uri)
        return S3Location(bucket, key.lstrip("/"))
    if scheme == "file":
        if not rest.startswith("//"):  # file:relative/path or file:/absolute
            return Path(rest)
        host, slash, path = rest[2:].partition("/")
        if host.lower() not in LOCAL_HOSTS:
            raise BadInputError(f"{uri}: a file URI names a file on this machine: file:///path "
                                f"(not a host '{host}')")
        return Path(slash + path)
    if scheme and len(scheme) > 1 and re.fullmatch(r"[a-z][a-z0-9+.-]*", scheme):  # "C:" is a drive letter
        raise BadInputError(f"{uri}: unsupported URI scheme '{scheme}' (use s3:// or a local path)")
    return Path(uri)


def check_bucket_name(bucket: str, uri: str) -> None:
    if not BUCKET_NAME.match(bucket) or ".." in bucket or IPV4.match(bucket):
        raise BadInputError(f"{uri}: '{bucket}' is not a valid S3 bucket name (3-63 lowercase letters, digits, "
                            "'.' or '-', starting and ending with a letter or digit)")


def join(base: str, *parts: str) -> str:
    """Join path segments onto a URI or a local path."""
    joined = base.rstrip("/")
    for part in parts:
        joined = f"{joined}/{part.strip('/')}"
    return joined


def read_bytes(uri: str, *, label: str | None = None) -> bytes:
    try:
        location = parse(uri)
        if isinstance(location, Path):
            try:
                return location.read_bytes()
            except OSError as error:
                raise local_read_error(uri, error) from None
        client = s3_client()
        try:
            return _with_retries(lambda: client.get_object(Bucket=location.bucket, Key=location.key)["Body"].read())
        except _s3_failures() as error:
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
    from botocore.exceptions import ClientError

    try:
        location = parse(uri)
        if isinstance(location, Path):
            if if_match is not None:
                return _replace_local_if_match(location, data, if_match)
            return _write_local(location, data, if_absent=if_absent)
        extra: dict[str, str] = {"IfNoneMatch": "*"} if if_absent else {}
        if if_match is not None:
            extra["IfMatch"] = if_match
        client = s3_client()
        try:
            _with_retries(lambda: client.put_object(Bucket=location.bucket, Key=location.key, Body=data, **extra))
            return True
        except ClientError as error:
            code = str(error.response.get("Error", {}).get("Code", ""))
            conditional = if_absent or if_match is not None
            if conditional and code in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
                return False
            raise _s3_error(uri, error, reading=False) from error
        except _s3_failures() as error:
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
        raise local_error(str(path), error, writing=True) from None
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
        raise local_error(str(path), error, writing=True) from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _replace_local_if_match(path: Path, data: bytes, etag: str) -> bool:
    import fcntl

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = open(path.with_name(f".{path.name}.lock"), "w")  # noqa: SIM115 (closed below)
    except OSError as error:
        raise local_error(str(path), error, writing=True) from None
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        current = sha256_hex(path.read_bytes()) if path.is_file() else None
        if current != etag:
            return False
        return _write_local(path, data, if_absent=False)


def read_with_etag(uri: str, *, label: str | None = None) -> tuple[bytes, str] | None:
    """The object's bytes and an ETag for a later ``write_bytes(if_match=...)``; None if absent."""
    location = parse(uri)
    if isinstance(location, Path):
        if not location.is_file():
            return None
        try:
            data = location.read_bytes()
        except OSError as error:
            mapped = local_error(uri, error)
            raise (mapped.about(label) if label else mapped) from None
        return data, sha256_hex(data)
    client = s3_client()

    def get() -> tuple[bytes, str]:
        response = client.get_object(Bucket=location.bucket, Key=location.key)
        return response["Body"].read(), response["ETag"]

    try:
        return _with_retries(get)
    except _s3_failures() as error:
        mapped = _s3_error(uri, error, reading=False)
        if isinstance(mapped, BadInputError):
            return None
        raise (mapped.about(label) if label and isinstance(mapped, StorageError) else mapped) from error


def exists(uri: str) -> bool:
    from botocore.exceptions import ClientError

    location = parse(uri)
    if isinstance(location, Path):
        return location.is_file()
    client = s3_client()
    try:
        _with_retries(lambda: client.head_object(Bucket=location.bucket, Key=location.key))
        return True
    except ClientError as error:
        mapped = _s3_error(uri, error, reading=False)
        if isinstance(mapped, BadInputError) and "no such object" in str(mapped):
            return False
        raise mapped from error
    except _s3_failures() as error:
        raise _s3_error(uri, error, reading=False) from error


def delete(uri: str, *, retry_window: float | None = None) -> None:
    """Remove one object; a missing object is not an error. ``retry_window`` overrides :func:`retry_seconds`."""
    location = parse(uri)
    if isinstance(location, Path):
        try:
            location.unlink(missing_ok=True)
        except OSError as error:
            raise local_error(uri, error) from None
        return
    client = s3_client()
    try:
        _with_retries(lambda: client.delete_object(Bucket=location.bucket, Key=location.key), window=retry_window)
    except _s3_failures() as error:
        mapped = _s3_error(uri, error, reading=False)
        if not isinstance(mapped, BadInputError):
            raise mapped from error


def list_uris(prefix: str) -> list[str]:
    """Every object URI under ``prefix`` (a folder-like URI), sorted."""
    location = parse(join(prefix, "x"))
    if isinstance(location, Path):
        root = location.parent
        if not root.is_dir():
            return []
        return sorted(str(p) for p in root.rglob("*") if p.is_file() and not p.name.endswith(".partial"))
    folder = location.key[: -len("x")]
    client = s3_client()

    def listing() -> list[str]:
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=location.bucket, Prefix=folder)
        return [f"s3://{location.bucket}/{item['Key']}" for page in pages for item in page.get("Contents", [])]

    try:
        return sorted(_with_retries(listing))
    except _s3_failures() as error:
        raise _s3_error(prefix, error, reading=False) from error


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def local_read_error(uri: str, error: OSError) -> ComponentError:
    """What reading a local file that failed with ``error`` means for the step (see :func:`local_error`)."""
    if isinstance(error, FileNotFoundError):
        return BadInputError(f"{uri}: no such file")
    if isinstance(error, IsADirectoryError):
        return BadInputError(f"{uri}: is a directory, not a file")
    if isinstance(error, PermissionError):
        return StorageError(f"{uri}: permission denied")
    return local_error(uri, error)


def local_error(uri: str, error: OSError, *, writing: bool = False) -> ComponentError:
    """A local file error as a documented one: a path that cannot name a file is bad input (exit 3); a file
    system that refuses (permissions, read-only, full) is storage (exit 4)."""
    reason = error.strerror or type(error).__name__
    if error.errno in (errno.ENOTDIR, errno.EISDIR, errno.ENAMETOOLONG, errno.ELOOP, errno.EINVAL) or (
            writing and error.errno == errno.EEXIST):
        return BadInputError(f"{uri}: not a usable file path ({reason})")
    return StorageError(f"{uri}: cannot {'write' if writing else 'read'} ({reason})")
