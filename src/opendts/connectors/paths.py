"""A team's files: where they live, and the checks that keep every path a team types in them.

Layout of the data folder (``OPENDTS_DATA_DIR``)::

    opendts.db (-wal, -shm, -journal)   the metadata database        never reachable by a team
    secret.key                          the credentials key          never reachable by a team
    teams/<team_id>/                    the team's folder (0700, created on first write)
        warehouse.duckdb, lake/, ...    embedded warehouses: ``duckdb``, ``sqlite``, ``parquet``
                                        paths and a ``sql`` source's SQLite file, relative to it
        files/                          what the ``file`` source reads (relative paths)

Besides its ``files/`` folder, the ``file`` source reads ``<root>/<team_id>/`` of each
operator root (``OPENDTS_FILE_ROOTS``), named by its absolute path.

A path is checked when a config is saved (``check_team_path``, ``check_source_path``: the
shape always, the resolved path when a boundary is given) and again when it is used
(``team_path``, ``open_source_file``): a symbolic link can be planted in between. Absolute
paths (outside the roots), ``~``, ``..`` and NUL are refused by shape; a symbolic link that
resolves outside the folder is refused; the data folder outside the team's own folder, the
metadata database and the secret key are refused however they are reached (by path and by
inode, so a hard link does not help either). Messages name the path as the team typed it,
never a server folder.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import stat
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from opendts.connectors.boundary import TEAMS_FOLDER, Boundary
from opendts.engine.errors import TerminalRunError
from opendts.kit.private import FILE_MODE, FOLDER_MODE, make_folders, narrow
from opendts.kit.secrets import KEY_FILE

#: The team's folder that the ``file`` source reads relative paths from.
FILES_FOLDER = "files"
#: Longest path a team may type (the kernel's own limit is 4096 bytes).
MAX_PATH_CHARS = 1024
__all__ = [
    "FILES_FOLDER",
    "FILE_MODE",
    "FOLDER_MODE",
    "PathRefused",
    "check_creatable",
    "check_source_path",
    "check_team_path",
    "ensure_team_dir",
    "files_dir",
    "make_folders",
    "make_private",
    "open_source_file",
    "root_dirs",
    "shown",
    "source_path",
    "team_dir",
    "team_path",
]

_METADATA_SUFFIXES = ("", "-wal", "-shm", "-journal")


class PathRefused(TerminalRunError, ValueError):
    """A path that would leave what the team may reach.

    A ``ValueError`` inside settings validators (the API answers 400 naming the field) and a
    ``TerminalRunError`` at run time (retrying cannot help).
    """


# --- folders -----------------------------------------------------------------------------


def _within(path: PurePosixPath | Path, folder: PurePosixPath | Path) -> bool:
    """Whether ``path`` is ``folder`` or below it (both absolute and normalised)."""
    inner, outer = str(path), str(folder)
    return inner == outer or inner.startswith(outer if outer.endswith("/") else outer + "/")


@functools.lru_cache(maxsize=256)
def _data_folder(data_dir: Path) -> Path:
    """The data folder, resolved (once: it is the operator's, and checks run per write)."""
    return data_dir.resolve()


@functools.lru_cache(maxsize=1024)
def team_dir(boundary: Boundary) -> Path:
    """The team's folder, ``<data dir>/teams/<team_id>`` (it may not exist yet)."""
    return _data_folder(boundary.data_dir) / TEAMS_FOLDER / str(boundary.team_id)


def files_dir(boundary: Boundary) -> Path:
    """The team's ``files/`` folder: relative paths of the ``file`` source start here."""
    return team_dir(boundary) / FILES_FOLDER


def root_dirs(boundary: Boundary) -> list[Path]:
    """``<root>/<team_id>`` of each operator root: absolute ``file`` source paths live there."""
    return [root / str(boundary.team_id) for root in boundary.file_roots]


def ensure_team_dir(boundary: Boundary) -> Path:
    """The team's folder, created (with ``files/``) mode 0700 if missing; returns it."""
    folder = team_dir(boundary)
    with contextlib.suppress(OSError):  # the usual case: both are plain folders already
        if stat.S_ISDIR(os.lstat(folder).st_mode) and stat.S_ISDIR(os.lstat(folder.parent).st_mode):
            return folder
    if folder.is_symlink() or folder.parent.is_symlink():
        raise PathRefused(
            "The team's folder is a symbolic link, which opendts does not follow: the server's "
            "operator must replace it with a folder."
        )
    make_folders(folder)
    with contextlib.suppress(FileExistsError):
        (folder / FILES_FOLDER).mkdir(mode=FOLDER_MODE)
    return folder


def make_private(path: Path) -> None:
    """Narrow ``path``'s mode to 0600 (a file) or 0700 (a folder) if others may use it."""
    narrow(path)


# --- shape -------------------------------------------------------------------------------


def _shape(value: str, *, absolute: bool, example: str) -> PurePosixPath:
    """``value`` as a path, after the checks that need no file system."""
    if "\x00" in value:
        raise PathRefused("must not contain NUL characters")
    if len(value) > MAX_PATH_CHARS:
        raise PathRefused(f"must be at most {MAX_PATH_CHARS} characters")
    if value.startswith("~"):
        raise PathRefused(
            f"'~' (a home folder) is not allowed: write a path relative to the team's folder, "
            f"e.g. {example}"
        )
    path = PurePosixPath(value)
    if path.is_absolute() and not absolute:
        raise PathRefused(
            f"absolute paths are not allowed: write a path relative to the team's folder, "
            f"e.g. {example}"
        )
    if ".." in path.parts:
        raise PathRefused("'..' is not allowed: the path must stay inside the team's folder")
    return path


# --- what no team may reach ----------------------------------------------------------------


@functools.lru_cache(maxsize=256)
def _protected_files(data_dir: Path, metadata_url: str | None) -> tuple[Path, ...]:
    """The secret key and the metadata database's files (wherever the operator put them)."""
    found = [_data_folder(data_dir) / KEY_FILE]
    databases = [_data_folder(data_dir) / "opendts.db"]  # also a former SQLite install's
    if metadata_url and metadata_url.startswith("sqlite"):
        with contextlib.suppress(ArgumentError, ValueError):
            database = make_url(metadata_url).database or ""
            if database and database != ":memory:" and not database.startswith("file:"):
                databases.append(Path(database).expanduser().resolve())
    for main in databases:
        found += [main.with_name(main.name + suffix) for suffix in _METADATA_SUFFIXES]
    return tuple(found)


def _refuse_protected(
    target: Path, boundary: Boundary, shown: str, info: os.stat_result | None
) -> None:
    """Refuse ``target`` (resolved; ``info`` its ``stat``, if it exists) unless the team's."""
    data = _data_folder(boundary.data_dir)
    if _within(target, data) and not _within(target, team_dir(boundary)):
        raise PathRefused(f"{shown!r} is inside the server's own data folder: not allowed")
    for protected in _protected_files(boundary.data_dir, boundary.metadata_url):
        same = protected == target
        if not same and info is not None:
            other = _stat(protected)
            same = other is not None and (other.st_dev, other.st_ino) == (
                info.st_dev,
                info.st_ino,
            )
        if same:
            raise PathRefused(f"{shown!r} is one of the server's own files: not allowed")


def _resolved_inside(base: Path, relative: PurePosixPath, shown: str) -> Path:
    """``base / relative`` with symbolic links resolved; refused if it ends outside ``base``."""
    try:
        target = (base / relative).resolve()
    except (OSError, RuntimeError):  # a symlink loop
        raise PathRefused(f"{shown!r} cannot be resolved (a loop of symbolic links)") from None
    if not _within(target, base):
        raise PathRefused(f"{shown!r} leads outside the team's folder through a symbolic link")
    return target


def _stat(path: Path) -> os.stat_result | None:
    try:
        return os.stat(path)
    except OSError:
        return None


def _check(target: Path, boundary: Boundary, shown: str) -> Path:
    _refuse_protected(target, boundary, shown, _stat(target))
    return target


# --- warehouse files: inside the team's folder -------------------------------------------------


def check_team_path(value: str, boundary: Boundary | None, *, example: str) -> str:
    """``value`` if it can name a file or folder in the team's folder; ``PathRefused`` if not.

    Used by settings validators: without a boundary only the shape is checked. ``example`` is
    a good value, for the message.
    """
    _shape(value, absolute=False, example=example)
    if boundary is not None:
        team_path(value, boundary, example=example)
    return value


def team_path(value: str, boundary: Boundary, *, example: str = "warehouse.duckdb") -> Path:
    """The absolute path, symbolic links resolved, of ``value`` in the team's folder.

    Call it right before using the path (each write, read and test-connection): the result
    holds no symbolic link at the time of the call. ``PathRefused`` says why not.
    """
    relative = _shape(value, absolute=False, example=example)
    return _check(_resolved_inside(team_dir(boundary), relative, value), boundary, value)


def shown(path: Path, boundary: Boundary) -> str:
    """``path`` as a team knows it: relative to its folder (a root path stays absolute)."""
    folder = team_dir(boundary)
    return str(path.relative_to(folder)) if _within(path, folder) else str(path)


def check_creatable(path: Path, boundary: Boundary, what: str) -> None:
    """Whether ``path`` (in the team's folder, not there yet) could be created; creates nothing.

    The nearest folder above it that exists must be a writable folder (missing folders in
    between are created by the first write). ``TerminalRunError`` says what is in the way.
    """
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    inside = _within(folder, team_dir(boundary)) and folder != team_dir(boundary)
    named = f"the folder {shown(folder, boundary)!r}" if inside else "the team's folder"
    target = f"{what} {shown(path, boundary)!r}"
    if not folder.is_dir():
        raise TerminalRunError(
            f"Cannot create the folder for {target}: {shown(folder, boundary)!r} is a file, "
            "not a folder. Fix the destination's path."
        )
    if not os.access(folder, os.W_OK | os.X_OK):
        raise TerminalRunError(
            f"Cannot create {target}: {named} is not writable by the server. Fix the "
            "folder's permissions or the destination's path."
        )


# --- source files: the team's files/ folder, or an operator root ------------------------------


def _source_base(path: PurePosixPath, boundary: Boundary, value: str) -> Path:
    """The folder a ``file`` source path is read from (its anchor for symlink checks)."""
    if not path.is_absolute():
        return files_dir(boundary)
    for base in root_dirs(boundary):
        if _within(Path(path), base):
            return base
    if boundary.file_roots:
        allowed = ", ".join(f"{base}/" for base in root_dirs(boundary))
        where = (
            "(e.g. exports/{date}.csv) or an absolute path inside a folder shared with this "
            f"team ({allowed})"
        )
    else:
        where = (
            "(e.g. exports/{date}.csv); the server's operator can share another folder with "
            "the team through OPENDTS_FILE_ROOTS"
        )
    raise PathRefused(
        f"{value!r} is outside the folders this team may read: use a path relative to the "
        f"team's files folder {where}"
    )


def source_path(value: str, boundary: Boundary) -> Path:
    """The resolved path of a rendered ``file`` source path; ``PathRefused`` if not allowed."""
    path = _shape(value, absolute=True, example="exports/{date}.csv")
    base = _source_base(path, boundary, value)
    relative = path.relative_to(base) if path.is_absolute() else path
    return _check(_resolved_inside(base, PurePosixPath(relative), value), boundary, value)


def check_source_path(value: str, boundary: Boundary | None) -> str:
    """``value`` (a rendered ``file`` source path) if the team may read it; for validators."""
    if boundary is None:
        _shape(value, absolute=True, example="exports/{date}.csv")
    else:
        source_path(value, boundary)
    return value


def _anchor(target: Path, boundary: Boundary) -> Path:
    """The operator-owned folder above ``target`` from which no symlink is followed."""
    for root in boundary.file_roots:
        if _within(target, root):
            return root
    return _data_folder(boundary.data_dir)


def open_source_file(value: str, boundary: Boundary) -> BinaryIO:
    """The rendered ``file`` source path ``value``, opened for reading.

    The resolved path is opened one folder at a time from the operator's folder down, never
    following a symbolic link (``O_NOFOLLOW``): a link swapped in after the check fails
    instead of being followed. Only regular files open (a FIFO or a device would block or
    never end). Raises ``PathRefused``, ``FileNotFoundError`` (missing),
    ``IsADirectoryError`` (not a file), or another ``OSError``.
    """
    target = source_path(value, boundary)
    anchor = _anchor(target, boundary)
    parts = target.relative_to(anchor).parts
    if not parts:
        raise IsADirectoryError(errno.EISDIR, "is a folder", value)
    fd = os.open(anchor, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for name in parts[:-1]:
            step = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = step
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0)
        file_fd = os.open(parts[-1], flags, dir_fd=fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR) and _is_link_race(anchor, parts):
            raise PathRefused(
                f"{value!r} changed into a symbolic link while it was opened: not followed"
            ) from None
        if exc.errno == errno.ENOTDIR:
            raise FileNotFoundError(errno.ENOENT, "a folder on the path is a file", value) from None
        raise
    finally:
        os.close(fd)
    try:
        info = os.fstat(file_fd)
        if stat.S_ISDIR(info.st_mode):
            raise IsADirectoryError(errno.EISDIR, "is a folder", value)
        if not stat.S_ISREG(info.st_mode):
            raise PathRefused(f"{value!r} is not a regular file (a pipe, socket or device)")
        _refuse_protected(target, boundary, value, info)
        os.set_blocking(file_fd, True)
        return os.fdopen(file_fd, "rb")
    except BaseException:
        os.close(file_fd)
        raise


def _is_link_race(anchor: Path, parts: tuple[str, ...]) -> bool:
    """Whether a component of ``anchor/parts`` is now a symbolic link."""
    current = anchor
    for name in parts:
        current = current / name
        with contextlib.suppress(OSError):
            if current.is_symlink():
                return True
    return False
