"""`FileStore`: blobs as files in a local directory (or a volume every replica shares).

    blobs = FileStore(settings.files_dir)
    blobs.path("3f/3fa85f6457174562b3fc2c963f66afa6")   # <root>/3f/3fa85f64…

Deliberate oddity: a write goes to a temporary file that is fsynced and renamed into place, so a
crash leaves either the whole blob or none (at worst a stray `.tmp` file), never half of one.
Blocking file work runs in a thread, one call per chunk.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterable, AsyncIterator
from contextlib import suppress
from pathlib import Path
from typing import BinaryIO

from kaiwa.files.storage import CHUNK_SIZE, Blob, BlobNotFound, check_key, new_key

__all__ = ["FileStore"]


class _LocalBlob:
    def __init__(self, file: BinaryIO, *, size: int, chunk_size: int) -> None:
        self.size = size
        self._file = file
        self._chunk_size = chunk_size

    async def chunks(self) -> AsyncIterator[bytes]:
        try:
            while chunk := await asyncio.to_thread(self._file.read, self._chunk_size):
                yield chunk
        finally:
            self._file.close()

    async def aclose(self) -> None:
        self._file.close()


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


class FileStore:
    """Blobs as files under `root`, one per key."""

    def __init__(self, root: Path, *, chunk_size: int = CHUNK_SIZE) -> None:
        self.root = root
        self.chunk_size = chunk_size

    def path(self, key: str) -> Path:
        """Where the blob of `key` lives; a key this store did not make is refused."""
        return self.root / check_key(key)

    async def save(self, data: bytes) -> str:
        return await self.save_stream(_once(data))

    async def save_stream(self, chunks: AsyncIterable[bytes]) -> str:
        key = new_key()
        path = self.path(key)
        temporary = path.with_name(f"{path.name}.{uuid.uuid4().hex[:8]}.tmp")
        file = await asyncio.to_thread(_create, temporary)
        try:
            async for chunk in chunks:
                await asyncio.to_thread(file.write, chunk)
            await asyncio.to_thread(_finish, file, temporary, path)
        except BaseException:
            file.close()
            with suppress(OSError):
                await asyncio.to_thread(temporary.unlink)
            raise
        return key

    async def read(self, key: str) -> bytes:
        path = self.path(key)
        try:
            return await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            raise BlobNotFound(key) from None

    async def open(self, key: str) -> Blob:
        path = self.path(key)
        try:
            file = await asyncio.to_thread(path.open, "rb")
        except FileNotFoundError:
            raise BlobNotFound(key) from None
        size = os.fstat(file.fileno()).st_size
        return _LocalBlob(file, size=size, chunk_size=self.chunk_size)

    async def delete(self, key: str) -> None:
        path = self.path(key)
        await asyncio.to_thread(path.unlink, missing_ok=True)


def _create(temporary: Path) -> BinaryIO:
    temporary.parent.mkdir(parents=True, exist_ok=True)
    return temporary.open("xb")


def _finish(file: BinaryIO, temporary: Path, path: Path) -> None:
    """Make the written file durable under its real name."""
    with file:
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)
    # The rename itself is durable only once the directory is synced.
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
