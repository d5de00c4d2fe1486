"""What a log line is about: the request, workspace, chat and response it was written for.

    token = bind(request_id="4bf92f35…")         # for the rest of this task, and tasks it starts
    bind(workspace_id=caller.workspace_id)
    current()                                     # {"request_id": "4bf92f35…", "workspace_id": …}
    reset(token)                                  # back to what it was before the first bind

One context variable holds them: an asyncio task copies it when it is created, so the producer of
an answer started by a request logs with that request's id, and what a task binds never reaches
its caller. The server binds the request and workspace, the runtime the chat and response; the
log formatter (`kaiwa.server.logs`) reads them. Nothing here does I/O or imports the server.
"""

from __future__ import annotations

from contextvars import ContextVar, Token
from typing import TypedDict

__all__ = ["LogFields", "bind", "current", "reset"]


class LogFields(TypedDict, total=False):
    request_id: str
    workspace_id: str
    chat_id: int
    response_id: str


# Never mutated: every `bind` sets a new dict, so a copied context cannot see later changes.
_fields: ContextVar[LogFields | None] = ContextVar("kaiwa_log_fields", default=None)


def bind(
    *,
    request_id: str | None = None,
    workspace_id: str | None = None,
    chat_id: int | None = None,
    response_id: str | None = None,
) -> Token[LogFields | None]:
    """Add the given ids to the current context; the token undoes it (`reset`)."""
    fields = LogFields(**(_fields.get() or {}))
    if request_id is not None:
        fields["request_id"] = request_id
    if workspace_id is not None:
        fields["workspace_id"] = workspace_id
    if chat_id is not None:
        fields["chat_id"] = chat_id
    if response_id is not None:
        fields["response_id"] = response_id
    return _fields.set(fields)


def reset(token: Token[LogFields | None]) -> None:
    _fields.reset(token)


def current() -> LogFields:
    """The ids known here (read-only: bind to change them)."""
    return _fields.get() or LogFields()
