"""Logging to stderr, one line per record; ``MLOPS_LOG_LEVEL`` (default INFO) sets the level."""
from __future__ import annotations

import logging
import os
import sys

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


def configure(component: str) -> logging.Logger:
    level = os.environ.get("MLOPS_LOG_LEVEL", "INFO").upper()
    root = logging.getLogger()
    if not any(getattr(h, "_mlops", False) for h in root.handlers):
        handler = _CurrentStderrHandler()
        handler.setFormatter(logging.Formatter(_FORMAT))
        handler._mlops = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(level if level in logging.getLevelNamesMapping() else "INFO")
    for library in _QUIET_LIBRARIES:
        logging.getLogger(library).setLevel(logging.DEBUG if level == "DEBUG" else logging.WARNING)
    return logging.getLogger(component)


def get_logger(name: str) -> logging.Logger:
    return logging.getLogger(name)
