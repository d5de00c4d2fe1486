"""Text out of an uploaded document: plain text, Markdown, HTML, PDF and Word (docx).

    extracted = extract_text(data, filename="料金表.pdf", content_type="application/pdf")
    extracted.title, extracted.text, extracted.content_type

Everything here is synchronous and CPU-bound (a 20 MB PDF takes seconds): callers run it in a
thread. Errors are `IngestError`s whose `message` a user can act on:

    IngestError
    ├── UnsupportedType       the type is not one of `SUPPORTED_TYPES`
    └── DocumentError         the file is of a supported type but corrupt, encrypted or without text
        └── DocumentTooLarge  it unpacks past `limits` (`kaiwa.knowledge.inflate`): a zip bomb
                              dressed as a Word file, a PDF whose streams or text balloon

A Word file's members and a PDF's streams are counted against `limits` before and while they are
parsed, in chunks, so a refusal costs little more memory than the file itself.

Deliberate oddities: plain text without a byte-order mark is read as UTF-8, then CP932 (Shift_JIS
as Windows writes it), then EUC-JP, the encodings Japanese files actually come in; a file none of
them decodes is refused rather than read with replacement characters. NUL characters are dropped
from every extracted text, as PostgreSQL cannot store them.
"""

from __future__ import annotations

import codecs
import io
import re
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import PurePath
from typing import Literal

from kaiwa.knowledge.chunk import chunk_text
from kaiwa.knowledge.inflate import Budget, InflateLimits, TooLarge, check_zip

__all__ = [
    "DEFAULT_LIMITS",
    "SUPPORTED_TYPES",
    "DocumentError",
    "DocumentTooLarge",
    "Extracted",
    "InflateLimits",
    "IngestError",
    "UnsupportedType",
    "chunk_text",
    "detect_type",
    "extract_text",
]

Kind = Literal["text", "markdown", "html", "pdf", "docx"]

DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"

#: The canonical content type of each kind of document.
SUPPORTED_TYPES: dict[Kind, str] = {
    "text": "text/plain",
    "markdown": "text/markdown",
    "html": "text/html",
    "pdf": "application/pdf",
    "docx": DOCX,
}

_BY_CONTENT_TYPE: dict[str, Kind] = {
    "text/plain": "text",
    "text/markdown": "markdown",
    "text/x-markdown": "markdown",
    "text/html": "html",
    "application/xhtml+xml": "html",
    "application/pdf": "pdf",
    "application/x-pdf": "pdf",
    DOCX: "docx",
}
_BY_EXTENSION: dict[str, Kind] = {
    ".txt": "text",
    ".text": "text",
    ".md": "markdown",
    ".markdown": "markdown",
    ".html": "html",
    ".htm": "html",
    ".xhtml": "html",
    ".pdf": "pdf",
    ".docx": "docx",
}
# Content types that say nothing precise: the file's extension decides instead.
_VAGUE_TYPES = frozenset({"", "application/octet-stream", "binary/octet-stream", "text/plain"})
_SUPPORTED_NAMES = ".txt, .md, .html, .pdf, .docx"


class IngestError(Exception):
    """A document that cannot be turned into text; `message` says why, for the user."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UnsupportedType(IngestError):
    pass


class DocumentError(IngestError):
    pass


class DocumentTooLarge(DocumentError):
    pass


DEFAULT_LIMITS = InflateLimits()


@dataclass(frozen=True, slots=True)
class Extracted:
    title: str
    """The document's own title (metadata, first heading), else the file name without suffix."""
    text: str
    content_type: str
    """The canonical content type of the kind of document it was read as."""


def detect_type(*, filename: str, content_type: str | None) -> str:
    """The canonical content type a file will be read as; raises `UnsupportedType`.

    A precise content type wins; a vague one (none, `application/octet-stream`, `text/plain`)
    gives way to a known file extension.
    """
    return SUPPORTED_TYPES[_kind(filename, content_type)]


def _kind(filename: str, content_type: str | None) -> Kind:
    media = (content_type or "").split(";", 1)[0].strip().lower()
    by_extension = _BY_EXTENSION.get(PurePath(filename).suffix.lower())
    if by_extension is not None and media in _VAGUE_TYPES:
        return by_extension
    by_type = _BY_CONTENT_TYPE.get(media)
    if by_type is not None:
        return by_type
    if by_extension is not None and not media:
        return by_extension
    what = f"type {media}" if media else "type"
    raise UnsupportedType(
        f"{filename or 'The file'}: unsupported {what}; supported are {_SUPPORTED_NAMES} "
        "(plain text, Markdown, HTML, PDF, Word)"
    )


def extract_text(
    data: bytes,
    *,
    filename: str,
    content_type: str | None,
    limits: InflateLimits = DEFAULT_LIMITS,
) -> Extracted:
    """The title and text of a document; raises `UnsupportedType` or `DocumentError`."""
    kind = _kind(filename, content_type)
    name = filename or "The file"
    stem = PurePath(filename).stem or "Untitled"
    if kind == "pdf":
        title, text = _pdf(data, name, limits)
    elif kind == "docx":
        title, text = _docx(data, name, limits)
    elif kind == "html":
        title, text = _html(data, name)
    else:
        text = decode_text(data, name)
        title = _markdown_title(text) if kind == "markdown" else ""
    text = _tidy(text)
    if not text:
        raise DocumentError(f"{name}: the document contains no text")
    return Extracted(
        title=_tidy(title)[:512] or stem[:512], text=text, content_type=SUPPORTED_TYPES[kind]
    )


