"""A submitted form's values, checked against its fields: every field, every problem at once.

    clean = check_values(fields, {"name": "山田", "day": "2026-12-01"})
    check_values(fields, {"age": "forty", "color": "red"})   # raises FormValuesError:
    #   .errors  [FieldError("color", "unknown"), FieldError("name", "required"),
    #             FieldError("age", "type")]
    #   str()    "values.color: the form has no such field; values.name: required; …"

Reasons, one per rule the server applies (the web form marks each field by it):

| reason | when |
|---|---|
| `unknown` | the form has no field of that name |
| `required` | a required field is missing, null, `""` or `[]` |
| `type` | `shortText`/`longText` not a string, `number` not a number (`true` is no number) |
| `too_long` | text over its limit (`MAX_TEXT`: 1,000 or 10,000 characters) |
| `date` | `date` not a string of the form YYYY-MM-DD |
| `option` | `dropdown`/`radio` not one of the options' values; a `checkbox` item that is not |

Unknown fields come first (sorted), then the form's fields in its order: the message names the
first problem first, as it did when only the first was reported.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any, Literal

from kaiwa.protocol.errors import FieldError
from kaiwa.runtime.tools.form import MAX_TEXT

__all__ = ["FormValuesError", "Reason", "check_values"]

Reason = Literal["required", "type", "date", "option", "too_long", "unknown"]


class FormValuesError(ValueError):
    """Values a form refuses; `errors` names each bad field, the message says why in words."""

    def __init__(self, problems: list[tuple[str, Reason, str]]) -> None:
        super().__init__("; ".join(f"values.{name}: {detail}" for name, _, detail in problems))
        self.errors = [FieldError(name, reason) for name, reason, _ in problems]


class _Bad(Exception):
    def __init__(self, reason: Reason, detail: str) -> None:
        self.reason, self.detail = reason, detail


def check_values(fields: list[dict[str, Any]], values: Mapping[str, Any]) -> dict[str, Any]:
    """The cleaned values (dates normalised, checkbox choices once each, empty ones left out).

    Raises `FormValuesError` listing every bad field.
    """
    known = {field["name"] for field in fields}
    problems: list[tuple[str, Reason, str]] = [
        (name, "unknown", "the form has no such field") for name in sorted(set(values) - known)
    ]
    clean: dict[str, Any] = {}
    for field in fields:
        name = field["name"]
        value = values.get(name)
        if value is None or value == "" or value == []:
            if field["required"]:
                problems.append((name, "required", "required"))
            continue
        try:
            clean[name] = _check_value(field, value)
        except _Bad as bad:
            problems.append((name, bad.reason, bad.detail))
    if problems:
        raise FormValuesError(problems)
    return clean


def _check_value(field: dict[str, Any], value: Any) -> Any:
    kind = field["type"]
    if kind in MAX_TEXT:
        if not isinstance(value, str):
            raise _Bad("type", "must be a string")
        if len(value) > MAX_TEXT[kind]:
            raise _Bad("too_long", f"over the limit of {MAX_TEXT[kind]} characters")
        return value
    if kind == "number":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _Bad("type", "must be a number")
        return value
    if kind == "date":
        if isinstance(value, str):
            try:
                return date.fromisoformat(value).isoformat()
            except ValueError:
                pass
        raise _Bad("date", "must be a date as YYYY-MM-DD")
    allowed = [option["value"] for option in field["options"]]
    chosen = value if kind == "checkbox" and isinstance(value, list) else [value]
    for item in chosen:
        if item not in allowed:
            raise _Bad("option", f"{item!r} is not one of {', '.join(allowed)}")
    return list(dict.fromkeys(chosen)) if kind == "checkbox" else value
