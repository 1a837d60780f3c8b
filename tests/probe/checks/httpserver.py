"""A loopback HTTP/HTTPS server whose behaviour is chosen by the request path.

Protocol checks must stay bounded against servers (or middleboxes) that
misbehave, so tests need a server that can hang, trickle, reset or answer
garbage on demand.  One server handles every behaviour; the path selects it
(``/page?size=5000&title=Hi``, ``/trickle``, ``/rst``...), so a test can aim
several requests at the same socket.  It records the Host header, the SNI, and
the request line of every request it read, so tests can assert pinning.

It runs in threads (not in the test's event loop), so async code under test
can be driven by ``asyncio.run`` while the server keeps serving.  Every handler
loop watches a stop event and uses socket timeouts: :meth:`HTTPTestServer.close`
ends all threads promptly.

Behaviours (query parameters in brackets):

* ``/page`` [size, title, status, charset, delay]: an HTML page of ``size`` bytes.
* ``/gzip`` [size, title]: the same page, gzip-encoded.
* ``/redirect`` [to, status]: a redirect to ``to`` (absolute or relative).
* ``/loop``: redirects to itself forever.
* ``/endless``: a body that never ends (``framing=chunked``, ``length`` or ``close``).
* ``/trickle`` [interval]: headers, then one body byte per ``interval`` seconds.
* ``/slow`` [size, rate, delay]: ``size`` bytes at ``rate`` bytes/s after ``delay`` s.
* ``/hang``: reads the request and never answers.
* ``/garbage``: answers a line that is not HTTP.
* ``/close``: closes without answering.
* ``/rst``: resets the connection (SO_LINGER 0).
* ``/cut`` [sent, how]: a body cut after ``sent`` bytes by an RST (or a close).
* ``/headers`` [n]: a response with ``n`` headers.
* ``/bomb`` [coding, size]: a compression bomb, ``size`` zero bytes once every
  coding (comma-separated, in the order applied) is undone.
* ``/informational`` [interval]: ``100 Continue`` responses, one per ``interval``
  seconds (0: as fast as the socket takes them), never a final one.
* ``/continued``: three ``100 Continue`` and a ``103``, then a page.
* ``/slowloris`` [interval]: a status line, then one header line per ``interval``
  seconds, never the blank line.
"""

from __future__ import annotations

import contextlib
import gzip
import socket
import ssl
import struct
import threading
import time
import urllib.parse
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType

import trustme

ADDRESS = "127.0.0.1"
DEFAULT_NAMES = ("example.test", "control.test")
_REQUEST_LIMIT = 64 * 1024


@dataclass(frozen=True)
class SeenRequest:
    """What the server saw of one request."""

    method: str
    target: str
    version: str
    host: str | None
    sni: str | None
    headers: tuple[tuple[str, str], ...]

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None


class _Stopped(Exception):
    """The server is closing: unwind the handler."""


