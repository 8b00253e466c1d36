"""A TCP proxy on loopback whose connections a test can cut, as a network break would."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator


class Proxy:
    """Forwards ``127.0.0.1:port`` to ``target``; ``cut()`` closes every open connection
    (the listening socket stays, so clients can connect again)."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.open: set[socket.socket] = set()
        self.lock = threading.Lock()
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()  # the server is gone: the caller sees its connection end
                continue
            with self.lock:
                late = self.closed  # closed while this one was being accepted
                if not late:
                    self.open |= {client, upstream}
            if late:
                client.close()
                upstream.close()
                return
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        """Break every connection now open."""
        with self.lock:
            sockets, self.open = self.open, set()
        for s in sockets:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def close(self) -> None:
        with self.lock:
            self.closed = True
        self.listener.close()
        self.cut()


@contextlib.contextmanager
def proxy(url: str) -> Iterator[Proxy]:
    """A proxy to the server at ``url`` (``http://127.0.0.1:PORT``)."""
    host, port = url.removeprefix("http://").split(":")
    running = Proxy((host, int(port)))
    try:
        yield running
    finally:
        running.close()
