"""The metrics listener: one thread, non-blocking sockets, a bounded number of clients.

prometheus_client's ``start_http_server`` gives every connection a thread and
no timeout: 1,000 idle connections made 1,004 threads, and under the unit's
task limit scrapes failed and the daemon stopped saving measurements.  Here
one thread multiplexes every client with :mod:`selectors`; at most
:data:`MAX_CLIENTS` connections are held (the oldest is dropped when another
arrives, so a scraper always gets in), each has :data:`CLIENT_TIMEOUT_S` to
send its request and read the answer, and is closed after one response.
Whatever clients do, the listener holds one thread and at most
``MAX_CLIENTS + 3`` descriptors, and the checks never wait on it.
"""

from __future__ import annotations

import contextlib
import logging
import selectors
import socket
import threading
import time
from dataclasses import dataclass, field

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

log = logging.getLogger(__name__)

MAX_CLIENTS = 64
CLIENT_TIMEOUT_S = 10.0
MAX_REQUEST = 8 * 1024  # a scrape's request head is a few hundred bytes
_TICK_S = 0.5  # how often timeouts are looked at when nothing happens


@dataclass(eq=False)
class _Client:
    sock: socket.socket
    deadline: float
    inbox: bytearray = field(default_factory=bytearray)
    outbox: bytes = b""


def _response(status: str, body: bytes, content_type: str = "text/plain; charset=utf-8") -> bytes:
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


class MetricsServer:
    """Serves ``registry`` on ``GET /metrics`` (and ``/``) at ``host``:``port``."""

    def __init__(self, registry: CollectorRegistry, host: str, port: int) -> None:
        self.registry = registry
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._listener = socket.create_server((host, port), family=family, backlog=128)
        self._listener.setblocking(False)
        self.host = host
        self.port: int = self._listener.getsockname()[1]
        if host in ("", "0.0.0.0", "::"):  # ":PORT" in the config means this
            log.warning(
                "metrics listener on port %d of every interface: anyone who can reach this "
                "machine can read them (give 127.0.0.1:%d for this machine only)",
                self.port,
                self.port,
            )
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._listener, selectors.EVENT_READ)
        self._wake_r, self._wake_w = socket.socketpair()
        self._selector.register(self._wake_r, selectors.EVENT_READ)
        self._clients: dict[socket.socket, _Client] = {}  # oldest first
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="metrics-listener", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop serving and release every socket (idempotent)."""
        if not self._stopping:
            self._stopping = True
            with contextlib.suppress(OSError):
                self._wake_w.send(b"x")
            self._thread.join(timeout=5)
        for client in list(self._clients.values()):
            self._drop(client)
        for sock in (self._listener, self._wake_r, self._wake_w):
            sock.close()
        self._selector.close()

    # ---------------------------------------------------------------- loop

    def _run(self) -> None:
        while not self._stopping:
            for key, events in self._selector.select(timeout=_TICK_S):
                sock = key.fileobj
                if sock is self._listener:
                    self._accept()
                elif sock is self._wake_r:
                    return
                elif (client := self._clients.get(sock)) is not None:  # type: ignore[call-overload]
                    self._step(client, events)
            now = time.monotonic()
            for client in [c for c in self._clients.values() if c.deadline < now]:
                self._drop(client)

    def _accept(self) -> None:
        for _ in range(MAX_CLIENTS):  # accept what is queued, a bounded batch per turn
            try:
                sock, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # EMFILE and the like: the queue waits for the next turn
                return
            if len(self._clients) >= MAX_CLIENTS:
                self._drop(next(iter(self._clients.values())))
            sock.setblocking(False)
            client = _Client(sock, time.monotonic() + CLIENT_TIMEOUT_S)
            self._clients[sock] = client
            self._selector.register(sock, selectors.EVENT_READ)

    def _step(self, client: _Client, events: int) -> None:
        try:
            if events & selectors.EVENT_READ and not client.outbox:
                data = client.sock.recv(4096)
                if not data:
                    self._drop(client)
                    return
                client.inbox += data
                if b"\r\n\r\n" in client.inbox or b"\n\n" in client.inbox:
                    client.outbox = self._answer(bytes(client.inbox))
                    self._selector.modify(client.sock, selectors.EVENT_WRITE)
                elif len(client.inbox) > MAX_REQUEST:  # not a scraper: no answer
                    self._drop(client)
                    return
            if events & selectors.EVENT_WRITE and client.outbox:
                sent = client.sock.send(client.outbox)
                client.outbox = client.outbox[sent:]
                if not client.outbox:
                    self._drop(client)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._drop(client)

    def _answer(self, request: bytes) -> bytes:
        method, _, rest = request.partition(b" ")
        path = rest.split(b" ", 1)[0].split(b"?", 1)[0]
        if method not in (b"GET", b"HEAD"):
            return _response("405 Method Not Allowed", b"")
        if path not in (b"/metrics", b"/"):
            return _response("404 Not Found", b"not found\n")
        page = _response("200 OK", generate_latest(self.registry), CONTENT_TYPE_LATEST)
        return page.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n" if method == b"HEAD" else page

    def _drop(self, client: _Client) -> None:
        self._clients.pop(client.sock, None)
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(client.sock)
        client.sock.close()
