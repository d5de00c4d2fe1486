"""Running the app under uvicorn, with kaiwa's graceful shutdown; one process or several.

On SIGTERM or SIGINT uvicorn stops accepting connections and waits for open ones to finish
before the app's lifespan ends, so an open stream would otherwise only end when its answer does.
The server below tells the app as soon as the signal arrives: running responses get
`shutdown_grace` seconds, then are cancelled, and every stream ends with `[DONE]`. Behind a load
balancer (with Redis), the signal first starts `shutdown_delay` seconds during which only
`/readyz` changes (503): the balancer's checks take the replica out of rotation before its port
closes, so no request is dropped on its way in.

`serve(settings)` is a coroutine, so that `kaiwa serve` holds its database and bootstraps in
the same event loop first (`run` picks the loop uvicorn would: uvloop when installed).
`serve_workers(settings)` binds the port once and runs `settings.workers` processes that each
serve it, like uvicorn's `--workers`, but each worker runs the server below::

    kaiwa serve --workers 4          # parent: binds, spawns, forwards signals, waits
      └─ 4 × serve(settings, [socket])

Deliberate oddities: uvicorn raises the stopping signal again once it has shut down, for the
programs that embed it; kaiwa's server does not, so that `kaiwa serve` can let go of its
database and exit 0. The supervisor does not restart a worker that ends on its own: it stops the
others and exits 1, for the process manager (systemd, Docker, Kubernetes) to restart the whole.
A worker whose parent dies, even by SIGKILL, stops as if it had been sent SIGTERM.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal
import socket
import threading
from collections.abc import Callable, Coroutine, Iterator, Sequence
from contextlib import contextmanager, suppress
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from types import FrameType
from typing import Any, TypeVar

import uvicorn
from fastapi import FastAPI

from kaiwa.config import Settings
from kaiwa.server import logs
from kaiwa.server.app import create_app
from kaiwa.server.metrics_workers import share_metrics

T = TypeVar("T")
logger = logging.getLogger("uvicorn.error")
_STOPPING_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_APP = "kaiwa.server.app:create_app"
"""What each worker serves (the parent only binds the port for them)."""


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, app: FastAPI, *, delay: float = 0.0) -> None:
        super().__init__(config)
        self._app = app
        self._delay = delay
        self._leaving: threading.Timer | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """The first signal starts the delay (`/readyz` fails, all else goes on); its end, or
        a second signal, closes the port and drains."""
        if self._delay > 0 and self._leaving is None and not self.should_exit:
            self._app.state.leaving = True
            self._leaving = threading.Timer(self._delay, self._exit, (sig,))
            self._leaving.daemon = True
            self._leaving.start()
            return
        if self._leaving is not None:
            self._leaving.cancel()
        self._exit(sig)

    def _exit(self, sig: int) -> None:
        begin_shutdown = getattr(self._app.state, "begin_shutdown", None)
        if begin_shutdown is not None and not self.should_exit:
            begin_shutdown()
        super().handle_exit(sig, None)

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        # uvicorn's, without raising the signal again at the end (see the module's docstring).
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in _STOPPING_SIGNALS}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def run(main: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run(main)` on the event loop uvicorn would choose: uvloop when installed."""
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        return runner.run(main)


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


async def serve(settings: Settings, sockets: Sequence[socket.socket] | None = None) -> None:
    """Serve until SIGTERM or SIGINT, on `settings.host:port` or on `sockets` already bound.

    A server that cannot start (its port is taken, its lifespan fails) exits the process with
    status 3, as uvicorn does.
    """
    app = create_app(settings)
    server = _Server(_config(settings, app), app, delay=settings.resolved_shutdown_delay)
    await server.serve(list(sockets) if sockets else None)


