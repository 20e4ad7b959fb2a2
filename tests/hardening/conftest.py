"""Fixtures of the hardening tests: private S3 servers and switching the runtime's S3 client to them."""
from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from hardening_support import SeaweedServer, fresh_clients


@pytest.fixture(scope="module")
def private_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedServer]:
    """A SeaweedFS of this module's own (never the shared one), running; tests may stop and restart it."""
    server = SeaweedServer(tmp_path_factory.mktemp("seaweedfs") / "data")
    server.start()
    yield server
    server.remove()


@pytest.fixture
def use_s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., None]]:
    """``use_s3(server, retry_seconds=S)`` points the runtime (in-process steps) at ``server``; without
    ``retry_seconds`` the runtime's default retry window applies."""

    def switch(server: SeaweedServer, *, retry_seconds: float | None = None, access_key: str | None = None,
               secret_key: str | None = None) -> None:
        monkeypatch.setenv("AWS_ENDPOINT_URL", server.endpoint)
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", access_key or server.access_key)
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret_key or server.secret_key)
        if retry_seconds is None:
            monkeypatch.delenv("MLOPS_S3_RETRY_SECONDS", raising=False)
        else:
            monkeypatch.setenv("MLOPS_S3_RETRY_SECONDS", str(retry_seconds))
        fresh_clients()

    yield switch
    fresh_clients()  # back to the shared server once monkeypatch restores the environment
