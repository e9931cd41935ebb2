"""docs/cli.md names every HTTP command the ``opendts`` command has."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from opendts.cli.main import app

DOC = Path(__file__).resolve().parents[2] / "docs" / "cli.md"
#: Groups that work on the database directly, documented in the README and operations.md.
LOCAL = {"admin", "serve", "worker", "migrate"}


def test_every_http_command_is_in_docs_cli_md() -> None:
    root: Any = typer.main.get_command(app)
    assert "backfill" in root.commands
    text = DOC.read_text(encoding="utf-8")
    missing = []
    for name, group in root.commands.items():
        if name in LOCAL:
            continue
        subcommands = getattr(group, "commands", None) or {"": group}
        for sub in subcommands:
            # "opendts transfer create" or, in a row listing several, "… / create".
            full = f"opendts {name} {sub}".strip()
            if full not in text and f"/ `{sub}" not in text and f"/ {sub}" not in text:
                missing.append(full)
    assert not missing, f"not in docs/cli.md: {missing}"
