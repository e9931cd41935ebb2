"""One day's batches between a source and a destination, in bounded memory.

The loader (``connectors.load``) reads the whole day from the source before the destination
opens its transaction, so that it can tell the destination the day's final schema (a later
page may add a column, or give a type to a column earlier pages left NULL) and refuse rows
of other dates before a row is written. A day can be far larger than memory, so ``DaySpool``
keeps at most ``MEMORY_BYTES`` of batches in memory; beyond that every batch goes to a spool
of Arrow IPC stream files in a private folder of the team's folder
(``<team folder>/.spool-<random>/``, 0700, files 0600), read back one batch at a time when the
destination writes, and removed when the load ends, whatever the outcome. The spool of a
process that died (a run killed at its memory cap) is removed by the next load of the team:
a live spool holds an ``flock`` on its ``lock`` file.

Each batch is checked as it arrives: its date column (if the source sends one) must hold the
day's date on every row, and is then set to the date32 value; a batch without it gets it. The
day's schema is the union of the batches' schemas (``pa.unify_schemas(...,
promote_options="permissive")``: new columns are added, NULL-typed columns take the type of
later values, integers widen); batches are cast to it when they are read back.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from opendts.connectors import excerpts, paths
from opendts.connectors.boundary import Boundary
from opendts.engine.errors import TerminalRunError, TransientRunError

#: Bytes of batches kept in memory; a larger day is spooled to disk.
MEMORY_BYTES = 16 << 20
#: A source batch longer than this is passed on in slices of this many rows.
BATCH_ROWS = 65_536
#: Folder-name prefix of spools in a team's folder.
PREFIX = ".spool-"
#: An unlocked spool (or one without a lock file) younger than this may be another load's
#: that is starting: only older ones are removed.
_STARTING_SECONDS = 60.0


def _incompatible(exc: Exception) -> TerminalRunError:
    return TerminalRunError(
        "The source sent pages whose columns have incompatible types "
        f"({excerpts.excerpt(str(exc))})."
    )


def spool_error(exc: OSError) -> TransientRunError | TerminalRunError:
    """A failure to write or read the spool, as a run error (a full disk is retried)."""
    reason = exc.strerror or str(exc)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EIO) or "No space" in reason:
        return TransientRunError(
            f"The day's rows could not be kept in the team's folder ({reason}); the run will "
            "be retried. Check the free disk space of the data folder."
        )
    return TerminalRunError(
        f"The day's rows could not be kept in the team's folder ({excerpts.excerpt(reason)}): "
        "check that the server may write the data folder."
    )


def conform(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """``batch`` with exactly ``schema``'s columns: missing ones NULL, others cast."""
    if batch.schema.equals(schema):
        return batch
    arrays = []
    for field in schema:
        index = batch.schema.get_field_index(field.name)
        if index < 0:
            arrays.append(pa.nulls(batch.num_rows, field.type))
            continue
        column = batch.column(index)
        if column.type != field.type:
            try:
                column = column.cast(field.type)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
                raise _incompatible(exc) from None
        arrays.append(column)
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def remove_leftovers(team_dir: Path) -> None:
    """Remove spools in ``team_dir`` that no live load holds (their process died)."""
    try:
        entries = [entry for entry in os.scandir(team_dir) if entry.name.startswith(PREFIX)]
    except OSError:
        return
    for entry in entries:
        if not entry.is_dir(follow_symlinks=False):
            continue
        folder = Path(entry.path)
        try:
            fd = os.open(folder / "lock", os.O_RDWR | os.O_NOFOLLOW)
        except FileNotFoundError:
            with contextlib.suppress(OSError):
                if time.time() - folder.stat().st_mtime > _STARTING_SECONDS:
                    shutil.rmtree(folder, ignore_errors=True)
            continue
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise
        else:
            # Unlocked: its process died, or it is a spool being made (its lock file created,
            # not yet locked): only an old one is dead.
            if time.time() - os.fstat(fd).st_mtime > _STARTING_SECONDS:
                shutil.rmtree(folder, ignore_errors=True)
        finally:
            os.close(fd)


