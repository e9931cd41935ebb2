#!/usr/bin/env bash
# Install opendts with its test extras into ./.venv, then run every check:
# lint, format, types, and the whole test suite (SQLite and PostgreSQL).
# The browser tests (tests/web) need Debian's chromium: installed here through apt when this
# runs as root (as CI does); otherwise they are skipped, and this says why (under CI=true they
# fail instead). Extra arguments go to pytest, e.g. `bash scripts/test.sh -k backfill -x`.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}

# Debian's chromium at /usr/bin/chromium (or OPENDTS_CHROMIUM), which tests/web/conftest.py
# launches through Playwright (the Python package comes from the test extras; Playwright's own
# browser download is never used).
ensure_chromium() {
    local chromium=${OPENDTS_CHROMIUM:-/usr/bin/chromium} log
    if [ -x "$chromium" ]; then
        echo "== browser tests: Chromium at $chromium"
        return 0
    fi
    local why=""
    if [ -n "${OPENDTS_CHROMIUM:-}" ]; then
        why="OPENDTS_CHROMIUM=$OPENDTS_CHROMIUM is not an executable"
    elif [ "$(id -u)" != 0 ]; then
        why="not root, so apt-get cannot install it (run: sudo apt-get install chromium)"
    elif ! command -v apt-get >/dev/null; then
        why="no apt-get on this machine (install Chromium and set OPENDTS_CHROMIUM)"
    fi
    if [ -z "$why" ]; then
        echo "== browser tests: installing Debian's chromium (apt-get install chromium)"
        log=$(mktemp)
        local apt=(apt-get -q -y -o DPkg::Lock::Timeout=300 -o APT::Install-Recommends=false)
        # The package lists are refreshed only when they do not know chromium, or when the
        # install fails with them as they are (an old list names files the mirror dropped).
        if ! apt-cache show chromium >/dev/null 2>&1; then
            "${apt[@]}" update >"$log" 2>&1 || true
        fi
        if ! DEBIAN_FRONTEND=noninteractive "${apt[@]}" install chromium >>"$log" 2>&1; then
            "${apt[@]}" update >>"$log" 2>&1 || true
            DEBIAN_FRONTEND=noninteractive "${apt[@]}" install chromium >>"$log" 2>&1 || true
        fi
        if [ -x "$chromium" ]; then
            echo "== browser tests: installed $("$chromium" --version 2>/dev/null || echo chromium)"
            rm -f "$log"
            return 0
        fi
        why="apt-get install chromium failed (offline?); its last lines:"$'\n'"$(tail -n 5 "$log")"
        rm -f "$log"
    fi
    if [[ "${CI:-}" =~ ^(1|true|yes|TRUE|True)$ ]]; then
        echo "== browser tests: WILL FAIL (CI=true: they must run): no Chromium at $chromium: $why"
    else
        echo "== browser tests: SKIPPED: no Chromium at $chromium: $why"
    fi
}

if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
ensure_chromium
echo "== ruff check" && .venv/bin/ruff check src tests bench
echo "== ruff format --check" && .venv/bin/ruff format --check src tests bench
echo "== mypy" && .venv/bin/mypy
echo "== pytest" && .venv/bin/python -m pytest "$@"
