"""Text helpers of the offline models: language, token estimate, streaming pieces, titles."""

from __future__ import annotations

import itertools
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kaiwa.llm.text import (
    chunks,
    detect_language,
    estimate_tokens,
    first_sentence,
    short_title,
    unmark,
)


@pytest.mark.parametrize(
    ("text", "language"),
    [
        pytest.param("営業時間を教えてください", "ja", id="kana"),
        pytest.param("カタカナ", "ja", id="katakana-only"),
        pytest.param("東京都庁舎", "ja", id="kanji-only"),
        pytest.param("東京都 API", "ja", id="kanji-with-fewer-latin"),
        pytest.param("What are your opening hours?", "en", id="english"),
        pytest.param("Pythonで設定する方法", "ja", id="latin-with-kana"),
        pytest.param("How far is 東京 from Osaka?", "en", id="english-with-kanji"),
        pytest.param("12345 !?", "en", id="no-letters"),
        pytest.param("", "en", id="empty"),
    ],
)
def test_detect_language(text: str, language: str) -> None:
    assert detect_language(text) == language


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("Hello, world!", 4),
        ("営業時間", 4),
        ("営業時間は9時です。", 10),
        # A word stops where Japanese starts.
        ("kaiwaの設定", 4),
        ("OPENAI_API_KEYを設定", 4),
        ("", 0),
    ],
)
def test_estimate_tokens_counts_words_cjk_characters_and_punctuation(
    text: str, tokens: int
) -> None:
    assert estimate_tokens(text) == tokens


# -- chunks ----------------------------------------------------------------------------------


def _attached(char: str) -> bool:
    """Marks that belong to the character before them (test's own reading of Unicode)."""
    return unicodedata.category(char) in ("Mn", "Mc", "Me") or char in (
        "\u200d",
        "\uff9e",
        "\uff9f",
        *map(chr, range(0x1F3FB, 0x1F400)),
    )


_any_text = st.text(
    st.one_of(
        st.characters(),
        st.sampled_from("営業時間はこんにちはカタカナ、。？ \n\t😀👍🏽🇯🇵👨\u200d👩\u200d👧\u3099ﾞ"),
    )
)
# Japanese runs longer than a piece, dense with marks that attach to the character before.
_clustered = st.lists(
    st.tuples(
        st.sampled_from("営業あカｶ👍😀 "),
        st.sampled_from(["", "", "\u3099", "\uff9e", "\U0001f3fd", "\u200d😀", "\ufe0f"]),
    ).map("".join),
    max_size=40,
).map("".join)
_texts = st.one_of(_any_text, _clustered)


@settings(max_examples=300, deadline=None)
@given(text=_texts, size=st.integers(1, 10))
def test_chunks_join_back_to_the_text_and_never_split_a_character(text: str, size: int) -> None:
    pieces = list(chunks(text, size))
    assert "".join(pieces) == text
    assert all(pieces)
    for before, after in itertools.pairwise(pieces):
        assert not _attached(after[0]), (before, after)
        assert before[-1] != "\u200d", (before, after)


def test_japanese_streams_in_pieces_of_size_characters() -> None:
    text = "営業時間は平日の九時から十八時までです。"
    pieces = list(chunks(text, 6))
    assert pieces == ["営業時間は平", "日の九時から", "十八時までで", "す。"]


def test_english_streams_about_a_word_at_a_time() -> None:
    assert list(chunks("Set the key, then publish.")) == [
        "Set",
        " the",
        " key,",
        " then",
        " publish.",
    ]


