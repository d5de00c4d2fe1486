"""Small text helpers the offline models share: language guess, chunking, token estimate."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Literal

Language = Literal["ja", "en"]

_CJK_CHARS = "\u3000-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef"
_KANA = re.compile(r"[\u3040-\u30ff\uff66-\uff9f]")
_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_CJK = re.compile(f"[{_CJK_CHARS}]")
# A word stops where CJK starts: `kaiwaの設定` is one word and three characters, not one token.
_TOKEN = re.compile(f"[{_CJK_CHARS}]|[^\\W{_CJK_CHARS}]+|[^\\w\\s]")
# ASCII punctuation ends a sentence only before a space, so `kaiwa.toml` and `3.14` stay whole.
_SENTENCE_END = re.compile(r"(?<=[。！？])\s*|(?<=[.!?])\s+|\n+")
# What a cut must not separate from the character before it: joiners, half-width (han)dakuten,
# emoji skin tones (combining marks are found by their Unicode category).
_ATTACHED = re.compile("[\u200d\uff9e\uff9f\U0001f3fb-\U0001f3ff]")


def detect_language(text: str) -> Language:
    """Japanese when the text has kana, or more Han characters than Latin letters."""
    if _KANA.search(text):
        return "ja"
    han = len(_HAN.findall(text))
    latin = sum(1 for c in text if c.isascii() and c.isalpha())
    return "ja" if han and han >= latin else "en"


def estimate_tokens(text: str) -> int:
    """A deterministic stand-in for a tokenizer: one per CJK character, word or punctuation.

    Close for Japanese (tokenizers spend about a token per kana or kanji), low for English by
    about a quarter (about 1.3 tokens per word): an estimate, never a bill.
    """
    return len(_TOKEN.findall(text))


def estimate_prompt(system: str | None, contents: Iterable[str]) -> int:
    """`estimate_tokens` of a request: its system prompt and each message's content."""
    return estimate_tokens(system or "") + sum(map(estimate_tokens, contents))


def chunks(text: str, size: int = 6) -> Iterator[str]:
    """Small pieces of `text` for streaming: `size` characters of CJK, or about one word.

    Pieces are whole characters: they never split a UTF-8 code point, nor part a character from
    the marks, modifiers and joiners attached to it. Joined, they are `text` exactly.
    """
    if size < 1:
        raise ValueError("size must be at least 1")
    piece: list[str] = []
    count = 0
    for token in re.findall(r"\s*\S+|\s+", text):
        piece.append(token)
        count += len(token.strip()) if _CJK.search(token) else size
        if count >= size:
            yield from _split_long("".join(piece), size)
            piece, count = [], 0
    if piece:
        yield from _split_long("".join(piece), size)


def _split_long(token: str, size: int) -> Iterator[str]:
    if not _CJK.search(token) or len(token) <= size:
        yield token
        return
    start = 0
    while start < len(token):
        end = min(start + size, len(token))
        while end < len(token) and _attaches(token, end):
            end += 1
        yield token[start:end]
        start = end


def _attaches(text: str, index: int) -> bool:
    """Whether `text[index]` belongs to the character before it, so no cut may fall between."""
    char = text[index]
    return (
        unicodedata.category(char) in ("Mn", "Mc", "Me")
        or _ATTACHED.match(char) is not None
        or text[index - 1] == "\u200d"
    )


def first_sentence(text: str) -> str:
    for part in _SENTENCE_END.split(text.strip()):
        if part.strip():
            return part.strip()
    return text.strip()


def short_title(text: str, *, cjk_chars: int = 24, words: int = 7) -> str:
    """A short title from the start of `text`, in its own language."""
    sentence = first_sentence(text)
    if detect_language(sentence) == "ja":
        title = sentence[:cjk_chars]
    else:
        parts = sentence.split()
        title = " ".join(parts[:words])
        if len(title) > 60:
            title = title[:60].rstrip()
    title = title.rstrip("?？。.!！、,:：;； ")
    return title or sentence[:cjk_chars] or "New chat"


# Lines that are markdown structure only: code fences, rules (`***`, `- - -`), the `===` or `--`
# under a line that make it a heading, and table delimiter rows (`|---|:--|`).
_STRUCTURE_LINE = re.compile(
    r"^\s*(?:(?:`{3,}|~{3,}).*|=+|-+|([-*_])(?:\s*\1){2,}|\|?(?:\s*:?-+:?\s*\|)+\s*:?-*:?)\s*$"
)
# What starts a block at the beginning of a line: a heading, a quote, a bullet, a number.
_HEADING = re.compile(r"^#{1,6}(?:\s+|$)(.*?)(?:\s+#+)?\s*$")
_QUOTE = re.compile(r"^>\s?")
_BULLET = re.compile(r"^[-*+](?:\s+|$)")
_NUMBER = re.compile(r"^(\d{1,9})[.)](?:\s+|$)")


def unmark(text: str) -> str:
    """Quoted text that no markdown renderer makes structure of; its words all kept.

    Fences, rules and table delimiter rows go; heading and quote markers go; a bullet becomes
    `• ` and a number `(1) `, which no renderer reads as a list item; blank lines and indentation
    (an indented code block) go. What is inline (`code`, **bold**, links) stays: it is text.

    >>> unmark("## 営業時間\n\n- 平日 9時\n1. 予約する\n```sh\nkaiwa serve\n```")
    '営業時間\n• 平日 9時\n(1) 予約する\nkaiwa serve'
    """
    lines = []
    for line in text.splitlines():
        if _STRUCTURE_LINE.match(line):
            continue
        line = _unmark_line(line.strip())
        if line:
            lines.append(line)
    return "\n".join(lines)


def _unmark_line(line: str) -> str:
    # Markers nest (`> - ## x`): peel until none is left.
    while True:
        if heading := _HEADING.match(line):
            line = heading.group(1)
        elif quote := _QUOTE.match(line):
            line = line[quote.end() :]
        elif bullet := _BULLET.match(line):
            rest = line[bullet.end() :]
            return f"• {rest}" if rest else ""
        elif number := _NUMBER.match(line):
            return f"({number.group(1)}) {line[number.end() :]}".rstrip()
        else:
            return line
        line = line.strip()


@dataclass(frozen=True, slots=True)
class Passage:
    """A piece of a tool's result the model may quote: what it says and where it comes from."""

    title: str
    text: str
    ref: str = ""
    """Where it comes from: a URL, or a document or message reference."""


_PASSAGE = re.compile(r'<source title="([^"]*)" ref="([^"]*)">\n(.*?)\n</source>', re.DOTALL)


def render_passages(passages: Iterable[Passage]) -> str:
    """Passages as tools hand them to a model: each in a `<source>` element.

    Real models read the element as a quotation with its origin; `parse_passages` reads it back.
    """
    out = []
    for passage in passages:
        title = _attribute(passage.title)
        ref = _attribute(passage.ref)
        body = passage.text.strip().replace("</source>", "</ source>")
        out.append(f'<source title="{title}" ref="{ref}">\n{body}\n</source>')
    return "\n\n".join(out)


def parse_passages(text: str) -> list[Passage]:
    return [Passage(title=title, text=body, ref=ref) for title, ref, body in _PASSAGE.findall(text)]


def _attribute(value: str) -> str:
    return " ".join(value.replace('"', "'").split())
