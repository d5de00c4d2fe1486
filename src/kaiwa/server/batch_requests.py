"""The body of `POST /batches`, and every check made on it before anything is stored.

A message that is about one request names it as `requests[i].field`. The items are parsed here
rather than by the framework, so that a wrong type inside one is named the same way.

Choices where Codeer's documentation is silent:

- An item with `history_id` continues that chat: the chat must be in the workspace and belong to
  the item's agent (its `agent_id`, else the batch's), else 400 "History agent mismatch".
- In whitelist mode an item that creates a chat needs a whitelisted `external_user_id` (as
  `POST /chats` does); one that continues a chat is checked as a sent message is.
- The webhook URL must be `https`. Plain `http` is accepted only for a host listed in
  `KAIWA_FETCH_ALLOW_PRIVATE` (a loopback receiver in tests, an internal service), and a literal
  private address must be listed there too; names are checked again at delivery.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Annotated, Literal
from uuid import UUID

import httpx
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    JsonValue,
    ValidationError,
    WithJsonSchema,
)
from sqlalchemy.ext.asyncio import AsyncSession

from kaiwa.config import Settings
from kaiwa.net.addresses import AddressPolicy
from kaiwa.protocol import ApiError, ErrorCode
from kaiwa.server.deps import Caller, check_end_user
from kaiwa.server.schemas import ColumnText, Text, check_depth
from kaiwa.store import agents, chats, files
from kaiwa.store.batches import NewItem, WebhookEvent

MAX_CUSTOM_ID_CHARS = 256
MAX_SECRET_CHARS = 255
MAX_URL_CHARS = 2048
DEFAULT_EVENTS: tuple[WebhookEvent, ...] = ("completed", "failed")


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


class BatchRequest(_Body):
    """One item of `requests`."""

    custom_id: Text
    message: Text
    agent_id: UUID | None = None
    """Overrides the batch's agent for this item."""
    external_user_id: ColumnText | None = None
    name: Text | None = None
    """The name of the chat created for it; its `custom_id` when none."""
    attached_file_uuids: list[UUID] = Field(default_factory=list)
    history_id: Annotated[int, Field(ge=1, le=2**63 - 1)] | None = None
    """A chat to continue instead of creating one."""


class BatchWebhook(_Body):
    url: Text
    events: list[Literal["completed", "failed", "cancelled"]] | None = None
    """Default: `completed` and `failed`."""
    secret: Text | None = None
    """Signs each delivery (`X-Codeer-Signature`); never shown back."""


class CreateBatch(_Body):
    agent_id: UUID
    requests: Annotated[
        list[JsonValue],
        BeforeValidator(check_depth),
        WithJsonSchema({"type": "array", "items": BatchRequest.model_json_schema()}),
    ]
    webhook: BatchWebhook | None = None


@dataclass(frozen=True, slots=True)
class CheckedBatch:
    items: list[NewItem]
    webhook_url: str | None
    webhook_events: tuple[WebhookEvent, ...]
    webhook_secret: str | None


async def check_batch(
    session: AsyncSession, caller: Caller, body: CreateBatch, settings: Settings
) -> CheckedBatch:
    """Raises the first problem found as `ApiError`; reads only."""
    count, limit = len(body.requests), settings.max_batch_items
    if not 1 <= count <= limit:
        raise _bad(f"requests: must have between 1 and {limit} items, got {count}")
    published = _PublishedAgents(session, caller.workspace_id)
    await published.check(str(body.agent_id), "agent_id")
    url, events, secret = _check_webhook(body.webhook, settings)
    seen: dict[str, int] = {}
    items: list[NewItem] = []
    for index, raw in enumerate(body.requests):
        where = f"requests[{index}]"
        item = _parse(raw, where)
        _check_texts(item, where, seen, index, settings)
        agent_id = str(item.agent_id or body.agent_id)
        if item.agent_id is not None:
            await published.check(agent_id, f"{where}.agent_id")
        with _naming(where, "external_user_id"):
            if item.history_id is None:
                await check_end_user(session, caller, item.external_user_id, required=True)
        if item.history_id is not None:
            await _check_history(session, caller, item, agent_id, where)
        uuids = tuple(str(value) for value in item.attached_file_uuids)
        with _naming(where, "attached_file_uuids"):
            await files.check_attachable(session, caller.workspace_id, uuids)
        items.append(
            NewItem(
                custom_id=item.custom_id,
                message=item.message,
                agent_id=agent_id,
                external_user_id=item.external_user_id,
                name=item.name,
                attached_file_uuids=uuids,
                history_id=item.history_id,
            )
        )
    return CheckedBatch(items=items, webhook_url=url, webhook_events=events, webhook_secret=secret)


def _parse(raw: JsonValue, where: str) -> BatchRequest:
    if not isinstance(raw, dict):
        raise _bad(f"{where}: must be an object")
    try:
        return BatchRequest.model_validate(raw)
    except ValidationError as exc:
        problems = [
            f"{where}.{'.'.join(str(part) for part in error['loc'])}: {error['msg']}"
            for error in exc.errors()
        ]
        raise _bad("; ".join(problems)) from None