@pytest.mark.parametrize(
    ("text", "pieces"),
    [
        # Combining dakuten: が as か + U+3099 stays whole.
        ("あいうえお" + "か\u3099" + "きくけこ", ["あいうえおか\u3099", "きくけこ"]),
        # Skin tone modifier stays with its emoji.
        ("あいうえお👍🏽かきくけこ", ["あいうえお👍🏽", "かきくけこ"]),
        # A ZWJ family is one piece.
        ("あいうえ👨\u200d👩\u200d👧かきく", ["あいうえ👨\u200d👩\u200d👧", "かきく"]),
        # Half-width voiced mark.
        ("ｱｲｳｴｵｶﾞｷ", ["ｱｲｳｴｵｶﾞ", "ｷ"]),
    ],
)
def test_chunks_keep_marks_with_their_character(text: str, pieces: list[str]) -> None:
    assert list(chunks(text, 6)) == pieces


def test_chunks_of_empty_text_is_nothing() -> None:
    assert list(chunks("")) == []


def test_chunks_refuse_a_size_below_one() -> None:
    with pytest.raises(ValueError, match="size"):
        list(chunks("abc", 0))


# -- titles ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "title"),
    [
        ("営業時間は何時ですか？土曜日も開いていますか？", "営業時間は何時ですか"),
        ("返品の方法を教えてください。レシートはありません。", "返品の方法を教えてください"),
        ("What are your opening hours? I want to visit.", "What are your opening hours"),
        ("How do I configure kaiwa.toml?", "How do I configure kaiwa.toml"),
        ("Is 3.14 close enough to pi?", "Is 3.14 close enough to pi"),
        ("Hello!\nCan you help me", "Hello"),
    ],
)
def test_short_title_is_the_first_sentence_without_its_end(message: str, title: str) -> None:
    assert short_title(message) == title


def test_short_title_stays_in_the_message_language() -> None:
    assert detect_language(short_title("東京駅から空港までの行き方を詳しく教えて")) == "ja"
    assert (
        detect_language(short_title("Explain the difference between RAG and fine-tuning")) == "en"
    )


def test_short_title_is_short() -> None:
    japanese = short_title(
        "この文章はとても長い質問で、タイトルにするには長すぎるので切り詰められます"
    )
    english = short_title(
        "Please tell me everything you know about configuring a reverse proxy for kaiwa"
    )
    assert len(japanese) <= 24
    assert japanese.startswith("この文章はとても長い質問")
    assert len(english.split()) <= 7
    assert english == "Please tell me everything you know about"


def test_short_title_of_nothing_is_new_chat() -> None:
    assert short_title("   ") == "New chat"


def test_first_sentence_skips_blank_lines() -> None:
    assert first_sentence("\n\n  最初の文。次の文。") == "最初の文。"


@pytest.mark.parametrize(
    ("markdown", "plain"),
    [
        (
            "# kaiwa とは\n\nkaiwa はチャットサーバーです。",
            "kaiwa とは\nkaiwa はチャットサーバーです。",
        ),
        ("### Title ###\ntext", "Title\ntext"),
        ("#hashtag is no heading", "#hashtag is no heading"),
        ("見出し\n======\n本文", "見出し\n本文"),
        ("Heading\n--\nbody", "Heading\nbody"),
        ("- 平日\n* 土曜\n+ 日曜", "• 平日\n• 土曜\n• 日曜"),
        ("1. 申し込む\n2) 支払う", "(1) 申し込む\n(2) 支払う"),
        ("-5 degrees and a - dash", "-5 degrees and a - dash"),
        ("> 引用です", "引用です"),
        ("> - ## 入れ子", "• ## 入れ子"),
        ("```python\nprint('x')\n```", "print('x')"),
        ("~~~\n# a comment\n~~~", "a comment"),
        ("    indented code", "indented code"),
        ("***\n- - -\n___", ""),
        ("| a | b |\n|---|:--:|\n| 1 | 2 |", "| a | b |\n| 1 | 2 |"),
        ("`inline` and **bold** stay", "`inline` and **bold** stay"),
    ],
)
def test_unmark_leaves_text_no_renderer_makes_structure_of(markdown: str, plain: str) -> None:
    assert unmark(markdown) == plain
    assert unmark(plain) == plain
