"""`too_deep` and `parse_json`: any depth is measured without recursion; deep JSON is a
`ValueError`, never a `RecursionError`."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kaiwa.protocol.json_limits import MAX_JSON_DEPTH, parse_json, too_deep


def arrays(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


def depth_of(value: object) -> int:
    """The reference: levels of objects and arrays, recursively."""
    if isinstance(value, dict):
        return 1 + max(map(depth_of, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(depth_of, value), default=0)
    return 0


@pytest.mark.parametrize(
    ("value", "limit", "expected"),
    [
        (1, 0, False),
        ("text", 0, False),
        ([], 0, True),
        ({}, 1, False),
        ([[]], 1, True),
        ({"a": [1, {"b": {}}]}, 4, False),
        ({"a": [1, {"b": {}}]}, 3, True),
        ([1, 2, [3, [4]]], 2, True),
        (arrays(MAX_JSON_DEPTH), MAX_JSON_DEPTH, False),
        (arrays(MAX_JSON_DEPTH + 1), MAX_JSON_DEPTH, True),
    ],
)
def test_too_deep_counts_levels_of_objects_and_arrays(
    value: object, limit: int, expected: bool
) -> None:
    assert too_deep(value, limit) is expected


def test_too_deep_measures_a_value_deeper_than_the_recursion_limit() -> None:
    assert too_deep(arrays(100_000))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=4),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=3), children, max_size=3)
    ),
    max_leaves=30,
)


@settings(max_examples=300)
@given(value=json_values, limit=st.integers(0, 12))
def test_too_deep_agrees_with_the_recursive_depth(value: object, limit: int) -> None:
    assert too_deep(value, limit) is (depth_of(value) > limit)


@pytest.mark.parametrize(
    "text",
    [
        "[" * 100_000 + "]" * 100_000,
        '{"a":' * (MAX_JSON_DEPTH + 1) + "1" + "}" * (MAX_JSON_DEPTH + 1),
        "NaN",
        '{"e": Infinity}',
        "{",
        "",
    ],
)
def test_parse_json_refuses_with_a_value_error(text: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the message varies with the parser's
        parse_json(text)


def test_parse_json_accepts_json_to_the_limit_as_text_or_bytes() -> None:
    text = "[" * MAX_JSON_DEPTH + '"東京"' + "]" * MAX_JSON_DEPTH
    value = parse_json(text)
    assert depth_of(value) == MAX_JSON_DEPTH
    assert parse_json(text.encode()) == value
    assert parse_json('{"scope": "ephemeral"}') == {"scope": "ephemeral"}


def test_parse_json_takes_a_lower_limit() -> None:
    assert parse_json("[[1]]", 2) == [[1]]
    with pytest.raises(ValueError, match="nested more than 1 levels"):
        parse_json("[[1]]", 1)
