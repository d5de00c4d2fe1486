"""What an upload is taken for: declared type, extension and the bytes, in that balance."""

from __future__ import annotations

import pytest
from tests.unit.files import samples

from kaiwa.files.types import ACCEPTED, DOCX, detect_type, text_charset
from kaiwa.protocol import ApiError, ErrorCode

TEXT = b"plain words\n"


@pytest.mark.parametrize(
    ("filename", "declared", "content", "expected"),
    [
        ("a.txt", "text/plain", TEXT, "text/plain"),
        ("a.txt", "text/plain; charset=utf-8", TEXT, "text/plain"),
        ("a.md", "text/plain", TEXT, "text/markdown"),
        ("a.md", None, TEXT, "text/markdown"),
        ("a.md", "application/octet-stream", TEXT, "text/markdown"),
        ("a.markdown", "text/x-markdown", TEXT, "text/markdown"),
        ("a.csv", "application/vnd.ms-excel", TEXT, "text/csv"),
        ("a.csv", "TEXT/CSV", TEXT, "text/csv"),
        ("a.json", None, b"{}", "application/json"),
        ("a.htm", None, b"<p>x</p>", "text/html"),
        ("notes", "text/plain", TEXT, "text/plain"),
        ("notes.yaml", "text/plain", TEXT, "text/plain"),
        # A precise declared type wins over the extension...
        ("a.txt", "text/csv", TEXT, "text/csv"),
        # ...but the bytes win for the formats they identify.
        ("a.txt", "text/plain", samples.pdf("x"), "application/pdf"),
        ("a.jpg", "image/jpeg", samples.png(), "image/png"),
        ("blob", "application/octet-stream", samples.GIF, "image/gif"),
        ("blob", None, samples.WEBP, "image/webp"),
        ("a.jpeg", "image/jpg", samples.JPEG, "image/jpeg"),
        ("a.docx", None, samples.ZIP, DOCX),
        ("a.docx", "application/octet-stream", b"not a zip", DOCX),
        ("a.pdf", "application/pdf", b"no header", "application/pdf"),
        ("utf16.txt", "text/plain", "ab".encode("utf-16"), "text/plain"),
    ],
)
def test_detect_type(filename: str, declared: str | None, content: bytes, expected: str) -> None:
    assert detect_type(content, filename=filename, declared=declared) == expected


@pytest.mark.parametrize(
    ("filename", "declared", "content", "words"),
    [
        ("a.exe", "application/x-msdownload", b"MZ", "unsupported type application/x-msdownload"),
        ("a.zip", "application/zip", samples.ZIP, "unsupported type application/zip"),
        ("a", None, b"\x00", "unsupported type unknown (a)"),
        ("a.png", "image/png", TEXT, "not a PNG image"),
        ("a.gif", None, samples.png()[:4], "not a GIF image"),
        ("a.txt", "text/plain", b"a\x00b", "binary, not text"),
        ("a.csv", None, samples.ZIP, "binary, not text"),
    ],
)
def test_detect_type_refuses(
    filename: str, declared: str | None, content: bytes, words: str
) -> None:
    with pytest.raises(ApiError) as raised:
        detect_type(content, filename=filename, declared=declared)
    assert raised.value.code == ErrorCode.BAD_REQUEST
    assert raised.value.message.startswith("file: ")
    assert words in raised.value.message


def test_every_accepted_type_is_named_in_the_refusal() -> None:
    with pytest.raises(ApiError) as raised:
        detect_type(b"MZ", filename="a.exe", declared=None)
    for media, extensions in ACCEPTED.items():
        assert media in raised.value.message
        assert all(extension in raised.value.message for extension in extensions)


@pytest.mark.parametrize(
    ("head", "charset"),
    [
        (b"plain", "utf-8"),
        ("日本語".encode(), "utf-8"),
        ("日本語".encode()[:-1], "utf-8"),  # cut inside the last character
        (b"\xef\xbb\xbfbom", "utf-8"),
        ("ab".encode("utf-16"), "utf-16"),
        ("東京都".encode("cp932"), "shift_jis"),
        ("東京".encode("euc_jp"), "euc-jp"),
        # CP932 takes almost any bytes: it is tried before EUC-JP, as ingest does.
        (b"\x81\x20 neither", None),
    ],
)
def test_text_charset(head: bytes, charset: str | None) -> None:
    assert text_charset(head) == charset
