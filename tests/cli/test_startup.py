"""The remote commands start without loading the database or web stack.

Every ``opendts`` invocation imports the whole command tree; the commands that only speak
HTTP (``backfill``, ``run``, ``transfer``, ``destination``, ``login``) must not pay for
SQLAlchemy, Alembic, FastAPI or the data plane (about 0.6 s of CPU per invocation).
"""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("sqlalchemy", "alembic", "fastapi", "uvicorn", "pyarrow", "duckdb", "psycopg")


def test_the_command_tree_loads_no_database_or_web_stack() -> None:
    code = (
        "import json, sys\n"
        "from opendts.cli.main import app\n"
        f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert json.loads(result.stdout) == []
