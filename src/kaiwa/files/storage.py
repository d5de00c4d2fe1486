"""Blob storage for uploaded files: bytes in, a storage key out.

    blobs = open_blob_store(settings)     # kaiwa.files.backends: a directory, or an S3 bucket
    key = await blobs.save(data)          # "3f/3fa85f6457174562b3fc2c963f66afa6"
    key = await blobs.save_stream(chunks) # the same from an async iterable, never held whole
    data = await blobs.read(key)
    blob = await blobs.open(key)          # BlobNotFound if it is gone
    async for chunk in blob.chunks(): ...
    await blobs.delete(key)

`BlobStore` (and the `Blob` it opens) is the whole interface the server uses. `FileStore`
(`kaiwa.files.local`) keeps blobs in a local directory, or a volume every replica shares;
`S3BlobStore` (`kaiwa.files.s3`) in a bucket of S3-compatible object storage.

Deliberate oddities: a key is random, not the content's hash, so deleting one file never touches
another's bytes; keys are sharded by their first two characters so no directory grows huge, and
both backends use the same keys, so a directory copied into a bucket (under the prefix) is found.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterable, AsyncIterator
from typing import BinaryIO, Protocol

__all__ = [
    "CHUNK_SIZE",
    "Blob",
    "BlobNotFound",
    "BlobStore",
    "check_key",
    "file_chunks",
    "new_key",
]

CHUNK_SIZE = 64 * 1024
"""Bytes a download is streamed in."""

_KEY = re.compile(r"^[0-9a-f]{2}/[0-9a-f]{32}$")


class BlobNotFound(Exception):
    """No blob under this key (never written, or deleted)."""

    def __init__(self, key: str) -> None:
        super().__init__(f"No blob {key!r}")
        self.key = key


def new_key() -> str:
    """A fresh storage key: `<first two hex digits>/<32 hex digits>`."""
    name = uuid.uuid4().hex
    return f"{name[:2]}/{name}"


def check_key(key: str) -> str:
    """`key` itself; a key no store made (`../etc/passwd`) is refused with `ValueError`."""
    if not _KEY.match(key):
        raise ValueError(f"Not a storage key: {key!r}")
    return key


class Blob(Protocol):
    """An open blob: its size, and its bytes as chunks (reading them to the end closes it)."""

    size: int

    def chunks(self) -> AsyncIterator[bytes]: ...
    async def aclose(self) -> None:
        """Close it without reading it to the end."""


class BlobStore(Protocol):
    async def save(self, data: bytes) -> str:
        """Keep `data`; its storage key."""

    async def save_stream(self, chunks: AsyncIterable[bytes]) -> str:
        """Keep the bytes `chunks` yields, holding only a bounded part of them at a time; the
        storage key. If `chunks` raises, nothing is kept and the error propagates."""

    async def read(self, key: str) -> bytes:
        """All of a blob's bytes; raises `BlobNotFound`."""

    async def open(self, key: str) -> Blob:
        """A blob to stream; raises `BlobNotFound`."""

    async def delete(self, key: str) -> None:
        """Remove a blob; one already gone is not an error."""


async def file_chunks(file: BinaryIO, size: int = CHUNK_SIZE) -> AsyncIterator[bytes]:
    """A file's bytes from where it stands, in pieces read off the event loop: what
    `save_stream` takes, from an upload spooled to disk."""
    while chunk := await asyncio.to_thread(file.read, size):
        yield chunk
