"""A loopback TCP proxy that cuts the connection after a set number of bytes toward the client.

It stands between an HTTP client and a kaiwa server to play a network that fails mid-stream::

    with CuttingProxy(server.port, cut_after=2_000) as proxy:
        client.get(f"http://127.0.0.1:{proxy.port}/...")   # raises once the cut happens
    assert proxy.cut.is_set()

The bytes counted are the raw ones (status line, headers and chunked framing included), so the
cut falls wherever it falls: usually in the middle of a frame, as a real network failure would.
After the cut both sockets are closed, so the server sees its client go away too.

Deliberate oddities: plain threads, not asyncio, because the tests around it are synchronous
and the server under test is another process. The limit counts the bytes of every connection it
accepts together: meant for one request at a time.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable

HOST = "127.0.0.1"
_READ = 65536


class CuttingProxy:
    def __init__(
        self, target_port: int, *, cut_after: int, timeout: float = 30.0, port: int = 0
    ) -> None:
        """`port`: where to listen (0: a free port), e.g. the port of a proxy closed before."""
        self._target_port = target_port
        self._port = port
        self._limit = cut_after
        self._timeout = timeout
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self.forwarded = bytearray()
        """Every byte passed to the client, up to the cut."""
        self.cut = threading.Event()
        """Set once the limit was reached and the connection closed."""

    @property
    def port(self) -> int:
        return int(self._listener.getsockname()[1])

    def __enter__(self) -> CuttingProxy:
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((HOST, self._port))
        self._listener.listen()
        self._spawn(self._accept)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        # Closing alone would leave the accepting thread blocked (Linux); shutting down wakes it.
        _close(self._listener)
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            _close(sock)
        for thread in self._threads:
            thread.join(timeout=5.0)

    def _spawn(self, target: Callable[..., None], *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # the listener was closed
            try:
                upstream = socket.create_connection(
                    (HOST, self._target_port), timeout=self._timeout
                )
            except OSError:
                _close(client)  # the server is down: the client sees its connection dropped
                continue
            client.settimeout(self._timeout)
            with self._lock:
                self._sockets += [client, upstream]
            self._spawn(self._to_server, client, upstream)
            self._spawn(self._to_client, upstream, client)

    def _to_server(self, client: socket.socket, upstream: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while piece := client.recv(_READ):
                upstream.sendall(piece)
        _close(upstream)

    def _to_client(self, upstream: socket.socket, client: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while piece := upstream.recv(_READ):
                room = self._limit - len(self.forwarded)
                piece = piece[:room]
                client.sendall(piece)
                self.forwarded += piece
                if len(self.forwarded) >= self._limit:
                    self.cut.set()
                    break
        _close(client)
        _close(upstream)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()
