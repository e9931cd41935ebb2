"""Administering teams, users and memberships (used by the admin CLI)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from opendts.auth.permissions import Role
from opendts.kit.db import get_or_not_found
from opendts.kit.errors import InvalidParameter
from opendts.teams.models import Membership, Team, User


def create_team(session: Session, name: str) -> Team:
    """A new, empty team."""
    if not name.strip():
        raise InvalidParameter("A team needs a non-empty name.")
    team = Team(name=name.strip())
    session.add(team)
    session.flush()
    return team


def get_team(session: Session, team_id: int) -> Team:
    """A team by id, or NotFound."""
    return get_or_not_found(session, Team, team_id, "Team")


def get_user(session: Session, user_id: int) -> User:
    """A user by id, or NotFound."""
    return get_or_not_found(session, User, user_id, "User")


def create_user(session: Session, email: str, name: str = "") -> User:
    """A new user; emails are unique."""
    email = email.strip().lower()
    if "@" not in email:
        raise InvalidParameter(f"'{email}' is not an email address.")
    if session.scalars(select(User).where(User.email == email)).first() is not None:
        raise InvalidParameter(f"A user with email {email} already exists.", code="USER_EXISTS")
    user = User(email=email, name=name)
    session.add(user)
    session.flush()
    return user


def set_role(session: Session, team_id: int, user_id: int, role: Role) -> Membership:
    """Make ``user_id`` a member of ``team_id`` with ``role`` (replacing any earlier role)."""
    get_team(session, team_id)
    get_user(session, user_id)
    membership = session.get(Membership, (team_id, user_id))
    if membership is None:
        membership = Membership(team_id=team_id, user_id=user_id, role=role.value)
        session.add(membership)
    else:
        membership.role = role.value
    session.flush()
    return membership


def any_team_exists(session: Session) -> bool:
    """Whether any team exists (none on a fresh install)."""
    return session.scalars(select(Team.id).limit(1)).first() is not None
