"""storage/: the file and S3 stores keep one contract; one client policy; one error translation."""

from __future__ import annotations

import socket
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import (
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
)
from moto import mock_aws

from nextoffer.domain.errors import (
    BackendUnavailableError,
    ConfigError,
    InputError,
    NotFoundError,
)
from nextoffer.ingest.remote import download, list_import_objects
from nextoffer.storage import (
    ENDPOINT_SETTING,
    FileStore,
    ObjectStore,
    S3Store,
    absolute_url,
    file_url_path,
    is_s3_library_error,
    is_unreachable,
    open_prefix,
    s3_client,
)
from nextoffer.storage.errors import translate
from nextoffer.storage.s3 import CONNECT_TIMEOUT_S, READ_TIMEOUT_S, TOTAL_ATTEMPTS

SETTING = "NEXTOFFER_SOME_URL"


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """moto's in-process S3 with fake credentials; nothing leaves the process."""
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        boto3.client("s3").create_bucket(Bucket="bucket")
        yield


def file_store(tmp_path: Path) -> ObjectStore:
    return open_prefix(f"file://{tmp_path / 'store'}", setting=SETTING)


def s3_store(tmp_path: Path) -> ObjectStore:
    return open_prefix("s3://bucket/some/prefix", setting=SETTING)


