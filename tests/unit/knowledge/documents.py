"""Documents built at test time: a PDF writer small enough to read, and Word files.

`pdf_bytes` writes a valid PDF 1.4 whose text pypdf can extract, Japanese included: one Type0
font with Identity-H encoding, where a glyph's CID is its Unicode code point, and a ToUnicode CMap
mapping every CID back to itself. No font is embedded, so a viewer substitutes one; extraction needs
none.
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Sequence

import docx

_CMAP_HEAD = b"""/CIDInit /ProcSet findresource begin
12 dict begin
begincmap
/CIDSystemInfo << /Registry (Adobe) /Ordering (UCS) /Supplement 0 >> def
/CMapName /Adobe-Identity-UCS def
/CMapType 2 def
1 begincodespacerange
<0000> <FFFF>
endcodespacerange
"""
_CMAP_TAIL = b"""endcmap
CMapName currentdict /CIDInit /ProcSet findresource pop end
end"""


def _to_unicode(characters: set[str]) -> bytes:
    """A ToUnicode CMap for the characters used, each CID mapped to itself (as real PDFs list
    only the glyphs they use; pypdf reads a 65,536-entry range very slowly)."""
    codes = sorted(f"{ord(char):04X}" for char in characters if ord(char) <= 0xFFFF)
    blocks = []
    for start in range(0, len(codes), 100):
        part = codes[start : start + 100]
        pairs = "".join(f"<{code}> <{code}>\n" for code in part)
        blocks.append(f"{len(part)} beginbfchar\n{pairs}endbfchar\n".encode())
    return _CMAP_HEAD + b"".join(blocks) + _CMAP_TAIL


def _stream(data: bytes, *, compress: bool) -> bytes:
    if compress:
        data = zlib.compress(data)
        return (
            b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(data) + data + b"\nendstream"
        )
    return b"<< /Length %d >>\nstream\n" % len(data) + data + b"\nendstream"


def _hex(text: str) -> bytes:
    return b"<" + "".join(f"{ord(char):04X}" for char in text).encode() + b">"


def pdf_bytes(pages: Sequence[str], *, title: str | None = None, compress: bool = True) -> bytes:
    """A PDF with one page per item of `pages`, each line of it a line of text."""
    objects: list[bytes] = []

    def add(body: bytes) -> int:
        objects.append(body)
        return len(objects)

    catalog = add(b"")  # filled in below, once the page tree's number is known
    pages_ref = add(b"")
    to_unicode = add(_stream(_to_unicode(set("".join(pages))), compress=False))
    descriptor = add(
        b"<< /Type /FontDescriptor /FontName /KaiwaTest /Flags 4 /FontBBox [0 -200 1000 900]"
        b" /ItalicAngle 0 /Ascent 900 /Descent -200 /CapHeight 700 /StemV 80 >>"
    )
    cid_font = add(
        b"<< /Type /Font /Subtype /CIDFontType2 /BaseFont /KaiwaTest"
        b" /CIDSystemInfo << /Registry (Adobe) /Ordering (Identity) /Supplement 0 >>"
        b" /FontDescriptor %d 0 R /DW 1000 /CIDToGIDMap /Identity >>" % descriptor
    )
    font = add(
        b"<< /Type /Font /Subtype /Type0 /BaseFont /KaiwaTest /Encoding /Identity-H"
        b" /DescendantFonts [%d 0 R] /ToUnicode %d 0 R >>" % (cid_font, to_unicode)
    )
    kids = []
    for page in pages:
        lines = [b"BT /F1 11 Tf 14 TL 40 800 Td"]
        for line in page.split("\n"):
            lines.append(_hex(line) + b" Tj T*")
        lines.append(b"ET")
        content = add(_stream(b"\n".join(lines), compress=compress))
        kids.append(
            add(
                b"<< /Type /Page /Parent %d 0 R /MediaBox [0 0 595 842]"
                b" /Resources << /Font << /F1 %d 0 R >> >> /Contents %d 0 R >>"
                % (pages_ref, font, content)
            )
        )
    objects[catalog - 1] = b"<< /Type /Catalog /Pages %d 0 R >>" % pages_ref
    objects[pages_ref - 1] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (
        b" ".join(b"%d 0 R" % kid for kid in kids),
        len(kids),
    )
    info = None
    if title is not None:
        info = add(b"<< /Title %s >>" % _pdf_string(title))
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n" % number + body + b"\nendobj\n")
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    for offset in offsets:
        out.write(b"%010d 00000 n \n" % offset)
    trailer = b"<< /Size %d /Root %d 0 R" % (len(objects) + 1, catalog)
    if info is not None:
        trailer += b" /Info %d 0 R" % info
    out.write(b"trailer\n" + trailer + b" >>\nstartxref\n%d\n%%%%EOF\n" % xref)
    return out.getvalue()


def _pdf_string(text: str) -> bytes:
    """A PDF text string: UTF-16BE with a byte-order mark, so any script fits."""
    return b"<FEFF" + text.encode("utf-16-be").hex().upper().encode() + b">"


def docx_bytes(
    paragraphs: Sequence[str],
    *,
    heading: str | None = None,
    title: str | None = None,
    table: Sequence[Sequence[str]] = (),
) -> bytes:
    """A Word file: an optional heading, paragraphs, an optional table, an optional core title."""
    document = docx.Document()
    if title is not None:
        document.core_properties.title = title
    if heading is not None:
        document.add_heading(heading, level=1)
    for paragraph in paragraphs:
        document.add_paragraph(paragraph)
    if table:
        grid = document.add_table(rows=len(table), cols=len(table[0]))
        for row, values in zip(grid.rows, table, strict=True):
            for cell, value in zip(row.cells, values, strict=True):
                cell.text = value
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()
