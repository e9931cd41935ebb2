"""Run processes: data runs execute in child processes, outside the process serving the API.

A ``RunProcesses`` pool belongs to one engine. It starts children lazily (one per run executing
at once, reused for the next runs) with ``subprocess`` and a clean environment: a child never
sees the metadata database's URL or the secret key (of the ``OPENDTS_*`` variables it gets only
the ``CHILD_SETTINGS`` connectors read), only what a run of a data transfer needs, sent over a
socket with each job (the connectors, their revealed settings, the team's boundary, the date and
the attempt).

DuckDB warehouses are shared between run processes by the DuckDB destination's own lock (one
writing process per file, ``OPENDTS_DUCKDB_LOCK_WAIT_SECONDS``).

The parent thread that handed a job over watches it until it ends:

* the memory cap: the child's resident memory (``VmRSS``) above ``OPENDTS_RUN_MEMORY_MB``
  kills it, and the date fails terminally naming the cap (``RLIMIT_AS`` in the child is a
  backstop for allocations faster than the watch);
* ``cancelled`` (the run's ``RunContext.cancelled`` event: time limit, lost lease, shutdown,
  cancel "now"): the child is killed, SIGTERM then SIGKILL;
* a child that dies on its own (the kernel's OOM killer, a crash in a driver): a transient
  error, retried as any other.

A killed child is replaced by a new one at the next run. A destination writes one date in one
transaction, so a child killed mid-write leaves the date's previous rows.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import pickle
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from multiprocessing.connection import Connection
from typing import Any

from opendts.engine.errors import TerminalRunError, TransientRunError

log = logging.getLogger("opendts.engine.processes")

#: Seconds between SIGTERM and SIGKILL when a child is stopped.
KILL_AFTER = 2.0
#: Seconds between two looks at a child executing a run (memory, cancel, exit).
WATCH_SECONDS = 0.05
#: Environment variables a child keeps (everything else, ``OPENDTS_*`` first, is left out).
KEPT_ENVIRONMENT = (
    "PATH",
    "HOME",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TZ",
    "TMPDIR",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "REQUESTS_CA_BUNDLE",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
)


def memory_cap_message(cap_mb: int) -> str:
    """What a date that went over the memory cap says."""
    return (
        f"The run used more than {cap_mb} MB, the run memory cap (OPENDTS_RUN_MEMORY_MB), "
        "and was stopped. Load less per date (e.g. a narrower query), or ask the operator to "
        "raise the cap."
    )


def rss_mb(pid: int) -> float | None:
    """Resident memory of process ``pid`` in MB (``None`` once it is gone)."""
    try:
        with open(f"/proc/{pid}/status", "rb") as handle:
            for line in handle:
                if line.startswith(b"VmRSS:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


#: Operator settings connectors read in a run process (``get_settings()``), passed on with the
#: engine's values. Never the database URL, the secret key or a storage URL.
CHILD_SETTINGS = ("duckdb_lock_wait_seconds",)


def child_environment(settings: Any = None) -> dict[str, str]:
    """The environment of a run process: the few variables above, the ``CHILD_SETTINGS`` of
    ``settings``, and the parent's ``sys.path`` (so connectors installed or registered in the
    parent import alike)."""
    env = {name: os.environ[name] for name in KEPT_ENVIRONMENT if name in os.environ}
    for name in CHILD_SETTINGS:
        value = getattr(settings, name, None)
        if value is not None:
            env[f"OPENDTS_{name.upper()}"] = str(value)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    env["PYTHONUNBUFFERED"] = "1"
    return env


@dataclass(frozen=True, slots=True)
class Job:
    """One date of a data transfer, as a child receives it."""

    spec: Any  # opendts.connectors.load.LoadSpec
    boundary: Any  # opendts.connectors.boundary.Boundary, without the metadata URL's secret
    run_id: int
    team_id: int
    transfer_id: int
    data_date: date
    attempt: int
    max_attempts: int
    #: The metadata database's identity when it is PostgreSQL (the child cannot ask it).
    metadata_identity: Any = None


class _Child:
    """One run process and the parent's end of its socket."""

    def __init__(self, memory_mb: int, env: dict[str, str]) -> None:
        parent, child = socket.socketpair()
        try:
            self.popen = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "opendts.engine.processes",
                    str(child.fileno()),
                    str(memory_mb),
                ],
                pass_fds=(child.fileno(),),
                env=env,
                stdin=subprocess.DEVNULL,
                close_fds=True,
            )
        finally:
            child.close()
        self.conn = Connection(parent.detach())
        self.runs = 0

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def kill(self) -> None:
        """SIGTERM, then SIGKILL if the child is still there ``KILL_AFTER`` seconds later."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(KILL_AFTER)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    self.popen.kill()
                self.popen.wait()
        self.conn.close()

    def close(self) -> None:
        """Ask an idle child to exit (it ends at once between jobs)."""
        with contextlib.suppress(OSError):
            self.conn.send(None)
        try:
            self.popen.wait(KILL_AFTER)
        except subprocess.TimeoutExpired:
            self.kill()
        self.conn.close()

    def exit_text(self) -> str:
        code = self.popen.returncode
        if code is not None and code < 0:
            try:
                return f"was killed by signal {signal.Signals(-code).name}"
            except ValueError:
                return f"was killed by signal {-code}"
        return f"exited with code {code}"


class RunProcesses:
    """A lazily started pool of run processes, ``size`` of them kept between runs."""

    def __init__(self, size: int, memory_mb: int, settings: Any = None) -> None:
        self.size = size
        self.memory_mb = memory_mb
        self._env = child_environment(settings)
        self._idle: list[_Child] = []
        self._lock = threading.Lock()
        self._closed = False
        #: Children started and killed so far (tests, metrics).
        self.started = 0
        self.killed = 0

    def _acquire(self) -> _Child:
        with self._lock:
            if self._closed:
                raise TransientRunError("The worker is shutting down.")
            while self._idle:
                child = self._idle.pop()
                if child.alive():
                    return child
                child.conn.close()
            self.started += 1
        try:
            return _Child(self.memory_mb, self._env)
        except OSError as exc:  # out of processes or memory on the machine: try again later
            raise TransientRunError(
                f"Could not start a run process ({exc.strerror or exc}); the date is retried."
            ) from None

    def _release(self, child: _Child) -> None:
        # A child that grew past half the cap gives its memory back by exiting.
        size = rss_mb(child.pid)
        bloated = self.memory_mb and (size is None or size > self.memory_mb / 2)
        with self._lock:
            if not self._closed and not bloated and child.alive() and len(self._idle) < self.size:
                self._idle.append(child)
                return
        child.close()

    def close(self) -> None:
        """Stop every idle child (children executing a run are stopped by their run)."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for child in idle:
            child.close()

    def pids(self) -> list[int]:
        """Process ids of the idle children (tests)."""
        with self._lock:
            return [child.pid for child in self._idle]

    def run(
        self,
        job: Job,
        cancelled: threading.Event,
        on_log: Callable[[int, str, str], None] | None = None,
    ) -> Any:
        """Execute ``job`` in a child; its ``RunResult``, or the run's error raised here.

        Returns as soon as ``cancelled`` is set (the child killed), raising
        ``TransientRunError``: whoever set it writes the run's outcome.
        """
        child = self._acquire()
        healthy = False
        try:
            try:
                data = pickle.dumps(job, protocol=pickle.HIGHEST_PROTOCOL)
            except Exception as exc:  # a connector whose settings cannot leave the process
                healthy = True
                raise TerminalRunError(
                    f"The run could not be handed to a run process ({type(exc).__name__}: "
                    f"{exc}); the connector's settings must be picklable."
                ) from None
            try:
                child.conn.send_bytes(data)
            except OSError:
                raise TransientRunError(
                    "The run process could not be reached; the date is retried in a new one."
                ) from None
            while True:
                if cancelled.is_set():
                    self._kill(child)
                    raise TransientRunError("The run was stopped.")
                if self.memory_mb:
                    used = rss_mb(child.pid)
                    if used is not None and used > self.memory_mb:
                        self._kill(child)
                        raise TerminalRunError(memory_cap_message(self.memory_mb))
                gone = False
                try:
                    ready = child.conn.poll(WATCH_SECONDS)
                    message = child.conn.recv() if ready else None
                except (EOFError, OSError):
                    message, gone = None, True
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        child.popen.wait(KILL_AFTER)
                if message is None:
                    if gone or not child.alive():
                        self.killed += 1
                        raise TransientRunError(
                            f"The process running this date {child.exit_text()} "
                            "(e.g. out of memory on the machine, or a crash in a driver)."
                        )
                    continue
                tag = message[0]
                if tag == "log":
                    if on_log is not None:
                        on_log(message[1], message[2], message[3])
                    continue
                healthy = True
                child.runs += 1
                if tag == "done":
                    return message[1]
                return _raise(message, self.memory_mb)
        finally:
            if healthy:
                self._release(child)
            else:
                child.kill()

    def _kill(self, child: _Child) -> None:
        self.killed += 1
        child.kill()


