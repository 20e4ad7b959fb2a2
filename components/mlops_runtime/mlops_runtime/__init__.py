"""Shared runtime of the mlops-components steps: URIs, tables, models, outputs, errors and logging."""
from __future__ import annotations

import os
from pathlib import Path


def _version() -> str:
    if os.environ.get("MLOPS_VERSION"):
        return os.environ["MLOPS_VERSION"]
    version_file = Path(__file__).resolve().parents[3] / "VERSION"
    return version_file.read_text().strip() if version_file.is_file() else "0+unknown"


__version__ = _version()
