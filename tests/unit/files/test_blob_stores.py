"""What every `BlobStore` does, on each backend: a local directory and an S3 bucket (moto)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from kaiwa.files import BlobNotFound, BlobStore


async def chunks_of(*pieces: bytes) -> AsyncIterator[bytes]:
    for piece in pieces:
        yield piece


async def read_blob(store: BlobStore, key: str) -> tuple[int, bytes]:
    blob = await store.open(key)
    return blob.size, b"".join([chunk async for chunk in blob.chunks()])


async def test_saved_bytes_read_back_and_stream_with_their_size(blob_store: BlobStore) -> None:
    data = b"0123456789"
    key = await blob_store.save(data)
    assert await blob_store.read(key) == data
    assert await read_blob(blob_store, key) == (len(data), data)


async def test_a_stream_is_kept_whole_under_a_key_of_its_own(blob_store: BlobStore) -> None:
    first = await blob_store.save_stream(chunks_of(b"abc", b"", "議事録".encode(), b"\x00" * 1000))
    second = await blob_store.save_stream(chunks_of(b"x"))
    assert first != second
    expected = b"abc" + "議事録".encode() + b"\x00" * 1000
    assert await read_blob(blob_store, first) == (len(expected), expected)
    assert await blob_store.read(second) == b"x"


async def test_an_empty_stream_is_an_empty_blob(blob_store: BlobStore) -> None:
    key = await blob_store.save_stream(chunks_of())
    assert await read_blob(blob_store, key) == (0, b"")


async def test_delete_is_idempotent_and_a_deleted_blob_is_not_found(
    blob_store: BlobStore,
) -> None:
    key = await blob_store.save(b"x")
    await blob_store.delete(key)
    await blob_store.delete(key)
    with pytest.raises(BlobNotFound) as raised:
        await blob_store.read(key)
    assert raised.value.key == key
    with pytest.raises(BlobNotFound):
        await blob_store.open(key)


async def test_a_key_never_written_is_not_found(blob_store: BlobStore) -> None:
    never = "ab/ab" + "0" * 30
    with pytest.raises(BlobNotFound):
        await blob_store.read(never)
    with pytest.raises(BlobNotFound):
        await blob_store.open(never)


@pytest.mark.parametrize("key", ["../etc/passwd", "/abs", "ab/../../x", "", "AB/" + "0" * 32])
async def test_a_key_no_store_made_is_refused(blob_store: BlobStore, key: str) -> None:
    for operation in (blob_store.read, blob_store.open, blob_store.delete):
        with pytest.raises(ValueError, match="Not a storage key"):
            await operation(key)


async def test_an_open_blob_may_be_closed_unread(blob_store: BlobStore) -> None:
    key = await blob_store.save(b"x" * 100_000)
    blob = await blob_store.open(key)
    await blob.aclose()
    assert await blob_store.read(key) == b"x" * 100_000
