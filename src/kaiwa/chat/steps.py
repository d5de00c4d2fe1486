"""A reasoning step as a person reads it: one sentence, then what it found (pure, no rich).

    line = describe(step, texts)
    line.state      # "running" | "waiting" | "done" | "failed" | "interrupted"
    line.sentence   # 'Searched the knowledge base for “営業時間” (2 results)'
    line.items      # (Item(head='営業時間', detail='当店の営業時間は平日の10時から…'), …)

As in the web chat: sources with their titles and a short plain-text snippet (markdown syntax
stripped), web results with their links, a called agent's answer, a submitted form's labels and
values. A step is a dict as `ResponseState.steps` and stored messages hold it; anything missing
or of the wrong type in it is shown as nothing, never raised. Tool names are never shown: a tool
this client does not know is shown by the server's own line (`content`).
"""

from __future__ import annotations

import re
import unicodedata
from bisect import bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import accumulate
from typing import Literal

from kaiwa.chat.lang import Texts

StepState = Literal["running", "waiting", "done", "failed", "interrupted"]
MAX_ITEMS = 5
SNIPPET_COLUMNS = 150
"""About two lines of an 80-column terminal (a Japanese character takes two columns)."""

Json = Mapping[str, object]


@dataclass(frozen=True)
class Item:
    head: str
    """A source's title, a called agent's answer, or a form field as `label: value`."""
    detail: str = ""
    """A plain-text snippet, or a URL."""


@dataclass(frozen=True)
class StepLine:
    state: StepState
    sentence: str
    items: tuple[Item, ...] = ()
    more: int = 0
    """Items found beyond the ones shown."""


def describe(step: Json, texts: Texts, *, ended: StepState | None = None) -> StepLine:
    """`ended`: how a step without a result is shown once its answer is over ("interrupted"
    when stopped or failed, "waiting" when the answer waits for a form)."""
    tool = _text(step, "tool_name")
    args = _object(step, "args")
    words = texts.tools.get(tool)
    result = _object(step, "result")
    if words is None:  # the server's line says it all, the query included
        sentence = _text(step, "content") or texts.step
    else:
        sentence = (words.done if result.get("success") else words.running).format(
            agent=_text(args, "agent")
        )
        if query := _text(args, "query"):
            sentence += texts.query.format(query=query)
    if not result:
        state: StepState = ended or "running"
        return StepLine(state, sentence + (texts.interrupted if state == "interrupted" else ""))
    data = _object(result, "data")
    if not result.get("success"):
        return StepLine("failed", sentence + texts.failed.format(error=_text(data, "error")))
    items = _items(tool, args, data, texts)
    if tool in ("retrieve_context_objs", "lookup", "search_web"):
        sentence += f" ({texts.count(texts.results, len(items))})"
    return StepLine("done", sentence, tuple(items[:MAX_ITEMS]), max(len(items) - MAX_ITEMS, 0))


def plain(markdown: str, columns: int = SNIPPET_COLUMNS) -> str:
    """Markdown as one line of plain text, cut to fit `columns` terminal columns.

    >>> plain("## 営業時間\\n**平日**は[こちら](https://x.jp)、`10:00`〜\\n\\n- 土曜日")
    '営業時間 平日はこちら、10:00〜 土曜日'
    """
    text = _FENCE.sub(" ", markdown)
    text = _IMAGE_OR_LINK.sub(r"\1", text)
    text = _LINE_MARK.sub("", text)
    text = _INLINE_MARK.sub("", text)
    text = " ".join(text.split())
    ends = list(accumulate(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text))
    if not ends or ends[-1] <= columns:
        return text
    return text[: bisect_right(ends, columns - 1)].rstrip() + "…"  # the ellipsis takes one


# Code fences (their info string too), links and images (their text kept), block markers at the
# start of a line (headings, quotes, list bullets, table rules), then emphasis, code and pipes.
_FENCE = re.compile(r"^\s*(```|~~~)[^\n]*$", re.MULTILINE)
_IMAGE_OR_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
_LINE_MARK = re.compile(r"^\s*(?:#{1,6}\s+|>\s?|[-*+]\s+|\d+[.)]\s+|[|:\- ]+$)", re.MULTILINE)
_INLINE_MARK = re.compile(r"\*\*|__|~~|[*`|]|(?<!\w)_|_(?!\w)|<[^>\n]*>")


def _items(tool: str, args: Json, data: Json, texts: Texts) -> list[Item]:
    if tool in ("retrieve_context_objs", "lookup"):
        key = "sources" if tool == "retrieve_context_objs" else "results"
        return [
            Item(
                _text(hit, "title") or _text(hit, "source") or texts.untitled,
                plain(_text(hit, "snippet")),
            )
            for hit in _objects(data, key)
        ]
    if tool == "search_web":
        return [
            Item(_text(hit, "title") or _text(hit, "url"), _text(hit, "url"))
            for hit in _objects(data, "results")
        ]
    if tool == "fetch_web_content":
        url = _text(data, "url")
        return [Item(_text(data, "title") or url, plain(_text(data, "excerpt")) or url)]
    if tool == "call_agent":
        return [Item(plain(_text(data, "answer")))] if _text(data, "answer") else []
    if tool == "request_form":
        return _form_values(_objects(args, "fields"), data)
    return []


def _form_values(fields: Sequence[Json], values: Json) -> list[Item]:
    """`label: value` for each field answered, options by their labels. Without the fields
    (a step stored without its arguments), the values by their names."""
    named = {_text(field, "name"): field for field in fields}
    items = []
    for name, value in values.items():
        field = named.get(name, {})
        labels = {_text(o, "value"): _text(o, "label") for o in _objects(field, "options")}
        chosen = value if isinstance(value, list) else [value]
        shown = ", ".join(labels.get(str(v)) or str(v) for v in chosen)
        items.append(Item(f"{_text(field, 'label') or name}: {shown}"))
    return items


def _text(data: Json, key: str) -> str:
    value = data.get(key)
    return value.strip() if isinstance(value, str) else ""


def _object(data: Json, key: str) -> Json:
    value = data.get(key)
    return value if isinstance(value, Mapping) else {}


def _objects(data: Json, key: str) -> list[Json]:
    value = data.get(key)
    if not isinstance(value, list):
        return []
    return [item for item in value if isinstance(item, Mapping)]
