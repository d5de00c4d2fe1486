"""Text out of documents: plain text in Japanese encodings, Markdown, HTML, PDF and Word."""

from __future__ import annotations

import codecs
import io

import pytest
from pypdf import PdfReader, PdfWriter
from tests.unit.knowledge.documents import docx_bytes, pdf_bytes

from kaiwa.knowledge.ingest import (
    DOCX,
    DocumentError,
    IngestError,
    UnsupportedType,
    detect_type,
    extract_text,
)

JAPANESE = "営業時間は午前9時から午後6時です。定休日は火曜日です。"


@pytest.mark.parametrize(
    "data",
    [
        JAPANESE.encode("utf-8"),
        codecs.BOM_UTF8 + JAPANESE.encode("utf-8"),
        JAPANESE.encode("utf-16"),  # with its byte-order mark
        codecs.BOM_UTF16_BE + JAPANESE.encode("utf-16-be"),
        JAPANESE.encode("shift_jis"),
        JAPANESE.encode("cp932"),
        JAPANESE.encode("euc_jp"),
    ],
    ids=["utf-8", "utf-8-bom", "utf-16", "utf-16-be", "shift_jis", "cp932", "euc-jp"],
)
def test_plain_text_in_common_japanese_encodings(data: bytes) -> None:
    extracted = extract_text(data, filename="営業時間.txt", content_type="text/plain")
    assert extracted.text == JAPANESE
    assert extracted.title == "営業時間"
    assert extracted.content_type == "text/plain"


def test_cp932_only_characters_decode() -> None:
    text = "①②③ ㈱星空珈琲 髙橋"  # NEC and IBM extensions: not in plain Shift_JIS
    assert extract_text(text.encode("cp932"), filename="a.txt", content_type=None).text == text


def test_undecodable_text_is_a_document_error() -> None:
    with pytest.raises(DocumentError, match=r"broken\.txt: .*encoding") as caught:
        extract_text(b"\x81\x20\x8e\x20" * 4, filename="broken.txt", content_type=None)
    assert isinstance(caught.value, IngestError)
    assert "UTF-8" in caught.value.message


def test_markdown_title_is_its_first_heading() -> None:
    text = "intro line\n\n## 返品について\n\n本文です。\n\n# Later"
    extracted = extract_text(text.encode(), filename="returns.md", content_type=None)
    assert extracted.title == "返品について"
    assert extracted.content_type == "text/markdown"
    setext = extract_text(b"Shipping\n========\n\nbody", filename="s.md", content_type=None)
    assert setext.title == "Shipping"


def test_html_main_text_and_title() -> None:
    page = """<html><head><meta charset="utf-8"><title>営業時間のご案内</title>
    <script>var tracking = "do not index";</script><style>p {color: red}</style></head>
    <body><nav>Home | Shop | Cart</nav><article><h1>営業時間</h1>
    <p>渋谷店の営業時間は午前8時から午後8時までです。定休日は水曜日です。祝日は営業します。</p>
    <p>年末年始は休業します。最新の情報は公式サイトのお知らせをご確認ください。</p>
    </article><footer>© 2025</footer></body></html>"""
    extracted = extract_text(page.encode(), filename="hours.html", content_type="text/html")
    assert extracted.title == "営業時間のご案内"
    assert "午前8時から午後8時" in extracted.text
    assert "tracking" not in extracted.text
    assert extracted.content_type == "text/html"


def test_html_in_shift_jis_declared_by_meta() -> None:
    page = (
        '<html><head><meta charset="shift_jis"><title>価格</title></head>'
        "<body><p>月額2,480円です。</p></body></html>"
    )
    extracted = extract_text(page.encode("cp932"), filename="p.htm", content_type=None)
    assert extracted.title == "価格"
    assert "月額2,480円" in extracted.text


def test_pdf_text_japanese_included_and_title_from_metadata() -> None:
    data = pdf_bytes(
        ["料金表\n月額2,480円です。", "Page two: prices include tax."], title="料金プラン"
    )
    extracted = extract_text(data, filename="prices.pdf", content_type="application/pdf")
    assert extracted.title == "料金プラン"
    assert "月額2,480円です。" in extracted.text
    assert "Page two: prices include tax." in extracted.text
    assert extracted.content_type == "application/pdf"


