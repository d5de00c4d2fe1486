"""Decompression bombs built at test time, in a fraction of a second and a few MiB of memory.

A run of spaces deflates to about a thousandth of its size. One mebibyte of it is deflated once,
flushed so that the next block needs nothing before it, and the block repeated: 256 copies are a
valid deflate stream of 256 MiB. The containers around it are written by hand, so that a member
can declare any size it likes.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence

MIB = 1024 * 1024
_SPACES = b" " * MIB


def deflate_bomb(mebibytes: int, *, wbits: int) -> tuple[bytes, int]:
    """`mebibytes` MiB of spaces deflated (`wbits` as for zlib: -15 raw, 15 zlib, 31 gzip), and
    the CRC-32 of the spaces."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, wbits)
    head = compressor.compress(_SPACES) + compressor.flush(zlib.Z_FULL_FLUSH)
    block = compressor.compress(_SPACES) + compressor.flush(zlib.Z_FULL_FLUSH)
    crc, adler = 0, 1
    for _ in range(mebibytes):
        crc = zlib.crc32(_SPACES, crc)
        adler = zlib.adler32(_SPACES, adler)
    # The trailer sums up everything, not just what this compressor saw.
    tail = compressor.flush()
    if wbits > 16:
        tail = tail[:-8] + struct.pack("<II", crc, (mebibytes * MIB) & 0xFFFFFFFF)
    elif wbits > 0:
        tail = tail[:-4] + struct.pack(">I", adler)
    return head + block * (mebibytes - 1) + tail, crc


Member = tuple[str, bytes, int, int]
"""`(name, deflated bytes, CRC-32 of the inflated bytes, the size it declares)`."""


def zip_archive(members: Sequence[Member]) -> bytes:
    """A zip of deflated members, written as they come."""
    out = bytearray()
    central = bytearray()
    for name, deflated, crc, declared in members:
        encoded = name.encode()
        offset = len(out)
        out += struct.pack(
            "<4s5H3L2H", b"PK\x03\x04", 20, 0, 8, 0, 0, crc, len(deflated), declared,
            len(encoded), 0,
        )  # fmt: skip
        out += encoded + deflated
        central += struct.pack(
            "<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, 8, 0, 0, crc, len(deflated), declared,
            len(encoded), 0, 0, 0, 0, 0, offset,
        )  # fmt: skip
        central += encoded
    start = len(out)
    out += central
    out += struct.pack(
        "<4s4H2LH", b"PK\x05\x06", 0, 0, len(members), len(members), len(central), start, 0
    )
    return bytes(out)


def member(name: str, data: bytes, *, declared: int | None = None) -> Member:
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    raw = compressor.compress(data) + compressor.flush()
    return (name, raw, zlib.crc32(data), len(data) if declared is None else declared)


_MAIN = "application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"
_RELATIONSHIPS = "application/vnd.openxmlformats-package.relationships+xml"
_OFFICE_DOCUMENT = (
    "http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument"
)
_CONTENT_TYPES = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
    '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
    f'<Default Extension="rels" ContentType="{_RELATIONSHIPS}"/>'
    f'<Override PartName="/word/document.xml" ContentType="{_MAIN}"/>'
    "</Types>"
).encode()
_RELS = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
    '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
    f'<Relationship Id="rId1" Type="{_OFFICE_DOCUMENT}" Target="word/document.xml"/>'
    "</Relationships>"
).encode()


def docx_bomb(mebibytes: int = 256, *, declared: int | None = None) -> bytes:
    """A Word file whose `word/document.xml` is `mebibytes` MiB of spaces; its members may
    declare a smaller size (`declared`) than they hold."""
    document, crc = deflate_bomb(mebibytes, wbits=-15)
    return zip_archive(
        [
            member("[Content_Types].xml", _CONTENT_TYPES),
            member("_rels/.rels", _RELS),
            ("word/document.xml", document, crc, mebibytes * MIB if declared is None else declared),
        ]
    )


def pdf_file(objects: Sequence[bytes]) -> bytes:
    """A PDF of these objects (numbered from 1; the first is the catalog)."""
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


def pdf_bomb(mebibytes: int = 256, *, subtype: bytes = b"", wbits: int = 15) -> bytes:
    """A one-page PDF whose content stream inflates to `mebibytes` MiB of spaces (pypdf reads it
    as page content whatever `subtype` its dictionary claims, and gzip as well as zlib)."""
    content, _ = deflate_bomb(mebibytes, wbits=wbits)
    return pdf_file(
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R"
            b" /Resources << /Font << /F1 5 0 R >> >> >>",
            b"<< /Length %d /Filter /FlateDecode %s >>\nstream\n" % (len(content), subtype)
            + content
            + b"\nendstream",
            b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        ]
    )
