"""Snippets: about 200 characters on one line, where most of the query's terms are."""

from __future__ import annotations

from kaiwa.files.lookup import snippet
from kaiwa.knowledge.terms import terms


def test_a_short_text_is_the_whole_snippet_on_one_line() -> None:
    assert snippet("Hello\n\n  world", {"world"}) == "Hello world"


def test_the_snippet_centres_on_the_densest_match() -> None:
    text = "alpha " + "x " * 200 + "beta gamma delta " + "y " * 200
    found = snippet(text, set(terms("beta gamma delta")))
    assert "beta gamma delta" in found
    assert found.startswith("…")
    assert found.endswith("…")
    assert len(found) <= 202


def test_japanese_terms_are_found_without_spaces() -> None:
    text = "あ" * 300 + "当店の営業時間は9時から18時です。" + "い" * 300
    found = snippet(text, set(terms("営業時間")))
    assert "営業時間" in found


def test_no_terms_gives_the_beginning() -> None:
    text = "word " * 100
    found = snippet(text, set())
    assert found.startswith("word")
    assert found.endswith("…")
