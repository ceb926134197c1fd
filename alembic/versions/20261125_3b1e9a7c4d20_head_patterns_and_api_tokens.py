"""head_patterns (attention patterns for cross-run head matching) and api_tokens

Revision ID: 3b1e9a7c4d20
Revises: fa6ed5c0227c
Create Date: 2026-11-25 23:10:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from alembic import op

revision: str = "3b1e9a7c4d20"
down_revision: str | Sequence[str] | None = "fa6ed5c0227c"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def _ts(name: str, nullable: bool) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "head_patterns",
        sa.Column("variant_id", sa.Integer(), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("batch_key", sa.String(length=64), nullable=False),
        sa.Column("shape", JSON, nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        _ts("created_at", False),
        sa.ForeignKeyConstraint(
            ["variant_id"], ["variants.id"], name=op.f("fk_head_patterns_variant_id_variants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("variant_id", name=op.f("pk_head_patterns")),
    )
    op.create_index(op.f("ix_head_patterns_batch_key"), "head_patterns", ["batch_key"])
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        _ts("created_at", False),
        _ts("last_used_at", True),
        _ts("revoked_at", True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_tokens")),
        sa.UniqueConstraint("name", name=op.f("uq_api_tokens_name")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_api_tokens_token_hash")),
    )


def downgrade() -> None:
    op.drop_table("api_tokens")
    op.drop_index(op.f("ix_head_patterns_batch_key"), table_name="head_patterns")
    op.drop_table("head_patterns")
