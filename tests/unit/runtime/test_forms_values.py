"""`check_values`: a form's submitted values, each field checked, every problem reported."""

from __future__ import annotations

from typing import Any

import pytest

from kaiwa.protocol.errors import FieldError
from kaiwa.runtime.form_values import FormValuesError, check_values
from kaiwa.runtime.tools.form import form_fields

FIELDS = form_fields(
    [
        {"name": "name", "type": "shortText", "required": True},
        {"name": "age", "type": "number"},
        {"name": "day", "type": "date"},
        {"name": "plan", "type": "radio", "options": ["free", "pro"]},
        {"name": "topics", "type": "checkbox", "options": ["a", "b"]},
        {"name": "note", "type": "longText"},
    ]
)


def test_good_values_are_cleaned() -> None:
    values = {
        "name": "山田",
        "age": 4.5,
        "day": "2026-01-02",
        "topics": ["b", "a", "b"],
        "note": "",
    }
    assert check_values(FIELDS, values) == {
        "name": "山田",
        "age": 4.5,
        "day": "2026-01-02",
        "topics": ["b", "a"],
    }
    assert check_values(FIELDS, {"name": "x", "topics": "a"}) == {"name": "x", "topics": ["a"]}


@pytest.mark.parametrize(
    ("values", "errors", "message"),
    [
        ({}, [("name", "required")], "values.name: required"),
        ({"name": ""}, [("name", "required")], "values.name: required"),
        ({"name": ["x"]}, [("name", "type")], "values.name: must be a string"),
        ({"name": "x", "age": "1"}, [("age", "type")], "values.age: must be a number"),
        ({"name": "x", "age": False}, [("age", "type")], "values.age: must be a number"),
        (
            {"name": "x", "day": "1/2"},
            [("day", "date")],
            "values.day: must be a date as YYYY-MM-DD",
        ),
        ({"name": "x", "day": 20260102}, [("day", "date")], "values.day: must be a date"),
        ({"name": "x", "plan": "gold"}, [("plan", "option")], "values.plan: 'gold' is not one of"),
        ({"name": "x", "topics": ["a", "c"]}, [("topics", "option")], "values.topics: 'c' is not"),
        (
            {"name": "x", "note": "あ" * 10_001},
            [("note", "too_long")],
            "values.note: over the limit",
        ),
        ({"name": "x" * 1_001}, [("name", "too_long")], "values.name: over the limit of 1000"),
        ({"name": "x", "zz": 1, "aa": 2}, [("aa", "unknown"), ("zz", "unknown")], "values.aa: the"),
    ],
)
def test_each_rule_has_its_reason(
    values: dict[str, Any], errors: list[tuple[str, str]], message: str
) -> None:
    with pytest.raises(FormValuesError) as refused:
        check_values(FIELDS, values)
    assert refused.value.errors == [FieldError(field, reason) for field, reason in errors]
    assert str(refused.value).startswith(message)


def test_every_bad_field_is_reported_unknown_first_then_in_form_order() -> None:
    with pytest.raises(FormValuesError) as refused:
        check_values(FIELDS, {"note": 1, "age": "x", "extra": True})
    assert [(e.field, e.reason) for e in refused.value.errors] == [
        ("extra", "unknown"),
        ("name", "required"),
        ("age", "type"),
        ("note", "type"),
    ]
    assert str(refused.value) == (
        "values.extra: the form has no such field; values.name: required; "
        "values.age: must be a number; values.note: must be a string"
    )
