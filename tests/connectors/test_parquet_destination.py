"""Parquet specifics: the folder layout, atomic swaps, crash leftovers, compression."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import date, timedelta
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from opendts.connectors.base import RefreshMode, SchemaConflict, WriteRequest, parse_settings
from opendts.connectors.destinations import parquet
from opendts.engine.errors import TerminalRunError
from tests.boundaries import boundary
from tests.connectors.destination_contract import day_rows

DAY = date(2024, 6, 1)


@pytest.fixture
def root(team_folder: Path) -> Path:
    return team_folder / "parquet"


@pytest.fixture
def settings(root: Path) -> parquet.ParquetSettings:
    return parse_settings(parquet.ParquetSettings, {}, boundary())


@pytest.fixture
def destination() -> parquet.ParquetDestination:
    return parquet.ParquetDestination()


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_layout_is_hive_partitioned_by_date(
    root: Path, settings: parquet.ParquetSettings, destination: parquet.ParquetDestination
) -> None:
    destination.write(
        settings, WriteRequest("ads", DAY, boundary=boundary()), day_rows(DAY, [1, 2])
    )
    destination.write(
        settings,
        WriteRequest("ads", DAY + timedelta(1), boundary=boundary()),
        day_rows(DAY + timedelta(1), [3]),
    )
    table_dir = root / "ads"
    assert _files(table_dir) == ["_common_metadata", "date=2024-06-01", "date=2024-06-02"]
    (file,) = (table_dir / "date=2024-06-01").iterdir()
    assert file.name.startswith("part-") and file.suffix == ".parquet"
    assert pq.read_schema(file).names == ["id", "name", "amount"]  # the key is in the path
    assert pq.ParquetFile(file).metadata.row_group(0).column(0).compression == "ZSTD"
    # Other tools read the folder as a partitioned data set.
    with duckdb.connect() as conn:
        counts = conn.execute(
            f"SELECT date, count(*) FROM read_parquet('{table_dir}/*/*.parquet', "
            "hive_partitioning = true) GROUP BY 1 ORDER BY 1"
        ).fetchall()
    assert [(str(d), n) for d, n in counts] == [("2024-06-01", 2), ("2024-06-02", 1)]
    dataset = ds.dataset(table_dir, format="parquet", partitioning="hive")
    assert dataset.to_table().num_rows == 3


def test_custom_date_column_is_the_partition_key(
    root: Path, settings: parquet.ParquetSettings, destination: parquet.ParquetDestination
) -> None:
    data = day_rows(DAY, [1]).rename_columns(["id", "name", "amount", "day"])
    destination.write(settings, WriteRequest("ads", DAY, "day", boundary=boundary()), data)
    assert (root / "ads" / "day=2024-06-01").is_dir()
    back = destination.read_table(settings, "ads", boundary())
    assert back.schema.field("day").type == pa.date32()
    assert back.column("day").to_pylist() == [DAY]


@pytest.mark.parametrize(
    ("compression", "stored"), [("snappy", "SNAPPY"), ("none", "UNCOMPRESSED")]
)
def test_compression_setting(
    root: Path, destination: parquet.ParquetDestination, compression: str, stored: str
) -> None:
    settings = parse_settings(parquet.ParquetSettings, {"compression": compression})
    destination.write(settings, WriteRequest("ads", DAY, boundary=boundary()), day_rows(DAY, [1]))
    (file,) = (root / "ads" / "date=2024-06-01").iterdir()
    assert pq.ParquetFile(file).metadata.row_group(0).column(0).compression == stored


def test_unknown_compression_is_refused() -> None:
    with pytest.raises(ValueError, match="compression"):
        parse_settings(parquet.ParquetSettings, {"compression": "lz77"})


def test_exchange_swaps_two_folders(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "from_a").touch()
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "from_b").touch()
    assert parquet.exchange(tmp_path / "a", tmp_path / "b") is True  # Linux, glibc ≥ 2.28
    assert _files(tmp_path / "a") == ["from_b"]
    assert _files(tmp_path / "b") == ["from_a"]


def test_replace_swaps_the_date_folder(
    root: Path,
    settings: parquet.ParquetSettings,
    destination: parquet.ParquetDestination,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    destination.write(
        settings, WriteRequest("ads", DAY, boundary=boundary()), day_rows(DAY, [1, 2], tag="old")
    )
    swaps: list[tuple[str, str]] = []
    real = parquet.exchange

    def spy(first: Path, second: Path) -> bool:
        swaps.append((first.name, second.name))
        return real(first, second)

    monkeypatch.setattr(parquet, "exchange", spy)
    destination.write(
        settings, WriteRequest("ads", DAY, boundary=boundary()), day_rows(DAY, [3], tag="new")
    )
    assert len(swaps) == 1 and swaps[0][1] == "date=2024-06-01"
    assert swaps[0][0].startswith(".tmp-")
    assert destination.read_table(settings, "ads", boundary()).column("name").to_pylist() == [
        "new-3"
    ]
    assert _files(root / "ads") == ["_common_metadata", "date=2024-06-01"]  # old one deleted


def test_replace_without_renameat2_falls_back_to_two_renames(
    root: Path,
    settings: parquet.ParquetSettings,
    destination: parquet.ParquetDestination,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(parquet, "_renameat2", None)
    destination.write(
        settings, WriteRequest("ads", DAY, boundary=boundary()), day_rows(DAY, [1, 2], tag="old")
    )
    destination.write(
        settings, WriteRequest("ads", DAY, boundary=boundary()), day_rows(DAY, [3], tag="new")
    )
    destination.write(
        settings, WriteRequest("ads", DAY, boundary=boundary()), day_rows(DAY, [4], tag="new")
    )
    assert destination.read_table(settings, "ads", boundary()).column("id").to_pylist() == [4]
    assert _files(root / "ads") == ["_common_metadata", "date=2024-06-01"]


def test_append_adds_a_uniquely_named_file(
    root: Path, settings: parquet.ParquetSettings, destination: parquet.ParquetDestination
) -> None:
    for ids in ([1], [2, 3], [4]):
        destination.write(
            settings,
            WriteRequest("ev", DAY, mode=RefreshMode.APPEND, boundary=boundary()),
            day_rows(DAY, ids),
        )
    files = _files(root / "ev" / "date=2024-06-01")
    assert len(files) == 3 and len(set(files)) == 3
    assert sorted(destination.read_table(settings, "ev", boundary()).column("id").to_pylist()) == [
        1,
        2,
        3,
        4,
    ]
    assert _files(root / "ev") == ["_common_metadata", "date=2024-06-01"]  # no leftovers


def test_overwrite_swaps_the_whole_table_folder(
    root: Path, settings: parquet.ParquetSettings, destination: parquet.ParquetDestination
) -> None:
    destination.write(settings, WriteRequest("snap", DAY, boundary=boundary()), day_rows(DAY, [1]))
    destination.write(
        settings,
        WriteRequest("snap", DAY + timedelta(1), boundary=boundary()),
        day_rows(DAY + timedelta(1), [2]),
    )
    before = (root / "snap").stat().st_ino
    later = DAY + timedelta(5)
    destination.write(
        settings,
        WriteRequest("snap", later, mode=RefreshMode.OVERWRITE, boundary=boundary()),
        day_rows(later, [9]),
    )
    assert (root / "snap").stat().st_ino != before
    assert _files(root / "snap") == ["_common_metadata", "date=2024-06-06"]
    assert not [p for p in root.iterdir() if p.name.startswith(".tmp-")]


def test_leftovers_of_a_crash_are_ignored_then_cleaned(
    root: Path, settings: parquet.ParquetSettings, destination: parquet.ParquetDestination
) -> None:
    destination.write(settings, WriteRequest("ads", DAY, boundary=boundary()), day_rows(DAY, [1]))
    junk = day_rows(DAY, [666]).drop_columns(["date"])
    half_date = root / "ads" / ".tmp-0123abcd"
    half_date.mkdir()
    pq.write_table(junk, half_date / "part-x.parquet")
    half_table = root / ".tmp-ads-0123abcd"
    (half_table / "date=2024-06-01").mkdir(parents=True)
    pq.write_table(junk, half_table / "date=2024-06-01" / "part-x.parquet")
    other_table = root / ".tmp-adsx-0123abcd"
    other_table.mkdir()
    (root / "ads" / ".tmp-1_common_metadata").write_bytes(b"half")
    assert destination.read_table(settings, "ads", boundary()).column("id").to_pylist() == [1]
    destination.write(
        settings,
        WriteRequest("ads", DAY + timedelta(1), boundary=boundary()),
        day_rows(DAY + timedelta(1), [2]),
    )
    assert not half_date.exists() and not half_table.exists()
    assert not (root / "ads" / ".tmp-1_common_metadata").exists()
    assert other_table.exists(), "another table's work must not be touched"
    assert sorted(destination.read_table(settings, "ads", boundary()).column("id").to_pylist()) == [
        1,
        2,
    ]


def test_schema_conflict_without_metadata_file_uses_a_data_file(
    root: Path, settings: parquet.ParquetSettings, destination: parquet.ParquetDestination
) -> None:
    destination.write(settings, WriteRequest("ads", DAY, boundary=boundary()), day_rows(DAY, [1]))
    (root / "ads" / "_common_metadata").unlink()
    bad = day_rows(DAY, [2]).set_column(0, "id", pa.array(["two"]))
    with pytest.raises(SchemaConflict, match="'id'"):
        destination.write(settings, WriteRequest("ads", DAY, boundary=boundary()), bad)
    assert destination.read_table(settings, "ads", boundary()).column("id").to_pylist() == [1]


def test_widened_values_are_stored_in_the_table_type(
    root: Path, settings: parquet.ParquetSettings, destination: parquet.ParquetDestination
) -> None:
    destination.write(settings, WriteRequest("ads", DAY, boundary=boundary()), day_rows(DAY, [1]))
    later = DAY + timedelta(1)
    ints = day_rows(later, [2]).set_column(2, "amount", pa.array([7], pa.int64()))
    destination.write(settings, WriteRequest("ads", later, boundary=boundary()), ints)
    (file,) = (root / "ads" / "date=2024-06-02").iterdir()
    assert pq.read_schema(file).field("amount").type == pa.float64()
    back = destination.read_table(settings, "ads", boundary())
    assert back.schema.field("amount").type == pa.float64()
    assert sorted(back.column("amount").to_pylist()) == [1.5, 7.0]


def test_metadata_remembers_columns_and_empty_tables_keep_their_schema(
    root: Path, settings: parquet.ParquetSettings, destination: parquet.ParquetDestination
) -> None:
    destination.write(settings, WriteRequest("ads", DAY, boundary=boundary()), day_rows(DAY, []))
    back = destination.read_table(settings, "ads", boundary())
    assert back.num_rows == 0 and back.column_names == ["id", "name", "amount", "date"]
    extra = {"clicks": pa.array([5], pa.int64())}
    destination.write(
        settings, WriteRequest("ads", DAY, boundary=boundary()), day_rows(DAY, [1], extra=extra)
    )
    destination.write(
        settings, WriteRequest("ads", DAY, boundary=boundary()), day_rows(DAY, [2])
    )  # without clicks
    schema = pq.read_schema(root / "ads" / "_common_metadata")
    assert schema.names == ["id", "name", "amount", "date", "clicks"]
    assert destination.read_table(settings, "ads", boundary()).to_pylist() == [
        {"id": 2, "name": "v-2", "amount": 3.0, "date": DAY, "clicks": None}
    ]


def test_an_unwritable_folder_is_terminal(team_folder: Path) -> None:
    (team_folder / "file").write_text("x")
    settings = parse_settings(parquet.ParquetSettings, {"path": "file/sub"})
    destination = parquet.ParquetDestination()
    with pytest.raises(TerminalRunError, match="Cannot create the folder"):
        destination.test_connection(settings, boundary())
    with pytest.raises(TerminalRunError, match="is a file"):
        destination.test_connection(
            parse_settings(parquet.ParquetSettings, {"path": "file"}), boundary()
        )
    with pytest.raises(TerminalRunError, match="Could not write Parquet files"):
        destination.write(
            settings, WriteRequest("ads", DAY, boundary=boundary()), day_rows(DAY, [1])
        )


_CRASHER = textwrap.dedent(
    """
    import sys
    from datetime import date
    from pathlib import Path
    import pyarrow as pa
    from opendts.connectors.base import WriteRequest, parse_settings
    from opendts.connectors.boundary import Boundary
    from opendts.connectors.destinations.parquet import ParquetDestination, ParquetSettings

    team = Boundary(team_id=1, data_dir=Path(sys.argv[1]))
    settings = parse_settings(ParquetSettings, {"compression": "none"})
    destination = ParquetDestination()
    day = date(2024, 6, 1)
    rows = 100_000
    n = 0
    while True:
        n += 1
        data = pa.table({
            "date": pa.array([day] * rows, pa.date32()),
            "generation": pa.array([n] * rows, pa.int64()),
        })
        destination.write(settings, WriteRequest("t", day, boundary=team), data)
        print(n, flush=True)
    """
)


@pytest.mark.parametrize("delay", [0.0, 0.01, 0.03])
def test_a_killed_writer_leaves_old_or_new_rows_never_a_mix(
    root: Path, tmp_path: Path, delay: float
) -> None:
    process = subprocess.Popen(
        [sys.executable, "-c", _CRASHER, str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert process.stdout is not None
    for _ in range(3):
        assert process.stdout.readline()
    time.sleep(delay)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    settings = parse_settings(parquet.ParquetSettings, {})
    destination = parquet.ParquetDestination()
    back = destination.read_table(settings, "t", boundary())
    generations = set(back.column("generation").to_pylist())
    assert back.num_rows == 100_000 and len(generations) == 1, generations
    # The next write cleans whatever the killed one left behind.
    later = date(2024, 6, 2)
    destination.write(
        settings,
        WriteRequest("t", later, boundary=boundary()),
        pa.table({"date": pa.array([later])}),
    )
    assert not list(root.rglob(".tmp-*"))
