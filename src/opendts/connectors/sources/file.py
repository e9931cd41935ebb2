"""``file``: one date's rows from a CSV, Parquet or JSON-lines file named by a path template.

``path`` is a template (``exports/{date:%Y%m%d}.csv``). A relative path is read from the
team's ``files/`` folder; an absolute one only inside ``<root>/<team_id>/`` of a folder the
operator shared (``OPENDTS_FILE_ROOTS``): see ``connectors.paths``. The rendered path is checked
again at every read and opened without following symbolic links.

The format follows the extension (``.csv``, ``.parquet``/``.pq``, ``.jsonl``/``.ndjson``;
``.gz`` for CSV and JSON lines) unless ``format`` says otherwise. Files are read
in batches with pyarrow's readers; nested values (JSON objects and lists, Parquet structs)
become JSON text.

A file that is not there yet is retried by default (an export that lands later), skipped
(``missing="empty"``) or fails the date (``missing="fail"``). A file the parser rejects fails
the date with the file's name and what the parser found where, never the file's content.
"""

from __future__ import annotations

import os
import re
from collections.abc import Generator, Iterator
from datetime import date
from pathlib import Path
from typing import BinaryIO, ClassVar, Literal

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.json as pa_json
import pyarrow.parquet as pq
from pydantic import Field, ValidationInfo, field_validator

from opendts.connectors import excerpts, paths
from opendts.connectors.base import ConnectorSettings, ReadRequest, settings_boundary
from opendts.connectors.sources.http import check_template, flatten_nested, render
from opendts.engine.errors import TerminalRunError, TransientRunError

Format = Literal["csv", "parquet", "jsonl"]

_EXTENSIONS: dict[str, Format] = {
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
}

BATCH_ROWS = 65_536
_SAMPLE_DATE = date(2024, 1, 31)
_BLOCK_SIZE = 4 << 20


def _suffixes(path: str) -> tuple[str, bool]:
    """(the extension that names the format, whether the file is gzipped)."""
    name = Path(path).name.lower()
    gzipped = name.endswith(".gz")
    if gzipped:
        name = name[: -len(".gz")]
    return Path(name).suffix, gzipped


def detect_format(path: str, declared: str) -> tuple[Format, bool]:
    """The format to read ``path`` with, and whether it is gzipped; ``ValueError`` if unknown."""
    suffix, gzipped = _suffixes(path)
    fmt: Format
    if declared == "auto":
        found = _EXTENSIONS.get(suffix)
        if found is None:
            raise ValueError(
                f"cannot tell the format of {Path(path).name!r} from its extension "
                "(.csv, .parquet, .pq, .jsonl, .ndjson, optionally .gz): set format"
            )
        fmt = found
    else:
        fmt = declared  # type: ignore[assignment]
    if gzipped and fmt == "parquet":
        raise ValueError("a Parquet file cannot be gzipped (Parquet compresses internally)")
    return fmt, gzipped


class FileSettings(ConnectorSettings):
    """The file for a date, its format, and what a missing file means."""

    # ``format`` comes first so that ``path`` is checked against it.
    format: Literal["auto", "csv", "parquet", "jsonl"] = Field(
        default="auto", description="auto: from the extension of path."
    )
    path: str = Field(
        min_length=1,
        description="Path template, e.g. exports/{date:%Y%m%d}.csv, in the team's files "
        "folder (or an absolute path in a folder the operator shared with the team)",
    )
    csv_delimiter: str = Field(default=",", min_length=1, max_length=1)
    missing: Literal["retry", "empty", "fail"] = Field(
        default="retry",
        description="A file not there: retry later, load nothing, or fail the date.",
    )

    @field_validator("path")
    @classmethod
    def _path(cls, value: str, info: ValidationInfo) -> str:
        check_template(value)
        sample = render(value, _SAMPLE_DATE)
        paths.check_source_path(sample, settings_boundary(info))
        declared = info.data.get("format")
        if declared is not None:  # absent when format itself is invalid
            detect_format(sample, declared)
        return value


