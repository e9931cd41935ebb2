"""The file source: CSV, gzipped CSV, Parquet and JSON lines named by a date template."""

from __future__ import annotations

import gzip
import json
from datetime import date
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from opendts.connectors.base import ConfigError, ReadRequest, parse_settings
from opendts.connectors.sources.file import FileSettings, FileSource
from opendts.engine.errors import TerminalRunError, TransientRunError
from tests.boundaries import boundary, files_dir

DAY = date(2024, 1, 31)


@pytest.fixture
def files() -> Path:
    """Team 1's files folder: relative paths of the source are read from it."""
    return files_dir()


def settings(**config: Any) -> FileSettings:
    parsed: FileSettings = parse_settings(FileSettings, config)
    return parsed


def read(config: FileSettings, day: date = DAY) -> list[pa.RecordBatch]:
    return list(FileSource().read(config, ReadRequest(day, boundary=boundary())))


def rows(batches: list[pa.RecordBatch]) -> list[dict[str, Any]]:
    return [row for batch in batches for row in batch.to_pylist()]


CSV = "shop,units,price,day\na,1,1.5,2024-01-31\nb,2,,2024-01-31\n"
EXPECTED = [
    {"shop": "a", "units": 1, "price": 1.5, "day": DAY},
    {"shop": "b", "units": 2, "price": None, "day": DAY},
]


def test_csv_by_path_template(files: Path) -> None:
    (files / "export-20240131.csv").write_text(CSV)
    (files / "export-20240201.csv").write_text("shop,units\nz,9\n")
    config = settings(path="export-{date:%Y%m%d}.csv")
    batches = read(config)
    assert rows(batches) == EXPECTED
    assert batches[0].schema.field("units").type == pa.int64()
    assert rows(read(config, date(2024, 2, 1))) == [{"shop": "z", "units": 9}]


def test_csv_gz_with_another_delimiter(files: Path) -> None:
    with gzip.open(files / "2024-01-31.csv.gz", "wt") as out:
        out.write(CSV.replace(",", ";"))
    config = settings(path="{date}.csv.gz", csv_delimiter=";")
    assert rows(read(config)) == EXPECTED


def test_parquet_streams_batches_and_nested_columns_become_json(files: Path) -> None:
    table = pa.table(
        {
            "n": pa.array(range(70_000), pa.int64()),
            "meta": pa.array([{"k": i % 3} for i in range(70_000)]),
        }
    )
    pq.write_table(table, files / "d=2024-01-31.parquet", row_group_size=30_000)
    batches = read(settings(path="d={date}.parquet"))
    assert len(batches) > 1
    assert sum(b.num_rows for b in batches) == 70_000
    assert batches[0].schema.field("n").type == pa.int64()
    assert batches[0].schema.field("meta").type == pa.string()
    assert json.loads(batches[0].column("meta")[4].as_py()) == {"k": 1}


def test_jsonl_with_nested_values_and_missing_keys(files: Path) -> None:
    lines = [
        {"id": 1, "geo": {"country": "FI"}, "tags": ["a", "b"]},
        {"id": 2, "note": "hi"},
    ]
    (files / "events-2024-01-31.ndjson").write_text("\n".join(map(json.dumps, lines)))
    got = rows(read(settings(path="events-{date}.ndjson")))
    assert [row["id"] for row in got] == [1, 2]
    assert json.loads(got[0]["geo"]) == {"country": "FI"}
    assert json.loads(got[0]["tags"]) == ["a", "b"]
    assert got[0]["note"] is None and got[1]["geo"] is None and got[1]["note"] == "hi"


def test_jsonl_gz_and_explicit_format(files: Path) -> None:
    with gzip.open(files / "x-2024-01-31.data", "wt") as out:
        out.write('{"a": 1}\n{"a": 2}\n')
    assert problems({"path": "x-{date}.data"})["path"].endswith("set format")
    # A gzipped file named without .gz is not decompressed: the parser says so.
    with pytest.raises(TerminalRunError, match=r"x-2024-01-31\.data"):
        read(settings(path="x-{date}.data", format="jsonl"))
    (files / "x-2024-01-31.data.gz").write_bytes((files / "x-2024-01-31.data").read_bytes())
    assert rows(read(settings(path="x-{date}.data.gz", format="jsonl"))) == [{"a": 1}, {"a": 2}]


def test_relative_path_is_inside_the_teams_files_folder(files: Path) -> None:
    (files / "in").mkdir()
    (files / "in" / "2024-01-31.csv").write_text(CSV)
    assert rows(read(settings(path="in/{date}.csv"))) == EXPECTED


