"""Objects streamed between a URI and a local file, for tables too large to hold in memory as bytes.

Same URIs, errors and atomicity as :mod:`mlops_runtime.storage` (whose client, error mapping and
umask rule these functions share): a reader never sees a partial object.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from . import storage
from .errors import BadInputError, StorageError

_FILE_CHUNK = 8 << 20
SINGLE_PUT_LIMIT = 4 << 30


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_FILE_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def download_file(uri: str, target: Path, *, label: str | None = None) -> str:
    """Stream the object at ``uri`` into the local file ``target`` (never whole in memory); its sha256.

    A local ``uri`` is copied. The sha256 is computed while the bytes stream by, so lineage costs no
    second pass over a large table.
    """

    digest = hashlib.sha256()
    try:
        location = storage.parse(uri)
        with open(target, "wb") as handle:
            if isinstance(location, Path):
                try:
                    source = open(location, "rb")
                except OSError as error:
                    raise storage.local_read_error(uri, error) from None
                with source:
                    chunks = iter(lambda: source.read(_FILE_CHUNK), b"")
                    for chunk in chunks:
                        digest.update(chunk)
                        handle.write(chunk)
                return digest.hexdigest()
            from concurrent.futures import ThreadPoolExecutor

            def fetch() -> hashlib._Hash:
                """One attempt: the whole object from its start (a retried download starts over)."""
                attempt = hashlib.sha256()
                handle.seek(0)
                handle.truncate()

                def keep(chunk: bytes) -> None:
                    attempt.update(chunk)
                    handle.write(chunk)

                # Each chunk is hashed and written on a second thread while the next one arrives (hashlib and
                # file writes release the GIL), in order; at most two chunks are in memory.
                with ThreadPoolExecutor(max_workers=1) as keeper:
                    kept = None
                    body = storage.s3_client().get_object(Bucket=location.bucket, Key=location.key)["Body"]
                    for chunk in body.iter_chunks(_FILE_CHUNK):
                        if kept is not None:
                            kept.result()
                        kept = keeper.submit(keep, chunk)
                    if kept is not None:
                        kept.result()
                return attempt

            try:
                digest = storage._with_retries(fetch)
            except storage._s3_failures() as error:
                raise storage._s3_error(uri, error, reading=True) from error
        return digest.hexdigest()
    except (BadInputError, StorageError) as error:
        if label:
            error.about(label)
        raise


def upload_file(uri: str, source: Path, *, label: str | None = None) -> None:
    """Write the local file ``source`` at ``uri``, streaming it (S3: one PUT, or boto3's multipart upload).

    Atomic for a reader as :func:`write_bytes` is: an S3 multipart upload becomes visible only once it
    completes (a failed one is aborted); locally a temporary file is renamed into place.
    """
    import shutil

    from boto3.exceptions import S3UploadFailedError
    from boto3.s3.transfer import TransferConfig
    from botocore.exceptions import ClientError

    try:
        location = storage.parse(uri)
        if isinstance(location, Path):
            try:
                location.parent.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(prefix=f".{location.name}.", suffix=".partial", dir=location.parent)
            except OSError as error:
                raise StorageError(f"{location}: cannot write ({error.strerror})") from None
            try:
                with os.fdopen(fd, "wb") as handle, open(source, "rb") as data:
                    shutil.copyfileobj(data, handle, _FILE_CHUNK)
                    handle.flush()
                    os.fsync(handle.fileno())
                os.chmod(tmp, 0o666 & ~storage._umask())
                os.replace(tmp, location)
            except OSError as error:
                raise StorageError(f"{location}: cannot write ({error.strerror})") from None
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
            return
        # One PUT streamed from the file up to SINGLE_PUT_LIMIT (S3 allows 5 GB; a multipart upload costs
        # S3-compatible servers such as SeaweedFS a reassembly that made it 4x slower), sent from this
        # thread so SIGTERM interrupts it as it does write_bytes; multipart parts beyond the limit.
        try:
            if source.stat().st_size <= SINGLE_PUT_LIMIT:
                def put() -> None:  # each attempt sends the file from its start
                    with open(source, "rb") as body:
                        storage.s3_client().put_object(Bucket=location.bucket, Key=location.key, Body=body)

                storage._with_retries(put)
                return
            config = TransferConfig(multipart_threshold=SINGLE_PUT_LIMIT, multipart_chunksize=256 << 20,
                                    max_concurrency=4)
            storage.s3_client().upload_file(str(source), location.bucket, location.key, Config=config)
        except S3UploadFailedError as error:
            cause = error.__context__
            if isinstance(cause, ClientError):
                raise storage._s3_error(uri, cause, reading=False) from cause
            raise StorageError(f"{uri}: upload failed ({' '.join(str(error).split())})") from None
        except storage._s3_failures() as error:
            raise storage._s3_error(uri, error, reading=False) from error
    except (BadInputError, StorageError) as error:
        if label:
            error.about(label)
        raise
