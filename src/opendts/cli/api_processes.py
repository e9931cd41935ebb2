"""``opendts serve --workers N``: one port served by N API processes.

The process ``serve`` started in becomes the supervisor. It does the first start once
(migrations, demo account, banner), binds the port, runs the engine (unless ``--no-workers``)
and starts N API processes. They are spawned, not forked, so none inherits the supervisor's
threads or database connections, and none runs an engine: only as many engines run as
configured. Every API process accepts connections on the one listening socket; the kernel
hands each connection to one of them.

A process that dies is started again (a process that keeps dying at start stops ``serve``).
SIGTERM or SIGINT reaches the supervisor, which passes SIGTERM on: each API process drains its
requests and exits, then the engine finishes or releases its runs (see ``serve``). An API
process whose supervisor disappears (SIGKILL) stops too, rather than serving on alone.

New backfills wake the supervisor's engine through a datagram socket pair, the in-process
wake-up carried across processes (on PostgreSQL the ``NOTIFY`` of the create does it too).
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from typing import Any

import typer
import uvicorn

from opendts.cli.runtime import STOP_SIGNALS, fail, stop_signals_for_main_thread
from opendts.settings import Settings

log = logging.getLogger("opendts.serve")

#: A process that exits sooner than this after its start counts as failing to start.
QUICK_EXIT_SECONDS = 10.0
#: After this many quick exits in a row, ``serve`` gives up instead of restarting forever.
QUICK_EXITS_ALLOWED = 5
#: Pending connections the listening socket queues while every process is busy.
BACKLOG = 2048


def uvicorn_config(app: Any, settings: Settings, log_level: str) -> uvicorn.Config:
    """How every opendts API process runs uvicorn."""
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=log_level,
        access_log=False,
        server_header=False,
        # No logging config of uvicorn's own: its records go through the handler
        # ``logs.configure`` installed, so they are JSON lines too when logs are JSON.
        log_config=None,
    )


def listen(host: str, port: int) -> socket.socket:
    """The listening socket every API process accepts on, or a clean exit if it is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        fail(
            "ADDRESS_IN_USE",
            f"Cannot listen on {host}:{port} ({exc.strerror}). "
            "Stop the other process or pass --port (or set OPENDTS_PORT).",
            as_json=False,
        )
    sock.listen(BACKLOG)
    sock.set_inheritable(True)
    return sock


def api_process(
    settings: Settings, log_level: str, listener: socket.socket, wake: socket.socket | None
) -> None:
    """One API process: the app on the shared socket, until SIGTERM (runs in a spawned child)."""
    from opendts.api.app import create_app
    from opendts.kit import logs
    from opendts.kit.db import Database

    logs.configure(log_level)
    _stop_with_supervisor(settings.shutdown_grace_seconds + 5)
    db = Database(settings.resolved_database_url)
    app = create_app(
        settings,
        db,
        wake=_waker(wake, WAKE) if wake is not None else None,
        stop_runs=_waker(wake, STOP_RUNS) if wake is not None else None,
    )
    # uvicorn re-raises the signal that stopped it once requests drained: caught here, so
    # the process exits 0 (as single-process ``serve`` does).
    for signum in STOP_SIGNALS:
        signal.signal(signum, lambda _signum, _frame: None)
    try:
        uvicorn.Server(uvicorn_config(app, settings, log_level)).run(sockets=[listener])
    finally:
        db.dispose()


#: What an API process sends the supervisor's engine: new work, or a cancel "now" to apply.
WAKE = b"\0"
STOP_RUNS = b"s"


def _waker(channel: socket.socket, what: bytes) -> Callable[[], None]:
    channel.setblocking(False)

    def wake() -> None:
        # A full buffer means a wake-up is already pending; a gone engine needs none.
        with contextlib.suppress(OSError):
            channel.send(what)

    return wake