@pytest.mark.parametrize("make", [file_store, s3_store], ids=["file", "s3"])
def test_a_store_round_trips_lists_and_deletes(
    make: object, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if make is s3_store:
        request.getfixturevalue("aws")
    store = make(tmp_path)  # type: ignore[operator]
    assert isinstance(store, ObjectStore)
    source = tmp_path / "source.bin"
    source.write_bytes(b"x" * 3000)

    store.upload(source, "in/sub/one.bin")
    store.put_bytes(b"two", "in/two.csv")
    store.put_bytes(b"three", "in-other/three.csv")

    assert [(o.key, o.size) for o in store.list("in/")] == [
        ("in/sub/one.bin", 3000),
        ("in/two.csv", 3),
    ]
    # Like S3's delimiter: the prefix's own objects, not those of deeper "folders".
    assert [o.key for o in store.list("in/", recursive=False)] == ["in/two.csv"]
    assert [o.key for o in store.list("", recursive=False)] == []
    assert [o.key for o in store.list("in")] == [
        "in-other/three.csv",
        "in/sub/one.bin",
        "in/two.csv",
    ]
    assert all(o.etag for o in store.list())

    info = store.info("in/two.csv")
    assert info is not None and info.key == "in/two.csv" and info.size == 3 and info.etag
    assert store.info("in/none.csv") is None
    assert store.exists("in/two.csv") and not store.exists("in/none.csv")
    assert store.get_bytes("in/two.csv") == b"two"

    folder = tmp_path / "downloads"
    got = store.download_into("in/sub/one.bin", folder)
    assert got == folder / "one.bin" and got.read_bytes() == source.read_bytes()
    assert sorted(p.name for p in folder.iterdir()) == ["one.bin"]  # no partial file left
    with pytest.raises(NotFoundError, match=r"in/none\.csv: not found"):
        store.download("in/none.csv", tmp_path / "none")
    assert not (tmp_path / "none").exists()

    assert store.delete(["in/sub/one.bin", "in/absent"]) == 2
    assert [o.key for o in store.list()] == ["in-other/three.csv", "in/two.csv"]


@pytest.mark.parametrize("key", ["", "/abs", "../escape", "a/../b", "a/.."])
def test_keys_that_could_leave_the_prefix_are_refused(key: str, tmp_path: Path) -> None:
    # Checked before any request: an S3 store with no client needs no network for this.
    for store in (file_store(tmp_path), S3Store("bucket", "p", setting=SETTING)):
        with pytest.raises(ValueError, match="invalid object key"):
            store.put_bytes(b"x", key)
        with pytest.raises(ValueError, match="invalid object key"):
            store.download(key, tmp_path / "x")


def test_file_store_writes_private_files_and_hides_partial_uploads(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "store")
    assert store.ensure() is True and store.ensure() is False
    store.put_bytes(b"secret", "a/dump.gz")
    assert stat.S_IMODE((tmp_path / "store" / "a" / "dump.gz").stat().st_mode) == 0o600
    (tmp_path / "store" / "b").mkdir()
    (tmp_path / "store" / "b" / ".dump2.gz.tmp-abc").write_bytes(b"half")
    assert [o.key for o in store.list()] == ["a/dump.gz"]
    store.delete(["a/dump.gz"])
    # Empty folders go with their last file (they would look like incomplete backups).
    assert [p.name for p in (tmp_path / "store").iterdir()] == ["b"]


def test_open_prefix_chooses_the_store_by_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    for url in ("file://./var/b", "file://var/b", "var/b"):
        store = open_prefix(url, setting=SETTING)
        assert isinstance(store, FileStore) and store.root == tmp_path / "var" / "b"
    assert file_url_path("file:///srv/x") == Path("/srv/x")
    s3 = open_prefix("s3://bkt//a/b/", endpoint_url="http://minio:9000", setting=SETTING)
    assert isinstance(s3, S3Store)
    assert (s3.bucket, s3.prefix, s3.url, s3.endpoint_url) == (
        "bkt",
        "a/b/",
        "s3://bkt/a/b",
        "http://minio:9000",
    )
    assert s3.describe("k.csv") == "s3://bkt/a/b/k.csv"
    with pytest.raises(ConfigError, match=f"^{SETTING} is empty$"):
        open_prefix("", setting=SETTING)
    with pytest.raises(ConfigError, match=f"^{SETTING}: 's3:///x' names no bucket"):
        open_prefix("s3:///x", setting=SETTING)
    with pytest.raises(ConfigError, match=f"^{SETTING}: unsupported URL scheme 'ftp'"):
        open_prefix("ftp://h/x", setting=SETTING)


def test_absolute_url_fixes_relative_files_and_keeps_other_schemes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert absolute_url("file://./var/artifacts", SETTING) == (tmp_path / "var/artifacts").as_uri()
    assert absolute_url("file:///srv/a", SETTING) == "file:///srv/a"
    assert absolute_url("s3://bkt/a", SETTING) == "s3://bkt/a"
    assert absolute_url("mlflow-artifacts:/x", SETTING) == "mlflow-artifacts:/x"
    with pytest.raises(ConfigError, match=f"^{SETTING} is empty$"):
        absolute_url("", SETTING)


def test_every_client_gets_the_one_retry_and_timeout_policy(aws: None) -> None:
    for endpoint, style in (("", None), ("http://minio:9000", "path")):
        config: Any = s3_client(endpoint).meta.config  # botocore's stubs omit the options
        assert config.connect_timeout == CONNECT_TIMEOUT_S == 5
        assert config.read_timeout == READ_TIMEOUT_S == 60
        assert config.retries == {"total_max_attempts": TOTAL_ATTEMPTS, "mode": "standard"}
        assert (config.s3 or {}).get("addressing_style") == style
    # A store builds its client the same way, once, on first use.
    store = open_prefix("s3://bucket/p", endpoint_url="http://minio:9000", setting=SETTING)
    assert isinstance(store, S3Store) and store._s3 is None
    client = store._client
    assert client is store._client
    assert client.meta.endpoint_url == "http://minio:9000"
    used: Any = client.meta.config
    assert used.retries == {"total_max_attempts": TOTAL_ATTEMPTS, "mode": "standard"}
    assert used.connect_timeout == CONNECT_TIMEOUT_S


def test_s3_errors_name_the_setting_or_the_typed_url(aws: None) -> None:
    configured = open_prefix("s3://missing-bucket/x", setting=SETTING)
    with pytest.raises(ConfigError, match=f"^{SETTING}: .*bucket 'missing-bucket' does not exist"):
        configured.list()
    typed = open_prefix("s3://missing-bucket/x", setting=None)
    with pytest.raises(InputError, match=r"^s3://missing-bucket/x: no such bucket$"):
        typed.list()
    fresh = S3Store("new-bucket", "", setting=SETTING)
    assert fresh.ensure() is True and fresh.ensure() is False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_an_unreachable_store_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    endpoint = f"http://127.0.0.1:{free_port()}"
    # One attempt: the policy's retries would only make this test wait.
    once = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        config=Config(retries={"total_max_attempts": 1}),
    )
    for setting, blamed in ((SETTING, SETTING), (None, ENDPOINT_SETTING)):
        store = S3Store("b", "x", endpoint, setting, client=once)
        with pytest.raises(BackendUnavailableError) as caught:
            store.exists("k")
        assert (
            str(caught.value) == f"{blamed}: cannot reach s3://b/x at {endpoint}: connection failed"
        )


