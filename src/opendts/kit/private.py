"""Files only the server's own user may use: the data folder, the metadata database, the
secret key, the teams' folders and warehouses.

Folders are 0700 and files 0600 whatever the process's umask: a host account other than the
server's can neither list a team's folder nor read the metadata database or the key.
Narrowing never opens a file (closing a descriptor of a SQLite or DuckDB file drops every
POSIX lock this process holds on it), and a file this process does not own is left as it is.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import stat
from pathlib import Path

log = logging.getLogger("opendts.files")

FOLDER_MODE = 0o700
FILE_MODE = 0o600


def narrow(path: Path) -> bool:
    """Take group and other permissions off ``path`` (not following a link); ``True`` if
    its mode changed."""
    try:
        info = path.lstat()
    except FileNotFoundError:
        return False
    if stat.S_ISLNK(info.st_mode) or not info.st_mode & 0o077:
        return False
    wanted = FOLDER_MODE if stat.S_ISDIR(info.st_mode) else FILE_MODE
    try:
        os.chmod(path, stat.S_IMODE(info.st_mode) & wanted)
    except OSError:  # another owner's file: its mode is theirs to set
        return False
    return True


def make_folders(path: Path) -> None:
    """Create ``path`` and each missing folder above it, every one 0700."""
    missing = []
    current = path
    while not current.exists() and current != current.parent:
        missing.append(current)
        current = current.parent
    if not current.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, "Not a directory", str(current))
    for folder in reversed(missing):
        with contextlib.suppress(FileExistsError):
            folder.mkdir(mode=FOLDER_MODE)


def private_folder(path: Path) -> Path:
    """``path`` as a folder only this user may use: created 0700, or narrowed (logged)."""
    if path.exists():
        if narrow(path):
            log.info("narrowed the permissions of %s to 0700", path)
    else:
        make_folders(path)
    return path


def create_private_file(path: Path) -> bool:
    """Create ``path`` empty with mode 0600 unless it exists; ``True`` if it was created.

    Only a file this call creates is opened, so no lock of another connection is dropped.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, FILE_MODE)
    except FileExistsError:
        return False
    os.close(fd)
    return True


def private_files(*files: Path) -> None:
    """Narrow each existing file of ``files`` to 0600 (logged)."""
    for path in files:
        with contextlib.suppress(OSError):
            if narrow(path):
                log.info("narrowed the permissions of %s to 0600", path)