def _batches(
    handle: BinaryIO, fmt: Format, gzipped: bool, delimiter: str
) -> Generator[pa.RecordBatch, None, None]:
    if fmt == "parquet":
        with pq.ParquetFile(handle) as parquet:
            yield from parquet.iter_batches(batch_size=BATCH_ROWS)
        return
    with pa.input_stream(handle, compression="gzip" if gzipped else None) as stream:
        if fmt == "csv":
            reader = pa_csv.open_csv(
                stream,
                read_options=pa_csv.ReadOptions(block_size=_BLOCK_SIZE),
                parse_options=pa_csv.ParseOptions(delimiter=delimiter),
            )
        else:
            reader = pa_json.open_json(
                stream, read_options=pa_json.ReadOptions(block_size=_BLOCK_SIZE)
            )
        yield from reader


class FileSource:
    """Rows of one file per date: CSV, Parquet or JSON lines, optionally gzipped."""

    name: ClassVar[str] = "file"
    title: ClassVar[str] = "Files (CSV, Parquet, JSON lines)"
    Settings: ClassVar[type[ConnectorSettings]] = FileSettings

    def read(self, settings: FileSettings, request: ReadRequest) -> Iterator[pa.RecordBatch]:
        path = render(settings.path, request.data_date)
        try:
            fmt, gzipped = detect_format(path, settings.format)
        except ValueError as exc:
            raise TerminalRunError(f"File {path}: {exc}.") from None
        try:
            handle = paths.open_source_file(path, request.boundary)
        except FileNotFoundError:
            if settings.missing == "empty":
                return
            if settings.missing == "fail":
                raise TerminalRunError(
                    f"The file {path} for {request.data_date} does not exist. "
                    "Check the source's path."
                ) from None
            raise TransientRunError(
                f"The file {path} for {request.data_date} was not found yet; will retry."
            ) from None
        except IsADirectoryError:
            raise TerminalRunError(f"{path} is not a file. Check the source's path.") from None
        except OSError as exc:
            raise _os_error(path, exc) from None
        with handle:
            if fmt != "parquet" and os.fstat(handle.fileno()).st_size == 0:
                return  # an empty CSV or JSON-lines file holds no rows (pyarrow calls it invalid)
            yield from self._read(handle, path, fmt, gzipped, settings, request)

    def _read(
        self,
        handle: BinaryIO,
        path: str,
        fmt: Format,
        gzipped: bool,
        settings: FileSettings,
        request: ReadRequest,
    ) -> Iterator[pa.RecordBatch]:
        batches = _batches(handle, fmt, gzipped, settings.csv_delimiter)
        try:
            while True:
                if request.cancelled.is_set():
                    raise TransientRunError("interrupted")
                try:
                    batch = next(batches)
                except StopIteration:
                    return
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
                    raise TerminalRunError(
                        f"The file {path} is not valid {_NAMES[fmt]}: {_parser_problem(exc)}"
                    ) from None
                except EOFError as exc:
                    raise TerminalRunError(
                        f"The file {path} is cut short ({exc or 'unexpected end of file'})."
                    ) from None
                except OSError as exc:
                    raise _os_error(path, exc) from None
                if batch.num_rows:
                    yield flatten_nested(batch)
        finally:
            batches.close()


_NAMES: dict[Format, str] = {"csv": "CSV", "parquet": "Parquet", "jsonl": "JSON lines"}


def _parser_problem(exc: Exception) -> str:
    """What the parser found and where, without the file's content (pyarrow quotes the row)."""
    text = re.sub(r"(Expected \d+ columns?, got \d+).*", r"\1", str(exc))
    return excerpts.excerpt(text) or type(exc).__name__


def _os_error(path: str, exc: OSError) -> TerminalRunError | TransientRunError:
    text = str(exc)
    # pyarrow reports a bad gzip stream, or a Parquet footer it cannot parse, as an OSError.
    if isinstance(exc, PermissionError):
        return TransientRunError(f"The file {path} cannot be read now ({text}); will retry.")
    if exc.errno is None:
        return TerminalRunError(f"The file {path} cannot be read: {text}")
    return TransientRunError(f"Reading {path} failed ({text}); will retry.")
