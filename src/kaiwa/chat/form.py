"""A form request as prompts: one per field, then the values to submit.

    form: 予約
    お名前 [text, required]: 山田
    人数 [number, required]: 2
      1) 松  2) 竹
    プラン [pick one: number or value; empty skips]: 2

Each prompt shows the label, what to type, the options, and whether the field is required, in
the chat's language (`Texts.hints`, `required`, `optional`). An
empty answer or Ctrl-C skips an optional field; an empty answer to a required one asks again;
Ctrl-C (or Ctrl-D) on a required field gives the form up. Values are converted only as far as
the type says (a number, an option picked by its number); the server checks them, and a
refusal that names a field (`values.<name>: …`) asks for that field again.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Protocol

from pydantic import JsonValue

from kaiwa.chat.lang import Texts
from kaiwa.client import FormField, FormOption, FormRequest


class Prompter(Protocol):
    def prompt(self, text: str) -> str:
        """One line from the user; raises `KeyboardInterrupt` or `EOFError` to give up."""

    def note(self, text: str) -> None: ...


class FormAbandoned(Exception):
    """The user gave the form up: the answer goes on waiting for it."""


def fill(form: FormRequest, prompter: Prompter, texts: Texts) -> dict[str, JsonValue]:
    """Ask every field in turn; the values of the fields answered. Raises `FormAbandoned`."""
    prompter.note(texts.form_titled.format(title=form.title) if form.title else texts.form)
    values: dict[str, JsonValue] = {}
    for field in form.fields:
        value = ask(field, prompter, texts)
        if value is not None:
            values[field.name] = value
    return values


def ask(field: FormField, prompter: Prompter, texts: Texts) -> JsonValue:
    """One field's value, or None to skip it. Raises `FormAbandoned`."""
    if field.question and field.question != field.label:
        prompter.note(field.question)
    if field.options:
        prompter.note("  " + "  ".join(f"{n}) {o.label}" for n, o in enumerate(field.options, 1)))
    need = texts.required if field.required else texts.optional
    while True:
        try:
            text = prompter.prompt(f"{field.label} [{texts.hints[field.type]}; {need}]: ").strip()
        except (KeyboardInterrupt, EOFError):
            if field.required:
                raise FormAbandoned from None
            prompter.note("")
            return None
        if text:
            return parse(field, text)
        if not field.required:
            return None
        prompter.note(texts.is_required.format(label=field.label))


def parse(field: FormField, text: str) -> JsonValue:
    """The value to send for what was typed; what cannot be converted is sent as typed.

    >>> number = FormField(name="n", label="n", type="number")
    >>> parse(number, "2"), parse(number, "2.5"), parse(number, "two"), parse(number, "nan")
    (2, 2.5, 'two', 'nan')
    >>> plans = [FormOption(value="matsu", label="松"), FormOption(value="take", label="竹")]
    >>> parse(FormField(name="p", label="p", type="radio", options=plans), "2")
    'take'
    >>> parse(FormField(name="p", label="p", type="checkbox", options=plans), "松、3")
    ['matsu', '3']
    """
    if field.type == "number":
        return _number(text)
    if field.type == "checkbox":
        parts = text.replace("、", ",").split(",")
        return [_option(field.options, part.strip()) for part in parts if part.strip()]
    if field.type in ("dropdown", "radio"):
        return _option(field.options, text)
    return text


def field_named(form: FormRequest, message: str) -> FormField | None:
    """The field a refusal names (`values.<name>: …`), if it names one of the form's."""
    named = [field for field in form.fields if message.startswith(f"values.{field.name}:")]
    return max(named, key=lambda field: len(field.name), default=None)


def _number(text: str) -> JsonValue:
    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        return text
    return value if math.isfinite(value) else text


def _option(options: Sequence[FormOption], text: str) -> str:
    if text.isdigit() and 1 <= int(text) <= len(options):
        return options[int(text) - 1].value
    for option in options:
        if text in (option.value, option.label):
            return option.value
    return text
