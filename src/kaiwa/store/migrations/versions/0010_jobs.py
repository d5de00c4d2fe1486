"""jobs: background work any replica may claim; kb_documents.storage_key: the uploaded bytes a
document is indexed from

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04 15:40:00
"""

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("key", sa.String(length=128), nullable=True),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("owner", sa.String(length=64), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("run_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("kind", "key", name="uq_jobs_kind_key"),
    )
    op.create_index("ix_jobs_claim", "jobs", ["kind", "state", "run_at"], unique=False)
    with op.batch_alter_table("kb_documents", schema=None) as batch_op:
        batch_op.add_column(sa.Column("storage_key", sa.String(length=255), nullable=True))
    _adopt_background_work()


def _adopt_background_work() -> None:
    """What earlier versions left to start-up recovery becomes jobs: open batch items (the
    first open one of each chat), undelivered webhooks. Documents left `processing` kept
    their bytes only in the memory of a process that is gone: they fail, as they did."""
    bind = op.get_bind()
    stamp = datetime.now(UTC)
    jobs = sa.table(
        "jobs",
        *(
            sa.column(name)
            for name in (
                "kind",
                "key",
                "state",
                "attempts",
                "max_attempts",
                "run_at",
                "created_at",
                "updated_at",
            )
        ),
        sa.column("payload", sa.JSON()),
    )
    items = sa.table(
        "batch_items",
        sa.column("id"),
        sa.column("batch_id"),
        sa.column("history_id"),
        sa.column("position"),
        sa.column("status"),
    )
    earlier = items.alias("earlier")
    waits = sa.exists().where(
        earlier.c.batch_id == items.c.batch_id,
        earlier.c.history_id == items.c.history_id,
        earlier.c.position < items.c.position,
        earlier.c.status.in_(("pending", "running")),
    )
    heads = bind.execute(
        sa.select(items.c.id).where(
            items.c.status.in_(("pending", "running")),
            sa.or_(items.c.history_id.is_(None), ~waits),
        )
    ).scalars()
    rows = [("batch_item", f"item:{item_id}", {"item_id": item_id}) for item_id in heads]
    batches = sa.table(
        "batches",
        sa.column("id"),
        sa.column("status"),
        sa.column("webhook_url"),
        sa.column("webhook_events", sa.JSON()),
        sa.column("webhook_delivered_at"),
        sa.column("webhook_error"),
    )
    ended = bind.execute(
        sa.select(batches.c.id, batches.c.status, batches.c.webhook_events).where(
            batches.c.status.in_(("completed", "failed", "cancelled")),
            batches.c.webhook_url.is_not(None),
            batches.c.webhook_delivered_at.is_(None),
            batches.c.webhook_error.is_(None),
        )
    )
    rows += [
        ("webhook", batch_id, {"batch_id": batch_id})
        for batch_id, status, events in ended
        if status in (events or [])
    ]
    if rows:
        op.bulk_insert(
            jobs,
            [
                {
                    "kind": kind,
                    "key": key,
                    "payload": payload,
                    "state": "queued",
                    "attempts": 0,
                    "max_attempts": 0,
                    "run_at": stamp,
                    "created_at": stamp,
                    "updated_at": stamp,
                }
                for kind, key, payload in rows
            ],
        )
    documents = sa.table(
        "kb_documents",
        sa.column("id"),
        sa.column("status"),
        sa.column("error"),
        sa.column("chunk_count"),
        sa.column("updated_at"),
    )
    chunks = sa.table("kb_chunks", sa.column("document_id"))
    processing = sa.select(documents.c.id).where(documents.c.status == "processing")
    bind.execute(chunks.delete().where(chunks.c.document_id.in_(processing)))
    bind.execute(
        documents.update()
        .where(documents.c.status == "processing")
        .values(
            status="failed",
            error="The server stopped while processing this document; upload it again",
            chunk_count=0,
            updated_at=stamp,
        )
    )


def downgrade() -> None:
    with op.batch_alter_table("kb_documents", schema=None) as batch_op:
        batch_op.drop_column("storage_key")
    op.drop_index("ix_jobs_claim", table_name="jobs")
    op.drop_table("jobs")
