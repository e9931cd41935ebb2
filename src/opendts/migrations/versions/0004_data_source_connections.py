"""data-source connections

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "data_source_connections",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("team_id", _ID, nullable=False),
        sa.Column("data_source_id", sa.String(length=60), nullable=False),
        sa.Column("destination_type", sa.String(length=60), nullable=False),
        sa.Column("display_name", sa.String(length=200), nullable=False),
        sa.Column("fields", sa.Text(), nullable=False),
        sa.Column("secrets", sa.Text(), nullable=False),
        sa.Column("created_user_id", _ID, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["team_id"],
            ["teams.id"],
            name=op.f("fk_data_source_connections_team_id_teams"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_data_source_connections")),
    )
    with op.batch_alter_table("data_source_connections", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_data_source_connections_team_id"), ["team_id"], unique=False
        )

    with op.batch_alter_table("transfers", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("data_source_connection_id", sa.String(length=36), nullable=True)
        )
        batch_op.create_index(
            batch_op.f("ix_transfers_data_source_connection_id"),
            ["data_source_connection_id"],
            unique=False,
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_transfers_data_source_connection_id_data_source_connections"),
            "data_source_connections",
            ["data_source_connection_id"],
            ["id"],
        )


def downgrade() -> None:
    with op.batch_alter_table("transfers", schema=None) as batch_op:
        batch_op.drop_constraint(
            batch_op.f("fk_transfers_data_source_connection_id_data_source_connections"),
            type_="foreignkey",
        )
        batch_op.drop_index(batch_op.f("ix_transfers_data_source_connection_id"))
        batch_op.drop_column("data_source_connection_id")

    with op.batch_alter_table("data_source_connections", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_data_source_connections_team_id"))

    op.drop_table("data_source_connections")
