"""Which files a chat accepts, and what type an upload really is.

    detect_type(data, filename="料金表.pdf", declared="application/octet-stream")
    # -> "application/pdf"

The type is decided from the declared content type and the file name, then checked against the
bytes: a client's content type is a hint, never trusted for how the file is read or served.

Deliberate oddities:
- A precise declared type wins over the extension, but a vague one (none, `octet-stream`,
  `text/plain`) or one kaiwa does not accept (Windows sends `.csv` as `application/vnd.ms-excel`)
  gives way to a known extension.
- The bytes have the last word for the binary formats they identify: a PNG named `notes.txt` is
  stored as `image/png`. A "text" file with binary content, or an "image" that is no image, is
  refused; a PDF or Word file that does not look like one is kept, and its text extraction records
  why it failed (the file can still be attached, downloaded and shown).
"""

from __future__ import annotations

import codecs
from pathlib import PurePath

from kaiwa.protocol import ApiError, ErrorCode

__all__ = [
    "ACCEPTED",
    "DOCUMENT_TYPES",
    "IMAGE_TYPES",
    "TEXT_TYPES",
    "detect_type",
    "text_charset",
]

DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"

#: Every accepted content type and the file extensions that stand for it.
ACCEPTED: dict[str, tuple[str, ...]] = {
    "text/plain": (".txt", ".text", ".log"),
    "text/markdown": (".md", ".markdown"),
    "text/csv": (".csv",),
    "text/html": (".html", ".htm"),
    "application/json": (".json",),
    "application/pdf": (".pdf",),
    DOCX: (".docx",),
    "image/png": (".png",),
    "image/jpeg": (".jpg", ".jpeg"),
    "image/gif": (".gif",),
    "image/webp": (".webp",),
}
TEXT_TYPES = frozenset({"text/plain", "text/markdown", "text/csv", "text/html", "application/json"})
IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})
DOCUMENT_TYPES = TEXT_TYPES | {"application/pdf", DOCX}
"""Types whose text is extracted for `lookup`."""

_BY_EXTENSION = {ext: media for media, exts in ACCEPTED.items() for ext in exts}
_ALIASES = {
    "text/x-markdown": "text/markdown",
    "application/x-pdf": "application/pdf",
    "image/jpg": "image/jpeg",
    "image/pjpeg": "image/jpeg",
    "text/json": "application/json",
    "application/csv": "text/csv",
    "text/comma-separated-values": "text/csv",
}
_VAGUE = frozenset({"", "application/octet-stream", "binary/octet-stream", "text/plain"})
_NAMES = {
    "application/pdf": "a PDF file",
    DOCX: "a Word (.docx) file",
    "image/png": "a PNG image",
    "image/jpeg": "a JPEG image",
    "image/gif": "a GIF image",
    "image/webp": "a WebP image",
}


def accepted_list() -> str:
    """`text/plain (.txt, .text, .log), …`: what an error message lists."""
    return ", ".join(f"{media} ({', '.join(exts)})" for media, exts in ACCEPTED.items())


def sniff(data: bytes) -> str | None:
    """The binary format the bytes start with, if one kaiwa accepts (or `application/zip`)."""
    head = data[:16]
    if data.lstrip()[:5].startswith(b"%PDF-"):
        return "application/pdf"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head.startswith(b"PK\x03\x04"):
        return "application/zip"
    return None


def looks_binary(data: bytes) -> bool:
    """True for bytes that cannot be text in any encoding a text upload may use.

    UTF-16 and UTF-32 text carries NUL bytes, but also a byte-order mark.
    """
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return False
    return b"\x00" in data[:8192]


def _media(declared: str | None) -> str:
    media = (declared or "").split(";", 1)[0].strip().lower()
    return _ALIASES.get(media, media)


def detect_type(data: bytes, *, filename: str, declared: str | None) -> str:
    """The accepted content type `data` is stored and served as; raises 400/10006 otherwise."""
    media = _media(declared)
    extension = PurePath(filename).suffix.lower()
    by_extension = _BY_EXTENSION.get(extension)
    claimed: str | None
    if media in ACCEPTED and media not in _VAGUE:
        claimed = media
    elif by_extension is not None:
        claimed = by_extension
    elif media == "text/plain":
        claimed = media
    else:
        claimed = None
    found = sniff(data)
    if found is not None and found != "application/zip":
        return found
    if claimed is None:
        raise ApiError(
            ErrorCode.BAD_REQUEST,
            f"file: unsupported type {media or 'unknown'} ({filename or 'no file name'}); "
            f"accepted are {accepted_list()}",
        )
    if claimed in IMAGE_TYPES:
        raise ApiError(
            ErrorCode.BAD_REQUEST, f"file: the content is not {_NAMES[claimed]} as its type says"
        )
    if claimed in TEXT_TYPES and (found == "application/zip" or looks_binary(data)):
        raise ApiError(
            ErrorCode.BAD_REQUEST,
            f"file: the content is binary, not text as its type ({claimed}) says",
        )
    return claimed


def text_charset(head: bytes) -> str | None:
    """The charset text starting with `head` is in, to serve it with; None when unsure.

    `head` may end inside a character. Japanese files come in Shift_JIS and EUC-JP too.
    """
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    for encoding, name in (("utf-8", "utf-8"), ("cp932", "shift_jis"), ("euc_jp", "euc-jp")):
        try:
            codecs.getincrementaldecoder(encoding)().decode(head, final=False)
        except UnicodeDecodeError:
            continue
        return name
    return None
