"""Blob storage for uploaded files: bytes in, a storage key out.

    blobs = FileStore(settings.files_dir)
    key = await blobs.save(data)          # "3f/3fa85f6457174562b3fc2c963f66afa6"
    data = await blobs.read(key)
    blob = await blobs.open(key)          # BlobNotFound if it is gone
    async for chunk in blob.chunks(): ...
    await blobs.delete(key)

`BlobStore` (and the `Blob` it opens) is the whole interface the server uses, small enough for an
S3-compatible store to implement; `FileStore` keeps blobs in a local directory (or a volume every
replica shares).

Deliberate oddities: a key is random, not the content's hash, so deleting one file never touches
another's bytes; keys are sharded by their first two characters so no directory grows huge; a
write goes to a temporary file that is fsynced and renamed into place, so a crash leaves either the
whole blob or none (at worst a stray `.tmp` file), never half of one.
"""

from __future__ import annotations

import asyncio
import os
import re
import uuid
from collections.abc import AsyncIterator
from contextlib import suppress
from pathlib import Path
from typing import BinaryIO, Protocol

__all__ = ["Blob", "BlobNotFound", "BlobStore", "FileStore"]

CHUNK_SIZE = 64 * 1024
_KEY = re.compile(r"^[0-9a-f]{2}/[0-9a-f]{32}$")


class BlobNotFound(Exception):
    """No blob under this key (never written, or deleted)."""

    def __init__(self, key: str) -> None:
        super().__init__(f"No blob {key!r}")
        self.key = key


class Blob(Protocol):
    """An open blob: its size, and its bytes as chunks (reading them to the end closes it)."""

    size: int

    def chunks(self) -> AsyncIterator[bytes]: ...
    async def aclose(self) -> None:
        """Close it without reading it to the end."""


class BlobStore(Protocol):
    async def save(self, data: bytes) -> str:
        """Keep `data`; its storage key."""

    async def read(self, key: str) -> bytes:
        """All of a blob's bytes; raises `BlobNotFound`."""

    async def open(self, key: str) -> Blob:
        """A blob to stream; raises `BlobNotFound`."""

    async def delete(self, key: str) -> None:
        """Remove a blob; one already gone is not an error."""


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


class FileStore:
    """Blobs as files under `root`, one per key; blocking file work runs in a thread."""

    def __init__(self, root: Path, *, chunk_size: int = CHUNK_SIZE) -> None:
        self.root = root
        self.chunk_size = chunk_size

    def path(self, key: str) -> Path:
        """Where the blob of `key` lives; a key this store did not make is refused."""
        if not _KEY.match(key):
            raise ValueError(f"Not a storage key: {key!r}")
        return self.root / key

    async def save(self, data: bytes) -> str:
        name = uuid.uuid4().hex
        key = f"{name[:2]}/{name}"
        await asyncio.to_thread(self._write, self.path(key), data)
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

    @staticmethod
    def _write(path: Path, data: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f"{path.name}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            with temporary.open("xb") as file:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, path)
        except BaseException:
            with suppress(OSError):
                temporary.unlink()
            raise
        # The rename itself is durable only once the directory is synced.
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
