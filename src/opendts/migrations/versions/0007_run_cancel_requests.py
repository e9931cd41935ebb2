"""a running run can be asked to stop (cancel a backfill with "mode": "now")

``transfer_runs.cancel_requested_by``: the user who cancelled the run's backfill with
``"mode": "now"`` while the run was executing. The run stays ``RUNNING`` (its date is still
held) until the engine that holds it has killed its process and written it ``CANCELLED``.

Revision ID: 0007_run_cancel_requests
Revises: 0006_team_folders
Create Date: 2026-12-08
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_run_cancel_requests"
down_revision: str | None = "0006_team_folders"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "transfer_runs",
        sa.Column(
            "cancel_requested_by",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            nullable=True,
        ),
    )


def downgrade() -> None:
    with op.batch_alter_table("transfer_runs", schema=None) as batch_op:
        batch_op.drop_column("cancel_requested_by")
