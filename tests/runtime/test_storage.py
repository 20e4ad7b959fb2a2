import pytest

from mlops_runtime import storage
from mlops_runtime.errors import BadInputError, StorageError


@pytest.fixture(params=["s3", "local"])
def root(request, s3_prefix, tmp_path):
    return s3_prefix if request.param == "s3" else str(tmp_path / "store")


def test_write_read_list_delete(root):
    uri = storage.join(root, "a/b.bin")
    assert storage.write_bytes(uri, b"payload")
    assert storage.read_bytes(uri) == b"payload"
    assert storage.exists(uri)
    assert storage.list_uris(root) == [uri]
    storage.delete(uri)
    assert not storage.exists(uri)
    storage.delete(uri)  # deleting what is gone is fine


def test_missing_object_is_bad_input_named_by_label(root):
    with pytest.raises(BadInputError) as raised:
        storage.read_bytes(storage.join(root, "missing.csv"), label="--source-uri")
    assert raised.value.one_line().startswith("--source-uri: ")
    assert "missing.csv" in raised.value.one_line()


def test_conditional_create_refuses_second_writer(root):
    uri = storage.join(root, "claim")
    assert storage.write_bytes(uri, b"first", if_absent=True)
    assert not storage.write_bytes(uri, b"second", if_absent=True)
    assert storage.read_bytes(uri) == b"first"


def test_conditional_replace_needs_current_etag(root):
    uri = storage.join(root, "pointer.json")
    storage.write_bytes(uri, b"v1")
    _, etag = storage.read_with_etag(uri)
    storage.write_bytes(uri, b"v2")  # somebody else moved it on
    assert not storage.write_bytes(uri, b"v3", if_match=etag)
    data, fresh = storage.read_with_etag(uri)
    assert data == b"v2"
    assert storage.write_bytes(uri, b"v3", if_match=fresh)
    assert storage.read_bytes(uri) == b"v3"
    assert storage.read_with_etag(storage.join(root, "absent")) is None


@pytest.mark.parametrize("uri", ["gs://bucket/key", "http://host/key", "s3://bucket-only", ""])
def test_unsupported_uris(uri):
    with pytest.raises(BadInputError):
        storage.read_bytes(uri)


def test_missing_bucket_on_write_is_a_storage_error():
    with pytest.raises(StorageError, match="no-such-bucket-mlops"):
        storage.write_bytes("s3://no-such-bucket-mlops/x", b"1")


def test_local_write_leaves_no_temporary_files(tmp_path):
    target = tmp_path / "out" / "f.txt"
    storage.write_bytes(str(target), b"x")
    assert [p.name for p in target.parent.iterdir()] == ["f.txt"]


def test_unreachable_endpoint_fails_cleanly_after_retries(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # discard port: nothing listens
    monkeypatch.setenv("MLOPS_S3_MAX_ATTEMPTS", "2")
    storage._s3_client.cache_clear()
    try:
        with pytest.raises(StorageError, match="unreachable after 2 attempts"):
            storage.read_bytes("s3://mlops-test/x", label="--data-uri")
    finally:
        storage._s3_client.cache_clear()


def test_local_files_get_the_usual_mode(tmp_path):
    target = tmp_path / "shared.bin"
    storage.write_bytes(str(target), b"x")
    assert target.stat().st_mode & 0o777 == 0o666 & ~_current_umask()


def _current_umask() -> int:
    import os

    current = os.umask(0)
    os.umask(current)
    return current
