"""The lock file that queues SQLite writers of every process on the machine."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

from opendts.kit.filelock import MachineLock

HOLD = """
import sys, time
from pathlib import Path
from opendts.kit.filelock import MachineLock
with MachineLock(Path(sys.argv[1])):
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def test_another_process_waits_until_the_holder_releases(tmp_path: Path) -> None:
    path = tmp_path / "folder" / "db.writelock"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(path), "1.0"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        started = time.monotonic()
        with MachineLock(path):
            waited = time.monotonic() - started
            assert holder.poll() is not None or waited >= 0.5
        assert waited >= 0.5
    finally:
        holder.wait(timeout=30)


def test_reentrant_in_a_thread_exclusive_between_threads(tmp_path: Path) -> None:
    lock = MachineLock(tmp_path / "db.writelock")
    inside: list[str] = []

    def take() -> None:
        with lock:
            inside.append("other")

    with lock, lock:  # the same thread may take it again
        other = threading.Thread(target=take)
        other.start()
        other.join(timeout=0.3)
        assert other.is_alive() and inside == []  # still waiting: the outer hold counts
    other.join(timeout=5)
    assert inside == ["other"]