class HTTPTestServer:
    """Threaded HTTP server on 127.0.0.1 (TLS when ``ca`` is given).

    ``names`` are the DNS names on the certificate.  Use as a context manager.
    """

    def __init__(
        self,
        *,
        ca: trustme.CA | None = None,
        names: tuple[str, ...] = DEFAULT_NAMES,
        host: str = ADDRESS,
        port: int = 0,
        root: str = "/not-found",
    ):
        """``host``/``port`` pick the listening socket (a fixed 443 or 80 needs
        root); ``root`` is the behaviour served for ``/`` (e.g. "/trickle")."""
        self.tls = ca is not None
        self.root = root
        self.requests: list[SeenRequest] = []
        self.connections = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._sni: dict[int, str | None] = {}
        self._context: ssl.SSLContext | None = None
        if ca is not None:
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ca.issue_cert(*names).configure_cert(ctx)
            ctx.sni_callback = self._record_sni
            self._context = ctx
        self._listener = socket.create_server((host, port), backlog=64)
        self._listener.settimeout(0.1)
        self.port: int = self._listener.getsockname()[1]
        self._acceptor = threading.Thread(target=self._accept_loop, daemon=True)

    # ----------------------------------------------------------- lifecycle

    def __enter__(self) -> HTTPTestServer:
        self._acceptor.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes a blocked accept()
        if self._acceptor.is_alive():
            self._acceptor.join(timeout=2)
        self._listener.close()
        for thread in list(self._threads):
            thread.join(timeout=2)

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    def url(self, path: str, host: str = DEFAULT_NAMES[0]) -> str:
        """A URL naming ``host`` on this server's real port."""
        return f"{self.scheme}://{host}:{self.port}{path}"

    # ------------------------------------------------------------ plumbing

    def _record_sni(
        self, sslobj: ssl.SSLObject | ssl.SSLSocket, name: str | None, _: object
    ) -> None:
        with self._lock:
            self._sni[id(sslobj)] = name

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.connections += 1
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, raw: socket.socket) -> None:
        raw.settimeout(5)
        conn: socket.socket = raw
        sni: str | None = None
        try:
            if self._context is not None:
                tls = self._context.wrap_socket(raw, server_side=True)
                with self._lock:
                    sni = self._sni.pop(id(tls), None)
                conn = tls
            request = self._read_request(conn, sni)
            if request is None:
                return
            with self._lock:
                self.requests.append(request)
            self._dispatch(conn, request)
        except (OSError, _Stopped):
            pass  # client went away, handshake refused, or the server is closing
        finally:
            with contextlib.suppress(OSError):
                conn.close()

    def _read_request(self, conn: socket.socket, sni: str | None) -> SeenRequest | None:
        data = b""
        while b"\r\n\r\n" not in data:
            if len(data) > _REQUEST_LIMIT or self._stop.is_set():
                return None
            chunk = conn.recv(4096)
            if not chunk:
                return None
            data += chunk
        head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1")
        lines = head.split("\r\n")
        method, target, version = lines[0].split(" ", 2)
        headers = tuple(
            (name.strip(), value.strip())
            for name, _, value in (line.partition(":") for line in lines[1:])
        )
        host = next((v for k, v in headers if k.lower() == "host"), None)
        return SeenRequest(method, target, version, host, sni, headers)

    def _sleep(self, seconds: float) -> None:
        if self._stop.wait(seconds):
            raise _Stopped

    # ---------------------------------------------------------- behaviours

    def _dispatch(self, conn: socket.socket, request: SeenRequest) -> None:
        split = urllib.parse.urlsplit(self.root if request.target == "/" else request.target)
        query = {k: v[-1] for k, v in urllib.parse.parse_qs(split.query).items()}
        handler: Callable[[socket.socket, dict[str, str]], None] = getattr(
            self, "_do_" + split.path.strip("/").replace("-", "_"), self._do_not_found
        )
        handler(conn, query)

    @staticmethod
    def _head(status: int, headers: list[tuple[str, str]]) -> bytes:
        lines = [f"HTTP/1.1 {status} X"] + [f"{k}: {v}" for k, v in headers]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def _respond(
        self, conn: socket.socket, status: int, body: bytes, headers: list[tuple[str, str]]
    ) -> None:
        headers = [*headers, ("Content-Length", str(len(body))), ("Connection", "close")]
        conn.sendall(self._head(status, headers) + body)

    @staticmethod
    def page(size: int, title: str = "Test page", charset: str = "utf-8") -> bytes:
        """An HTML page of exactly ``size`` bytes (or its bare head when smaller)."""
        head = f"<html><head><title>{title}</title></head><body>".encode(charset)
        tail = b"</body></html>"
        return head + b"x" * max(0, size - len(head) - len(tail)) + tail

    def _do_not_found(self, conn: socket.socket, query: dict[str, str]) -> None:
        self._respond(conn, 404, b"not found", [("Content-Type", "text/plain")])

    def _do_page(self, conn: socket.socket, query: dict[str, str]) -> None:
        self._sleep(float(query.get("delay", 0)))
        charset = query.get("charset", "utf-8")
        body = self.page(int(query.get("size", 1000)), query.get("title", "Test page"), charset)
        ctype = ("Content-Type", f"text/html; charset={charset}")
        self._respond(conn, int(query.get("status", 200)), body, [ctype])

    def _do_gzip(self, conn: socket.socket, query: dict[str, str]) -> None:
        body = gzip.compress(self.page(int(query.get("size", 1000)), query.get("title", "Zipped")))
        headers = [("Content-Type", "text/html"), ("Content-Encoding", "gzip")]
        self._respond(conn, 200, body, headers)

    def _do_redirect(self, conn: socket.socket, query: dict[str, str]) -> None:
        self._respond(conn, int(query.get("status", 302)), b"", [("Location", query["to"])])

    def _do_loop(self, conn: socket.socket, query: dict[str, str]) -> None:
        self._respond(conn, 302, b"", [("Location", "/loop")])

    def _do_endless(self, conn: socket.socket, query: dict[str, str]) -> None:
        """A body that never ends: chunked (``framing=chunked``), announced as a
        petabyte (``length``) or delimited by a close that never comes (``close``)."""
        framing = query.get("framing", "chunked")
        headers = [("Content-Type", "text/html")]
        if framing == "chunked":
            headers.append(("Transfer-Encoding", "chunked"))
        elif framing == "length":
            headers.append(("Content-Length", str(1 << 50)))
        conn.sendall(self._head(200, headers))
        chunk = b"y" * 0x4000
        if framing == "chunked":
            chunk = b"4000\r\n" + chunk + b"\r\n"
        while not self._stop.is_set():
            conn.sendall(chunk)

    def _do_trickle(self, conn: socket.socket, query: dict[str, str]) -> None:
        interval = float(query.get("interval", 1.0))
        conn.sendall(self._head(200, [("Content-Type", "text/html"), ("Content-Length", "100000")]))
        while True:
            conn.sendall(b"z")
            self._sleep(interval)

    def _do_slow(self, conn: socket.socket, query: dict[str, str]) -> None:
        size, rate = int(query.get("size", 65536)), float(query.get("rate", 102400))
        self._sleep(float(query.get("delay", 0)))
        conn.sendall(
            self._head(200, [("Content-Type", "text/html"), ("Content-Length", str(size))])
        )
        body, step = self.page(size, "Slow"), 4096
        for offset in range(0, size, step):
            conn.sendall(body[offset : offset + step])
            self._sleep(step / rate)

    def _do_hang(self, conn: socket.socket, query: dict[str, str]) -> None:
        self._sleep(3600)

    def _do_garbage(self, conn: socket.socket, query: dict[str, str]) -> None:
        conn.sendall(b"SSH-2.0-OpenSSH_9.6 \x00\xff\xfe garbage\r\n\r\n")
        self._sleep(float(query.get("linger", 2)))

    def _do_close(self, conn: socket.socket, query: dict[str, str]) -> None:
        pass  # _serve closes the socket

    def _do_rst(self, conn: socket.socket, query: dict[str, str]) -> None:
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()

    def _do_cut(self, conn: socket.socket, query: dict[str, str]) -> None:
        """Announce 100000 bytes, send ``sent``, then close (``how=close``) or reset."""
        sent = int(query.get("sent", 20000))
        conn.sendall(self._head(200, [("Content-Type", "text/html"), ("Content-Length", "100000")]))
        conn.sendall(self.page(100000, "Cut")[:sent])
        self._sleep(0.1)  # let the client read it before the reset discards it
        if query.get("how") == "close":
            return
        self._do_rst(conn, query)

    def _do_headers(self, conn: socket.socket, query: dict[str, str]) -> None:
        count = int(query.get("n", 1000))
        headers = [(f"X-Header-{i}", "v" * 600 if i == 0 else str(i)) for i in range(count)]
        self._respond(conn, 200, self.page(200, "Many headers"), headers)

    def _do_bomb(self, conn: socket.socket, query: dict[str, str]) -> None:
        coding = query.get("coding", "gzip,gzip")
        body = bomb(coding.split(","), int(query.get("size", 1 << 30)))
        headers = [("Content-Type", "text/html"), ("Content-Encoding", coding)]
        self._respond(conn, 200, body, headers)

    def _do_informational(self, conn: socket.socket, query: dict[str, str]) -> None:
        interval = float(query.get("interval", 0))
        interim = b"HTTP/1.1 100 Continue\r\n\r\n" * (1 if interval else 256)
        while True:
            conn.sendall(interim)
            if interval:
                self._sleep(interval)
            elif self._stop.is_set():
                raise _Stopped

    def _do_continued(self, conn: socket.socket, query: dict[str, str]) -> None:
        conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n" * 3 + b"HTTP/1.1 103 Early Hints\r\n\r\n")
        self._respond(conn, 200, self.page(500, "Continued"), [("Content-Type", "text/html")])

    def _do_slowloris(self, conn: socket.socket, query: dict[str, str]) -> None:
        interval = float(query.get("interval", 0.2))
        conn.sendall(b"HTTP/1.1 200 OK\r\n")
        for i in range(1_000_000):
            conn.sendall(f"X-{i}: {i}\r\n".encode())
            self._sleep(interval)


