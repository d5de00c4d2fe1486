"""Chat titles: generated once, beside the first answer, short and in the user's language."""

from __future__ import annotations

from contextlib import aclosing

from kaiwa.llm import ChatMessage, ChatModel, ModelRequest, TextDelta, Usage
from kaiwa.runtime.usage import UsageMeter

TITLE_INSTRUCTION = (
    "Write a title for a chat that starts with the user's message below. "
    "Use the language of the message. At most 6 words, or 20 characters in Japanese or Chinese. "
    "Reply with the title only: no quotes, no punctuation at the end."
)
MAX_TITLE_CHARS = 80


async def generate_title(
    model: ChatModel, message: str, settings: dict[str, object], meter: UsageMeter
) -> str | None:
    """The model's title for `message`, cleaned up; None when it gave nothing usable."""
    request = ModelRequest(
        messages=[ChatMessage("user", message)],
        system=TITLE_INSTRUCTION,
        purpose="title",
        max_tokens=32,
        settings=dict(settings),
    )
    pieces: list[str] = []
    usage: Usage | None = None
    try:
        async with aclosing(model.stream(request)) as events:
            async for event in events:
                if isinstance(event, TextDelta):
                    pieces.append(event.text)
                elif isinstance(event, Usage):
                    usage = event
    finally:
        meter.add_call(usage, request=request, text="".join(pieces))
    return clean_title("".join(pieces))


def clean_title(raw: str) -> str | None:
    line = next((part.strip() for part in raw.strip().splitlines() if part.strip()), "")
    line = line.strip("\"'「」『』“”").removeprefix("Title:").strip()
    line = line.rstrip("。.!！?？ ")
    if len(line) > MAX_TITLE_CHARS:
        line = line[:MAX_TITLE_CHARS].rstrip()
    return line or None
