"""embedded warehouses move into their team's folder (data only)

Up to 0003, a ``duckdb``, ``sqlite`` or ``parquet`` destination's relative path lived in the
data folder itself, shared by every team (every demo team wrote the same
``warehouse.duckdb``), and absolute paths went anywhere. From here on a path is relative to
``<data dir>/teams/<team_id>/``. This migration copies (never moves, never deletes) each live
embedded destination's file or folder into its team's folder and points the destination at
the copy: a file several teams shared is copied once for each; a relative path keeps its
name; an absolute one is copied in under its file name (made unique if taken). It runs once,
in the upgrade's transaction (under the advisory lock on PostgreSQL), so processes starting
together copy once and a failed copy changes no destination.

Only what the destination type can hold is copied: a DuckDB file DuckDB opens read-only
(which also proves no process writes it), a SQLite database through SQLite's backup API, and
a Parquet folder's table layout (``_common_metadata``, ``<column>=<date>/*.parquet``), never a
whole folder. The metadata database and the secret key are never copied: a destination that
named one is pointed at a fresh file instead. Whatever is left as it was, or cannot be read,
is logged as a warning with what to do.

Revision ID: 0006_team_folders
Revises: 0005
Create Date: 2026-12-01
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import sqlite3
import urllib.parse
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import sqlalchemy as sa
from alembic import context, op

from opendts.kit.migrate import UpgradeBlocked
from opendts.kit.private import FILE_MODE, make_folders

revision: str = "0006_team_folders"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

log = logging.getLogger("opendts.upgrade")

_DEFAULTS = {"duckdb": "warehouse.duckdb", "sqlite": "warehouse.sqlite", "parquet": "parquet"}
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_PARTITION = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}=\d{4}-\d{2}-\d{2}$")


def upgrade() -> None:
    connection = op.get_bind()
    rows = connection.execute(
        sa.text(
            "SELECT id, team_id, type, fields FROM destinations "
            "WHERE deleted_at IS NULL AND type IN ('duckdb', 'sqlite', 'parquet') ORDER BY id"
        )
    ).all()
    if not rows:
        return
    data_dir = context.config.attributes.get("data_dir")
    if data_dir is None:
        raise UpgradeBlocked(
            "This upgrade copies embedded warehouses into team folders and needs the data "
            "folder: run it through `opendts migrate` (or serve/worker) with OPENDTS_DATA_DIR."
        )
    metadata = connection.engine.url.database if connection.dialect.name == "sqlite" else None
    mover = _Mover(Path(data_dir).expanduser().resolve(), metadata)
    for row in rows:
        fields = json.loads(row.fields or "{}")
        old = str(fields.get("path") or _DEFAULTS[row.type])
        new = mover.relocate(row.id, row.team_id, row.type, old)
        if new is not None and new != old:
            fields["path"] = new
            connection.execute(
                sa.text("UPDATE destinations SET fields = :fields WHERE id = :id"),
                {"fields": json.dumps(fields, sort_keys=True), "id": row.id},
            )


def downgrade() -> None:
    # The copies stay (nothing is ever deleted) and the originals were never touched.
    pass


def _safe_relative(value: str) -> bool:
    path = PurePosixPath(value)
    return (
        bool(value.strip())
        and "\x00" not in value
        and not value.startswith("~")
        and not path.is_absolute()
        and ".." not in path.parts
    )


class _Mover:
    """Copies the warehouses of one upgrade, each source once per team."""

    def __init__(self, data_dir: Path, metadata_file: str | None) -> None:
        self.data_dir = data_dir
        self.protected = self._protected(metadata_file)
        #: (team, source) -> the relative path its copy got.
        self.copied: dict[tuple[int, Path], str] = {}
        #: (team, relative path) taken in this upgrade.
        self.taken: set[tuple[int, str]] = set()

    def _protected(self, metadata_file: str | None) -> list[Path]:
        """The key and the metadata database's files (the configured one and the default)."""
        found = [self.data_dir / "secret.key"]
        databases = [self.data_dir / "opendts.db"]
        if metadata_file and metadata_file != ":memory:" and not metadata_file.startswith("file:"):
            databases.append(Path(metadata_file).expanduser().resolve())
        for main in databases:
            found += [main.with_name(main.name + s) for s in ("", "-wal", "-shm", "-journal")]
        return found

    def _is_protected(self, source: Path) -> bool:
        try:
            info = source.stat()
        except OSError:
            return source in self.protected
        for path in self.protected:
            try:
                other = path.stat()
            except OSError:
                continue
            if (other.st_dev, other.st_ino) == (info.st_dev, info.st_ino):
                return True
        return source in self.protected

    def _target_name(self, destination_id: int, team_id: int, kind: str, old: str) -> str:
        """A free relative path in the team's folder for the copy."""
        if _safe_relative(old):
            wanted = str(PurePosixPath(old))
        else:
            name = Path(old.replace("\x00", "")).name
            wanted = name if name and name not in (".", "..") else _DEFAULTS[kind]
        candidate = wanted
        team_dir = self.data_dir / "teams" / str(team_id)
        suffix = 1
        while (team_id, candidate) in self.taken or os.path.lexists(team_dir / candidate):
            base = PurePosixPath(wanted)
            stem = base.stem if kind != "parquet" else base.name
            extension = base.suffix if kind != "parquet" else ""
            tag = f"{destination_id}" if suffix == 1 else f"{destination_id}-{suffix}"
            candidate = str(base.with_name(f"{stem}-{tag}{extension}"))
            suffix += 1
        return candidate

    def relocate(self, destination_id: int, team_id: int, kind: str, old: str) -> str | None:
        """The destination's new path (``None``: leave it as it is), after copying."""
        what = f"destination {destination_id} (team {team_id}, {kind}, path {old!r})"
        if "\x00" in old:
            log.warning("%s: the path holds a NUL byte; left as it is: set a new path", what)
            return None
        raw = Path(old).expanduser()
        source = (raw if raw.is_absolute() else self.data_dir / raw).resolve()
        if self._is_protected(source):
            fresh = self._target_name(destination_id, team_id, kind, _DEFAULTS[kind])
            self.taken.add((team_id, fresh))
            log.warning(
                "%s named one of the server's own files: not copied; the destination now "
                "points at a new, empty %s in its team's folder",
                what,
                fresh,
            )
            return fresh
        key = (team_id, source)
        if key in self.copied:
            shared = self.copied[key]
            log.info("%s: shares teams/%s/%s with another destination", what, team_id, shared)
            return shared
        if not os.path.lexists(source):
            new = self._target_name(destination_id, team_id, kind, old)
            self.taken.add((team_id, new))
            self.copied[key] = new
            log.info("%s: nothing to copy; now in teams/%s/%s", what, team_id, new)
            return new
        new = self._target_name(destination_id, team_id, kind, old)
        target = self.data_dir / "teams" / str(team_id) / new
        try:
            copied = _COPIERS[kind](source, target)
        except UpgradeBlocked:
            raise
        except (OSError, sqlite3.Error) as exc:
            log.warning(
                "%s: could not be copied (%s); left as it is: the team must point it at a path "
                "in its folder, or the operator copy the data into %s and start again",
                what,
                exc,
                target.parent,
            )
            return None
        if not copied:
            log.warning(
                "%s: %s is not a %s warehouse; not copied, left as it is: set a new path",
                what,
                source,
                kind,
            )
            return None
        self.taken.add((team_id, new))
        self.copied[key] = new
        log.info("%s: copied %s to teams/%s/%s", what, source, team_id, new)
        return new


