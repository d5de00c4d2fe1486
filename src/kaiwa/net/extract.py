"""Readable text out of a fetched body: the charset, the main text of HTML, the text of a PDF.

    text = decode(body, "Shift_JIS", html=True)
    title, text = read_html(text, url="https://example.com/")
    title, text = read_pdf(body, filename="report.pdf")

Synchronous and CPU-bound: `Fetcher` runs these in a thread. trafilatura and the PDF reader are
imported on first use, so importing `kaiwa.net` stays cheap.

Deliberate choices:

- The charset is the byte-order mark's, else the one the server declared, else (for HTML) the one
  a `<meta>` or XML declaration names in the first 4 KiB, else UTF-8 if the bytes are valid UTF-8,
  else charset_normalizer's guess. Labels are mapped as browsers map them (WHATWG Encoding):
  `Shift_JIS` decodes as CP932 and `ISO-8859-1` as CP1252, because that is what pages labelled
  so actually contain.
- When trafilatura finds no main text (very short pages), all visible text is taken instead.
"""

from __future__ import annotations

import codecs
import re

__all__ = ["UnreadableDocument", "decode", "read_html", "read_pdf"]


class UnreadableDocument(Exception):
    """A body of a supported type with no text to give; `message` says why."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


_BOMS = (
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF32_LE, "utf-32"),  # before UTF-16 LE, whose mark is its prefix
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)

# Labels whose WHATWG decoder is a superset of the Python codec of the same name.
_WHATWG: dict[str, str] = {
    "shift_jis": "cp932",
    "shift-jis": "cp932",
    "sjis": "cp932",
    "x-sjis": "cp932",
    "ms_kanji": "cp932",
    "ms932": "cp932",
    "windows-31j": "cp932",
    "csshiftjis": "cp932",
    "iso-8859-1": "cp1252",
    "latin1": "cp1252",
    "latin-1": "cp1252",
    "us-ascii": "cp1252",
    "ascii": "cp1252",
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "x-gbk": "gb18030",
    "euc-kr": "cp949",
    "ks_c_5601-1987": "cp949",
    "tis-620": "cp874",
    "iso-8859-9": "cp1254",
}

_DECLARED = re.compile(
    rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)"""
    rb"""|<\?xml[^>]+encoding\s*=\s*["']([A-Za-z0-9_.:-]+)""",
    re.IGNORECASE,
)
_PRESCAN_BYTES = 4096


def decode(data: bytes, declared: str | None, *, html: bool) -> str:
    """`data` as text, by the first of: byte-order mark, `declared`, in-document declaration
    (HTML only), valid UTF-8, detection."""
    for bom, bom_encoding in _BOMS:
        if data.startswith(bom):
            return data.decode(bom_encoding, errors="replace")
    encoding = _codec(declared)
    if encoding is None and html:
        encoding = _codec(_in_document(data))
        if encoding is not None and encoding.startswith("utf-16"):
            encoding = "utf-8"  # a document that reads as ASCII is not UTF-16 (WHATWG)
    if encoding is not None:
        return data.decode(encoding, errors="replace")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    guessed = _detect(data)
    if guessed is not None:
        return guessed
    return data.decode("utf-8", errors="replace")


def read_html(html: str, *, url: str) -> tuple[str | None, str]:
    """The title and main text of a page, without navigation, footers and other boilerplate."""
    import trafilatura

    document = trafilatura.bare_extraction(
        html,
        url=url,
        with_metadata=True,
        include_comments=False,
        include_tables=True,
        include_images=False,
        include_links=False,
    )
    title: str | None = None
    text = ""
    if document is not None and not isinstance(document, dict):
        title = document.title or None
        text = document.text or ""
    if not text.strip():
        text = trafilatura.html2txt(html)
        if title is None:
            title = trafilatura.extract_metadata(html).title or None
    return title, _tidy(text)


def read_pdf(data: bytes, *, filename: str) -> tuple[str | None, str]:
    """The title and text of a PDF; raises `UnreadableDocument` (damaged, encrypted, a scan)."""
    from kaiwa.knowledge.ingest import IngestError, extract_text

    try:
        extracted = extract_text(data, filename=filename, content_type="application/pdf")
    except IngestError as exc:
        # Its messages start with the file name; the fetcher names the URL instead.
        raise UnreadableDocument(exc.message.removeprefix(f"{filename}: ")) from None
    return extracted.title or None, extracted.text


def _codec(label: str | None) -> str | None:
    if not label:
        return None
    label = label.strip().strip("\"'").lower()
    try:
        return codecs.lookup(_WHATWG.get(label, label)).name
    except LookupError:
        return None


def _in_document(data: bytes) -> str | None:
    match = _DECLARED.search(data[:_PRESCAN_BYTES])
    if match is None:
        return None
    return (match.group(1) or match.group(2)).decode("ascii")


def _detect(data: bytes) -> str | None:
    try:
        import charset_normalizer
    except ImportError:  # pragma: no cover - comes with trafilatura
        return None
    best = charset_normalizer.from_bytes(data).best()
    return None if best is None else str(best)


_TRAILING_SPACE = re.compile(r"[ \t\u3000\xa0]+\n")
_BLANK_LINES = re.compile(r"\n{3,}")


def _tidy(text: str) -> str:
    text = text.replace("\x00", "").replace("\r\n", "\n").replace("\r", "\n")
    return _BLANK_LINES.sub("\n\n", _TRAILING_SPACE.sub("\n", text)).strip()