_ZEROS_BLOCK = 4 << 20  # deflate cannot shrink more than ~1030:1, so a layer is built of these


def bomb(codings: list[str], size: int) -> bytes:
    """A body that decodes to ``size`` zero bytes through ``codings`` (applied in order).

    The innermost layer repeats one byte-aligned deflate block of 4 MiB of
    zeros (a full flush resets the compressor, so every block is the same
    bytes): built in milliseconds, whatever ``size``.  It has no trailer,
    since a bounded reader must stop long before it.  Outer layers are real.
    """
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    block = compressor.compress(bytes(_ZEROS_BLOCK)) + compressor.flush(zlib.Z_FULL_FLUSH)
    headers = {"gzip": b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff", "deflate": b"\x78\xda"}
    body = headers[codings[0]] + block * max(1, size // _ZEROS_BLOCK)
    for coding in codings[1:]:
        body = gzip.compress(body, 9) if coding == "gzip" else zlib.compress(body, 9)
    return body


def client_context(ca: trustme.CA) -> ssl.SSLContext:
    """A verifying client context that trusts ``ca``."""
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    return ctx


def unverified_context() -> ssl.SSLContext:
    """A client context that accepts any certificate (the control-SNI fetch)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def wait_until(predicate: Callable[[], bool], timeout: float = 2.0) -> bool:
    """Poll ``predicate`` (server threads record asynchronously)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()
