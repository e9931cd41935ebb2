"""transfer runs

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ACTIVE = "status IN ('CREATED', 'RUNNING', 'SCHEDULED')"


def upgrade() -> None:

    op.create_table(
        "transfer_runs",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("team_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "transfer_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column(
            "backfill_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("type", sa.String(length=20), nullable=False),
        sa.Column("data_date", sa.Date(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("available_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lease_owner", sa.String(length=100), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("queued_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("total_rows", sa.Integer(), nullable=True),
        sa.Column("total_duration", sa.Float(), nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("history", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_transfer_runs")),
    )
    with op.batch_alter_table("transfer_runs", schema=None) as batch_op:
        batch_op.create_index(
            "ix_transfer_runs_failed",
            ["backfill_id", "data_date"],
            unique=False,
            sqlite_where=sa.text("status = 'FAILED'"),
            postgresql_where=sa.text("status = 'FAILED'"),
        )
        batch_op.create_index(
            "ix_transfer_runs_queued",
            ["transfer_id", "data_date"],
            unique=False,
            sqlite_where=sa.text("status = 'QUEUED'"),
            postgresql_where=sa.text("status = 'QUEUED'"),
        )
        batch_op.create_index(
            "ix_transfer_runs_running",
            ["lease_expires_at"],
            unique=False,
            sqlite_where=sa.text("status = 'RUNNING'"),
            postgresql_where=sa.text("status = 'RUNNING'"),
        )
        batch_op.create_index(
            "ix_transfer_runs_transfer_date", ["transfer_id", "data_date"], unique=False
        )
        batch_op.create_index(
            "uq_transfer_runs_backfill_date", ["backfill_id", "data_date"], unique=True
        )

    with op.batch_alter_table("backfills", schema=None) as batch_op:
        batch_op.create_index(
            "ix_backfills_active",
            ["status", "id"],
            unique=False,
            sqlite_where=sa.text(ACTIVE),
            postgresql_where=sa.text(ACTIVE),
        )

    with op.batch_alter_table("transfers", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("kind", sa.String(length=40), nullable=False, server_default="noop")
        )
        batch_op.add_column(sa.Column("config", sa.Text(), nullable=False, server_default="{}"))


def downgrade() -> None:
    with op.batch_alter_table("backfills", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_backfills_active", sqlite_where=sa.text(ACTIVE), postgresql_where=sa.text(ACTIVE)
        )

    with op.batch_alter_table("transfers", schema=None) as batch_op:
        batch_op.drop_column("config")
        batch_op.drop_column("kind")

    with op.batch_alter_table("transfer_runs", schema=None) as batch_op:
        batch_op.drop_index("uq_transfer_runs_backfill_date")
        batch_op.drop_index("ix_transfer_runs_transfer_date")
        batch_op.drop_index(
            "ix_transfer_runs_running",
            sqlite_where=sa.text("status = 'RUNNING'"),
            postgresql_where=sa.text("status = 'RUNNING'"),
        )
        batch_op.drop_index(
            "ix_transfer_runs_queued",
            sqlite_where=sa.text("status = 'QUEUED'"),
            postgresql_where=sa.text("status = 'QUEUED'"),
        )
        batch_op.drop_index(
            "ix_transfer_runs_failed",
            sqlite_where=sa.text("status = 'FAILED'"),
            postgresql_where=sa.text("status = 'FAILED'"),
        )

    op.drop_table("transfer_runs")