def _raise(message: tuple[Any, ...], memory_mb: int) -> Any:
    _, transient, text, retry_after, out_of_memory = message
    if out_of_memory and memory_mb:
        raise TerminalRunError(memory_cap_message(memory_mb))
    if transient:
        raise TransientRunError(text, retry_after=retry_after)
    raise TerminalRunError(text)


# -- the child --------------------------------------------------------------------------


class _Forward(logging.Handler):
    """Log records of the child go to the parent, which logs them with the run's ids."""

    def __init__(self, send: Callable[[Any], None]) -> None:
        super().__init__(logging.INFO)
        self.send = send

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(Exception):  # the parent went away
            self.send(("log", record.levelno, record.name, record.getMessage()))


def _limit_memory(memory_mb: int) -> None:
    """``RLIMIT_AS``: the address space the child has now (libraries loaded), plus the cap
    twice over (virtual memory runs ahead of resident memory). The parent's watch of resident
    memory is the rule; this only stops an allocation too fast for it."""
    import resource

    with open("/proc/self/status", "rb") as handle:
        size_kb = next(int(line.split()[1]) for line in handle if line.startswith(b"VmSize:"))
    limit = size_kb * 1024 + 2 * memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def _child_main(fd: int, memory_mb: int) -> None:
    from opendts.connectors import postgres_target
    from opendts.connectors.load import load_day
    from opendts.engine.errors import classify
    from opendts.engine.kinds import RunContext

    conn = Connection(fd)
    sending = threading.Lock()
    parent = os.getppid()

    def orphaned() -> None:  # the engine died (SIGKILL): stop now, do not finish a write
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                os._exit(70)

    threading.Thread(target=orphaned, name="opendts-run-parent", daemon=True).start()

    def send(message: Any) -> None:  # from any thread of the child (e.g. a driver's)
        with sending:
            conn.send(message)

    root = logging.getLogger()
    root.handlers[:] = [_Forward(send)]
    root.setLevel(logging.WARNING)
    logging.getLogger("opendts").setLevel(logging.INFO)
    if memory_mb:
        _limit_memory(memory_mb)
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return  # the parent went away
        if job is None:
            return
        if job.metadata_identity is not None and job.boundary.metadata_url:
            postgres_target._identities[job.boundary.metadata_url] = job.metadata_identity
        ctx = RunContext(
            job.run_id,
            job.team_id,
            job.transfer_id,
            job.data_date,
            job.attempt,
            job.max_attempts,
        )
        try:
            result = load_day(job.spec, ctx, job.boundary)
            reply: tuple[Any, ...] = ("done", result)
        except BaseException as exc:
            verdict = classify(exc)
            reply = (
                "error",
                verdict.transient,
                verdict.message,
                verdict.retry_after,
                isinstance(exc, MemoryError),
            )
            del exc
        try:
            send(reply)
        except (EOFError, OSError):
            return


def without_secret(boundary: Any) -> Any:
    """``boundary`` whose metadata URL keeps where the database is (host, port, name: what
    the checks need) but not its password."""
    url = boundary.metadata_url
    if not url:
        return boundary
    from sqlalchemy.engine import URL, make_url

    try:
        parsed = make_url(url)
    except Exception:
        return dataclasses.replace(boundary, metadata_url=None)
    if parsed.password is None:
        return boundary
    stripped = URL.create(
        parsed.drivername,
        username=parsed.username,
        host=parsed.host,
        port=parsed.port,
        database=parsed.database,
        query={k: v for k, v in parsed.query.items() if "password" not in k.lower()},
    ).render_as_string(hide_password=False)
    return dataclasses.replace(boundary, metadata_url=stripped)


if __name__ == "__main__":  # pragma: no cover - runs in the child
    _child_main(int(sys.argv[1]), int(sys.argv[2]))
