"""initial schema: sweeps, variants, head/scalar metrics, studies, firings, reports, outbox

Revision ID: fa6ed5c0227c
Revises:
Create Date: 2026-11-25 20:21:50.421817

"""

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from alembic import op

revision: str = "fa6ed5c0227c"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of the model types (migrations never import the live models).
JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def _ts(name: str, nullable: bool) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "metric_names",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_metric_names")),
        sa.UniqueConstraint("name", name=op.f("uq_metric_names_name")),
    )
    op.create_table(
        "mlflow_outbox",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("kind", sa.String(length=50), nullable=False),
        sa.Column("payload", JSON, nullable=False),
        sa.Column("dedupe_key", sa.String(length=200), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        _ts("created_at", False),
        _ts("available_at", False),
        sa.Column("claimed_by", sa.String(length=200), nullable=True),
        _ts("claimed_until", True),
        sa.Column("done", sa.Boolean(), nullable=False),
        _ts("done_at", True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mlflow_outbox")),
        sa.UniqueConstraint("dedupe_key", name=op.f("uq_mlflow_outbox_dedupe_key")),
    )
    op.create_index("ix_mlflow_outbox_done_available_at", "mlflow_outbox", ["done", "available_at"])
    op.create_table(
        "studies",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("spec", JSON, nullable=False),
        sa.Column("cron", sa.String(length=100), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        _ts("next_fire_at", True),
        sa.Column("paused", sa.Boolean(), nullable=False),
        sa.Column("lease_owner", sa.String(length=200), nullable=True),
        _ts("lease_expires_at", True),
        _ts("created_at", False),
        _ts("updated_at", False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_studies")),
        sa.UniqueConstraint("name", name=op.f("uq_studies_name")),
    )
    op.create_index(op.f("ix_studies_next_fire_at"), "studies", ["next_fire_at"])
    op.create_table(
        "sweeps",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("spec", JSON, nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("mlflow_run_id", sa.String(length=64), nullable=True),
        _ts("created_at", False),
        _ts("updated_at", False),
        _ts("started_at", True),
        _ts("finished_at", True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sweeps")),
    )
    op.create_index(op.f("ix_sweeps_name"), "sweeps", ["name"])
    op.create_index(op.f("ix_sweeps_status"), "sweeps", ["status"])
    # report_id's foreign key is added once reports exists (the two tables refer to each other)
    op.create_table(
        "study_firings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        _ts("scheduled_for", False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("claimed_by", sa.String(length=200), nullable=True),
        sa.Column("sweep_id", sa.Integer(), nullable=True),
        sa.Column("report_id", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        _ts("created_at", False),
        _ts("finished_at", True),
        sa.ForeignKeyConstraint(
            ["study_id"],
            ["studies.id"],
            name=op.f("fk_study_firings_study_id_studies"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["sweep_id"],
            ["sweeps.id"],
            name=op.f("fk_study_firings_sweep_id_sweeps"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_study_firings")),
        sa.UniqueConstraint(
            "study_id", "scheduled_for", name=op.f("uq_study_firings_study_id_scheduled_for")
        ),
    )
    op.create_index(op.f("ix_study_firings_sweep_id"), "study_firings", ["sweep_id"])
    op.create_table(
        "variants",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("sweep_id", sa.Integer(), nullable=False),
        sa.Column("index", sa.Integer(), nullable=False),
        sa.Column("factors", JSON, nullable=False),
        sa.Column("config", JSON, nullable=False),
        sa.Column("pack_key", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("node", sa.String(length=255), nullable=True),
        sa.Column("mlflow_run_id", sa.String(length=64), nullable=True),
        _ts("created_at", False),
        _ts("updated_at", False),
        _ts("started_at", True),
        _ts("finished_at", True),
        sa.ForeignKeyConstraint(
            ["sweep_id"],
            ["sweeps.id"],
            name=op.f("fk_variants_sweep_id_sweeps"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_variants")),
        sa.UniqueConstraint("sweep_id", "index", name=op.f("uq_variants_sweep_id_index")),
    )
    op.create_index("ix_variants_sweep_id_status", "variants", ["sweep_id", "status"])
    op.create_table(
        "head_metrics",
        sa.Column("variant_id", sa.Integer(), nullable=False),
        sa.Column("metric_id", sa.SmallInteger(), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("layer", sa.SmallInteger(), nullable=False),
        sa.Column("head", sa.SmallInteger(), nullable=False),
        sa.Column("value", sa.Double(), nullable=False),
        # no foreign keys and no index besides the primary key: see service/store/models.py
        sa.PrimaryKeyConstraint(
            "variant_id", "metric_id", "step", "layer", "head", name=op.f("pk_head_metrics")
        ),
    )
    op.create_table(
        "reports",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=50), nullable=False),
        sa.Column("sweep_id", sa.Integer(), nullable=True),
        sa.Column("firing_id", sa.Integer(), nullable=True),
        sa.Column("title", sa.String(length=200), nullable=True),
        sa.Column("content", sa.Text(), nullable=True),
        sa.Column("path", sa.String(length=1024), nullable=True),
        _ts("created_at", False),
        sa.ForeignKeyConstraint(
            ["firing_id"],
            ["study_firings.id"],
            name=op.f("fk_reports_firing_id_study_firings"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["sweep_id"],
            ["sweeps.id"],
            name=op.f("fk_reports_sweep_id_sweeps"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reports")),
    )
    op.create_index(op.f("ix_reports_firing_id"), "reports", ["firing_id"])
    op.create_index(op.f("ix_reports_sweep_id"), "reports", ["sweep_id"])
    with op.batch_alter_table("study_firings") as batch_op:
        batch_op.create_foreign_key(
            op.f("fk_study_firings_report_id_reports"),
            "reports",
            ["report_id"],
            ["id"],
            ondelete="SET NULL",
        )
    op.create_table(
        "scalar_metrics",
        sa.Column("variant_id", sa.Integer(), nullable=False),
        sa.Column("metric_id", sa.SmallInteger(), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("value", sa.Double(), nullable=False),
        sa.ForeignKeyConstraint(
            ["metric_id"],
            ["metric_names.id"],
            name=op.f("fk_scalar_metrics_metric_id_metric_names"),
        ),
        sa.ForeignKeyConstraint(
            ["variant_id"],
            ["variants.id"],
            name=op.f("fk_scalar_metrics_variant_id_variants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("variant_id", "metric_id", "step", name=op.f("pk_scalar_metrics")),
    )


def downgrade() -> None:
    with op.batch_alter_table("study_firings") as batch_op:
        batch_op.drop_constraint(op.f("fk_study_firings_report_id_reports"), type_="foreignkey")
    for table in (
        "scalar_metrics",
        "reports",
        "head_metrics",
        "variants",
        "study_firings",
        "sweeps",
        "studies",
        "mlflow_outbox",
        "metric_names",
    ):
        op.drop_table(table)
