"""The `lookup` tool's search: a chat's earlier messages and the text of its attached files.

    hits = await lookup(session, chat_id=12, query="見積もりの金額", before_message_id=340,
                        file_uuids=["c8a1e1c5-…"], limit=5)
    hits[0].title, hits[0].snippet, hits[0].text

Messages and file passages are ranked together with BM25 (`kaiwa.knowledge.terms.rank`), so
Japanese and English both match. Searched: the chat's completed user and assistant messages before
the current turn (`before_message_id`; superseded answers are left out), and every file attached
in the chat plus this message's attachments (`file_uuids`), cut into passages with
`kaiwa.knowledge.ingest.chunk_text`.

Deliberate oddities: when nothing matches but the current message has attachments, the beginning
of those files is returned (score 0) — "summarise this file" shares no words with the file it
means. Ranking runs in a thread: a chat with large files has thousands of passages.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kaiwa.knowledge.ingest import chunk_text
from kaiwa.knowledge.terms import rank, terms
from kaiwa.store import files
from kaiwa.store.db import utc
from kaiwa.store.models import Message

__all__ = ["LookupHit", "lookup"]

MESSAGE_WINDOW = 1000
"""How many of the chat's latest messages are searched."""
PASSAGE_CHARS = 600
SNIPPET_CHARS = 200

Source = Literal["message", "file"]


@dataclass(frozen=True, slots=True)
class LookupHit:
    source: Source
    id: str
    """The message id, or the file's uuid."""
    title: str
    """The file's name, or `Earlier message (user, 2026-11-24 10:00 UTC)`."""
    snippet: str
    """At most about 200 characters around the match, for people."""
    score: float
    text: str
    """The passage the model reads."""


@dataclass(frozen=True, slots=True)
class _Passage:
    source: Source
    id: str
    title: str
    text: str


async def lookup(
    session: AsyncSession,
    *,
    chat_id: int,
    query: str,
    before_message_id: int | None = None,
    file_uuids: Sequence[str] = (),
    limit: int = 5,
) -> list[LookupHit]:
    """The best `limit` passages for `query`, best first."""
    messages = await _messages(session, chat_id, before_message_id)
    attached = await files.chat_files(session, chat_id)
    current = await files.files_in_chat_workspace(session, chat_id, file_uuids)
    documents = {file.uuid: (file.original_name, file.text) for file in [*attached, *current]}
    current_ids = [file.uuid for file in current]
    return await asyncio.to_thread(_search, query, messages, documents, current_ids, limit)


async def _messages(
    session: AsyncSession, chat_id: int, before: int | None
) -> list[tuple[int, str, str]]:
    """`(id, title, text)` of the messages to search, oldest first."""
    query = select(Message).where(
        Message.chat_id == chat_id,
        Message.role.in_(("user", "assistant")),
        Message.status == "completed",
    )
    if before is not None:
        query = query.where(Message.id < before)
    rows = await session.scalars(query.order_by(Message.id.desc()).limit(MESSAGE_WINDOW))
    out = [
        (message.id, _message_title(message), message.content)
        for message in rows
        if message.content.strip() and not (message.meta or {}).get("superseded")
    ]
    return out[::-1]


def _message_title(message: Message) -> str:
    stamp = utc(message.created_at).strftime("%Y-%m-%d %H:%M")
    return f"Earlier message ({message.role}, {stamp} UTC)"


def _search(
    query: str,
    messages: list[tuple[int, str, str]],
    documents: dict[str, tuple[str, str | None]],
    current: list[str],
    limit: int,
) -> list[LookupHit]:
    passages: list[_Passage] = []
    for message_id, title, text in messages:
        chunks = chunk_text(text, max_chars=PASSAGE_CHARS) if len(text) > PASSAGE_CHARS else [text]
        passages.extend(_Passage("message", str(message_id), title, chunk) for chunk in chunks)
    file_passages = {uuid: _file_passages(uuid, *document) for uuid, document in documents.items()}
    for file_chunks in file_passages.values():
        passages.extend(file_chunks)
    ranked = rank(query, [passage.text for passage in passages])[:limit]
    if ranked:
        query_terms = set(terms(query))
        return [_hit(passages[index], score, query_terms) for index, score in ranked]
    # Nothing matches: the beginning of this message's files, taken in turns.
    turns = itertools.zip_longest(*(file_passages[uuid] for uuid in dict.fromkeys(current)))
    beginning = [passage for row in turns for passage in row if passage is not None][:limit]
    return [_hit(passage, 0.0, set()) for passage in beginning]


def _file_passages(uuid: str, name: str, text: str | None) -> list[_Passage]:
    if not text or not text.strip():
        return []
    chunks = chunk_text(text, max_chars=PASSAGE_CHARS)
    if len(chunks) == 1:
        return [_Passage("file", uuid, name, chunks[0])]
    count = len(chunks)
    return [
        _Passage("file", uuid, f"{name} (part {index} of {count})", chunk)
        for index, chunk in enumerate(chunks, 1)
    ]


def _hit(passage: _Passage, score: float, query_terms: set[str]) -> LookupHit:
    return LookupHit(
        source=passage.source,
        id=passage.id,
        title=passage.title,
        snippet=snippet(passage.text, query_terms),
        score=score,
        text=passage.text,
    )


_SPACE = re.compile(r"\s+")


def snippet(text: str, query_terms: set[str], width: int = SNIPPET_CHARS) -> str:
    """About `width` characters of `text` where most of the query's terms are, on one line."""
    folded = unicodedata.normalize("NFKC", text).lower()
    if len(folded) != len(text):
        folded = text.lower()  # positions must line up with the text
    found = sorted(
        (match.start(), term)
        for term in query_terms
        for match in re.finditer(re.escape(term), folded)
    )
    start = 0
    if found:
        best = max(
            range(len(found)),
            key=lambda i: (
                len({term for at, term in found[i:] if at < found[i][0] + width * 3 // 4}),
                -i,
            ),
        )
        start = max(0, found[best][0] - width // 5)
    end = min(len(text), start + width)
    start = max(0, min(start, end - width))
    piece = _SPACE.sub(" ", text[start:end]).strip()
    return ("…" if start > 0 else "") + piece + ("…" if end < len(text) else "")
