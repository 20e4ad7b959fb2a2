"""Fixtures of the pipeline tests."""
import hashlib
import re
from pathlib import Path

import pytest

from tests.support import REPO


@pytest.fixture
def made_up_pinned_specs(tmp_path: Path) -> Path:
    """A copy of components/*/component.yaml pinned to made-up digests, for tests whose KFP API is fake or absent
    (``submit`` refuses unpinned images before contacting it)."""
    folder = tmp_path / "pinned-specs"
    for spec in sorted((REPO / "components").glob("*/component.yaml")):
        digest = hashlib.sha256(spec.parent.name.encode()).hexdigest()
        text = re.sub(r"(?m)^(\s*image:\s*)(\S+)", rf"\g<1>\g<2>@sha256:{digest}", spec.read_text())
        (folder / spec.parent.name).mkdir(parents=True)
        (folder / spec.parent.name / "component.yaml").write_text(text)
    return folder
