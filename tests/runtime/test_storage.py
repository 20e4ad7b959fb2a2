import time
from pathlib import Path

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


@pytest.mark.services  # asks the S3 server for a bucket it does not have
def test_missing_bucket_on_write_is_a_storage_error():
    with pytest.raises(StorageError, match="no-such-bucket-mlops"):
        storage.write_bytes("s3://no-such-bucket-mlops/x", b"1")


def test_local_write_leaves_no_temporary_files(tmp_path):
    target = tmp_path / "out" / "f.txt"
    storage.write_bytes(str(target), b"x")
    assert [p.name for p in target.parent.iterdir()] == ["f.txt"]


def test_unreachable_endpoint_fails_cleanly_after_the_retry_window(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # discard port: nothing listens
    monkeypatch.setenv("MLOPS_S3_RETRY_SECONDS", "1")
    storage._s3_client.cache_clear()
    began = time.monotonic()
    try:
        with pytest.raises(StorageError, match=r"unreachable for 1\.\ds \(\d+ attempts, last EndpointConn") as raised:
            storage.read_bytes("s3://mlops-test/x", label="--data-uri")
    finally:
        storage._s3_client.cache_clear()
    assert 1 <= time.monotonic() - began < 1 + storage.BACKOFF_CAP_SECONDS + 5
    assert raised.value.one_line().startswith("--data-uri: s3://mlops-test/x: ")


@pytest.mark.parametrize("value", ["-1", "nan", "soon", "1e9"])
def test_a_malformed_retry_window_is_refused(monkeypatch, value):
    monkeypatch.setenv("MLOPS_S3_RETRY_SECONDS", value)
    with pytest.raises(StorageError, match="MLOPS_S3_RETRY_SECONDS"):
        storage.read_bytes("s3://mlops-test/x")


@pytest.mark.parametrize("uri", ["file://w/o", "file://host/tmp/x", "file://127.0.0.1/tmp/x"])
def test_file_uris_with_a_host_are_refused(uri):
    with pytest.raises(BadInputError, match="not a host"):
        storage.parse(uri)


@pytest.mark.parametrize(("uri", "path"), [("file:///tmp/a", "/tmp/a"), ("file://localhost/tmp/a", "/tmp/a"),
                                           ("file:///tmp/a?b#c", "/tmp/a?b#c"), ("/tmp/a:b", "/tmp/a:b"),
                                           ("rel/x#1", "rel/x#1")])
def test_local_uris_name_exactly_that_file(uri, path):
    assert storage.parse(uri) == Path(path)


def test_s3_keys_keep_question_marks_and_hashes(s3_prefix):
    uri = storage.join(s3_prefix, "a?b=1#c.bin")
    assert storage.parse(uri).key.endswith("/a?b=1#c.bin")
    storage.write_bytes(uri, b"x")
    assert storage.list_uris(s3_prefix) == [uri]


@pytest.mark.parametrize("bucket", ["Bad_Bucket", "ab", "a" * 64, "-leading", "trailing-", "two..dots",
                                    "192.168.1.1", "user@bucket", "bucket:9000"])
def test_invalid_bucket_names_are_bad_input_at_once(monkeypatch, bucket):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # would be a storage outage if it were tried
    began = time.monotonic()
    with pytest.raises(BadInputError, match="not a valid S3 bucket name"):
        storage.write_bytes(f"s3://{bucket}/key", b"x")
    assert time.monotonic() - began < 1


@pytest.mark.parametrize(("make", "error"), [("parent_is_a_file", BadInputError), ("target_is_a_dir", BadInputError),
                                             ("read_only_dir", StorageError)])
def test_local_write_errors_have_documented_codes(tmp_path, make, error):
    if make == "parent_is_a_file":
        (tmp_path / "f").write_bytes(b"")
        target = tmp_path / "f" / "x"
    elif make == "target_is_a_dir":
        target = tmp_path / "d"
        target.mkdir()
    else:
        target = Path("/proc/mlops-no-such/x")  # /proc refuses new folders, even to root
    with pytest.raises(error):
        storage.write_bytes(str(target), b"x")


def test_local_files_get_the_usual_mode(tmp_path):
    target = tmp_path / "shared.bin"
    storage.write_bytes(str(target), b"x")
    assert target.stat().st_mode & 0o777 == 0o666 & ~_current_umask()


def _current_umask() -> int:
    import os

    current = os.umask(0)
    os.umask(current)
    return current
