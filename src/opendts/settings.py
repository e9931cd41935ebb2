"""One typed settings object for the whole process (environment prefix ``OPENDTS_``)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Runtime configuration; CLI flags override environment variables."""

    model_config = SettingsConfigDict(env_prefix="OPENDTS_", extra="ignore")

    data_dir: Path = Field(default=Path("opendts-data"), description="Folder for embedded state.")
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; defaults to SQLite in the data folder."
    )
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    rate_limit_per_hour: int = Field(default=5000, ge=1)
    rate_limit_storage_url: str = Field(
        default="memory://", description="limits storage URI, e.g. redis://127.0.0.1:6379/0."
    )
    max_backfill_days: int = Field(default=3660, ge=1)
    max_request_bytes: int = Field(default=64 * 1024, ge=1024)

    @field_validator("data_dir")
    @classmethod
    def _expand(cls, value: Path) -> Path:
        return value.expanduser()

    @property
    def resolved_database_url(self) -> str:
        """The metadata database URL, SQLite in the data folder unless configured."""
        if self.database_url:
            return normalize_database_url(self.database_url)
        return f"sqlite:///{(self.data_dir / 'opendts.db').resolve()}"


def normalize_database_url(url: str) -> str:
    """Map plain ``postgresql://`` URLs to the psycopg 3 driver we ship."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


@lru_cache
def get_settings() -> Settings:
    """Settings read once from the environment."""
    return Settings()
