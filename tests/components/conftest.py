"""Fixtures of the step tests."""
from functools import partial

import pytest
from gate_fixtures import make_candidate


@pytest.fixture(params=["local", "s3"])
def base(request: pytest.FixtureRequest, tmp_path) -> str:
    """Where a test's objects go: a local folder, then an s3:// folder (each test runs on both)."""
    return str(tmp_path / "store") if request.param == "local" else request.getfixturevalue("s3_prefix")


@pytest.fixture
def candidate(step, base):
    """``candidate(name, errors=k)``: a model, and its metrics from evaluate on a table where it errs k times."""
    return partial(make_candidate, step, base)
