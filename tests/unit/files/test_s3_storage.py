"""`S3BlobStore` against a real S3-protocol server (moto): keys under the prefix, multipart
streams, failed uploads that leave nothing, and `open_blob_store` choosing it from settings."""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from tests.s3_server import S3Server

from kaiwa.config import Settings
from kaiwa.files import BlobStore, BlobStoreUnavailable, FileStore, open_blob_store
from kaiwa.files.s3 import PART_SIZE, S3BlobStore

MiB = 1024 * 1024


async def random_chunks(total: int, *, fail: bool = False) -> AsyncIterator[bytes]:
    """`total` random bytes in 256 KiB chunks; with `fail`, an error after the last one."""
    for start in range(0, total, 256 * 1024):
        yield os.urandom(min(256 * 1024, total - start))
    if fail:
        raise OSError("the client went away")


async def test_objects_are_kept_under_the_prefix_by_their_key(
    s3_server: S3Server, bucket: str
) -> None:
    prefixed = s3_server.blob_store(bucket, prefix="tenant-a/kaiwa/")
    bare = s3_server.blob_store(bucket, prefix="")
    first = await prefixed.save(b"one")
    second = await bare.save_stream(random_chunks(10))
    assert s3_server.keys(bucket) == sorted([f"tenant-a/kaiwa/{first}", second])
    await prefixed.delete(first)
    assert s3_server.keys(bucket) == [second]


async def test_a_stream_larger_than_a_part_is_kept_whole(s3_server: S3Server, bucket: str) -> None:
    store = s3_server.blob_store(bucket)
    pieces: list[bytes] = []

    async def kept() -> AsyncIterator[bytes]:
        async for chunk in random_chunks(2 * PART_SIZE + 12345):
            pieces.append(chunk)
            yield chunk

    key = await store.save_stream(kept())
    data = b"".join(pieces)
    head = s3_server.client().head_object(Bucket=bucket, Key=f"kaiwa/{key}")
    assert head["ContentLength"] == len(data)
    assert head["ETag"].endswith('-3"')  # three parts: it was a multipart upload
    blob = await store.open(key)
    assert blob.size == len(data)
    chunks = [chunk async for chunk in blob.chunks()]
    assert b"".join(chunks) == data
    assert max(len(chunk) for chunk in chunks) < 2 * MiB  # streamed, not fetched whole


@pytest.mark.parametrize("size", [1000, PART_SIZE + 1000], ids=["one request", "multipart"])
async def test_a_stream_that_fails_leaves_no_object_and_no_open_upload(
    s3_server: S3Server, bucket: str, size: int
) -> None:
    store = s3_server.blob_store(bucket)
    with pytest.raises(OSError, match="went away"):
        await store.save_stream(random_chunks(size, fail=True))
    assert s3_server.keys(bucket) == []
    assert s3_server.multipart_uploads(bucket) == []


def test_s3_blob_store_is_a_blob_store(s3_server: S3Server) -> None:
    store: BlobStore = s3_server.blob_store("any-bucket")
    assert store


# -- open_blob_store ------------------------------------------------------------------------


def test_the_default_is_the_local_directory(tmp_path: Path) -> None:
    store = open_blob_store(Settings(data_dir=tmp_path))
    assert isinstance(store, FileStore)
    assert store.root == tmp_path / "files"


async def test_s3_settings_open_a_working_store(s3_server: S3Server, bucket: str) -> None:
    variables = s3_server.settings(bucket, prefix="kaiwa/")
    settings = Settings(**{name.removeprefix("KAIWA_").lower(): v for name, v in variables.items()})
    assert settings.s3_secret_access_key
    assert settings.s3_secret_access_key not in repr(settings)
    store = open_blob_store(settings)
    assert isinstance(store, S3BlobStore)
    key = await store.save(b"through the settings")
    assert s3_server.keys(bucket) == [f"kaiwa/{key}"]


def test_s3_without_a_bucket_refuses_to_start() -> None:
    with pytest.raises(BlobStoreUnavailable, match="KAIWA_S3_BUCKET"):
        open_blob_store(Settings(files_backend="s3"))


def test_s3_without_obstore_refuses_to_start_naming_the_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # As if the `s3` extra were not installed: importing obstore fails.
    monkeypatch.setitem(sys.modules, "obstore", None)
    monkeypatch.delitem(sys.modules, "kaiwa.files.s3")
    with pytest.raises(BlobStoreUnavailable, match=r"pip install 'kaiwa\[s3\]'"):
        open_blob_store(Settings(files_backend="S3", s3_bucket="files"))
