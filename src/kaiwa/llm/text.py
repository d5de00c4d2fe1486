"""Small text helpers the offline models share: language guess, chunking, token estimate."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Literal

Language = Literal["ja", "en"]

_KANA = re.compile(r"[\u3040-\u30ff\uff66-\uff9f]")
_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_CJK = re.compile(r"[\u3000-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef]")
_TOKEN = re.compile(r"[\u3000-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef]|\w+|[^\w\s]")
_SENTENCE_END = re.compile(r"(?<=[。！？!?\.])\s*|\n+")


def detect_language(text: str) -> Language:
    """Japanese when the text has kana, or more Han characters than Latin letters."""
    if _KANA.search(text):
        return "ja"
    han = len(_HAN.findall(text))
    latin = sum(1 for c in text if c.isascii() and c.isalpha())
    return "ja" if han and han >= latin else "en"


def estimate_tokens(text: str) -> int:
    """A deterministic stand-in for a tokenizer: one per CJK character, word or punctuation."""
    return len(_TOKEN.findall(text))


def chunks(text: str, size: int = 6) -> Iterator[str]:
    """Small pieces of `text` for streaming: `size` characters of CJK, or about one word.

    Pieces are whole characters, so they never split a UTF-8 code point.
    """
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
    for start in range(0, len(token), size):
        yield token[start : start + size]


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
