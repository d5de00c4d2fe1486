"""Chunking: paragraphs when they fit, whole sentences otherwise, with overlap between chunks."""

from __future__ import annotations

import itertools
import random

import pytest

from kaiwa.knowledge.chunk import chunk_text, sentences


def pieces(text: str) -> list[str]:
    return [text[start:end] for start, end in sentences(text)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("営業時間は9時です。土日は休みです！", ["営業時間は9時です。", "土日は休みです！"]),
        ("本当ですか？はい。", ["本当ですか？", "はい。"]),
        ("「はい。」と答えた。次です。", ["「はい。」と答えた。", "次です。"]),
        ("（注：祝日は休み。）", ["（注：祝日は休み。）"]),
        ("一行目\n二行目", ["一行目", "二行目"]),
        ("It costs 3.5 dollars. Really? Yes!", ["It costs 3.5 dollars.", "Really?", "Yes!"]),
        ("Mr. Tanaka and J. Doe agree. Next.", ["Mr. Tanaka and J. Doe agree.", "Next."]),
        ("Ends without a mark", ["Ends without a mark"]),
        ("ｶﾀｶﾅ｡次。", ["ｶﾀｶﾅ｡", "次。"]),
    ],
)
def test_sentences_end_at_japanese_and_english_marks(text: str, expected: list[str]) -> None:
    assert pieces(text) == expected


def test_a_short_text_is_one_chunk() -> None:
    assert chunk_text("  営業時間は9時です。\n") == ["営業時間は9時です。"]
    assert chunk_text("") == []
    assert chunk_text(" \n\n ") == []


def test_chunks_never_cut_a_sentence_that_fits() -> None:
    text = "".join(f"これは{n}番目の文で、少し長めに書いてあります。" for n in range(40))
    chunks = chunk_text(text, max_chars=100, overlap=30)
    assert len(chunks) > 5
    for chunk in chunks:
        assert len(chunk) <= 100
        assert chunk.startswith("これは")
        assert chunk.endswith("。")


def test_consecutive_chunks_overlap_by_whole_sentences() -> None:
    text = " ".join(f"Sentence number {n} is here." for n in range(30))
    chunks = chunk_text(text, max_chars=120, overlap=60)
    for before, after in itertools.pairwise(chunks):
        first_sentence = pieces(after)[0]
        assert first_sentence in before
        assert len(after) <= 120


def test_no_overlap_when_asked_for_none() -> None:
    text = "".join(f"文{n}です。" for n in range(50))
    chunks = chunk_text(text, max_chars=40, overlap=0)
    assert "".join(chunks) == text


def test_a_sentence_longer_than_the_limit_is_cut_at_a_comma() -> None:
    long = "、".join(["とても長い説明の一部"] * 30) + "。"
    chunks = chunk_text(long, max_chars=100, overlap=20)
    assert all(len(chunk) <= 100 for chunk in chunks)
    assert all(chunk.endswith(("、", "。")) for chunk in chunks)
    # Cut pieces repeat a little of the previous one, so no phrase is lost at a cut.
    assert sum(len(chunk) for chunk in chunks) > len(long)


def test_text_without_punctuation_is_cut_at_the_limit() -> None:
    chunks = chunk_text("あ" * 250, max_chars=100, overlap=10)
    assert [len(chunk) for chunk in chunks] == [100, 100, 70]


def test_a_paragraph_that_fits_is_not_split() -> None:
    first = "前の段落です。" * 8  # 56 characters
    second = "ここからが次の段落で、まとめて一つのチャンクに入るべき内容です。" * 2  # 64
    chunks = chunk_text(f"{first}\n\n{second}", max_chars=100, overlap=20)
    assert any(second in chunk for chunk in chunks)


def test_a_heading_stays_with_its_paragraph() -> None:
    text = "# 返品について\n\n" + "未開封の商品は返品できます。" * 10
    chunks = chunk_text(text, max_chars=100, overlap=0)
    assert chunks[0].startswith("# 返品について\n\n未開封")


def test_chunks_keep_the_original_line_breaks() -> None:
    text = "# 料金\n\n- ライト：2,480円\n- スタンダード：4,280円"
    assert chunk_text(text) == [text]


def test_bad_limits_are_refused() -> None:
    with pytest.raises(ValueError, match="overlap"):
        chunk_text("x", max_chars=10, overlap=10)
    with pytest.raises(ValueError, match="max_chars"):
        chunk_text("x", max_chars=0, overlap=0)


@pytest.mark.parametrize("seed", range(40))
def test_random_text_is_covered_within_the_limits(seed: int) -> None:
    pick = random.Random(seed)
    parts = ["これは文です。", "Hello world. ", "長い" * pick.randint(1, 60) + "、", "\n\n", "\n"]
    text = "".join(pick.choice(parts) for _ in range(pick.randint(0, 80)))
    max_chars = pick.randint(20, 200)
    overlap = pick.randint(0, max_chars - 1)
    chunks = chunk_text(text, max_chars=max_chars, overlap=overlap)
    assert all(0 < len(chunk) <= max_chars for chunk in chunks)
    # Every sentence of the text is in some chunk (cut ones: every piece of them).
    joined = "\x00".join(chunks)
    for sentence in pieces(text):
        if len(sentence) <= max_chars:
            assert sentence in joined
