"""All SQL about data-source connections."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from opendts.connections.models import DataSourceConnection
from opendts.transfers.models import Transfer


def get_live(session: Session, team_id: int, connection_id: str) -> DataSourceConnection | None:
    """The team's connection, unless deleted."""
    return session.scalars(
        select(DataSourceConnection).where(
            DataSourceConnection.id == connection_id,
            DataSourceConnection.team_id == team_id,
            DataSourceConnection.deleted_at.is_(None),
        )
    ).first()


def get(session: Session, connection_id: str) -> DataSourceConnection | None:
    """A connection by id, deleted or not (what a transfer used before a change)."""
    return session.get(DataSourceConnection, connection_id)


def list_of_team(session: Session, team_id: int) -> list[DataSourceConnection]:
    """The team's live connections, oldest first."""
    return list(
        session.scalars(
            select(DataSourceConnection)
            .where(
                DataSourceConnection.team_id == team_id, DataSourceConnection.deleted_at.is_(None)
            )
            .order_by(DataSourceConnection.created_at, DataSourceConnection.id)
        )
    )


def users(session: Session, connection_id: str) -> list[Transfer]:
    """Live transfers that read with the connection."""
    return list(
        session.scalars(
            select(Transfer)
            .where(
                Transfer.data_source_connection_id == connection_id,
                Transfer.deleted_at.is_(None),
            )
            .order_by(Transfer.id)
        )
    )
