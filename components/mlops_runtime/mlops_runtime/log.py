"""Logging to stderr, one line per record; ``MLOPS_LOG_LEVEL`` (default INFO) sets the level."""
from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Libraries whose INFO records ("Found credentials in environment variables") would add stderr lines
# beside a step's one error line; they log at WARNING unless MLOPS_LOG_LEVEL is DEBUG.
_QUIET_LIBRARIES = ("boto3", "botocore", "s3transfer", "urllib3")


class _CurrentStderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time (click's CliRunner swaps it per invocation)."""

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


@contextmanager
def step_logging(component: str) -> Iterator[logging.Logger]:
    """Log to stderr while a step runs; afterwards the process's logging is as it was.

    In a container that is the whole process; in-process (tests, notebooks) nothing leaks past the step.
    """
    level = os.environ.get("MLOPS_LOG_LEVEL", "INFO").upper()
    level = level if level in logging.getLevelNamesMapping() else "INFO"
    root = logging.getLogger()
    handler = _CurrentStderrHandler()
    handler.setFormatter(logging.Formatter(_FORMAT))
    quiet = [logging.getLogger(name) for name in _QUIET_LIBRARIES]
    saved = (root.level, [logger.level for logger in quiet])
    root.addHandler(handler)
    root.setLevel(level)
    for logger in quiet:
        logger.setLevel(logging.DEBUG if level == "DEBUG" else logging.WARNING)
    try:
        yield logging.getLogger(component)
    finally:
        root.removeHandler(handler)
        root.setLevel(saved[0])
        for logger, previous in zip(quiet, saved[1], strict=True):
            logger.setLevel(previous)


def get_logger(name: str) -> logging.Logger:
    return logging.getLogger(name)
