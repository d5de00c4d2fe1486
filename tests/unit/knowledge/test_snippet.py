"""Snippets: the sentences of a chunk that best match the query, at most 200 characters."""

from __future__ import annotations

from kaiwa.knowledge.snippet import SNIPPET_CHARS, snippet

CHUNK = (
    "星空珈琲の定期便についてご案内します。" * 8
    + "解約の手続きは、次回発送予定日の5日前までに完了してください。"
    + "お届けの頻度は毎月一回です。" * 12
)


def test_a_short_chunk_is_its_own_snippet() -> None:
    assert snippet("短い本文です。", "本文") == "短い本文です。"


def test_the_snippet_holds_the_sentence_that_matches() -> None:
    found = snippet(CHUNK, "解約の締め切り")
    assert "解約の手続きは、次回発送予定日の5日前までに完了してください。" in found
    assert len(found) <= SNIPPET_CHARS + 2
    assert found.startswith("…")


def test_without_a_match_the_snippet_is_the_start() -> None:
    found = snippet(CHUNK, "zzz")
    assert found.startswith("星空珈琲")
    assert found.endswith("…")
    assert len(found) <= SNIPPET_CHARS + 1


def test_a_long_sentence_is_cut_around_the_query_term() -> None:
    sentence = "あ" * 300 + "キャンセル料" + "い" * 300 + "。"
    found = snippet(sentence, "キャンセル料")
    assert "キャンセル料" in found
    assert found.startswith("…")
    assert found.endswith("…")
    assert len(found) <= SNIPPET_CHARS + 2


def test_line_breaks_become_spaces() -> None:
    assert "\n" not in snippet("一行目。\n" * 100, "一行目")
