"""The chat's catalogue: the language a terminal's locale asks for, and two catalogues that say
the same things (same strings, same placeholders), so that a format never fails in one language."""

from __future__ import annotations

import dataclasses
import string

import pytest

from kaiwa.chat.lang import EN, JA, Texts, detect


@pytest.mark.parametrize(
    ("environ", "lang"),
    [
        ({}, "en"),
        ({"LANG": "ja_JP.UTF-8"}, "ja"),
        ({"LANG": "ja"}, "ja"),
        ({"LANG": "en_US.UTF-8"}, "en"),
        ({"LANG": "C.UTF-8"}, "en"),
        ({"LC_MESSAGES": "ja_JP.UTF-8", "LANG": "en_US.UTF-8"}, "ja"),
        ({"LC_ALL": "C", "LC_MESSAGES": "ja_JP.UTF-8", "LANG": "ja_JP.UTF-8"}, "en"),
        ({"LC_ALL": "ja_JP.eucJP", "LANG": "en_US.UTF-8"}, "ja"),
        ({"LC_ALL": "", "LANG": "ja_JP.UTF-8"}, "ja"),
    ],
)
def test_detect_reads_lc_all_then_lc_messages_then_lang(environ: dict[str, str], lang: str) -> None:
    assert detect(environ) == lang


def placeholders(value: object) -> object:
    """The `{names}` of a string, recursively through tuples, mappings and `ToolTexts`."""
    if isinstance(value, str):
        return {name for _, name, _, _ in string.Formatter().parse(value) if name}
    if isinstance(value, tuple):
        return [placeholders(item) for item in value]
    if isinstance(value, dict):
        return {key: placeholders(item) for key, item in value.items()}
    assert dataclasses.is_dataclass(value), value
    return {f.name: placeholders(getattr(value, f.name)) for f in dataclasses.fields(value)}


@pytest.mark.parametrize("name", [field.name for field in dataclasses.fields(Texts)])
def test_both_catalogues_have_every_string_with_the_same_placeholders(name: str) -> None:
    english, japanese = getattr(EN, name), getattr(JA, name)

    assert placeholders(english) == placeholders(japanese)
    assert english != japanese, "not translated"


def test_counts_take_the_plural_of_the_language() -> None:
    assert [EN.count(EN.results, n) for n in (0, 1, 3)] == ["0 results", "1 result", "3 results"]
    assert [JA.count(JA.results, n) for n in (0, 1, 3)] == ["0件", "1件", "3件"]


@pytest.mark.parametrize("texts", [EN, JA], ids=["en", "ja"])
@pytest.mark.parametrize(
    ("name", "flag", "variable"),
    [
        ("no_key", "--api-key", "KAIWA_API_KEY"),
        ("key_refused", "--api-key", "KAIWA_API_KEY"),
        ("unreachable", "--url", "KAIWA_BASE_URL"),
    ],
)
def test_a_setting_to_change_is_named_by_its_flag_and_variable(
    texts: Texts, name: str, flag: str, variable: str
) -> None:
    said = getattr(texts, name)

    assert flag in said
    assert variable in said
    assert "api_key=" not in said
