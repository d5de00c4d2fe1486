"""Tables. One schema for SQLite and PostgreSQL; Alembic migrations create and upgrade it.

Timestamps are UTC. SQLite hands them back naive; `utc()` in `store.db` makes them aware again.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    PrimaryKeyConstraint,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets a 64-bit identity.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        dict[str, Any]: JSON,
        list[Any]: JSON,
        datetime: DateTime(timezone=True),
    }


class Workspace(Base):
    __tablename__ = "workspaces"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(256))
    whitelist_mode: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime]


class WhitelistEntry(Base):
    __tablename__ = "whitelist_entries"

    workspace_id: Mapped[str] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), primary_key=True
    )
    external_user_id: Mapped[str] = mapped_column(String(256), primary_key=True)


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(256))
    prefix: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scope: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class Agent(Base):
    __tablename__ = "agents"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(256))
    description: Mapped[str] = mapped_column(Text, default="")
    system_prompt: Mapped[str] = mapped_column(Text, default="")
    llm_model: Mapped[str] = mapped_column(String(256))
    unified_tools: Mapped[list[Any]]
    suggested_questions: Mapped[list[Any]]
    meta: Mapped[dict[str, Any]]
    published_version: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    deleted_at: Mapped[datetime | None]


class AgentVersion(Base):
    """A published snapshot of an agent: what its chats run."""

    __tablename__ = "agent_versions"
    __table_args__ = (UniqueConstraint("agent_id", "version"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    agent_id: Mapped[str] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"))
    version: Mapped[int]
    snapshot: Mapped[dict[str, Any]]
    created_at: Mapped[datetime]


class Chat(Base):
    __tablename__ = "chats"
    __table_args__ = (Index("ix_chats_workspace_created", "workspace_id", "created_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    agent_id: Mapped[str] = mapped_column(ForeignKey("agents.id"))
    name: Mapped[str] = mapped_column(String(256))
    external_user_id: Mapped[str | None] = mapped_column(String(256))
    auto_title: Mapped[bool] = mapped_column(Boolean, default=True)
    """False once the chat has a title, generated or set by hand: titles are made only once."""
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class Message(Base):
    __tablename__ = "messages"
    __table_args__ = (Index("ix_messages_chat_id_id", "chat_id", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    chat_id: Mapped[int] = mapped_column(ForeignKey("chats.id", ondelete="CASCADE"))
    group_id: Mapped[str] = mapped_column(String(48))
    role: Mapped[str] = mapped_column(String(16))
    content: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(16))
    meta: Mapped[dict[str, Any]]
    response_id: Mapped[str | None] = mapped_column(String(36))
    created_at: Mapped[datetime]


class Response(Base):
    """One run of the agent producing an assistant message."""

    __tablename__ = "responses"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    chat_id: Mapped[int] = mapped_column(ForeignKey("chats.id", ondelete="CASCADE"), index=True)
    workspace_id: Mapped[str] = mapped_column(String(36))
    agent_id: Mapped[str] = mapped_column(String(36))
    model: Mapped[str] = mapped_column(String(256))
    user_message_id: Mapped[int] = mapped_column(BigId)
    assistant_message_id: Mapped[int] = mapped_column(BigId)
    status: Mapped[str] = mapped_column(String(16), index=True)
    error_code: Mapped[int | None] = mapped_column(Integer)
    error_message: Mapped[str | None] = mapped_column(Text)
    last_event_id: Mapped[int | None] = mapped_column(Integer)
    """The id of its terminal event, once it ended: resuming past it yields only `[DONE]`."""
    owner: Mapped[str | None] = mapped_column(String(64))
    """The replica producing it (its id); None for answers started before replicas had ids."""
    cancel_reason: Mapped[str | None] = mapped_column(String(16))
    """A stop or interrupt asked from another replica, for the owner to pick up."""
    trace_context: Mapped[str | None] = mapped_column(String(64))
    """The W3C `traceparent` of the span that produced it, when traced: a resumed stream's
    request, on any replica, links to it."""
    created_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]


class Feedback(Base):
    """An end user's verdict on an answer: one per message and end user, a repeat replaces it."""

    __tablename__ = "feedbacks"
    __table_args__ = (UniqueConstraint("message_id", "end_user"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"))
    chat_id: Mapped[int] = mapped_column(ForeignKey("chats.id", ondelete="CASCADE"), index=True)
    end_user: Mapped[str] = mapped_column(String(256))
    """The `external_user_id` that gave it, or "" when none was given."""
    type: Mapped[str] = mapped_column(String(16))
    content: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class ServerSecret(Base):
    """Secrets every replica shares, generated once (e.g. the key that signs resume tokens)."""

    __tablename__ = "server_secrets"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(256))
    created_at: Mapped[datetime]


class KnowledgeBase(Base):
    __tablename__ = "knowledge_bases"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(256))
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class KbDocument(Base):
    """A document of a knowledge base: parsed off the event loop, then chunked and indexed."""

    __tablename__ = "kb_documents"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    knowledge_base_id: Mapped[str] = mapped_column(
        ForeignKey("knowledge_bases.id", ondelete="CASCADE"), index=True
    )
    workspace_id: Mapped[str] = mapped_column(String(36))
    title: Mapped[str] = mapped_column(String(512))
    source: Mapped[str] = mapped_column(String(512), default="")
    """The uploaded file's name, or "" for a document sent as JSON text."""
    content_type: Mapped[str] = mapped_column(String(128), default="text/plain")
    size: Mapped[int] = mapped_column(BigId, default=0)
    status: Mapped[str] = mapped_column(String(16))
    """`processing`, `ready` or `failed`."""
    error: Mapped[str | None] = mapped_column(Text)
    """Why it failed, in words a user can act on."""
    chunk_count: Mapped[int] = mapped_column(Integer, default=0)
    storage_key: Mapped[str | None] = mapped_column(String(255))
    """The uploaded bytes it is indexed from (a blob), until it is ready or failed."""
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class KbChunk(Base):
    __tablename__ = "kb_chunks"
    __table_args__ = (Index("ix_kb_chunks_document_ordinal", "document_id", "ordinal"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    document_id: Mapped[str] = mapped_column(ForeignKey("kb_documents.id", ondelete="CASCADE"))
    knowledge_base_id: Mapped[str] = mapped_column(String(36), index=True)
    ordinal: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text)
    embedding: Mapped[bytes | None] = mapped_column(LargeBinary)
    """Float32 little-endian, normalised; none when no embedder is configured."""
    embedding_model: Mapped[str | None] = mapped_column(String(256))
    """The embedder that made `embedding`: vectors of another model are not comparable."""
    term_count: Mapped[int] = mapped_column(Integer, default=0)
    """How many search terms the chunk has (its length for BM25)."""


class KbTerm(Base):
    """A posting of the lexical index: how often a search term occurs in a chunk.

    Clustered by knowledge base and term (on SQLite a table without rowid), so that the postings
    of a query's terms are read in one range each, with all BM25 needs.
    """

    __tablename__ = "kb_terms"
    __table_args__ = (
        # PostgreSQL: the key carries the rest, so ranking reads the index alone.
        PrimaryKeyConstraint(
            "knowledge_base_id", "term", "chunk_id", postgresql_include=["tf", "length"]
        ),
        Index("ix_kb_terms_chunk_id", "chunk_id"),
        {"sqlite_with_rowid": False},
    )

    knowledge_base_id: Mapped[str] = mapped_column(String(36))
    term: Mapped[str] = mapped_column(String(64))
    chunk_id: Mapped[int] = mapped_column(BigId, ForeignKey("kb_chunks.id", ondelete="CASCADE"))
    tf: Mapped[int] = mapped_column(Integer)
    length: Mapped[int] = mapped_column(Integer)
    """The chunk's `term_count`, here so that ranking needs no join."""


class UploadedFile(Base):
    """A file uploaded for chats (`POST /chats/upload-file`); its bytes live under the data
    directory, its extracted text here."""

    __tablename__ = "uploaded_files"

    uuid: Mapped[str] = mapped_column(String(36), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), index=True
    )
    original_name: Mapped[str] = mapped_column(String(512))
    content_type: Mapped[str] = mapped_column(String(128))
    size: Mapped[int] = mapped_column(BigId)
    sha256: Mapped[str] = mapped_column(String(64))
    scope: Mapped[str] = mapped_column(String(16))
    """`persistent` or `ephemeral`."""
    storage_key: Mapped[str] = mapped_column(String(256))
    """Path of the bytes relative to the files directory."""
    text: Mapped[str | None] = mapped_column(Text)
    """Extracted text; none when the type has none (an image) or extraction failed."""
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]


