"""`FileStore`: atomic writes, sharded directories, chunked reads; a failed write leaves nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kaiwa.files import BlobStore, FileStore


def stored_files(root: Path) -> list[Path]:
    return sorted(path for path in root.rglob("*") if path.is_file())


async def test_an_open_blob_streams_in_chunks_of_the_stores_size(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "files", chunk_size=4)
    key = await store.save(b"0123456789")
    blob = await store.open(key)
    assert [chunk async for chunk in blob.chunks()] == [b"0123", b"4567", b"89"]


async def test_keys_are_sharded_and_leave_no_temporary_files(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    keys = [await store.save(b"x") for _ in range(3)]
    assert len(set(keys)) == 3
    for key in keys:
        shard, name = key.split("/")
        assert name.startswith(shard)
        assert store.path(key) == tmp_path / shard / name
    assert stored_files(tmp_path) == sorted(store.path(key) for key in keys)


async def test_a_stream_that_fails_leaves_no_file_at_all(tmp_path: Path) -> None:
    store = FileStore(tmp_path)

    async def failing() -> AsyncIterator[bytes]:
        yield b"half of it"
        raise OSError("the client went away")

    with pytest.raises(OSError, match="went away"):
        await store.save_stream(failing())
    assert stored_files(tmp_path) == []


async def test_a_blob_being_written_is_invisible_until_complete(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    seen: list[list[Path]] = []

    async def watched() -> AsyncIterator[bytes]:
        yield b"first"
        # Half-way: only a temporary file exists, under no key.
        seen.append(stored_files(tmp_path))
        yield b"second"

    key = await store.save_stream(watched())
    [[temporary]] = seen
    assert temporary.name.endswith(".tmp")
    assert temporary != store.path(key)
    assert stored_files(tmp_path) == [store.path(key)]


@pytest.mark.parametrize("key", ["../etc/passwd", "/abs", "ab/../../x", "", "AB/" + "0" * 32])
def test_a_key_the_store_did_not_make_has_no_path(tmp_path: Path, key: str) -> None:
    with pytest.raises(ValueError, match="Not a storage key"):
        FileStore(tmp_path).path(key)


def test_file_store_is_a_blob_store(tmp_path: Path) -> None:
    store: BlobStore = FileStore(tmp_path)
    assert store
