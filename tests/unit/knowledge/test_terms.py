"""Search terms: words, Japanese character pairs, kanji on their own for the index."""

from __future__ import annotations

from kaiwa.knowledge.terms import MAX_TERM_CHARS, counted_terms, index_terms, rank, terms


def test_japanese_runs_become_overlapping_pairs_and_hiragana_is_dropped() -> None:
    assert terms("営業時間は") == ["営業", "業時", "時間"]
    assert terms("お店") == ["店"]
    assert terms("ですます") == []


def test_other_scripts_become_lower_case_words_without_common_ones() -> None:
    assert terms("How do I CANCEL the Plan?") == ["cancel", "plan"]
    assert terms("kaiwaの設定") == ["kaiwa", "設定"]


def test_full_width_and_half_width_forms_fold_together() -> None:
    assert terms("ＡＰＩキー") == terms("APIキー")
    assert terms("ｺｰﾋｰ") == terms("コーヒー")


def test_index_terms_add_every_kanji_of_a_run() -> None:
    assert index_terms("開店時間") == ["開店", "店時", "時間", "開", "店", "時", "間"]
    # A question's lone kanji now meets the same kanji inside a document's longer word.
    assert set(index_terms("何時に開く")) & set(index_terms("開店は9時"))
    # Katakana gets no unigrams: single kana mean nothing.
    assert index_terms("コーヒー") == ["コー", "ーヒ", "ヒー"]


def test_counted_terms_cut_long_terms() -> None:
    long_word = "x" * 100
    assert counted_terms(f"{long_word} {long_word}") == {"x" * MAX_TERM_CHARS: 2}
    assert counted_terms("") == {}


def test_rank_orders_by_bm25_and_leaves_out_documents_without_a_shared_term() -> None:
    documents = ["営業時間は9時から", "送料は550円", "営業時間と定休日、営業時間の変更"]
    ranked = rank("営業時間", documents)
    assert [index for index, _ in ranked] == [2, 0]
    assert rank("", documents) == []
    assert rank("営業", []) == []