def test_missing_file_retry_is_transient(files: Path) -> None:
    with pytest.raises(TransientRunError, match=r"2024-01-31\.csv.*not found yet; will retry"):
        read(settings(path="{date}.csv"))
    with pytest.raises(TransientRunError, match="not found yet"):
        read(settings(path="{date}.csv", missing="retry"))


def test_missing_file_empty_yields_nothing() -> None:
    assert read(settings(path="{date}.parquet", missing="empty")) == []


def test_missing_file_fail_is_terminal() -> None:
    with pytest.raises(TerminalRunError, match=r"2024-01-31\.jsonl .*does not exist"):
        read(settings(path="{date}.jsonl", missing="fail"))


def test_corrupt_parquet_is_terminal_naming_the_file(files: Path) -> None:
    pq.write_table(pa.table({"a": [1, 2, 3]}), files / "good.parquet")
    cut = (files / "good.parquet").read_bytes()[:-12]
    (files / "2024-01-31.parquet").write_bytes(cut)
    with pytest.raises(TerminalRunError) as caught:
        read(settings(path="{date}.parquet"))
    message = str(caught.value)
    assert "2024-01-31.parquet" in message and "not valid Parquet" in message
    assert "magic bytes" in message.lower() or "footer" in message.lower()


def test_corrupt_csv_gz_and_jsonl_are_terminal(files: Path) -> None:
    (files / "2024-01-31.csv.gz").write_bytes(b"this is not gzip")
    with pytest.raises(TerminalRunError, match=r"2024-01-31\.csv\.gz"):
        read(settings(path="{date}.csv.gz"))
    (files / "2024-01-31.jsonl").write_text('{"a": 1}\n{oops\n')
    with pytest.raises(TerminalRunError, match="not valid JSON lines"):
        read(settings(path="{date}.jsonl"))


def test_empty_csv_file_has_no_rows(files: Path) -> None:
    (files / "2024-01-31.csv").write_text("")
    assert read(settings(path="{date}.csv")) == []


def test_cancel_stops_between_batches(files: Path) -> None:
    pq.write_table(
        pa.table({"n": list(range(200_000))}), files / "big.parquet", row_group_size=50_000
    )
    request = ReadRequest(DAY, boundary=boundary())
    batches = FileSource().read(settings(path="big.parquet"), request)
    next(batches)
    request.cancelled.set()
    with pytest.raises(TransientRunError, match="interrupted"):
        next(batches)


def problems(config: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(ConfigError) as caught:
        parse_settings(FileSettings, config)
    return dict(caught.value.problems)


def test_settings_errors_name_the_field() -> None:
    assert "unknown placeholder {day}" in problems({"path": "{day}.csv"})["path"]
    assert "cannot tell the format" in problems({"path": "{date}.txt"})["path"]
    assert "cannot be gzipped" in problems({"path": "{date}.parquet.gz"})["path"]
    assert "format" in problems({"path": "a.csv", "format": "xml"})
    assert problems({"path": "a.csv", "colour": 1})["colour"] == "unknown field"
    assert problems({"path": "a.csv", "missing": "ignore"})["missing"]


def test_absolute_and_parent_paths_are_refused_naming_the_field() -> None:
    for path in ("/etc/shadow", "../../opendts.db", "~/x.csv", "a/../../x.csv"):
        with pytest.raises(ConfigError) as caught:
            parse_settings(FileSettings, {"path": path, "format": "csv"}, boundary())
        assert [name for name, _ in caught.value.problems] == ["path"], path


def test_a_symlink_planted_after_saving_is_refused_when_read(files: Path) -> None:
    config: FileSettings = parse_settings(FileSettings, {"path": "{date}.csv"}, boundary())
    (files / "2024-01-31.csv").symlink_to("/etc/passwd")
    with pytest.raises(TerminalRunError, match="outside the team's folder"):
        read(config)


def test_an_operator_root_is_read_by_its_absolute_path(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    root = tmp_path_factory.mktemp("exports").resolve()  # outside the data folder
    (root / "1").mkdir(parents=True)
    (root / "1" / "2024-01-31.csv").write_text(CSV)
    (root / "2").mkdir()
    (root / "2" / "2024-01-31.csv").write_text(CSV)
    team = boundary(file_roots=(root,))
    config: FileSettings = parse_settings(FileSettings, {"path": f"{root}/1/{{date}}.csv"}, team)
    got = list(FileSource().read(config, ReadRequest(DAY, boundary=team)))
    assert rows(got) == EXPECTED
    with pytest.raises(ConfigError, match=f"{root}/1/"):  # another team's subfolder
        parse_settings(FileSettings, {"path": f"{root}/2/{{date}}.csv"}, team)
