"""Short, safe excerpts of what a server, a parser or a database said, for run messages.

A run message is shown to everyone in the team (viewers too) and kept with the run, so it says
what went wrong without echoing data: one line, credentials masked, at most ``LIMIT``
characters. For parsers and databases, quoted values that are not plain names are hidden too
(the offending row or value is data; a table or column name helps and is kept).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

LIMIT = 200
HIDDEN = "…"

_QUOTED = re.compile(r"\"([^\"]*)\"|'([^']*)'")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_$.\-]{0,62}")


def _name_or_hidden(match: re.Match[str]) -> str:
    quote = match.group(0)[0]
    inner = match.group(1) if quote == '"' else match.group(2)
    return match.group(0) if _NAME.fullmatch(inner) else f"{quote}{HIDDEN}{quote}"


def mask(text: str, secrets: Iterable[str]) -> str:
    """``text`` with each of ``secrets`` (longest first, three characters or more) as ``***``."""
    for secret in sorted({s for s in secrets if len(s) >= 3}, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def excerpt(
    text: str,
    *,
    secrets: Iterable[str] = (),
    hide_values: bool = True,
    limit: int = LIMIT,
) -> str:
    """The first non-blank line of ``text``, masked, values hidden, whitespace collapsed, capped."""
    line = next((part for part in text.splitlines() if part.strip()), "")
    line = " ".join(mask(line, secrets).split())
    if hide_values:
        line = _QUOTED.sub(_name_or_hidden, line)
    return line if len(line) <= limit else line[: limit - 1] + HIDDEN