def client_error(code: str, status: int) -> ClientError:
    response: Any = {
        "Error": {"Code": code, "Message": f"the {code} message"},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return ClientError(response, "GetObject")


@pytest.mark.parametrize(
    ("exc", "setting", "kind", "message"),
    [
        (
            NoCredentialsError(),
            SETTING,
            ConfigError,
            f"{SETTING}: no S3 credentials for s3://b/p: set AWS_",
        ),
        (NoCredentialsError(), None, ConfigError, "s3://b/p/k: no S3 credentials: set AWS_"),
        (
            ConnectTimeoutError(endpoint_url="http://m"),
            SETTING,
            BackendUnavailableError,
            f"{SETTING}: cannot reach s3://b/p at http://m: connect timed out",
        ),
        (
            EndpointConnectionError(endpoint_url="http://m"),
            None,
            BackendUnavailableError,
            f"{ENDPOINT_SETTING}: cannot reach s3://b/p at http://m: connection failed",
        ),
        (client_error("NoSuchKey", 404), SETTING, NotFoundError, "s3://b/p/k: not found"),
        (client_error("404", 404), None, NotFoundError, "s3://b/p/k: not found"),
        (
            client_error("AccessDenied", 403),
            SETTING,
            ConfigError,
            f"{SETTING}: s3://b/p/k: access denied; check the AWS_",
        ),
        (
            client_error("SignatureDoesNotMatch", 403),
            None,
            InputError,
            "s3://b/p/k: the secret key does not match",
        ),
        (
            client_error("InvalidBucketName", 400),
            None,
            InputError,
            "s3://b/p/k: InvalidBucketName: the InvalidBucketName message",
        ),
        (
            client_error("SlowDown", 503),
            SETTING,
            BackendUnavailableError,
            f"{SETTING}: cannot reach s3://b/p/k: SlowDown: the SlowDown message",
        ),
        (
            client_error("InternalError", 500),
            None,
            BackendUnavailableError,
            f"{ENDPOINT_SETTING}: cannot reach s3://b/p/k: InternalError",
        ),
    ],
)
def test_one_translation_of_library_errors(
    exc: Exception, setting: str | None, kind: type[Exception], message: str
) -> None:
    assert is_s3_library_error(exc)
    error = translate(
        exc,
        url="s3://b/p",
        where="s3://b/p/k",
        bucket="b",
        setting=setting,
        endpoint_url="http://m",
    )
    assert isinstance(error, kind)
    assert str(error).startswith(message), str(error)
    assert "test" not in str(error)  # never a credential


def test_unreachable_and_library_errors_are_known_by_name() -> None:
    assert is_unreachable(EndpointConnectionError(endpoint_url="http://m"))
    assert not is_unreachable(client_error("NoSuchKey", 404))
    assert not is_s3_library_error(OSError("disk"))


def test_ingest_lists_import_files_and_downloads_through_storage(aws: None, tmp_path: Path) -> None:
    s3 = boto3.client("s3")
    for key in ("in/customers.csv", "in/events.parquet", "in/notes.txt", "in/old/products.csv"):
        s3.put_object(Bucket="bucket", Key=key, Body=b"id\n1\n")
    client = s3_client()
    found = list_import_objects(client, "s3://bucket/in")
    assert [o.uri for o in found] == [
        "s3://bucket/in/customers.csv",
        "s3://bucket/in/events.parquet",
    ]
    head = s3.head_object(Bucket="bucket", Key="in/customers.csv")
    assert (found[0].size, found[0].etag) == (head["ContentLength"], head["ETag"].strip('"'))
    assert [o.key for o in list_import_objects(client, "s3://bucket/in/old/products.csv")] == [
        "in/old/products.csv"
    ]
    assert list_import_objects(client, "s3://bucket/nothing/") == []
    path = download(client, found[0], tmp_path / "staging")
    assert path == tmp_path / "staging" / "customers.csv" and path.read_bytes() == b"id\n1\n"
    with pytest.raises(InputError, match=r"^s3://nope/in: no such bucket$"):
        list_import_objects(client, "s3://nope/in")
