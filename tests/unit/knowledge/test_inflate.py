"""Documents that unpack past `max_extracted_bytes` or `max_compression_ratio`: refused, cheaply."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
from tests.unit.knowledge.bombs import (
    MIB,
    deflate_bomb,
    docx_bomb,
    member,
    pdf_bomb,
    pdf_file,
    zip_archive,
)
from tests.unit.knowledge.documents import docx_bytes, pdf_bytes

from kaiwa.knowledge.inflate import Budget, InflateLimits
from kaiwa.knowledge.ingest import DocumentError, DocumentTooLarge, extract_text

ROOT = Path(__file__).resolve().parents[3]
RATIO = "more than 100 times its size (max_compression_ratio)"
# Generous on the ratio, so that only the byte cap or the truth of a header decides.
ROOMY = InflateLimits(max_bytes=100 * MIB, max_ratio=1_000_000)


def test_the_budget_is_the_lesser_of_the_cap_and_the_ratio() -> None:
    limits = InflateLimits(max_bytes=100 * MIB, max_ratio=100)
    assert Budget(limits, size=256 * 1024).total == 25 * MIB
    assert Budget(limits, size=20 * MIB).total == 100 * MIB
    assert Budget(limits, size=0).total == 1


def test_a_word_file_bomb_is_refused_naming_the_ratio() -> None:
    with pytest.raises(DocumentTooLarge) as caught:
        extract_text(docx_bomb(256), filename="料金表.docx", content_type=None)
    assert caught.value.message == f"料金表.docx: unpacks to {RATIO}"


def test_the_byte_cap_is_named_when_it_is_the_lesser() -> None:
    limits = InflateLimits(max_bytes=512 * 1024, max_ratio=1_000_000)
    with pytest.raises(DocumentTooLarge, match=r"more than 524288 bytes \(max_extracted_bytes\)"):
        extract_text(docx_bomb(1), filename="a.docx", content_type=None, limits=limits)


def test_declared_sizes_over_the_cap_are_refused_before_anything_is_inflated() -> None:
    # Members that hold a few bytes but declare 60 MiB each: only the central directory says so.
    archive = zip_archive([member(f"part{n}.xml", b"<a/>", declared=60 * MIB) for n in range(2)])
    with pytest.raises(DocumentTooLarge, match="max_extracted_bytes"):
        extract_text(archive, filename="a.docx", content_type=None, limits=ROOMY)


def test_a_member_that_declares_less_than_it_holds_is_caught_while_it_is_read() -> None:
    # Declares 1 KiB, inflates to 256 MiB: zipfile alone would inflate it whole before cutting.
    with pytest.raises(DocumentTooLarge, match="max_extracted_bytes"):
        extract_text(docx_bomb(256, declared=1024), filename="a.docx", content_type=None,
                     limits=ROOMY)  # fmt: skip
    # Within the budget, a lie is damage all the same: python-docx is never handed the file.
    with pytest.raises(DocumentError, match="damaged") as caught:
        extract_text(docx_bomb(1, declared=1024), filename="a.docx", content_type=None,
                     limits=ROOMY)  # fmt: skip
    assert not isinstance(caught.value, DocumentTooLarge)


def test_members_compressed_as_word_never_does_are_damage() -> None:
    import io
    import zipfile

    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_BZIP2) as archive:
        archive.writestr("word/document.xml", b"<w:document/>")
    with pytest.raises(DocumentError, match="damaged"):
        extract_text(out.getvalue(), filename="a.docx", content_type=None, limits=ROOMY)


def test_ordinary_documents_pass_at_well_under_the_default_ratio() -> None:
    words = ["返品", "送料", "営業時間", "料金", "delivery", "invoice", "2,480円", "火曜日"]
    pick = random.Random(14).choice
    lines = [" ".join(pick(words) for _ in range(12)) for _ in range(120)]
    # python-docx's own template unpacks to 22 times its size (its style sheets, 30 times).
    tight = InflateLimits(max_ratio=40)
    extracted = extract_text(docx_bytes(lines), filename="a.docx", content_type=None, limits=tight)
    assert lines[-1] in extracted.text
    pages = ["\n".join(lines[start : start + 40]) for start in range(0, 120, 40)]
    extracted = extract_text(pdf_bytes(pages), filename="a.pdf", content_type=None, limits=tight)
    assert lines[-1] in extracted.text


@pytest.mark.parametrize("wbits", [15, 31], ids=["zlib", "gzip"])
def test_a_pdf_bomb_is_refused_naming_the_ratio(wbits: int) -> None:
    with pytest.raises(DocumentTooLarge) as caught:
        extract_text(pdf_bomb(256, wbits=wbits), filename="手順書.pdf", content_type=None)
    assert caught.value.message == f"手順書.pdf: unpacks to {RATIO}"


def test_a_bomb_that_claims_to_be_an_image_inflates_to_nothing() -> None:
    data = pdf_bomb(256, subtype=b"/Subtype /Image /Width 1 /Height 1")
    with pytest.raises(DocumentError, match="no text layer") as caught:
        extract_text(data, filename="a.pdf", content_type=None)
    assert not isinstance(caught.value, DocumentTooLarge)


def _with_form(form: bytes, *, draws: int) -> bytes:
    """A page that draws one Form XObject `draws` times."""
    content = b"/X0 Do\n" * draws
    return pdf_file(
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R"
            b" /Resources << /Font << /F1 5 0 R >> /XObject << /X0 6 0 R >> >> >>",
            b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream",
            b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
            b"<< /Type /XObject /Subtype /Form /BBox [0 0 612 792]"
            b" /Resources << /Font << /F1 5 0 R >> >> " + form,
        ]
    )


def test_text_multiplied_by_a_form_drawn_again_and_again_is_bounded() -> None:
    text = b"BT /F1 12 Tf 72 720 Td (" + b"A" * 2000 + b") Tj ET"
    form = b"/Length %d >>\nstream\n" % len(text) + text + b"\nendstream"
    data = _with_form(form, draws=500)  # 8 KiB of file, a million characters of text
    with pytest.raises(DocumentTooLarge, match=r"its text runs to more than 100 times its size"):
        extract_text(data, filename="a.pdf", content_type=None)
    limits = InflateLimits(max_bytes=100_000, max_ratio=1_000_000)
    with pytest.raises(DocumentTooLarge, match=r"more than 100000 bytes \(max_extracted_bytes\)"):
        extract_text(data, filename="a.pdf", content_type=None, limits=limits)


def test_a_bomb_inside_a_form_is_refused_although_pypdf_swallows_errors_there() -> None:
    bomb, _ = deflate_bomb(64, wbits=15)
    form = b"/Filter /FlateDecode /Length %d >>\nstream\n" % len(bomb) + bomb + b"\nendstream"
    with pytest.raises(DocumentTooLarge, match="max_compression_ratio"):
        extract_text(_with_form(form, draws=1), filename="a.pdf", content_type=None)


_MEASURE = """
import json, resource, sys
from pathlib import Path

