"""The registry's documents are validated when read, and a failed registration leaves no version claimed."""
import json

import pytest

from mlops_runtime import storage
from mlops_runtime.errors import BadInputError, ModelError
from mlops_runtime.registry import ModelRegistry, Production

SHA = "b" * 64


def register(registry: ModelRegistry, model: bytes = b"model") -> tuple[int, bool]:
    return registry.register(model=model, card=b"{}", metrics=b"{}", entry={"metrics": {"accuracy": 0.9}})


def test_a_failed_registration_releases_its_version_number(tmp_path):
    registry = ModelRegistry(str(tmp_path), "m")
    (tmp_path / "m" / "1" / "metrics.json").mkdir(parents=True)  # the third file cannot be written
    with pytest.raises(BadInputError, match="not a usable file path") as raised:
        register(registry)
    assert raised.value.label == "--registry-uri"
    assert storage.list_uris(str(tmp_path)) == []  # neither the claim nor the files written before
    (tmp_path / "m" / "1" / "metrics.json").rmdir()
    assert register(registry) == (1, True)
    assert registry.versions() == [1]


@pytest.mark.parametrize(("pointer", "problem"), [
    ({"version": 1, "model_uri": "x", "model_sha256": SHA, "generation": "2"}, "generation: expected an integer"),
    ({"version": 1, "model_uri": "x", "model_sha256": SHA, "generation": 1.5}, "generation: expected an integer"),
    ({"version": True, "model_uri": "x", "model_sha256": SHA}, "version: expected an integer"),
    ({"version": 1, "model_uri": "x"}, "model_sha256: missing"),
    ({"version": 1, "model_uri": "x", "model_sha256": SHA, "metrics": {"accuracy": "0.9"}}, "metrics: accuracy"),
])
def test_a_malformed_production_pointer_is_refused_before_anything_is_claimed(tmp_path, pointer, problem):
    registry = ModelRegistry(str(tmp_path), "m")
    storage.write_bytes(str(tmp_path / "m" / "production.json"), json.dumps(pointer).encode())
    with pytest.raises(ModelError, match="corrupted production pointer") as raised:
        registry.production()
    assert problem in str(raised.value) and raised.value.label == "--registry-uri"
    assert storage.list_uris(str(tmp_path)) == [str(tmp_path / "m" / "production.json")]


def test_a_tampered_entry_is_refused(tmp_path):
    registry = ModelRegistry(str(tmp_path), "m")
    version, _ = register(registry)
    entry_file = tmp_path / "m" / str(version) / "entry.json"
    entry_file.write_text(json.dumps({**json.loads(entry_file.read_text()), "version": 7}))
    with pytest.raises(ModelError, match="corrupted registry entry"):
        registry.entry(version)


def test_promotion_counts_generations_from_a_valid_pointer(tmp_path):
    registry = ModelRegistry(str(tmp_path), "m")
    version, _ = register(registry)
    assert registry.promote(version, reason="first", expected=Production(None, None))
    assert registry.production().pointer["generation"] == 1
    assert registry.promote(version, reason="again", expected=registry.production())
    assert registry.production().pointer["generation"] == 2
