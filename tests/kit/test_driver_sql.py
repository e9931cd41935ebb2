"""Hot reads on a ``Database.read`` connection, and when they may reuse earlier rows."""

from __future__ import annotations

from sqlalchemy import bindparam, select, text

from opendts.kit.db import Database, Reader
from opendts.kit.driver_sql import DriverQuery
from opendts.teams.models import Team
from tests.factories import make_account

TEAM_NAME = DriverQuery(lambda _dialect: select(Team.name).where(Team.id == bindparam("team_id")))


def test_reused_rows_are_never_stale(db: Database) -> None:
    team = make_account(db).team_id

    def read(reader: Reader) -> list[tuple[object, ...]]:
        return TEAM_NAME.rows(reader, reuse=True, team_id=team)

    first = db.read(read)
    again = db.read(read)
    if db.dialect == "sqlite":
        assert again is first  # nothing was committed: the same rows, not read again
    assert again == first
    # A commit by another connection (here: the write engine) is seen at once...
    with db.session(write=True) as session:
        session.execute(text("UPDATE teams SET name = 'renamed' WHERE id = :id"), {"id": team})
    assert db.read(read) == [("renamed",)]

    # ...and so is a write made on the reading connection itself.
    def write_then_read(reader: Reader) -> list[tuple[object, ...]]:
        cursor = reader.connection.cursor()
        cursor.execute("UPDATE teams SET name = 'again' WHERE id = ?", (team,))
        cursor.close()
        return read(reader)

    if db.dialect == "sqlite":
        assert db.read(write_then_read) == [("again",)]


def test_other_parameters_are_other_rows(db: Database) -> None:
    first, second = make_account(db).team_id, make_account(db).team_id
    with db.session(write=True) as session:
        session.execute(text("UPDATE teams SET name = 'second' WHERE id = :id"), {"id": second})

    def names(reader: Reader) -> list[object]:
        return [TEAM_NAME.rows(reader, reuse=True, team_id=t) for t in (first, second, first)]

    a, b, c = db.read(names)
    assert a == c and b == [("second",)] and a != b