from kaiwa.knowledge.ingest import DocumentError, extract_text

def peak():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

warm, bombs = json.loads(sys.argv[1])
for path in warm:  # the parsers' lazy imports are not the cost of a refusal
    extract_text(Path(path).read_bytes(), filename=Path(path).name, content_type=None)
growth = {}
for path in bombs:
    data = Path(path).read_bytes()
    before = peak()
    try:
        extract_text(data, filename=Path(path).name, content_type=None)
    except DocumentError:
        growth[Path(path).name] = peak() - before
print(json.dumps(growth))
"""


def test_refusing_a_bomb_costs_little_more_memory_than_the_file(tmp_path: Path) -> None:
    """Each bomb would inflate to 256 MiB; the process grows by less than 4 MiB refusing it."""
    files = {
        "warm.docx": docx_bytes(["本文"]),
        "warm.pdf": pdf_bytes(["本文"]),
        "bomb.docx": docx_bomb(256),
        "lying.docx": docx_bomb(256, declared=1024),
        "bomb.pdf": pdf_bomb(256),
        "gzip.pdf": pdf_bomb(256, wbits=31),
        "image.pdf": pdf_bomb(256, subtype=b"/Subtype /Image"),
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    paths = [str(tmp_path / name) for name in files]
    result = subprocess.run(
        [sys.executable, "-c", _MEASURE, json.dumps([paths[:2], paths[2:]])],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=True,
    )
    growth = json.loads(result.stdout)
    assert set(growth) == set(list(files)[2:]), result.stderr
    for name, grew in growth.items():
        assert len(files[name]) < 300 * 1024
        assert grew < 4 * MIB, (name, grew)