def decode_text(data: bytes, name: str = "The file") -> str:
    """Text from bytes: UTF-8/16/32 by byte-order mark, else UTF-8, CP932 or EUC-JP."""
    for bom, encoding in (
        (codecs.BOM_UTF32_LE, "utf-32"),
        (codecs.BOM_UTF32_BE, "utf-32"),
        (codecs.BOM_UTF8, "utf-8-sig"),
        (codecs.BOM_UTF16_LE, "utf-16"),
        (codecs.BOM_UTF16_BE, "utf-16"),
    ):
        if data.startswith(bom):
            try:
                return data.decode(encoding)
            except UnicodeDecodeError:
                raise DocumentError(
                    f"{name}: the text is not valid {encoding.upper()} despite its byte-order mark"
                ) from None
    for encoding in ("utf-8", "cp932", "euc_jp"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise DocumentError(
        f"{name}: the text is in an unknown encoding; save it as UTF-8 (or Shift_JIS) and retry"
    )


_SPACES = re.compile(r"[ \t\u3000\xa0]+\n")
_BLANK_LINES = re.compile(r"\n{3,}")


def _tidy(text: str) -> str:
    text = text.replace("\x00", "").replace("\r\n", "\n").replace("\r", "\n")
    text = _SPACES.sub("\n", text)
    return _BLANK_LINES.sub("\n\n", text).strip()


_ATX_HEADING = re.compile(r"^ {0,3}#{1,6}[ \t]+(.+?)[ \t#]*$", re.MULTILINE)
_SETEXT_HEADING = re.compile(r"^(?=\S)(.+)\n {0,3}(?:=+|-+)[ \t]*$", re.MULTILINE)


def _markdown_title(text: str) -> str:
    found = [
        match
        for match in (_ATX_HEADING.search(text), _SETEXT_HEADING.search(text))
        if match is not None
    ]
    if not found:
        return ""
    return min(found, key=lambda match: match.start()).group(1).strip()


def _html(data: bytes, name: str) -> tuple[str, str]:
    import trafilatura
    from lxml import etree, html  # type: ignore[import-untyped]

    try:
        tree = html.fromstring(data)
    except (etree.ParserError, ValueError):
        raise DocumentError(f"{name}: the HTML could not be parsed") from None
    title = (tree.findtext(".//title") or "").strip()
    document = trafilatura.bare_extraction(
        tree, with_metadata=True, include_comments=False, include_tables=True, favor_recall=True
    )
    text = ""
    if document is not None and not isinstance(document, dict):
        text = document.text or ""
        title = title or (document.title or "")
    if not text.strip():
        # Main-text extraction finds nothing on very short pages: take all visible text.
        for element in tree.xpath("//script|//style|//noscript|//template"):
            element.drop_tree()
        text = tree.text_content()
    return title, text


def _pdf(data: bytes, name: str, limits: InflateLimits) -> tuple[str, str]:
    from pypdf.errors import FileNotDecryptedError, PyPdfError

    from kaiwa.knowledge.pdf import read_pdf

    if not data.lstrip()[:5].startswith(b"%PDF-"):
        raise DocumentError(f"{name}: not a PDF file (it does not start with %PDF-)")
    try:
        title, pages = read_pdf(data, limits)
    except TooLarge as exc:
        raise DocumentTooLarge(f"{name}: {exc.message}") from None
    except FileNotDecryptedError:
        raise DocumentError(f"{name}: the PDF is password-protected") from None
    except (PyPdfError, ValueError, KeyError, TypeError, AttributeError, IndexError, OSError):
        raise DocumentError(f"{name}: the PDF is damaged and cannot be read") from None
    except RecursionError:
        raise DocumentError(f"{name}: the PDF is malformed (nested too deeply)") from None
    text = "\n\n".join(page.strip() for page in pages if page.strip())
    if not text:
        raise DocumentError(
            f"{name}: the PDF has no text layer (a scan?); run OCR on it and upload it again"
        )
    return title, text


def _docx(data: bytes, name: str, limits: InflateLimits) -> tuple[str, str]:
    import docx
    from docx.opc.exceptions import PackageNotFoundError
    from docx.table import Table

    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            check_zip(archive, Budget(limits, size=len(data)))
        document = docx.Document(io.BytesIO(data))
    except TooLarge as exc:
        raise DocumentTooLarge(f"{name}: {exc.message}") from None
    except (
        PackageNotFoundError,
        zipfile.BadZipFile,
        zlib.error,
        EOFError,
        KeyError,
        ValueError,
        OSError,
    ):
        raise DocumentError(f"{name}: the Word file is damaged or not a .docx file") from None
    title = document.core_properties.title or ""
    blocks: list[str] = []
    # Paragraphs and tables in the order they appear; a table becomes one line per row.
    for block in document.iter_inner_content():
        if isinstance(block, Table):
            rows = []
            for row in block.rows:
                cells = dict.fromkeys(cell.text.strip() for cell in row.cells)
                rows.append(" | ".join(cell for cell in cells if cell))
            blocks.append("\n".join(row for row in rows if row))
            continue
        text = block.text.strip()
        style = (block.style.name if block.style is not None else "") or ""
        if text and not title and (style == "Title" or style.startswith("Heading")):
            title = text
        blocks.append(text)
    return title, "\n\n".join(block for block in blocks if block)
