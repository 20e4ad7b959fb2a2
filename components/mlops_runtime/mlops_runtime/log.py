"""Logging to stderr, one line per record; ``MLOPS_LOG_LEVEL`` (default INFO) sets the level."""
from __future__ import annotations

import logging
import os

_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure(component: str) -> logging.Logger:
    level = os.environ.get("MLOPS_LOG_LEVEL", "INFO").upper()
    root = logging.getLogger()
    if not any(getattr(h, "_mlops", False) for h in root.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter(_FORMAT))
        handler._mlops = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(level if level in logging.getLevelNamesMapping() else "INFO")
    return logging.getLogger(component)


def get_logger(name: str) -> logging.Logger:
    return logging.getLogger(name)