class DaySpool:
    """One day's batches: checked, unified, kept in memory or spooled to the team's folder.

    Use as a context manager (the spool is removed on exit): ``add`` each source batch,
    ``finish`` once the source is done (raises on rows of other dates), then ``reader()``.
    """

    def __init__(
        self,
        boundary: Boundary,
        date_column: str,
        day: date,
        memory_bytes: int | None = None,
    ) -> None:
        self._boundary = boundary
        self._date_column = date_column
        self._day = day
        self._memory_bytes = MEMORY_BYTES if memory_bytes is None else memory_bytes
        self._day_scalar = pa.scalar(day, pa.date32())
        self.schema: pa.Schema | None = None
        self.rows = 0
        self._wrong = 0
        self._saw_date = False
        self._rows_without_date = 0
        self._memory: list[pa.RecordBatch] = []
        self._memory_size = 0
        #: The spool folder, once the day outgrew memory.
        self.folder: Path | None = None
        self._lock_fd: int | None = None
        self._segments: list[Path] = []
        self._writer: Any = None
        self._sink: Any = None
        self._writer_schema: pa.Schema | None = None

    # --- reading the source ------------------------------------------------------------

    def add(self, batch: pa.RecordBatch) -> None:
        """Check one source batch and keep it."""
        if batch.num_rows > BATCH_ROWS:
            for offset in range(0, batch.num_rows, BATCH_ROWS):
                self.add(batch.slice(offset, BATCH_ROWS))
            return
        batch = self._dated(batch)
        if self.schema is None:
            self.schema = batch.schema
        elif not batch.schema.equals(self.schema):
            try:
                unified = pa.unify_schemas(
                    [self.schema, batch.schema], promote_options="permissive"
                )
            except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
                raise _incompatible(exc) from None
            # A column some batches lack is NULL in them, whatever a file declared.
            self.schema = pa.schema([f.with_nullable(True) for f in unified], unified.metadata)
        self.rows += batch.num_rows
        try:
            if self.folder is None:
                self._memory.append(batch)
                self._memory_size += batch.nbytes
                if self._memory_size > self._memory_bytes:
                    self._open_spool()
                    for kept in self._memory:
                        self._spool(kept)
                    self._memory.clear()
                    self._memory_size = 0
            else:
                self._spool(batch)
        except OSError as exc:
            raise spool_error(exc) from None

    def _dated(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        """``batch`` with the date column set to the day (checking the source's own)."""
        rows = batch.num_rows
        day_array = pa.repeat(self._day_scalar, rows)
        names = batch.schema.names
        if self._date_column not in names:
            self._rows_without_date += rows
            return batch.append_column(pa.field(self._date_column, pa.date32()), day_array)
        self._saw_date = True
        index = names.index(self._date_column)
        column = batch.column(index)
        try:
            as_dates = pc.cast(column, pa.date32()) if column.type != pa.date32() else column
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            raise TerminalRunError(
                f"The source's column {self._date_column!r} holds {column.type} values that "
                "are not dates. Rename it in the source or set another date column on the "
                "transfer."
            ) from None
        if rows:
            other = pc.sum(pc.not_equal(as_dates, self._day_scalar)).as_py() or 0
            self._wrong += int(other) + as_dates.null_count
        return batch.set_column(index, pa.field(self._date_column, pa.date32()), day_array)

    def finish(self) -> None:
        """The source is done: refuse rows of other dates, close the spool's last file."""
        if self._saw_date:
            self._wrong += self._rows_without_date
        if self.rows and self._wrong:
            raise TerminalRunError(
                f"The source returned {self._wrong} of {self.rows} rows whose "
                f"{self._date_column!r} is not {self._day}. A run loads one date: filter the "
                "source by the date (e.g. a {date} template) so every row belongs to it."
            )
        if self.schema is None:
            self.schema = pa.schema([pa.field(self._date_column, pa.date32())])
        try:
            self._close_writer()
        except OSError as exc:
            raise spool_error(exc) from None

    # --- the spool -----------------------------------------------------------------------

    def _open_spool(self) -> None:
        team_dir = paths.ensure_team_dir(self._boundary)
        remove_leftovers(team_dir)
        folder = team_dir / f"{PREFIX}{uuid.uuid4().hex}"
        folder.mkdir(mode=paths.FOLDER_MODE)
        self.folder = folder
        self._lock_fd = os.open(
            folder / "lock", os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, paths.FILE_MODE
        )
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)

    def _spool(self, batch: pa.RecordBatch) -> None:
        if self._writer is None or not batch.schema.equals(self._writer_schema):
            self._close_writer()
            assert self.folder is not None
            path = self.folder / f"{len(self._segments)}.arrow"
            fd = os.open(
                path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, paths.FILE_MODE
            )
            self._sink = os.fdopen(fd, "wb")
            self._writer = pa.ipc.new_stream(self._sink, batch.schema)
            self._writer_schema = batch.schema
            self._segments.append(path)
        self._writer.write_batch(batch)

    def _close_writer(self) -> None:
        writer, self._writer = self._writer, None
        sink, self._sink = self._sink, None
        try:
            if writer is not None:
                writer.close()
        finally:
            if sink is not None:
                sink.close()

    # --- writing the destination ---------------------------------------------------------

    def batches(self) -> Iterator[pa.RecordBatch]:
        """The day's batches in arrival order, each with the day's schema."""
        schema = self.schema
        assert schema is not None, "finish() first"
        if self.folder is None:
            for batch in self._memory:
                yield conform(batch, schema)
            return
        for path in self._segments:
            try:
                with pa.OSFile(str(path), "rb") as source:
                    for batch in pa.ipc.open_stream(source):
                        yield conform(batch, schema)
            except OSError as exc:
                raise spool_error(exc) from None

    def reader(self) -> pa.RecordBatchReader:
        """The day's rows for a destination: one pass, batch by batch."""
        assert self.schema is not None, "finish() first"
        return pa.RecordBatchReader.from_batches(self.schema, self.batches())

    def close(self) -> None:
        """Forget the batches and remove the spool (if any)."""
        self._memory.clear()
        with contextlib.suppress(OSError):
            self._close_writer()
        folder, self.folder = self.folder, None
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> DaySpool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
