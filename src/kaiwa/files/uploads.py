"""Accepting an upload: check it, read its text, keep its bytes, record it.

    file = await upload(session, blobs, workspace_id=..., filename="議事録.docx",
                        declared_type=None, file=spooled, scope="persistent", max_bytes=20 << 20,
                        limits=InflateLimits(max_bytes=100 << 20, max_ratio=100))

`file` is a seekable binary file (the temporary file Starlette spools an upload to). Its bytes
stream into the `BlobStore` in `READ_SIZE` pieces, hashed on the way: an image is never held in
memory whole. Only a document is, because text extraction needs all of it.

Text is extracted for documents (text, Markdown, CSV, HTML, JSON, PDF, Word) by
`kaiwa.knowledge.ingest`, in a thread. A document whose text cannot be read (a damaged PDF, a scan
without a text layer) is still stored, with `error` saying why and no `text`: it can be attached
and downloaded, `lookup` just finds nothing in it. One that unpacks past `limits` (a zip bomb
dressed as a Word file) is refused like a file over `max_bytes`, and nothing of it is kept.

Deliberate oddity: the type is decided from the first `HEAD_SIZE` bytes, all that `detect_type`
looks at (16 bytes of signature, 8 KiB for telling text from binary).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import unicodedata
from collections.abc import AsyncIterator
from pathlib import PurePath
from typing import BinaryIO

from sqlalchemy.ext.asyncio import AsyncSession

from kaiwa.files.storage import BlobStore
from kaiwa.files.types import DOCUMENT_TYPES, DOCX, detect_type
from kaiwa.knowledge.ingest import (
    DEFAULT_LIMITS,
    DocumentTooLarge,
    InflateLimits,
    IngestError,
    extract_text,
)
from kaiwa.protocol import ApiError, ErrorCode
from kaiwa.store import files
from kaiwa.store.files import Scope
from kaiwa.store.models import UploadedFile

__all__ = ["clean_name", "extract", "upload"]

logger = logging.getLogger(__name__)

MAX_NAME_CHARS = 255
HEAD_SIZE = 8192
READ_SIZE = 256 * 1024
"""Bytes an upload is read and stored in."""

# How ingest reads each document type: its own types, named by an extension it knows.
_INGEST_AS = {
    "text/plain": ("text/plain", ".txt"),
    "text/csv": ("text/plain", ".txt"),
    "application/json": ("text/plain", ".txt"),
    "text/markdown": ("text/markdown", ".md"),
    "text/html": ("text/html", ".html"),
    "application/pdf": ("application/pdf", ".pdf"),
    DOCX: (DOCX, ".docx"),
}


def clean_name(filename: str | None) -> str:
    """The name to keep: no directories, no control characters, at most 255 characters."""
    name = (filename or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(char for char in name if unicodedata.category(char) not in ("Cc", "Cs")).strip()
    if len(name) > MAX_NAME_CHARS:
        path = PurePath(name)
        suffix = path.suffix if len(path.suffix) <= 16 else ""
        name = path.stem[: MAX_NAME_CHARS - len(suffix)] + suffix
    return name or "file"


def _extract(
    data: bytes, name: str, content_type: str, limits: InflateLimits
) -> tuple[str | None, str | None]:
    ingest_type, extension = _INGEST_AS[content_type]
    ingest_name = PurePath(name).stem + extension
    try:
        extracted = extract_text(
            data, filename=ingest_name, content_type=ingest_type, limits=limits
        )
    except DocumentTooLarge as exc:
        raise DocumentTooLarge(exc.message.replace(ingest_name, name, 1)) from None
    except IngestError as exc:
        return None, exc.message.replace(ingest_name, name, 1)
    # A lone surrogate (from a damaged PDF's fonts) has no UTF-8 form the database could store.
    return extracted.text.encode("utf-8", "replace").decode("utf-8"), None


async def extract(
    data: bytes, *, name: str, content_type: str, limits: InflateLimits = DEFAULT_LIMITS
) -> tuple[str | None, str | None]:
    """`(text, error)` of a file: text for documents (or why there is none), neither for images.

    Raises `DocumentTooLarge` for a document that unpacks past `limits`.
    """
    if content_type not in DOCUMENT_TYPES:
        return None, None
    try:
        return await asyncio.to_thread(_extract, data, name, content_type, limits)
    except DocumentTooLarge:
        raise
    except Exception:
        # A parser bug must not lose the upload: the file is kept, without text.
        logger.exception("text extraction failed for %r (%s)", name, content_type)
        return None, f"{name}: the text of this file could not be read"


class _Hashed:
    """`file`'s bytes in pieces for `BlobStore.save_stream`, hashed and counted on the way."""

    def __init__(self, file: BinaryIO) -> None:
        self.size = 0
        self._file = file
        self._sha256 = hashlib.sha256()

    def _read(self) -> bytes:
        # Read and hash in the same worker thread: 20 MiB of SHA-256 stays off the event loop.
        chunk = self._file.read(READ_SIZE)
        self._sha256.update(chunk)
        return chunk

    async def chunks(self) -> AsyncIterator[bytes]:
        while chunk := await asyncio.to_thread(self._read):
            self.size += len(chunk)
            yield chunk

    def hexdigest(self) -> str:
        return self._sha256.hexdigest()


def _size(file: BinaryIO) -> int:
    """The size of a seekable file, left at its start."""
    size = file.seek(0, os.SEEK_END)
    file.seek(0)
    return size


def _read_all(file: BinaryIO) -> bytes:
    file.seek(0)
    return file.read()


async def upload(
    session: AsyncSession,
    blobs: BlobStore,
    *,
    workspace_id: str,
    filename: str | None,
    declared_type: str | None,
    file: BinaryIO,
    scope: Scope,
    max_bytes: int,
    limits: InflateLimits = DEFAULT_LIMITS,
) -> UploadedFile:
    """Check, extract, store and commit an uploaded file; raises `ApiError` with nothing kept.

    Too large, or unpacking past `limits`, is 400/10006 as in Codeer, like any other bad file.
    """
    size = await asyncio.to_thread(_size, file)
    if size > max_bytes:
        raise ApiError(
            ErrorCode.BAD_REQUEST,
            f"file: must be at most {max_bytes} bytes (max_upload_bytes), got {size}",
        )
    if not size:
        raise ApiError(ErrorCode.BAD_REQUEST, "file: must not be empty")
    name = clean_name(filename)
    head = await asyncio.to_thread(file.read, HEAD_SIZE)
    content_type = detect_type(head, filename=name, declared=declared_type)
    text: str | None = None
    error: str | None = None
    # Only a document is read whole, for its text; anything else only ever streams.
    if content_type in DOCUMENT_TYPES:
        try:
            text, error = await extract(
                await asyncio.to_thread(_read_all, file),
                name=name,
                content_type=content_type,
                limits=limits,
            )
        except DocumentTooLarge as exc:
            raise ApiError(ErrorCode.BAD_REQUEST, f"file: {exc.message}") from None
    await asyncio.to_thread(file.seek, 0)
    hashed = _Hashed(file)
    key = await blobs.save_stream(hashed.chunks())
    try:
        stored = files.add_file(
            session,
            workspace_id=workspace_id,
            original_name=name,
            content_type=content_type,
            size=hashed.size,
            sha256=hashed.hexdigest(),
            scope=scope,
            storage_key=key,
            text=text,
            error=error,
        )
        await session.commit()
    except BaseException:
        await session.rollback()
        await blobs.delete(key)
        raise
    return stored