def test_pdf_without_title_is_named_after_the_file() -> None:
    data = pdf_bytes(["本文"], compress=False)
    assert extract_text(data, filename="手順書.pdf", content_type=None).title == "手順書"


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (pdf_bytes(["本文です"])[:250], "damaged"),
        (b"%PDF-1.4\n" + b"\x00garbage" * 50, "damaged"),
        (b"PK\x03\x04 not a pdf at all", "not a PDF"),
        (pdf_bytes([""]), "no text layer"),
    ],
    ids=["truncated", "garbage", "wrong-magic", "no-text"],
)
def test_bad_pdfs_are_document_errors(data: bytes, reason: str) -> None:
    with pytest.raises(DocumentError, match=reason) as caught:
        extract_text(data, filename="bad.pdf", content_type="application/pdf")
    assert caught.value.message.startswith("bad.pdf: ")


def test_password_protected_pdf_is_a_document_error() -> None:
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(pdf_bytes(["秘密"]))))
    writer.encrypt("secret", algorithm="RC4-128")
    out = io.BytesIO()
    writer.write(out)
    with pytest.raises(DocumentError, match="password"):
        extract_text(out.getvalue(), filename="s.pdf", content_type=None)


def test_pdf_encrypted_without_a_user_password_is_read() -> None:
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(pdf_bytes(["公開の文書"]))))
    writer.encrypt("", owner_password="owner", algorithm="RC4-128")
    out = io.BytesIO()
    writer.write(out)
    assert extract_text(out.getvalue(), filename="o.pdf", content_type=None).text == "公開の文書"


def test_docx_paragraphs_tables_in_order_and_heading_as_title() -> None:
    data = docx_bytes(
        ["返品は到着から8日以内です。", "開封後は返品できません。"],
        heading="返品について",
        table=[["項目", "条件"], ["送料", "当社負担"]],
    )
    extracted = extract_text(data, filename="returns.docx", content_type=DOCX)
    assert extracted.title == "返品について"
    assert extracted.text == (
        "返品について\n\n返品は到着から8日以内です。\n\n開封後は返品できません。\n\n"
        "項目 | 条件\n送料 | 当社負担"
    )
    assert extracted.content_type == DOCX


def test_docx_core_title_wins() -> None:
    data = docx_bytes(["本文"], heading="見出し", title="Official title")
    assert extract_text(data, filename="a.docx", content_type=None).title == "Official title"


def test_corrupt_docx_is_a_document_error() -> None:
    data = docx_bytes(["本文"])
    with pytest.raises(DocumentError, match=r"broken\.docx: .*damaged"):
        extract_text(data[: len(data) // 2], filename="broken.docx", content_type=None)


def test_empty_documents_are_document_errors() -> None:
    with pytest.raises(DocumentError, match="no text"):
        extract_text(b"  \n\t\n", filename="blank.txt", content_type=None)
    with pytest.raises(DocumentError, match="no text"):
        extract_text(docx_bytes([]), filename="blank.docx", content_type=None)


def test_nul_characters_are_dropped() -> None:
    assert extract_text(b"a\x00b", filename="n.txt", content_type=None).text == "ab"


@pytest.mark.parametrize(
    ("filename", "content_type", "expected"),
    [
        ("a.pdf", None, "application/pdf"),
        ("a.PDF", "application/octet-stream", "application/pdf"),
        ("notes.md", "text/plain", "text/markdown"),
        ("upload", "text/markdown; charset=utf-8", "text/markdown"),
        ("page", "application/xhtml+xml", "text/html"),
        ("a.txt", "application/pdf", "application/pdf"),
        ("report.docx", None, DOCX),
        ("readme", "text/plain", "text/plain"),
    ],
)
def test_type_from_content_type_and_extension(
    filename: str, content_type: str | None, expected: str
) -> None:
    assert detect_type(filename=filename, content_type=content_type) == expected


@pytest.mark.parametrize(
    ("filename", "content_type", "named"),
    [
        ("sheet.xlsx", None, "sheet.xlsx: unsupported type"),
        ("image.png", "image/png", "type image/png"),
        ("noext", None, "noext: unsupported type"),
        ("", "application/zip", "The file: unsupported type application/zip"),
    ],
)
def test_unsupported_types_name_the_type_and_the_supported_ones(
    filename: str, content_type: str | None, named: str
) -> None:
    with pytest.raises(UnsupportedType) as caught:
        extract_text(b"data", filename=filename, content_type=content_type)
    assert named in caught.value.message
    assert ".txt, .md, .html, .pdf, .docx" in caught.value.message
