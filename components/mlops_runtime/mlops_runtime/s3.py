"""The S3 client of the runtime and its retry policy: each call retries transient faults (refused or reset
connections, timeouts, 5xx and throttling answers) with full-jitter backoff capped at 2 s until
``MLOPS_S3_RETRY_SECONDS`` (default 30) have passed since its first attempt. botocore makes one attempt
per call: its own standard mode sleeps under a second in total over its default attempts, and its retry
quota would stop retrying for the whole client after a few dozen failures.
"""
from __future__ import annotations

import functools
import os
import random
import time
from collections.abc import Callable
from typing import TypeVar

from .errors import BadInputError, StorageError

DEFAULT_RETRY_SECONDS = 30.0
MAX_RETRY_SECONDS = 3600.0
BACKOFF_BASE_SECONDS = 0.1
BACKOFF_CAP_SECONDS = 2.0
TRANSIENT_CODES = {"SlowDown", "Throttling", "ThrottlingException", "RequestTimeout", "RequestTimeTooSkewed",
                   "InternalError", "ServiceUnavailable", "503", "500", "502", "504"}

T = TypeVar("T")


def retry_seconds() -> float:
    """How long a call keeps retrying transient faults (``MLOPS_S3_RETRY_SECONDS``)."""
    text = os.environ.get("MLOPS_S3_RETRY_SECONDS", "")
    try:
        seconds = float(text) if text else DEFAULT_RETRY_SECONDS
    except ValueError:
        seconds = float("nan")
    if not 0 <= seconds <= MAX_RETRY_SECONDS:  # also refuses NaN
        raise StorageError(f"MLOPS_S3_RETRY_SECONDS={text!r}: expected seconds between 0 and {MAX_RETRY_SECONDS:g}")
    return seconds


def _timeout(name: str, default: float) -> float:
    text = os.environ.get(name, "")
    try:
        seconds = float(text) if text else default
    except ValueError:
        seconds = float("nan")
    if not 0 < seconds <= MAX_RETRY_SECONDS:
        raise StorageError(f"{name}={text!r}: expected seconds above 0 and at most {MAX_RETRY_SECONDS:g}")
    return seconds


@functools.cache
def _s3_client(connect_timeout: float, read_timeout: float):
    import boto3
    from botocore.config import Config

    # One attempt per call: retries are :func:`_with_retries`' deadline (see the module docstring).
    config = Config(retries={"total_max_attempts": 1, "mode": "standard"}, connect_timeout=connect_timeout,
                    read_timeout=read_timeout)
    return boto3.client("s3", config=config)


def s3_client():
    return _s3_client(_timeout("MLOPS_S3_CONNECT_TIMEOUT", 5.0), _timeout("MLOPS_S3_READ_TIMEOUT", 60.0))


def _transient(error: Exception) -> bool:
    from botocore.exceptions import (
        ClientError,
        ConnectionError,
        HTTPClientError,
        IncompleteReadError,
        ResponseStreamingError,
    )

    if isinstance(error, ClientError):
        code = str(error.response.get("Error", {}).get("Code", ""))
        status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        return code in TRANSIENT_CODES or status >= 500 or status == 429
    return isinstance(error, (ConnectionError, HTTPClientError, IncompleteReadError, ResponseStreamingError))


class Unreachable(Exception):
    """Every attempt of a call failed with a transient fault until its retry window closed."""

    def __init__(self, last: Exception, attempts: int, seconds: float) -> None:
        self.last, self.attempts, self.seconds = last, attempts, seconds
        super().__init__(f"{type(last).__name__} after {attempts} attempts in {seconds:.1f}s")


def _with_retries(call: Callable[[], T], *, window: float | None = None) -> T:
    """``call()``, retried on transient faults with full-jitter backoff until ``window`` seconds have passed."""
    window = retry_seconds() if window is None else window
    began = time.monotonic()
    attempts = 0
    while True:
        attempts += 1
        try:
            return call()
        except Exception as error:
            if not _transient(error):
                raise
            elapsed = time.monotonic() - began
            if elapsed >= window:
                raise Unreachable(error, attempts, elapsed) from error
            delay = random.uniform(0, min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2 ** min(attempts, 16)))
            time.sleep(min(delay, window - elapsed))


def _s3_error(uri: str, error: Exception, *, reading: bool) -> Exception:
    """Map a boto3/botocore exception to a component error with a one-line message.

    A missing bucket is bad input when a step reads an input object (``reading``); for writes, listings,
    existence checks and the registry's pointers it is a storage misconfiguration.
    """
    from botocore.exceptions import BotoCoreError, ClientError, ParamValidationError

    if isinstance(error, Unreachable):
        return StorageError(f"{uri}: storage unreachable for {error.seconds:.1f}s ({error.attempts} attempts, "
                            f"last {type(error.last).__name__}; MLOPS_S3_RETRY_SECONDS={retry_seconds():g})")
    if isinstance(error, ClientError):
        code = str(error.response.get("Error", {}).get("Code", ""))
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in ("NoSuchBucket",):
            return (BadInputError if reading else StorageError)(f"{uri}: no such bucket")
        if code in ("NoSuchKey", "404", "NotFound") or status == 404:
            return BadInputError(f"{uri}: no such object")
        if code in ("AccessDenied", "403", "Forbidden", "InvalidAccessKeyId", "SignatureDoesNotMatch") or status == 403:
            return StorageError(f"{uri}: access denied ({code})")
        if code in ("InvalidBucketName", "KeyTooLongError", "InvalidURI", "InvalidArgument"):
            return BadInputError(f"{uri}: refused by the object store ({code})")
        return StorageError(f"{uri}: S3 error {code or status}")
    if isinstance(error, ParamValidationError):  # botocore refused the request before sending it
        return BadInputError(f"{uri}: not a valid S3 location ({' '.join(str(error).split())[:200]})")
    if isinstance(error, BotoCoreError):
        return StorageError(f"{uri}: storage failed ({type(error).__name__}: {' '.join(str(error).split())[:200]})")
    return error


def _s3_failures() -> tuple[type[Exception], ...]:
    from botocore.exceptions import BotoCoreError, ClientError

    return (ClientError, BotoCoreError, Unreachable)
