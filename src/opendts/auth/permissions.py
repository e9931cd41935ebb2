"""Scopes on keys, permissions on roles: the tables that decide who may do what."""

from __future__ import annotations

from enum import StrEnum


class Scope(StrEnum):
    """What an API key was issued for."""

    READ = "dwh_transfers_read"
    WRITE = "dwh_transfers_write"


class Permission(StrEnum):
    """What a role lets a user do in a team."""

    VIEW = "dwh.transfer.view"
    EDIT = "dwh.transfer.edit"
    ADMIN = "dwh.team.admin"


class Role(StrEnum):
    """A user's role in a team."""

    VIEWER = "viewer"
    EDITOR = "editor"
    ADMIN = "admin"


ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.VIEWER: frozenset({Permission.VIEW}),
    Role.EDITOR: frozenset({Permission.VIEW, Permission.EDIT}),
    Role.ADMIN: frozenset({Permission.VIEW, Permission.EDIT, Permission.ADMIN}),
}

ALL_SCOPES: tuple[Scope, ...] = (Scope.READ, Scope.WRITE)


class Access(StrEnum):
    """The two kinds of endpoint: each needs one scope and one permission."""

    READ = "read"
    WRITE = "write"


ACCESS_RULES: dict[Access, tuple[Scope, Permission]] = {
    Access.READ: (Scope.READ, Permission.VIEW),
    Access.WRITE: (Scope.WRITE, Permission.EDIT),
}