def _check_texts(
    item: BatchRequest, where: str, seen: dict[str, int], index: int, settings: Settings
) -> None:
    if not item.custom_id:
        raise _bad(f"{where}.custom_id: must not be empty")
    if len(item.custom_id) > MAX_CUSTOM_ID_CHARS:
        raise _bad(
            f"{where}.custom_id: must be at most {MAX_CUSTOM_ID_CHARS} characters, "
            f"got {len(item.custom_id)}"
        )
    if item.custom_id in seen:
        first = seen[item.custom_id]
        raise _bad(
            f"{where}.custom_id: {item.custom_id!r} is already used by requests[{first}]; "
            "custom_id must be unique within the batch"
        )
    seen[item.custom_id] = index
    if item.name is not None:
        if not item.name.strip():
            raise _bad(f"{where}.name: must not be empty")
        if len(item.name) > settings.max_name_chars:
            raise _bad(
                f"{where}.name: must be at most {settings.max_name_chars} characters, "
                f"got {len(item.name)}"
            )
    if not item.message.strip():
        raise _bad(f"{where}.message: must not be empty")
    if len(item.message) > settings.max_message_chars:
        raise ApiError(
            ErrorCode.PAYLOAD_TOO_LARGE,
            f"{where}.message: must be at most {settings.max_message_chars} characters, "
            f"got {len(item.message)}",
        )
    if len(item.attached_file_uuids) > settings.max_attachments:
        raise ApiError(
            ErrorCode.PAYLOAD_TOO_LARGE,
            f"{where}.attached_file_uuids: at most {settings.max_attachments} attachments, "
            f"got {len(item.attached_file_uuids)}",
        )


async def _check_history(
    session: AsyncSession, caller: Caller, item: BatchRequest, agent_id: str, where: str
) -> None:
    assert item.history_id is not None
    chat = await chats.get_chat(session, caller.workspace_id, item.history_id)
    if chat is None:
        raise ApiError(ErrorCode.NOT_FOUND, f"{where}.history_id: Chat {item.history_id} not found")
    if chat.agent_id != agent_id:
        raise _bad(
            f"{where}.history_id: History agent mismatch: chat {chat.id} belongs to agent "
            f"{chat.agent_id}, not {agent_id}"
        )
    with _naming(where, "external_user_id"):
        for end_user in dict.fromkeys((chat.external_user_id, item.external_user_id)):
            await check_end_user(session, caller, end_user, required=False)


class _PublishedAgents:
    """Checks that agents exist and are published, each once per batch."""

    def __init__(self, session: AsyncSession, workspace_id: str) -> None:
        self._session = session
        self._workspace_id = workspace_id
        self._ok: set[str] = set()

    async def check(self, agent_id: str, where: str) -> None:
        if agent_id in self._ok:
            return
        agent = await agents.get_agent(self._session, self._workspace_id, agent_id)
        if agent is None:
            raise ApiError(ErrorCode.NOT_FOUND, f"{where}: Agent {agent_id} not found")
        if agent.published_version is None:
            raise ApiError(
                ErrorCode.NOT_FOUND,
                f"{where}: Agent version not found: publish agent {agent_id} first",
            )
        self._ok.add(agent_id)


def _check_webhook(
    webhook: BatchWebhook | None, settings: Settings
) -> tuple[str | None, tuple[WebhookEvent, ...], str | None]:
    if webhook is None:
        return None, (), None
    url = webhook.url
    if len(url) > MAX_URL_CHARS:
        raise _bad(f"webhook.url: must be at most {MAX_URL_CHARS} characters, got {len(url)}")
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        raise _bad("webhook.url: not a valid URL") from None
    if parsed.scheme not in ("https", "http") or not parsed.host:
        raise _bad("webhook.url: must be an absolute https:// URL")
    policy = AddressPolicy.parse(settings.fetch_allow_private)
    host = parsed.host
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    if parsed.scheme == "http" and not policy.lists(host, port):
        raise _bad(
            "webhook.url: must use https (plain http only for hosts in KAIWA_FETCH_ALLOW_PRIVATE)"
        )
    literal = _address(host)
    refusal = policy.refusal(host, literal, port) if literal is not None else None
    if refusal is not None:
        raise _bad(
            f"webhook.url: {refusal}; webhooks reach only public addresses unless the server "
            "allows others (KAIWA_FETCH_ALLOW_PRIVATE)"
        )
    events: tuple[WebhookEvent, ...] = DEFAULT_EVENTS
    if webhook.events is not None:
        events = tuple(dict.fromkeys(webhook.events))
        if not events:
            raise _bad("webhook.events: must name at least one of completed, failed, cancelled")
    secret = webhook.secret or None
    if secret is not None and len(secret) > MAX_SECRET_CHARS:
        raise _bad(
            f"webhook.secret: must be at most {MAX_SECRET_CHARS} characters, got {len(secret)}"
        )
    return url, events, secret


def _address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


@contextmanager
def _naming(where: str, field: str) -> Iterator[None]:
    """Name the item's field in the message of an `ApiError` raised by a shared check."""
    try:
        yield
    except ApiError as exc:
        message = exc.message.removeprefix(f"{field}: ")
        raise ApiError(exc.code, f"{where}.{field}: {message}", status=exc.status) from None


def _bad(message: str) -> ApiError:
    return ApiError(ErrorCode.BAD_REQUEST, message)
