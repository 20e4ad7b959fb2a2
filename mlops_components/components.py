"""Load the step components (KFP v1 specs, generated from the steps' click commands) as kfp components."""
from __future__ import annotations

from pathlib import Path
from typing import Any

SPEC_FILE = "component.yaml"
_SOURCE_TREE = Path(__file__).resolve().parents[1] / "components"


def specs_root() -> Path:
    """Where the shipped specs are: the installed package data, or components/ of a source checkout."""
    installed = Path(__file__).resolve().parent / "specs"  # package data: mlops_components/specs/<step>/
    return installed if installed.is_dir() else _SOURCE_TREE


def steps(pinned_dir: str | Path | None = None) -> list[str]:
    """The step names with a spec in ``pinned_dir`` (default: the shipped specs)."""
    root = Path(pinned_dir) if pinned_dir is not None else specs_root()
    return sorted(path.parent.name for path in root.glob(f"*/{SPEC_FILE}"))


def spec_path(step: str, pinned_dir: str | Path | None = None) -> Path:
    """``<root>/<step>/component.yaml``; ``pinned_dir`` is a folder written by ``build.py --push --pin-dir`` (or
    a release's pinned specs), whose images are pinned to digests."""
    path = (Path(pinned_dir) if pinned_dir is not None else specs_root()) / step / SPEC_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no component spec for step '{step}'")
    return path


def load(step: str, pinned_dir: str | Path | None = None) -> Any:
    """One step as a kfp component."""
    from kfp import components

    return components.load_component_from_file(str(spec_path(step, pinned_dir)))


def load_all(pinned_dir: str | Path | None = None) -> dict[str, Any]:
    """Every step, by name, as kfp components (pinned when ``pinned_dir`` is given)."""
    names = steps(pinned_dir)
    if not names:
        raise FileNotFoundError(f"{pinned_dir or specs_root()}: no <step>/{SPEC_FILE} there")
    return {name: load(name, pinned_dir) for name in names}
