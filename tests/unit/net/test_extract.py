"""Charset decisions and text extraction, byte tables in, text out."""

from __future__ import annotations

import codecs

import pytest

from kaiwa.net.extract import UnreadableDocument, decode, read_html, read_pdf

JA = "営業時間は午前十時から午後八時までです。定休日は毎週水曜日です。"


@pytest.mark.parametrize(
    ("data", "declared", "html", "text"),
    [
        # The byte-order mark beats the header.
        (codecs.BOM_UTF8 + "café".encode(), "iso-8859-1", False, "café"),
        ("café".encode("utf-16"), None, False, "café"),
        # The header beats the document.
        (JA.encode("cp932"), "Shift_JIS", False, JA),
        (
            f'<meta charset="euc-jp">{JA}'.encode("cp932"),
            "shift_jis",
            True,
            f'<meta charset="euc-jp">{JA}',
        ),
        # In the document, for HTML only.
        (
            f'<meta charset="Shift_JIS"><p>{JA}'.encode("cp932"),
            None,
            True,
            f'<meta charset="Shift_JIS"><p>{JA}',
        ),
        (
            f'<meta http-equiv="Content-Type" content="text/html; charset=EUC-JP">{JA}'.encode(
                "euc_jp"
            ),
            None,
            True,
            f'<meta http-equiv="Content-Type" content="text/html; charset=EUC-JP">{JA}',
        ),
        (
            f'<?xml version="1.0" encoding="Shift_JIS"?>{JA}'.encode("cp932"),
            None,
            True,
            f'<?xml version="1.0" encoding="Shift_JIS"?>{JA}',
        ),
        # WHATWG labels: Shift_JIS is CP932 (① is not in strict Shift_JIS), Latin-1 is CP1252.
        ("①番".encode("cp932"), "shift_jis", False, "①番"),
        (b"\x93quoted\x94", "iso-8859-1", False, "\u201cquoted\u201d"),
        # No declaration: valid UTF-8 is UTF-8, and an unknown label is ignored.
        (JA.encode(), None, True, JA),
        (JA.encode(), "x-no-such-charset", False, JA),
        # Undeclared and not UTF-8: detected.
        ((JA * 3).encode("euc_jp"), None, False, JA * 3),
        ((JA * 3).encode("cp932"), None, False, JA * 3),
    ],
)
def test_decode_picks_the_right_charset(
    data: bytes, declared: str | None, html: bool, text: str
) -> None:
    assert decode(data, declared, html=html) == text


def test_a_meta_declaration_in_plain_text_is_ignored() -> None:
    data = '<meta charset="Shift_JIS">café'.encode()
    assert decode(data, None, html=False) == '<meta charset="Shift_JIS">café'


def test_html_falls_back_to_all_visible_text_when_there_is_no_main_text() -> None:
    title, text = read_html(
        "<html><head><title>Tiny</title><style>p{}</style></head><body><p>Hi.</p></body></html>",
        url="http://example.com/",
    )
    assert title == "Tiny"
    assert "Hi." in text
    assert "p{}" not in text


def test_a_damaged_pdf_is_unreadable() -> None:
    with pytest.raises(UnreadableDocument, match="damaged"):
        read_pdf(b"%PDF-1.4\n1 0 obj << /Type /Catalog", filename="broken.pdf")
