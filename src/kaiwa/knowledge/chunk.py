"""Chunks of a document for indexing: whole paragraphs when they fit, else whole sentences.

    chunk_text("営業時間は9時から18時です。土日は休みです。\\n\\nPrices start at ¥1,000.")

A sentence ends after Japanese `。！？` (and their full-width or half-width forms), after `. ! ?`
followed by white space, or at a line break; closing brackets and quotes stay with it. Each chunk
is a slice of the original text (its line breaks kept), at most `max_chars` long, and begins with
the last sentences of the chunk before it, up to `overlap` characters, so that a passage cut at a
chunk boundary is still whole in one of them.

Deliberate oddities: a sentence longer than `max_chars` alone (a table row, text without
punctuation) is cut at a comma or space near the limit, else at the limit, with `overlap`
characters repeated across the cut. A short heading before a long paragraph stays with the start
of that paragraph rather than becoming a chunk of its own.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

__all__ = ["chunk_text", "sentences"]

_PARAGRAPH_BREAK = re.compile(r"\n[ \t\u3000]*\n")
_CLOSERS = "」』）】〕〉》\"'’”)\\]"
_SENTENCE_END = re.compile(
    f"[。！？｡．]+[{_CLOSERS}]*"  # Japanese: ends even without a space after it
    f"|[.!?！？]+[{_CLOSERS}]*(?=\\s|$)"  # English: only before a space or the end
    "|\n"
)
# Where an overlong sentence may be cut, best first.
_SOFT_BREAKS = ("、", "，", ",", ";", "；", ":", "：", " ", "\u3000")


@dataclass(frozen=True, slots=True)
class _Unit:
    start: int
    end: int
    paragraph: int


def sentences(text: str) -> list[tuple[int, int]]:
    """`(start, end)` of each sentence of `text`, without surrounding white space."""
    return [(unit.start, unit.end) for unit in _sentences(text)]


def _sentences(text: str) -> list[_Unit]:
    units: list[_Unit] = []
    position = 0
    paragraph = 0
    for paragraph_end in [m.start() for m in _PARAGRAPH_BREAK.finditer(text)] + [len(text)]:
        start = position
        depth = 0
        scanned = position
        for match in _SENTENCE_END.finditer(text, position, paragraph_end):
            depth = _depth(text, scanned, match.end(), depth)
            scanned = match.end()
            if match.group() != "\n":
                if depth > 0 or _continues(text, match, paragraph_end):
                    continue
            else:
                depth = 0
            _add(units, text, start, match.end(), paragraph)
            start = match.end()
        _add(units, text, start, paragraph_end, paragraph)
        position = paragraph_end
        paragraph += 1
    return units


_OPENERS = "「『（【〔〈《("
_CLOSING = "」』）】〕〉》)"
_ABBREVIATIONS = frozenset(
    "mr mrs ms dr prof st vs etc inc ltd co jr sr no fig approx dept est e.g i.e a.m p.m".split()  # noqa: SIM905
)


def _depth(text: str, start: int, end: int, depth: int) -> int:
    """Bracket nesting after `text[start:end]`, from `depth` before it (never below 0)."""
    for char in text[start:end]:
        if char in _OPENERS:
            depth += 1
        elif char in _CLOSING and depth > 0:
            depth -= 1
        elif char == "\n":
            depth = 0
    return depth


def _continues(text: str, match: re.Match[str], limit: int) -> bool:
    """Whether an end mark does not end the sentence: a quote the sentence goes on after
    (`「本当？」と聞く`), or the dot of an abbreviation or an initial (`Mr. Smith`, `J. Doe`)."""
    mark = match.group()
    after = text[match.end()] if match.end() < limit else ""
    if mark[-1] in _CLOSING and after and not after.isspace() and after not in _OPENERS:
        return not unicodedata.category(after).startswith("P")
    if mark == ".":
        word = text[max(0, match.start() - 6) : match.start()].split()[-1:]
        before = word[0].lower().lstrip("(\"'") if word else ""
        return before in _ABBREVIATIONS or (len(before) == 1 and before.isalpha())
    return False


def _add(units: list[_Unit], text: str, start: int, end: int, paragraph: int) -> None:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    if start < end:
        units.append(_Unit(start, end, paragraph))


def _cut_long(text: str, units: list[_Unit], max_chars: int, overlap: int) -> list[_Unit]:
    out: list[_Unit] = []
    for unit in units:
        start = unit.start
        while unit.end - start > max_chars:
            limit = start + max_chars
            cut = limit
            for mark in _SOFT_BREAKS:
                found = text.rfind(mark, start + max_chars // 2, limit)
                if found != -1:
                    cut = found + 1
                    break
            out.append(_Unit(start, cut, unit.paragraph))
            start = max(start + 1, cut - overlap)
            while start < unit.end and text[start].isspace():
                start += 1
        out.append(_Unit(start, unit.end, unit.paragraph))
    return out


def chunk_text(text: str, *, max_chars: int = 600, overlap: int = 100) -> list[str]:
    """Split `text` into chunks of at most `max_chars`, never inside a sentence that fits."""
    if max_chars < 1 or not 0 <= overlap < max_chars:
        raise ValueError("chunk_text needs max_chars >= 1 and 0 <= overlap < max_chars")
    units = _cut_long(text, _sentences(text), max_chars, overlap)
    chunks: list[str] = []
    n = len(units)

    def span(first: int, last: int) -> int:
        """Characters from the start of unit `first` to the end of unit `last` (inclusive)."""
        return units[last].end - units[first].start

    start = 0
    fresh = 0  # the first unit the previous chunk did not hold
    while start < n:
        end = start + 1
        while end < n and span(start, end) <= max_chars:
            end += 1
        if end < n and units[end].paragraph == units[end - 1].paragraph:
            # The chunk would end inside a paragraph: end it before that paragraph instead, if
            # the paragraph fits a chunk of its own and the chunk is not left too short.
            first = end - 1
            while first > start and units[first - 1].paragraph == units[end].paragraph:
                first -= 1
            last = _paragraph_end(units, end)
            fits = span(first, last) <= max_chars
            if first > fresh and fits and span(start, first - 1) * 2 >= max_chars:
                end = first
        chunks.append(text[units[start].start : units[end - 1].end])
        if end == n:
            break
        following = end
        if units[end].paragraph != units[end - 1].paragraph:
            last = _paragraph_end(units, end)
            if span(end, last) <= max_chars:
                following = last
        next_start = end
        while next_start > start + 1 and span(next_start - 1, end - 1) <= overlap:
            next_start -= 1
        # The overlap gives way to the next paragraph (or at least the next unit) fitting whole.
        while next_start < end and span(next_start, following) > max_chars:
            next_start += 1
        start, fresh = next_start, end
    return chunks


def _paragraph_end(units: list[_Unit], index: int) -> int:
    """The index of the last unit of the paragraph unit `index` is in."""
    while index + 1 < len(units) and units[index + 1].paragraph == units[index].paragraph:
        index += 1
    return index
