#!/usr/bin/env bash
# Install opendts with its test extras into ./.venv, then run every check:
# lint, format, types, and the whole test suite (SQLite and PostgreSQL).
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -k backfill -x`.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
echo "== ruff check" && .venv/bin/ruff check src tests bench
echo "== ruff format --check" && .venv/bin/ruff format --check src tests bench
echo "== mypy" && .venv/bin/mypy
echo "== pytest" && .venv/bin/python -m pytest "$@"
