"""``parquet``: a folder of Parquet files, one sub-folder per table and per date.

Layout (Hive partitioning, readable by DuckDB, Spark, pandas, Polars…)::

    <path>/<table>/_common_metadata          the table's schema (every column ever loaded)
    <path>/<table>/<date column>=2024-01-31/part-<id>.parquet

The date column is the partition key: it is not stored inside the files. Every change is
prepared in a ``.tmp-*`` folder next to its target and moved into place with one rename:
replacing a date swaps its folder with ``renameat2(RENAME_EXCHANGE)`` (two renames where the
kernel lacks it), appending moves one new file in, overwriting swaps the whole table folder.
Readers see the old files or the new ones, never a mix; ``.tmp-*`` leftovers of a crash are
ignored by readers and removed by the table's next write.

Writers of a table take an exclusive ``flock`` on ``<path>/.<table>.lock`` (readers a shared
one), so threads and processes writing the same table queue up.

``<path>`` is a folder in the team's folder (``connectors.paths``), checked again right before
every write and read; a table folder that is a symbolic link is refused, so that replacing or
overwriting never deletes outside it. Folders are created 0700 and files 0600.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any, ClassVar, Literal

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pydantic import ValidationInfo, field_validator

from opendts.connectors import paths
from opendts.connectors.base import (
    ConnectorSettings,
    RefreshMode,
    SchemaConflict,
    WriteRequest,
    as_reader,
    check_identifier,
    settings_boundary,
)
from opendts.connectors.boundary import Boundary
from opendts.connectors.schema import family_of_arrow, fits
from opendts.engine.errors import TerminalRunError, TransientRunError

METADATA = "_common_metadata"
#: Rows per row group of a written file (a day's batches are gathered up to this many).
ROW_GROUP_ROWS = 131_072
_PARTITION = re.compile(r"^([A-Za-z_][A-Za-z0-9_]{0,62})=(\d{4}-\d{2}-\d{2})$")


class ParquetSettings(ConnectorSettings):
    """The folder tables go in, and how files are compressed."""

    #: The root folder, relative to the team's folder.
    path: str = "parquet"
    compression: Literal["zstd", "snappy", "gzip", "none"] = "zstd"

    @field_validator("path")
    @classmethod
    def _path(cls, value: str, info: ValidationInfo) -> str:
        if not value.strip():
            raise ValueError("must name a folder, e.g. parquet")
        return paths.check_team_path(value, settings_boundary(info), example="parquet")


# --- atomic folder exchange ------------------------------------------------------------

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def _load_renameat2() -> Any:
    try:
        function = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):  # not glibc ≥ 2.28, or not Linux
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p]
    function.argtypes += [ctypes.c_uint]
    function.restype = ctypes.c_int
    return function


_renameat2 = _load_renameat2()


def exchange(first: Path, second: Path) -> bool:
    """Swap two existing paths atomically; ``False`` if this system cannot."""
    if _renameat2 is None:
        return False
    done = _renameat2(
        _AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second), _RENAME_EXCHANGE
    )
    if done == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP):
        return False  # the kernel or the file system does not support it
    raise OSError(code, os.strerror(code), str(first), None, str(second))


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _put_in_place(staging: Path, target: Path) -> None:
    """Make ``staging`` (a folder) be ``target``, atomically; the old ``target`` is deleted."""
    if not target.exists():
        os.rename(staging, target)
    elif exchange(staging, target):
        _remove(staging)  # now holds the old contents
    else:
        old = target.parent / f"{staging.name}-old"
        os.rename(target, old)
        os.rename(staging, target)
        _remove(old)
    _fsync_dir(target.parent)


# --- table files -------------------------------------------------------------------------


def _tmp_name(table: str | None = None) -> str:
    return f".tmp-{table}-{uuid.uuid4().hex}" if table else f".tmp-{uuid.uuid4().hex}"


@contextlib.contextmanager
def _table_lock(root: Path, table: str, *, exclusive: bool) -> Iterator[None]:
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW
    fd = os.open(root / f".{table}.lock", flags, paths.FILE_MODE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)  # releases the lock


def _clean_leftovers(root: Path, table: str) -> None:
    """Remove the ``.tmp-*`` folders and files a crashed write of ``table`` left behind."""
    prefix = f".tmp-{table}-"
    for entry in root.iterdir():
        if entry.name.startswith(prefix):
            _remove(entry)
    table_dir = root / table
    if table_dir.is_dir():
        for entry in table_dir.iterdir():
            if entry.name.startswith(".tmp-"):
                _remove(entry)


def _partitions(table_dir: Path) -> Iterator[tuple[str, date, Path]]:
    """``(key, date, folder)`` of each date folder, in name order."""
    for entry in sorted(table_dir.iterdir()):
        found = _PARTITION.match(entry.name)
        if found and entry.is_dir():
            yield found.group(1), date.fromisoformat(found.group(2)), entry


def _data_files(folder: Path) -> list[Path]:
    return sorted(
        entry
        for entry in folder.iterdir()
        if entry.suffix == ".parquet" and not entry.name.startswith((".", "_"))
    )


def _stored_schema(table_dir: Path) -> pa.Schema | None:
    """The table's schema: its metadata file, else the schema of one of its files."""
    if not table_dir.is_dir():
        return None
    metadata = table_dir / METADATA
    if metadata.exists():
        return pq.read_schema(metadata)
    for key, _, folder in _partitions(table_dir):
        for file in _data_files(folder):
            schema = pq.read_schema(file)
            if key not in schema.names:
                schema = schema.append(pa.field(key, pa.date32()))
            return schema
    return None


