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
    api_processes: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Processes serving the API on the one port (`serve --workers N`).",
    )
    rate_limit_per_hour: int = Field(default=5000, ge=1)
    rate_limit_storage_url: str = Field(
        default="",
        description="Where per-key budgets are counted: empty for a file in the data folder "
        "(shared by this machine's processes), redis://host:6379/0 to share them between "
        "machines, memory:// for one process.",
    )
    max_backfill_days: int = Field(default=3660, ge=1)
    max_queued_runs_per_team: int = Field(
        default=100_000,
        ge=1,
        description="Runs of one team that may wait or execute at once; a backfill that would "
        "pass it is refused (422 QUEUED_RUNS_QUOTA).",
    )
    max_request_bytes: int = Field(default=64 * 1024, ge=1024)

    # The front of the server (docs/security.md, "Hardening").
    ui_session_idle_minutes: int = Field(
        default=60, ge=1, le=7 * 24 * 60, description="A dashboard session unused this long ends."
    )
    ui_session_max_hours: int = Field(
        default=12,
        ge=1,
        le=30 * 24,
        description="A dashboard session ends this long after sign-in.",
    )
    failed_auth_per_minute: int = Field(
        default=30,
        ge=1,
        description="Failed authentications (unknown or revoked keys, ended sessions) one client "
        "address may make a minute; past it, 429.",
    )
    sign_ins_per_minute: int = Field(
        default=10, ge=1, description="Dashboard sign-ins one client address may try a minute."
    )
    max_event_streams_per_key: int = Field(
        default=5, ge=1, description="Live-event streams one API key may hold open at once."
    )

    secret_key: str | None = Field(
        default=None,
        description="Key that encrypts stored credentials (Fernet); generated into the data "
        "folder if unset. Every process of one installation must use the same key.",
    )

    # The tenant boundary (docs/security.md): what teams' connectors may reach. Deny by default.
    allowed_networks: str = Field(
        default="",
        description="Comma-separated CIDRs and host names that connections may reach besides "
        "public addresses, e.g. 127.0.0.1/32,db.internal.",
    )
    file_roots: str = Field(
        default="",
        description="Comma-separated folders whose <root>/<team_id>/ the file source may read, "
        "besides the team's own files/ folder.",
    )
    sql_dialects: str = Field(
        default="postgresql,mysql,mariadb,sqlite",
        description="Comma-separated SQLAlchemy backends the sql source may use.",
    )

    @field_validator("allowed_networks")
    @classmethod
    def _allowed_networks(cls, value: str) -> str:
        # A typo must stop the server, not silently allow less (or more) than meant.
        from opendts.connectors.network import NetworkPolicy

        NetworkPolicy.parse(_entries(value))
        return value

    @field_validator("sql_dialects")
    @classmethod
    def _sql_dialects(cls, value: str) -> str:
        for entry in _entries(value):
            if not entry.replace("_", "").isalnum() or not entry.isascii():
                raise ValueError(
                    f"OPENDTS_SQL_DIALECTS entry {entry!r} is not a SQLAlchemy backend name; "
                    "write e.g. postgresql,mysql,mariadb,sqlite"
                )
        return value

    duckdb_lock_wait_seconds: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description="How long a run waits for other processes writing the same DuckDB "
        "warehouse file before it is retried (the warehouse is busy).",
    )

    # The engine (see opendts.engine).
    workers: bool = Field(default=True, description="Run the engine inside `opendts serve`.")
    worker_concurrency: int = Field(
        default=8, ge=1, le=1024, description="Runs one process executes at once."
    )
    worker_spare_slots: int = Field(
        default=1,
        ge=0,
        le=64,
        description="Slots each engine process keeps, beyond worker_concurrency, for teams with "
        "no run executing: one run each, so another team's slow runs never make a newcomer "
        "wait for them to finish. 0 turns the reserve off.",
    )
    max_running_runs: int = Field(
        default=256, ge=1, description="Runs executing at once across every worker (global cap)."
    )
    max_running_runs_per_team: int = Field(
        default=32, ge=1, description="Runs of one team executing at once (fairness cap)."
    )
    lease_seconds: float = Field(
        default=30.0, gt=0, description="How long a claimed run stays owned without a heartbeat."
    )
    poll_seconds: float = Field(
        default=1.0, gt=0, description="Longest sleep between looks at the queue."
    )
    run_max_attempts: int = Field(default=3, ge=1, le=100)
    retry_base_seconds: float = Field(
        default=10.0, ge=0, description="First retry delay; doubles per attempt, with jitter."
    )
    retry_max_seconds: float = Field(default=600.0, ge=0)
    run_timeout_seconds: float = Field(
        default=6 * 3600.0,
        gt=0,
        description="The run time limit: a run still executing after this is stopped (its "
        "process killed) and the attempt fails (retried while attempts remain).",
    )
    run_processes: bool = Field(
        default=True,
        description="Execute data runs in child processes (the memory cap and the time limit "
        "stop them there). false: in the engine's own threads, as before: no memory cap, "
        "and a run past the time limit is failed but not stopped (debugging only).",
    )
    run_memory_mb: int = Field(
        default=2048,
        ge=0,
        description="The run memory cap: a data run whose process holds more resident memory "
        "than this is stopped and its date fails (not retried). 0: no cap.",
    )
    shutdown_grace_seconds: float = Field(
        default=30.0, ge=0, description="On SIGTERM, how long in-flight runs may finish."
    )
    plan_batch_size: int = Field(
        default=1000, ge=1, le=100_000, description="Runs created per planner transaction."
    )

    @field_validator("data_dir")
    @classmethod
    def _expand(cls, value: Path) -> Path:
        return value.expanduser()

    @property
    def allowed_network_list(self) -> list[str]:
        """``allowed_networks`` as entries."""
        return _entries(self.allowed_networks)

    @property
    def file_root_list(self) -> list[str]:
        """``file_roots`` as entries."""
        return _entries(self.file_roots)

    @property
    def sql_dialect_list(self) -> list[str]:
        """``sql_dialects`` as entries, lower case."""
        return [entry.lower() for entry in _entries(self.sql_dialects)]

    @property
    def heartbeat_seconds(self) -> float:
        """Leases are renewed three times per lease period."""
        return self.lease_seconds / 3

    @property
    def resolved_rate_limit_storage_url(self) -> str:
        """The rate-limit storage URI, a SQLite file in the data folder unless configured."""
        if self.rate_limit_storage_url:
            return self.rate_limit_storage_url
        return f"sqlite:///{(self.data_dir / 'ratelimits.db').resolve()}"

    @property
    def resolved_database_url(self) -> str:
        """The metadata database URL, SQLite in the data folder unless configured."""
        if self.database_url:
            return normalize_database_url(self.database_url)
        return f"sqlite:///{(self.data_dir / 'opendts.db').resolve()}"


def _entries(value: str) -> list[str]:
    return [entry.strip() for entry in value.split(",") if entry.strip()]


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
