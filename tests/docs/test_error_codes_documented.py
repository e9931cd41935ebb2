"""Every error code the server can send is explained in docs/api.md."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def codes_in_source() -> set[str]:
    codes: set[str] = set()
    for path in (ROOT / "src" / "opendts").rglob("*.py"):
        text = path.read_text()
        codes.update(re.findall(r'\bcode(?:\s*=|:\s*str\s*=)\s*"([A-Z][A-Z0-9_]+)"', text))
    return codes


def test_every_error_code_is_documented() -> None:
    documented = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", (ROOT / "docs" / "api.md").read_text()))
    found = codes_in_source()
    assert "BACKFILL_OVERLAP" in found and "INVALID_PARAMETER" in found
    # Codes only the admin CLI prints are not API responses.
    cli_only = {"TEAM_NOT_FOUND", "USER_NOT_FOUND", "USER_EXISTS", "API_KEY_NOT_FOUND"}
    assert sorted(found - documented - cli_only) == []
