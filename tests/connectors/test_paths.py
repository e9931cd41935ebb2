"""The confinement API: a team's paths stay in its folder (or the operator's roots for it)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from opendts.connectors import paths
from opendts.connectors.boundary import Boundary
from opendts.connectors.paths import PathRefused
from opendts.engine.errors import TerminalRunError


def team(data_dir: Path, team_id: int = 1, **extra: object) -> Boundary:
    values: dict[str, object] = {
        "team_id": team_id,
        "data_dir": data_dir.resolve(),
        "metadata_url": f"sqlite:///{data_dir.resolve() / 'opendts.db'}",
    }
    values.update(extra)
    return Boundary(**values)  # type: ignore[arg-type]


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "opendts.db").write_bytes(b"SQLite format 3\x00")
    (folder / "secret.key").write_text("key\n")
    return folder


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("/etc/shadow", "absolute paths are not allowed"),
        ("~/x.duckdb", "'~'"),
        ("~root/x.duckdb", "'~'"),
        ("../opendts.db", "'..' is not allowed"),
        ("a/../../opendts.db", "'..' is not allowed"),
        ("w\x00.duckdb", "NUL"),
        ("x" * 2000, "at most 1024"),
    ],
)
def test_shapes_that_leave_the_folder_are_refused(value: str, problem: str) -> None:
    with pytest.raises(PathRefused, match=problem) as refused:
        paths.check_team_path(value, None, example="warehouse.duckdb")
    # A validator turns it into a 400 naming the field; a run fails at once.
    assert isinstance(refused.value, ValueError)
    assert isinstance(refused.value, TerminalRunError)


def test_a_relative_path_lives_in_the_team_folder(data_dir: Path) -> None:
    found = paths.team_path("sub/w.duckdb", team(data_dir, 7))
    assert found == data_dir.resolve() / "teams" / "7" / "sub" / "w.duckdb"
    assert paths.shown(found, team(data_dir, 7)) == "sub/w.duckdb"


def test_teams_do_not_share_a_relative_path(data_dir: Path) -> None:
    assert paths.team_path("w.duckdb", team(data_dir, 1)) != paths.team_path(
        "w.duckdb", team(data_dir, 2)
    )


def test_a_symlink_that_stays_inside_is_followed(data_dir: Path) -> None:
    folder = paths.ensure_team_dir(team(data_dir))
    (folder / "real.duckdb").write_bytes(b"")
    (folder / "alias.duckdb").symlink_to("real.duckdb")
    assert paths.team_path("alias.duckdb", team(data_dir)) == folder / "real.duckdb"


@pytest.mark.parametrize(
    "target",
    ["../../opendts.db", "../../secret.key", "../2/w.duckdb", "/etc/passwd", "/"],
)
def test_a_symlink_out_of_the_folder_is_refused(data_dir: Path, target: str) -> None:
    folder = paths.ensure_team_dir(team(data_dir))
    (folder / "link").symlink_to(target)
    with pytest.raises(PathRefused, match="outside the team's folder"):
        paths.team_path("link", team(data_dir))
    with pytest.raises(PathRefused, match="outside the team's folder"):
        paths.team_path("link/below.duckdb", team(data_dir))


def test_a_symlinked_team_folder_is_refused(data_dir: Path, tmp_path: Path) -> None:
    (data_dir / "teams").mkdir()
    (data_dir / "teams" / "1").symlink_to(tmp_path)
    with pytest.raises(PathRefused):
        paths.team_path("w.duckdb", team(data_dir))
    with pytest.raises(PathRefused, match="symbolic link"):
        paths.ensure_team_dir(team(data_dir))


def test_a_hard_link_to_the_metadata_database_or_the_key_is_refused(data_dir: Path) -> None:
    folder = paths.ensure_team_dir(team(data_dir))
    os.link(data_dir / "opendts.db", folder / "copy.db")
    os.link(data_dir / "secret.key", folder / "files" / "key.csv")
    with pytest.raises(PathRefused, match="server's own files"):
        paths.team_path("copy.db", team(data_dir))
    with pytest.raises(PathRefused, match="server's own files"):
        paths.source_path("key.csv", team(data_dir))


def test_a_metadata_database_outside_the_data_folder_is_protected(
    data_dir: Path, tmp_path: Path
) -> None:
    roots = tmp_path / "roots"
    (roots / "1").mkdir(parents=True)
    metadata = roots / "1" / "meta.db"
    metadata.write_bytes(b"")
    (roots / "1" / "meta.db-wal").write_bytes(b"")
    boundary = team(data_dir, file_roots=(roots.resolve(),), metadata_url=f"sqlite:///{metadata}")
    for name in ("meta.db", "meta.db-wal", "meta.db-shm"):
        with pytest.raises(PathRefused, match="server's own files"):
            paths.source_path(str(roots.resolve() / "1" / name), boundary)


def test_source_paths_read_the_files_folder_or_the_teams_root(
    data_dir: Path, tmp_path: Path
) -> None:
    roots = (tmp_path / "exports").resolve()
    boundary = team(data_dir, 3, file_roots=(roots,))
    assert paths.source_path("a/b.csv", boundary) == paths.files_dir(boundary) / "a" / "b.csv"
    assert paths.source_path(f"{roots}/3/b.csv", boundary) == roots / "3" / "b.csv"
    with pytest.raises(PathRefused, match=f"{roots}/3/"):
        paths.source_path(f"{roots}/4/b.csv", boundary)
    with pytest.raises(PathRefused, match="OPENDTS_FILE_ROOTS"):
        paths.source_path("/etc/shadow", team(data_dir, 3))
    with pytest.raises(PathRefused, match=r"'\.\.'"):
        paths.source_path(f"{roots}/3/../4/b.csv", boundary)


def test_a_root_that_contains_the_data_folder_does_not_open_it(tmp_path: Path) -> None:
    root = tmp_path.resolve()
    data_dir = root / "1" / "opendts-data"
    (data_dir / "teams" / "2").mkdir(parents=True)
    (data_dir / "opendts.db").write_bytes(b"")
    boundary = team(data_dir, 1, file_roots=(root,))
    for inside in ("opendts.db", "secret.key", "teams/2/w.duckdb"):
        with pytest.raises(PathRefused, match="data folder"):
            paths.source_path(f"{data_dir}/{inside}", boundary)
    own = paths.source_path(f"{data_dir}/teams/1/files/x.csv", boundary)
    assert own == data_dir / "teams" / "1" / "files" / "x.csv"


def test_open_source_file_reads_a_regular_file(data_dir: Path) -> None:
    boundary = team(data_dir)
    paths.ensure_team_dir(boundary)
    (paths.files_dir(boundary) / "day.csv").write_text("a\n1\n")
    with paths.open_source_file("day.csv", boundary) as handle:
        assert handle.read() == b"a\n1\n"
    with pytest.raises(FileNotFoundError):
        paths.open_source_file("absent.csv", boundary)
    with pytest.raises(FileNotFoundError):
        paths.open_source_file("day.csv/below.csv", boundary)
    (paths.files_dir(boundary) / "folder").mkdir()
    with pytest.raises(IsADirectoryError):
        paths.open_source_file("folder", boundary)


def test_open_source_file_refuses_a_fifo_instead_of_blocking(data_dir: Path) -> None:
    boundary = team(data_dir)
    paths.ensure_team_dir(boundary)
    os.mkfifo(paths.files_dir(boundary) / "pipe.csv")
    with pytest.raises(PathRefused, match="not a regular file"):
        paths.open_source_file("pipe.csv", boundary)


def test_a_symlink_swapped_in_after_the_check_is_not_followed(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    boundary = team(data_dir)
    paths.ensure_team_dir(boundary)
    folder = paths.files_dir(boundary) / "day"
    folder.mkdir()
    (folder / "x.csv").write_text("ok\n")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "x.csv").write_text("secret\n")
    checked = paths.source_path("day/x.csv", boundary)  # the check sees a plain folder ...
    folder.rename(tmp_path / "moved")
    folder.symlink_to(outside)  # ... then a link appears before the open
    monkeypatch.setattr(paths, "source_path", lambda value, boundary: checked)
    with pytest.raises(PathRefused, match="symbolic link"):
        paths.open_source_file("day/x.csv", boundary)


def test_team_folders_are_private(data_dir: Path) -> None:
    folder = paths.ensure_team_dir(team(data_dir, 5))
    for made in (folder.parent, folder, folder / "files"):
        assert stat.S_IMODE(made.stat().st_mode) == 0o700
    loose = folder / "w.duckdb"
    loose.write_bytes(b"")
    loose.chmod(0o644)
    paths.make_private(loose)
    assert stat.S_IMODE(loose.stat().st_mode) == 0o600
