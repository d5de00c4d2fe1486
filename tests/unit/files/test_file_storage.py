"""`FileStore`: bytes in, a key out; atomic writes, sharded directories, idempotent deletes."""

from __future__ import annotations

from pathlib import Path

import pytest

from kaiwa.files import BlobNotFound, BlobStore, FileStore


async def test_saved_bytes_read_back_and_stream_in_chunks(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "files", chunk_size=4)
    data = b"0123456789"
    key = await store.save(data)
    assert await store.read(key) == data
    blob = await store.open(key)
    assert blob.size == len(data)
    assert [chunk async for chunk in blob.chunks()] == [b"0123", b"4567", b"89"]


async def test_keys_are_sharded_and_leave_no_temporary_files(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    keys = [await store.save(b"x") for _ in range(3)]
    assert len(set(keys)) == 3
    for key in keys:
        shard, name = key.split("/")
        assert name.startswith(shard)
        assert store.path(key) == tmp_path / shard / name
    stored = sorted(path for path in tmp_path.rglob("*") if path.is_file())  # noqa: ASYNC240
    assert stored == sorted(store.path(key) for key in keys)


async def test_delete_is_idempotent_and_a_deleted_blob_is_not_found(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    key = await store.save(b"x")
    await store.delete(key)
    await store.delete(key)
    with pytest.raises(BlobNotFound):
        await store.read(key)
    with pytest.raises(BlobNotFound):
        await store.open(key)


@pytest.mark.parametrize("key", ["../etc/passwd", "/abs", "ab/../../x", "", "AB/" + "0" * 32])
def test_a_key_the_store_did_not_make_is_refused(tmp_path: Path, key: str) -> None:
    with pytest.raises(ValueError, match="Not a storage key"):
        FileStore(tmp_path).path(key)


def test_file_store_is_a_blob_store(tmp_path: Path) -> None:
    store: BlobStore = FileStore(tmp_path)
    assert store
