"""knowledge-base index: postings of search terms, chunk lengths, embedding model

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25 09:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("kb_chunks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("embedding_model", sa.String(length=256), nullable=True))
        batch_op.add_column(
            sa.Column("term_count", sa.Integer(), nullable=False, server_default="0")
        )

    op.create_table(
        "kb_terms",
        sa.Column("knowledge_base_id", sa.String(length=36), nullable=False),
        sa.Column("term", sa.String(length=64), nullable=False),
        sa.Column("chunk_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("tf", sa.Integer(), nullable=False),
        sa.Column("length", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["chunk_id"], ["kb_chunks.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint(
            "knowledge_base_id", "term", "chunk_id", postgresql_include=["tf", "length"]
        ),
        sqlite_with_rowid=False,
    )
    with op.batch_alter_table("kb_terms", schema=None) as batch_op:
        batch_op.create_index("ix_kb_terms_chunk_id", ["chunk_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("kb_terms", schema=None) as batch_op:
        batch_op.drop_index("ix_kb_terms_chunk_id")
    op.drop_table("kb_terms")
    with op.batch_alter_table("kb_chunks", schema=None) as batch_op:
        batch_op.drop_column("term_count")
        batch_op.drop_column("embedding_model")