def _merge(table: str, stored: pa.Schema | None, incoming: pa.Schema) -> pa.Schema:
    """The table's schema once ``incoming`` is loaded; ``SchemaConflict`` if it cannot be."""
    if stored is None:
        return incoming.remove_metadata()
    fields = list(stored)
    position = {f.name: i for i, f in enumerate(fields)}
    for incoming_field in incoming:
        i = position.get(incoming_field.name)
        if i is None:
            fields.append(incoming_field)
            continue
        old = fields[i]
        if not fits(family_of_arrow(old.type), family_of_arrow(incoming_field.type)):
            raise SchemaConflict(table, old.name, str(old.type), str(incoming_field.type))
        if pa.types.is_null(old.type):
            fields[i] = incoming_field
    return pa.schema(fields)


def _conform(data: pa.Table, schema: pa.Schema) -> pa.Table:
    """``data`` with each column cast to the table's type for it, where Arrow can."""
    for i, name in enumerate(data.column_names):
        index = schema.get_field_index(name)
        if index < 0:
            continue
        wanted = schema.field(index).type
        column = data.column(i)
        if column.type == wanted or pa.types.is_null(wanted):
            continue
        # Where Arrow cannot cast, the values are stored as sent (readers promote them).
        with contextlib.suppress(pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
            data = data.set_column(i, name, pc.cast(column, wanted))
    return data


def _new_file(path: Path) -> Any:
    """A new file, 0600, open for writing (``O_EXCL``: never an existing file or a link)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
    return os.fdopen(os.open(path, flags, paths.FILE_MODE), "wb")


def _write_file(
    data: pa.RecordBatchReader,
    schema: pa.Schema,
    key: str,
    file: Path,
    compression: str,
    request: WriteRequest,
) -> int:
    """The reader's rows, conformed to the table's ``schema`` and without the partition
    column ``key``, as one new Parquet file (row groups of ``ROW_GROUP_ROWS``); returns the
    rows written (the file is written, empty, even when there are none)."""
    body = _conform(data.schema.empty_table(), schema).drop_columns([key]).schema
    rows = 0
    with _new_file(file) as handle:
        writer = pq.ParquetWriter(
            handle, body, compression=None if compression == "none" else compression
        )
        try:
            group: list[pa.Table] = []
            grouped = 0
            for batch in data:
                if request.cancelled.is_set():
                    raise TransientRunError("The run was interrupted while writing Parquet files.")
                if not batch.num_rows:
                    continue
                piece = _conform(pa.Table.from_batches([batch]), schema).drop_columns([key])
                if not piece.schema.equals(body):
                    piece = piece.cast(body)
                group.append(piece)
                grouped += piece.num_rows
                if grouped >= ROW_GROUP_ROWS:
                    writer.write_table(pa.concat_tables(group), row_group_size=grouped)
                    rows += grouped
                    group, grouped = [], 0
            if group:
                writer.write_table(pa.concat_tables(group), row_group_size=grouped)
                rows += grouped
        finally:
            writer.close()
        handle.flush()
        os.fsync(handle.fileno())
    return rows


def _write_metadata(folder: Path, schema: pa.Schema) -> None:
    """The table's schema as ``_common_metadata``, replaced atomically."""
    staging = folder / f"{_tmp_name()}{METADATA}"
    with _new_file(staging) as handle:
        pq.write_metadata(schema, handle)
    os.replace(staging, folder / METADATA)


def _mkdir(folder: Path) -> None:
    folder.mkdir(mode=paths.FOLDER_MODE)


def _table_dir(root: Path, table: str) -> Path:
    """``root/table``; refused if it is a symbolic link (a write would follow it out)."""
    table_dir = root / table
    if table_dir.is_symlink():
        raise paths.PathRefused(
            f"The table folder {table!r} is a symbolic link, which opendts does not follow."
        )
    return table_dir


class ParquetDestination:
    """Writes each date into its own folder of Parquet files, swapped in atomically."""

    name: ClassVar[str] = "parquet"
    title: ClassVar[str] = "Parquet files"
    Settings: ClassVar[type[ConnectorSettings]] = ParquetSettings

    def write(
        self, settings: Any, request: WriteRequest, data: pa.RecordBatchReader | pa.Table
    ) -> int:
        config: ParquetSettings = settings
        reader = as_reader(data)
        try:
            table = check_identifier(request.table)
            key = check_identifier(request.date_column, "date column")
        except ValueError as exc:
            raise TerminalRunError(str(exc)) from None
        names = reader.schema.names
        if key not in names:
            raise TerminalRunError(f"The rows to write have no date column {key!r}.")
        if len(set(names)) != len(names):
            raise TerminalRunError("The source sends two columns with the same name.")
        if request.cancelled.is_set():
            raise TransientRunError("The run was interrupted before writing Parquet files.")
        paths.ensure_team_dir(request.boundary)
        root = paths.team_path(config.path, request.boundary, example="parquet")
        shown = paths.shown(root, request.boundary)
        try:
            paths.make_folders(root)
            with _table_lock(root, table, exclusive=True):
                _clean_leftovers(root, table)
                return self._write(root, table, key, config.compression, request, reader)
        except OSError as exc:
            problem = exc.strerror or str(exc)
            where = paths.shown(Path(exc.filename), request.boundary) if exc.filename else shown
            if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EIO):
                raise TransientRunError(
                    f"Could not write Parquet files under {shown} ({problem}: {where}); the "
                    "run will be retried. Check the free disk space."
                ) from None
            raise TerminalRunError(
                f"Could not write Parquet files under {shown} ({problem}: {where}): fix the "
                "destination's path or the folder's permissions."
            ) from None

    def _write(
        self,
        root: Path,
        table: str,
        key: str,
        compression: str,
        request: WriteRequest,
        data: pa.RecordBatchReader,
    ) -> int:
        table_dir = _table_dir(root, table)
        schema = _merge(table, _stored_schema(table_dir), data.schema)
        partition = f"{key}={request.data_date.isoformat()}"
        file_name = f"part-{uuid.uuid4().hex}.parquet"

        if request.mode is RefreshMode.OVERWRITE:
            staging = root / _tmp_name(table)
            try:
                _mkdir(staging)
                _mkdir(staging / partition)
                file = staging / partition / file_name
                rows = _write_file(data, schema, key, file, compression, request)
                if not rows:
                    _remove(staging / partition)
                _write_metadata(staging, schema)
                self._check_cancelled(request)
                _put_in_place(staging, table_dir)
            finally:
                _remove(staging)  # gone once in place; a failed write's is removed now
            return rows

        with contextlib.suppress(FileExistsError):
            _mkdir(table_dir)
        # The schema goes first: a crash before the data moves in leaves a wider schema
        # (columns read as NULL), never files with a column the schema lacks.
        _write_metadata(table_dir, schema)
        target = table_dir / partition
        staging = table_dir / _tmp_name()
        try:
            _mkdir(staging)
            rows = _write_file(data, schema, key, staging / file_name, compression, request)
            if request.mode is RefreshMode.APPEND:
                if not rows:
                    return 0
                self._check_cancelled(request)
                if target.is_dir():
                    os.rename(staging / file_name, target / file_name)
                    _fsync_dir(target)
                else:
                    _put_in_place(staging, target)
                return rows
            # REPLACE
            self._check_cancelled(request)
            if rows:
                _put_in_place(staging, target)
            elif target.exists():
                retired = table_dir / _tmp_name()
                os.rename(target, retired)
                _fsync_dir(table_dir)
                _remove(retired)
            return rows
        finally:
            _remove(staging)  # gone once in place; a failed or empty write's is removed now

    @staticmethod
    def _check_cancelled(request: WriteRequest) -> None:
        if request.cancelled.is_set():
            raise TransientRunError("The run was interrupted while writing Parquet files.")

    def test_connection(self, settings: Any, boundary: Boundary) -> None:
        config: ParquetSettings = settings
        root = paths.team_path(config.path, boundary, example="parquet")
        shown = paths.shown(root, boundary)
        if not root.exists():
            # The first load creates it: checking must not (nor the folders above it).
            paths.check_creatable(root, boundary, "the Parquet folder")
            return
        if not root.is_dir():
            raise TerminalRunError(f"{shown} is a file: the path must name a folder.")
        if not os.access(root, os.W_OK | os.X_OK):
            raise TerminalRunError(
                f"Cannot write to the folder {shown}: it is not writable by the server. Fix "
                "the folder's permissions or the destination's path."
            )

    def read_table(self, settings: Any, table: str, boundary: Boundary) -> pa.Table:
        config: ParquetSettings = settings
        check_identifier(table)
        root = paths.team_path(config.path, boundary, example="parquet")
        table_dir = _table_dir(root, table)
        if not table_dir.is_dir():
            return pa.table({})
        with _table_lock(root, table, exclusive=False):
            metadata = table_dir / METADATA
            schema = pq.read_schema(metadata) if metadata.exists() else None
            pieces = []
            for key, day, folder in _partitions(table_dir):
                for file in _data_files(folder):
                    with pq.ParquetFile(file) as parquet_file:
                        piece = parquet_file.read()
                    days = pa.array([day] * piece.num_rows, pa.date32())
                    pieces.append(piece.append_column(pa.field(key, pa.date32()), days))
        if schema is None:
            if not pieces:
                return pa.table({})
            schema = pa.unify_schemas([p.schema for p in pieces], promote_options="permissive")
        conformed = [_to_schema(piece, schema) for piece in pieces]
        if not conformed:
            return schema.empty_table()
        return pa.concat_tables(conformed, promote_options="permissive")


def _to_schema(piece: pa.Table, schema: pa.Schema) -> pa.Table:
    """A file's rows with the table's columns, in its order (missing ones NULL)."""
    piece = _conform(piece, schema)
    columns = []
    names = []
    for schema_field in schema:
        if schema_field.name in piece.column_names:
            columns.append(piece.column(schema_field.name))
        else:
            columns.append(pa.nulls(piece.num_rows, schema_field.type))
        names.append(schema_field.name)
    for name in piece.column_names:
        if name not in names:
            columns.append(piece.column(name))
            names.append(name)
    return pa.table(columns, names=names)
