"""`request_form`: ask the user to fill a form; the turn waits for it (spec/API.md §3.4)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from kaiwa.llm import ToolSpec
from kaiwa.llm.text import Language
from kaiwa.runtime.agent import AwaitForm
from kaiwa.runtime.tools.base import Tool, ToolContext, ToolOutput, pick

FIELD_TYPES = ("shortText", "longText", "number", "dropdown", "radio", "checkbox", "date")
CHOICE_TYPES = ("dropdown", "radio", "checkbox")
MAX_TEXT = {"shortText": 1_000, "longText": 10_000}
"""The longest text a text field takes, in characters (`kaiwa.runtime.form_values`)."""


class FormSchemaError(ValueError):
    """A `custom_form_schema` that cannot be shown; the message names the field and the rule."""


def form_fields(schema: Mapping[str, Any] | list[Any]) -> list[dict[str, Any]]:
    """The fields of a `custom_form_schema`, normalised: `{name, label, type, required,
    options?, question?}`. Raises `FormSchemaError`."""
    raw = schema.get("fields") if isinstance(schema, Mapping) else schema
    if not isinstance(raw, list) or not raw:
        raise FormSchemaError("custom_form_schema.fields must be a non-empty list")
    fields: list[dict[str, Any]] = []
    seen: set[str] = set()
    for index, item in enumerate(raw):
        where = f"custom_form_schema.fields[{index}]"
        if not isinstance(item, Mapping):
            raise FormSchemaError(f"{where} must be an object")
        name = item.get("name")
        if not isinstance(name, str) or not name.strip():
            raise FormSchemaError(f"{where}.name must be a non-empty string")
        if name in seen:
            raise FormSchemaError(f"{where}.name {name!r} is used twice")
        seen.add(name)
        kind = item.get("type")
        if kind not in FIELD_TYPES:
            raise FormSchemaError(f"{where}.type must be one of {', '.join(FIELD_TYPES)}")
        field: dict[str, Any] = {
            "name": name,
            "label": str(item.get("label") or name),
            "type": kind,
            "required": bool(item.get("required", False)),
        }
        if item.get("question"):
            field["question"] = str(item["question"])
        if kind in CHOICE_TYPES:
            options = item.get("options")
            if not isinstance(options, list) or not options:
                raise FormSchemaError(f"{where}.options must be a non-empty list for {kind}")
            field["options"] = [_option(option, f"{where}.options") for option in options]
        fields.append(field)
    return fields


def _option(option: Any, where: str) -> dict[str, str]:
    if isinstance(option, str):
        return {"value": option, "label": option}
    if isinstance(option, Mapping) and isinstance(option.get("value"), str):
        return {"value": option["value"], "label": str(option.get("label") or option["value"])}
    raise FormSchemaError(f"{where} must hold strings or {{value, label}} objects")


def render_values(fields: list[dict[str, Any]], values: Mapping[str, Any]) -> str:
    """The submitted form as the model reads it: one `label: value` line per answered field."""
    lines = ["The user submitted the form:"]
    for field in fields:
        if field["name"] in values:
            value = values[field["name"]]
            shown = ", ".join(map(str, value)) if isinstance(value, list) else str(value)
            lines.append(f"{field['label']} ({field['name']}): {shown}")
    return "\n".join(lines)


class FormTool(Tool):
    step_type = "consultant_request_form"
    tool_name = "request_form"

    def __init__(self, schema: Mapping[str, Any] | list[Any]) -> None:
        self._fields = form_fields(schema)
        self._title = str(schema.get("title") or "") if isinstance(schema, Mapping) else ""

    def spec(self) -> ToolSpec:
        labels = ", ".join(field["label"] for field in self._fields)
        return ToolSpec(
            name=self.tool_name,
            description=(
                f"Ask the user to fill in a form ({labels}). The conversation pauses until "
                "they submit it; its values then come back as this tool's result."
            ),
            parameters={"type": "object", "properties": {}},
        )

    def prepare(self, arguments: dict[str, Any], context: ToolContext) -> dict[str, Any]:
        args: dict[str, Any] = {"form_request_id": str(uuid.uuid4()), "fields": self._fields}
        if self._title:
            args["title"] = self._title
        return args

    def describe(self, args: dict[str, Any], language: Language) -> str:
        return pick(
            language,
            en="Asking you to fill in a form",
            ja="フォームへの入力をお願いしています",
        )

    async def run(self, args: dict[str, Any], context: ToolContext) -> ToolOutput:
        raise AwaitForm