def _stop_with_supervisor(grace: float) -> None:
    """Stop this process when its supervisor exits, however it exits: SIGTERM (drain the
    requests), then, should that not end it within ``grace`` seconds, exit at once."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return
    sentinel = parent.sentinel

    def watch() -> None:
        wait([sentinel])
        # Repeated: a SIGTERM that arrives just before uvicorn takes over the signals would
        # be swallowed by the handler ``api_process`` installs for uvicorn's re-raise.
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="opendts-supervisor-watch", daemon=True).start()


class Supervisor:
    """Starts, restarts and stops the API processes of one ``serve``."""

    def __init__(
        self,
        settings: Settings,
        log_level: str,
        *,
        wake: Callable[[], None] | None,
        stop_runs: Callable[[], None] | None = None,
    ) -> None:
        self.settings = settings
        self.log_level = log_level
        self.count = settings.api_processes
        self._context = multiprocessing.get_context("spawn")
        self._listener = listen(settings.host, settings.port)
        self._wake = wake
        self._stop_runs = stop_runs
        self._wake_pair = (
            socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM) if wake is not None else None
        )
        self._processes: list[BaseProcess] = []
        self._started: dict[int, float] = {}
        self._stop_read, self._stop_write = os.pipe()
        self._signals: list[int] = []
        self._relaying = True

    def run(self) -> None:
        """Serve until SIGTERM/SIGINT, then stop every API process (engine: the caller's)."""
        for signum in STOP_SIGNALS:
            signal.signal(signum, self._on_signal)
        relay: threading.Thread | None = None
        try:
            if self._wake is not None:
                with stop_signals_for_main_thread():
                    relay = threading.Thread(
                        target=self._relay_wakes, name="opendts-wake-relay", daemon=True
                    )
                    relay.start()
            for index in range(self.count):
                self._processes.append(self._spawn(index))
            self._supervise()
        finally:
            self._stop_all()
            # From here a signal stops ``serve`` at once, while the engine finishes its runs
            # (runs it had not finished come back when their leases expire).
            for signum in STOP_SIGNALS:
                signal.signal(signum, signal.SIG_DFL)
            self._relaying = False
            if relay is not None:
                relay.join()
            self._listener.close()
            if self._wake_pair is not None:
                for end in self._wake_pair:
                    end.close()
            os.close(self._stop_read)
            os.close(self._stop_write)

    def _on_signal(self, signum: int, _frame: Any) -> None:
        self._signals.append(signum)
        os.write(self._stop_write, b"\0")
        if len(self._signals) > 1:
            # A second signal: stop at once (runs come back when their leases expire).
            for process in self._processes:
                if process.is_alive() and process.pid is not None:
                    os.kill(process.pid, signal.SIGKILL)

    def _spawn(self, index: int) -> BaseProcess:
        wake = self._wake_pair[1] if self._wake_pair is not None else None
        process = self._context.Process(
            target=api_process,
            args=(self.settings, self.log_level, self._listener, wake),
            name=f"opendts-api-{index + 1}",
            daemon=True,
        )
        process.start()
        self._started[index] = time.monotonic()
        return process

    def _supervise(self) -> None:
        quick_exits = 0
        while not self._signals:
            sentinels = {p.sentinel: i for i, p in enumerate(self._processes)}
            ready = wait([*sentinels, self._stop_read])
            for handle in ready:
                index = sentinels.get(handle) if isinstance(handle, int) else None
                if index is None or self._signals:
                    continue
                process = self._processes[index]
                process.join()
                lived = time.monotonic() - self._started[index]
                quick_exits = quick_exits + 1 if lived < QUICK_EXIT_SECONDS else 0
                if quick_exits >= QUICK_EXITS_ALLOWED:
                    fail(
                        "API_PROCESS_FAILED",
                        f"API processes keep exiting right after they start (the last with "
                        f"code {process.exitcode}); the reason is in the log above.",
                        as_json=False,
                    )
                log.warning(
                    "API process %s (pid %s) exited with code %s; starting it again",
                    process.name,
                    process.pid,
                    process.exitcode,
                )
                self._processes[index] = self._spawn(index)

    def _stop_all(self) -> None:
        # Each drains its requests; one that takes longer than the engine's grace is killed.
        # SIGTERM is repeated each second: one sent while a process is still starting could
        # fall between its handlers (see ``_stop_with_supervisor``).
        deadline = time.monotonic() + self.settings.shutdown_grace_seconds + 5
        while (running := [p for p in self._processes if p.is_alive()]) and (
            time.monotonic() < deadline
        ):
            for process in running:
                process.terminate()
            wait([p.sentinel for p in running], timeout=1.0)
        for process in self._processes:
            if process.is_alive():
                log.warning("API process %s did not stop in time; killing it", process.name)
                process.kill()
            process.join()

    def _relay_wakes(self) -> None:
        assert self._wake_pair is not None and self._wake is not None
        receiver = self._wake_pair[0]
        receiver.settimeout(0.5)
        while self._relaying:
            try:
                received = receiver.recv(64)
            except TimeoutError:
                continue
            if received == STOP_RUNS:
                if self._stop_runs is not None:
                    self._stop_runs()
            else:
                self._wake()


def serve_processes(
    settings: Settings,
    log_level: str,
    *,
    wake: Callable[[], None] | None,
    stop_runs: Callable[[], None] | None = None,
) -> None:
    """Serve ``settings.port`` from ``settings.api_processes`` processes until stopped."""
    from opendts.kit.secrets import box_for

    # The key file is made here once, not raced for by N processes at their first write.
    box_for(settings.data_dir, settings.secret_key)
    supervisor = Supervisor(settings, log_level, wake=wake, stop_runs=stop_runs)
    typer.echo(f"{supervisor.count} API processes on http://{settings.host}:{settings.port}")
    supervisor.run()