def _config(settings: Settings, app: FastAPI | str) -> uvicorn.Config:
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,  # set by `logs.configure`: uvicorn only sets its loggers' levels
        log_level=settings.log_level,
        # Past the grace period the producers are cancelled and end their streams at once;
        # the few seconds more are for the last frames to reach the clients.
        timeout_graceful_shutdown=int(settings.shutdown_grace) + 5,
    )
    logs.configure(settings)  # text or JSON lines, the access log's secrets redacted
    return config


async def serve_workers(settings: Settings) -> int:
    """Run `settings.workers` servers on one port until SIGTERM or SIGINT; 0 once all stopped.

    The first signal stops the workers gracefully (SIGTERM), a second one cuts their grace
    short (SIGINT). When a worker ends on its own, the others are stopped and the result is 1.
    """
    listener = _config(settings, _APP).bind_socket()  # exits with status 3 when the port is taken
    context = multiprocessing.get_context("spawn")
    # The workers only ever read from this pipe: it ends (EOF) when the parent is gone.
    lifeline, held = context.Pipe(duplex=False)
    workers = [
        context.Process(
            target=_worker, args=(settings, listener, lifeline), name=f"kaiwa-worker-{index}"
        )
        for index in range(settings.workers)
    ]
    loop = asyncio.get_running_loop()
    received: list[int] = []
    stopping = asyncio.Event()

    def stop(sig: int) -> None:
        received.append(sig)
        stopping.set()
        _signal(workers, signal.SIGTERM if len(received) == 1 else signal.SIGINT)

    for sig in _STOPPING_SIGNALS:
        loop.add_signal_handler(sig, stop, sig)
    # Before the workers start: they read the metrics' directory from the environment.
    forget_metrics = share_metrics(settings)
    try:
        for worker in workers:
            worker.start()
        lifeline.close()
        ended = asyncio.create_task(asyncio.to_thread(_first_exit, workers))
        stopped = asyncio.create_task(stopping.wait())
        await asyncio.wait({ended, stopped}, return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
        if not received:
            gone = ", ".join(f"[{w.pid}] with status {w.exitcode}" for w in await ended)
            logger.error("A worker exited on its own (%s); stopping the others", gone)
            _signal(workers, signal.SIGTERM)
        await asyncio.to_thread(_join, workers)
        await ended
    finally:
        for sig in _STOPPING_SIGNALS:
            loop.remove_signal_handler(sig)
        held.close()
        listener.close()
        forget_metrics()
    # A worker still starting when the signal came has no handler yet: SIGTERM ends it as well.
    stopped_well = all(w.exitcode in (0, -signal.SIGTERM) for w in workers)
    return 0 if received and stopped_well else 1


def _signal(workers: Sequence[BaseProcess], sig: int) -> None:
    for worker in workers:
        if worker.pid is not None and worker.exitcode is None:
            with suppress(ProcessLookupError):
                os.kill(worker.pid, sig)


def _first_exit(workers: Sequence[BaseProcess]) -> list[BaseProcess]:
    """The workers that have exited, once one has (waiting for it to be reaped)."""
    ready = wait([worker.sentinel for worker in workers])
    exited = [worker for worker in workers if worker.sentinel in ready]
    _join(exited)
    return exited


def _join(workers: Sequence[BaseProcess]) -> None:
    for worker in workers:
        worker.join()


def _worker(settings: Settings, listener: socket.socket, lifeline: Connection) -> None:
    """One worker process: a server on the parent's socket (run by `multiprocessing`)."""
    logs.configure(settings)  # a spawned process starts with none
    app = create_app(settings)
    server = _Server(_config(settings, app), app, delay=settings.resolved_shutdown_delay)

    def stop_when_orphaned() -> None:
        with suppress(EOFError, OSError):
            lifeline.recv()  # nothing is ever sent: this returns when the parent is gone
        server.handle_exit(signal.SIGTERM, None)

    threading.Thread(target=stop_when_orphaned, name="kaiwa-lifeline", daemon=True).start()
    # Ctrl+C reaches the whole process group: before the server handles it, end quietly.
    with suppress(KeyboardInterrupt):
        run(server.serve([listener]))
