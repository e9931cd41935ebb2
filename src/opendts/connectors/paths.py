"""Where embedded connectors keep their files: relative paths live in the data folder."""

from __future__ import annotations

from pathlib import Path

_data_dir = Path("opendts-data")


def set_data_dir(path: Path) -> None:
    """Called once at start (``serve``, ``worker``, tests) with ``Settings.data_dir``."""
    global _data_dir
    _data_dir = path


def data_dir() -> Path:
    """The data folder (``OPENDTS_DATA_DIR``, ``./opendts-data`` by default)."""
    return _data_dir


def resolve(path: str | Path) -> Path:
    """``path`` as given if absolute, else inside the data folder."""
    candidate = Path(path).expanduser()
    return candidate if candidate.is_absolute() else (_data_dir / candidate).resolve()
