"""A file to upload — bytes, a path, or a binary file object — as one multipart part.

    with file_part(Path("配送メモ.txt")) as part:      # ('配送メモ.txt', <open file>, 'text/plain')
        client._call(calls.upload_file(part, scope="persistent"))

A path (`str` or `os.PathLike`) is opened for the request and closed after it; a file object is
sent whole (httpx rewinds a seekable one) and left open, as it is the caller's; bytes are sent as
they are. The name defaults to the path's or the file object's, else `upload`; the content type
is guessed from the name (the server checks the bytes anyway).
"""

from __future__ import annotations

import mimetypes
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from kaiwa.client._base import FilePart

FileInput = bytes | str | os.PathLike[str] | IO[bytes]
"""What `files.upload` and `knowledge_bases.documents.upload` take; a `str` is a path."""

DEFAULT_NAME = "upload"
DEFAULT_TYPE = "application/octet-stream"


@contextmanager
def file_part(
    file: FileInput, *, filename: str | None = None, content_type: str | None = None
) -> Iterator[FilePart]:
    if isinstance(file, bytes):
        name = filename or DEFAULT_NAME
        yield (name, file, content_type or guess_type(name))
    elif isinstance(file, str | os.PathLike):
        path = Path(file)
        name = filename or path.name
        with path.open("rb") as opened:
            yield (name, opened, content_type or guess_type(name))
    else:
        name = filename or Path(str(getattr(file, "name", "") or DEFAULT_NAME)).name
        yield (name, file, content_type or guess_type(name))


def guess_type(name: str) -> str:
    """
    >>> guess_type("メモ.txt"), guess_type("report.pdf"), guess_type("upload")
    ('text/plain', 'application/pdf', 'application/octet-stream')
    """
    return mimetypes.guess_type(name, strict=False)[0] or DEFAULT_TYPE
