"""Every operator setting is documented: the ones at the tenant boundary in docs/security.md's
table, with their default, and the rest in docs/engine.md or docs/operations.md."""

from __future__ import annotations

import re
from pathlib import Path

from opendts.settings import Settings

ROOT = Path(__file__).resolve().parents[2]

#: Settings that bound nothing a team controls (ports, timings of the engine's own protocol).
#: A new setting belongs either here or in docs/security.md's table; choosing is the point.
NOT_AT_THE_BOUNDARY = {
    "port",
    "api_processes",
    "lease_seconds",
    "poll_seconds",
    "run_max_attempts",
    "retry_base_seconds",
    "retry_max_seconds",
    "shutdown_grace_seconds",
    "plan_batch_size",
}


def env_name(field: str) -> str:
    return f"OPENDTS_{field.upper()}"


def boundary_table() -> dict[str, str]:
    """The rows of docs/security.md's "Operator settings at the boundary": name → default."""
    text = (ROOT / "docs" / "security.md").read_text()
    section = text.split("## Operator settings at the boundary", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `(OPENDTS_[A-Z_]+)` \| ([^|]+) \|", section, re.MULTILINE)
    return {name: default.strip() for name, default in rows}


def test_every_setting_at_the_boundary_is_in_the_security_table_with_a_default() -> None:
    table = boundary_table()
    assert "OPENDTS_ALLOWED_NETWORKS" in table and "OPENDTS_RUN_MEMORY_MB" in table
    fields = set(Settings.model_fields)
    assert fields >= NOT_AT_THE_BOUNDARY, "a setting listed as not at the boundary is gone"
    missing = sorted(env_name(f) for f in fields - NOT_AT_THE_BOUNDARY if env_name(f) not in table)
    assert missing == [], f"add these settings to docs/security.md's settings table: {missing}"
    assert all(default for default in table.values())


def test_the_security_table_names_only_real_settings() -> None:
    known = {env_name(f) for f in Settings.model_fields}
    stale = sorted(set(boundary_table()) - known)
    assert stale == [], f"docs/security.md lists settings that do not exist: {stale}"


def test_the_other_settings_are_documented_elsewhere() -> None:
    docs = (
        "".join((ROOT / "docs" / name).read_text() for name in ("engine.md", "operations.md"))
        + (ROOT / "README.md").read_text()
    )
    undocumented = sorted(env_name(f) for f in NOT_AT_THE_BOUNDARY if env_name(f) not in docs)
    assert undocumented == [], f"document these settings: {undocumented}"