def _new_file(path: Path) -> Any:
    make_folders(path.parent)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, FILE_MODE)
    return os.fdopen(fd, "wb")


def _copy_bytes(source: Path, target: Path) -> None:
    with source.open("rb") as reading, _new_file(target) as writing:
        shutil.copyfileobj(reading, writing, 1 << 20)
        writing.flush()
        os.fsync(writing.fileno())


def _copy_duckdb(source: Path, target: Path) -> bool:
    """Copy a DuckDB file and its WAL while a read-only connection keeps writers out."""
    if not source.is_file():
        return False
    import duckdb

    config: dict[str, Any] = {"enable_external_access": False, "autoload_known_extensions": False}
    try:
        held = duckdb.connect(str(source), read_only=True, config=config)
    except duckdb.IOException as exc:
        text = str(exc).lower()
        if "lock" in text:
            raise UpgradeBlocked(
                f"The DuckDB warehouse {source} is open in another process (an older opendts "
                "still running?): stop it, then start again. Nothing was changed."
            ) from None
        return False
    except duckdb.Error:
        return False
    try:
        _copy_bytes(source, target)
        wal = source.with_name(source.name + ".wal")
        if wal.is_file():
            _copy_bytes(wal, target.with_name(target.name + ".wal"))
    finally:
        held.close()
    return True


def _copy_sqlite(source: Path, target: Path) -> bool:
    """Copy a SQLite database through the backup API (consistent, journals included)."""
    if not source.is_file():
        return False
    reading = sqlite3.connect(f"file:{urllib.parse.quote(str(source))}?mode=ro", uri=True)
    try:
        reading.execute("PRAGMA schema_version").fetchone()
    except sqlite3.DatabaseError:
        reading.close()
        return False
    try:
        with _new_file(target):
            pass
        writing = sqlite3.connect(str(target))
        try:
            reading.backup(writing)
        finally:
            writing.close()
    finally:
        reading.close()
    return True


def _copy_parquet(source: Path, target: Path) -> bool:
    """Copy the tables of a Parquet root: schema files and date folders of Parquet files
    (nothing else of the folder, which may hold anything). ``False`` if it is not a folder."""
    if not source.is_dir():
        return False
    tables = []
    for table in sorted(source.iterdir()):
        if not _IDENTIFIER.match(table.name) or table.is_symlink() or not table.is_dir():
            continue
        files = []
        metadata = table / "_common_metadata"
        if metadata.is_file() and not metadata.is_symlink():
            files.append(metadata)
        for partition in sorted(table.iterdir()):
            if _PARTITION.match(partition.name) and partition.is_dir():
                if partition.is_symlink():
                    continue
                files += [
                    f
                    for f in sorted(partition.iterdir())
                    if f.suffix == ".parquet"
                    and not f.name.startswith((".", "_"))
                    and f.is_file()
                    and not f.is_symlink()
                ]
        if files:
            tables.append(files)
    make_folders(target)
    for files in tables:
        for file in files:
            _copy_bytes(file, target / file.relative_to(source))
    return True


_COPIERS = {"duckdb": _copy_duckdb, "sqlite": _copy_sqlite, "parquet": _copy_parquet}