class MessageFile(Base):
    """A file attached to a user message, in the order it was attached."""

    __tablename__ = "message_files"

    message_id: Mapped[int] = mapped_column(
        ForeignKey("messages.id", ondelete="CASCADE"), primary_key=True
    )
    file_uuid: Mapped[str] = mapped_column(
        ForeignKey("uploaded_files.uuid", ondelete="CASCADE"), primary_key=True
    )
    chat_id: Mapped[int] = mapped_column(ForeignKey("chats.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)


class FormRequest(Base):
    """A form an answer asked for: the turn waits for it, a submit continues it."""

    __tablename__ = "form_requests"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    chat_id: Mapped[int] = mapped_column(ForeignKey("chats.id", ondelete="CASCADE"), index=True)
    response_id: Mapped[str] = mapped_column(String(36))
    message_id: Mapped[int] = mapped_column(BigId)
    """The assistant message that asked (status `awaiting_form` until answered)."""
    step: Mapped[dict[str, Any]]
    """The form step's start (`id`, `type`, `tool_name`, `content`, `args`, `timestamp`)."""
    fields: Mapped[list[Any]]
    status: Mapped[str] = mapped_column(String(16))
    """`pending` or `submitted`."""
    values: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    state: Mapped[dict[str, Any]]
    """What the turn needs to go on: the model messages of the turn so far, its tool call."""
    created_at: Mapped[datetime]
    submitted_at: Mapped[datetime | None]


class Batch(Base):
    """An asynchronous batch of messages (`POST /batches`); its items run in the background."""

    __tablename__ = "batches"
    __table_args__ = (Index("ix_batches_workspace_created", "workspace_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    agent_id: Mapped[str] = mapped_column(String(36))
    """The default agent of its items."""
    status: Mapped[str] = mapped_column(String(16), index=True)
    """`pending`, `processing`, `completed`, `failed` or `cancelled`."""
    total_requests: Mapped[int] = mapped_column(Integer)
    completed_requests: Mapped[int] = mapped_column(Integer, default=0)
    failed_requests: Mapped[int] = mapped_column(Integer, default=0)
    cancelled_requests: Mapped[int] = mapped_column(Integer, default=0)
    webhook_url: Mapped[str | None] = mapped_column(String(2048))
    webhook_events: Mapped[list[Any]]
    webhook_secret: Mapped[str | None] = mapped_column(String(255))
    """Signs the webhook's body; never shown by the API."""
    webhook_attempts: Mapped[int] = mapped_column(Integer, default=0)
    webhook_delivered_at: Mapped[datetime | None]
    webhook_error: Mapped[str | None] = mapped_column(Text)
    """Why the webhook could not be delivered, after its last attempt."""
    created_at: Mapped[datetime]
    started_at: Mapped[datetime | None]
    completed_at: Mapped[datetime | None]
    """When the last item ended (batches that end `completed` or `failed`)."""
    cancelled_at: Mapped[datetime | None]


class BatchItem(Base):
    """One request of a batch: one message, answered in its own (or the given) chat."""

    __tablename__ = "batch_items"
    __table_args__ = (
        UniqueConstraint("batch_id", "position"),
        UniqueConstraint("batch_id", "custom_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    batch_id: Mapped[str] = mapped_column(ForeignKey("batches.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    custom_id: Mapped[str] = mapped_column(String(256))
    message: Mapped[str] = mapped_column(Text)
    agent_id: Mapped[str] = mapped_column(String(36))
    """The agent that answers: the item's own, else the batch's."""
    external_user_id: Mapped[str | None] = mapped_column(String(256))
    name: Mapped[str | None] = mapped_column(String(256))
    attached_file_uuids: Mapped[list[Any]]
    history_id: Mapped[int | None] = mapped_column(BigId)
    """The chat to continue; none: a new chat is created."""
    status: Mapped[str] = mapped_column(String(16), index=True)
    """`pending`, `running`, `completed`, `failed` or `cancelled`."""
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    """Times it was taken to run; one taken by a process that died is retried once."""
    chat_id: Mapped[int | None] = mapped_column(BigId)
    response_id: Mapped[str | None] = mapped_column(String(36))
    final_text: Mapped[str | None] = mapped_column(Text)
    error_code: Mapped[int | None] = mapped_column(Integer)
    error_message: Mapped[str | None] = mapped_column(Text)
    usage: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]


class IdempotencyKey(Base):
    """A request sent with an `Idempotency-Key` header, and what it started: a repeat with the
    same key (in the same workspace) gets that again instead of starting anew."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (PrimaryKeyConstraint("workspace_id", "key"),)

    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(255))
    fingerprint: Mapped[str] = mapped_column(String(64))
    """A digest of the operation and its body: the same key with another body is refused."""
    response_id: Mapped[str | None] = mapped_column(String(36))
    chat_id: Mapped[int | None] = mapped_column(BigId)
    batch_id: Mapped[str | None] = mapped_column(String(36))
    created_at: Mapped[datetime] = mapped_column(index=True)


class Job(Base):
    """Background work any replica may run: claimed under a lease its owner renews, retried
    with backoff, `failed` once its attempts run out (`kaiwa.store.jobs`)."""

    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_claim", "kind", "state", "run_at"),
        UniqueConstraint("kind", "key", name="uq_jobs_kind_key"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(32))
    key: Mapped[str | None] = mapped_column(String(128))
    """At most one job of a kind per key: enqueueing the same work twice is one job."""
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(16))
    """`queued`, `running` or `failed`; a job that succeeds is deleted."""
    owner: Mapped[str | None] = mapped_column(String(64))
    """The replica running it."""
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer)
    run_at: Mapped[datetime]
    """Not before then (a retry's backoff, a periodic job's next run)."""
    lease_until: Mapped[datetime | None]
    """While running: the owner renews it; once past, the owner is presumed dead."""
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
