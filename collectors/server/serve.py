"""Running the collector app under uvicorn, on a socket we bind ourselves.

Binding first turns "address in use" or "permission denied" into one line
and exit status 2 instead of uvicorn's log-and-exit, and lets a test bind
port 0 and learn the port.  uvicorn's access log stays off (it would log
query strings; our own lines name vantages, never tokens), and its logging
config is left alone so the CLI's log format applies.

``--workers N`` forks N such servers, so one address uses several cores; each
worker opens its own database connections after the fork, and a worker that
dies after it began to serve is replaced.  The parent accepts on the bound
socket and hands the connections to the workers in turn (the descriptor over
a Unix socket): left to the kernel, a worker that accepted one probe's
keep-alive connection often accepted the next one too, and then one core
decoded for both while the other idled (half of the benchmark's runs).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import logging
import os
import signal
import socket
import ssl
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

from starlette.applications import Starlette

from probe.errors import ExitStatus, ProbeError, UsageError
from probe.netaddr import endpoint_label

log = logging.getLogger("collectors.server")

KEEP_ALIVE_S = 5  # idle connections are closed after this
MAX_CONNECTIONS = 256  # beyond this uvicorn answers 503 at once
MAX_HEADER_BYTES = 16 * 1024
BACKLOG = 2048  # uvicorn's default; the socket listens from bind() on, workers or not


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    # Listening now, not when uvicorn starts: a client that connects once
    # "collector listening" is logged waits in the backlog instead of being refused.
    sock.listen(BACKLOG)
    sock.set_inheritable(True)
    return sock


def check_tls(cert: Path | None, key: Path | None) -> None:
    """Load the pair once here, so a bad file is one line before the server starts."""
    if cert is None and key is None:
        return
    if cert is None or key is None:
        raise UsageError("--tls-cert and --tls-key go together")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise UsageError(f"cannot load TLS certificate {cert} / key {key}: {reason}") from None


def serve(
    app: Starlette,
    sock: socket.socket,
    *,
    tls_cert: Path | None = None,
    tls_key: Path | None = None,
    ready: Callable[[], None] | None = None,
    handoff: socket.socket | None = None,
) -> None:
    """Serve ``app`` on the bound ``sock`` until SIGTERM or SIGINT; ``ready()`` is
    called once the server accepts connections (the app's start-up done).

    With ``handoff`` (a worker of :func:`serve_workers`), the connections are the
    ones the parent accepted on ``sock`` and passes over that Unix socket.
    """
    import uvicorn

    class Server(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets=sockets)
            if self.started and handoff is not None:
                _take_connections(self, handoff)
            if self.started and ready is not None:
                ready()

    check_tls(tls_cert, tls_key)
    config = uvicorn.Config(
        app,
        access_log=False,
        log_config=None,
        server_header=False,
        timeout_keep_alive=KEEP_ALIVE_S,
        limit_concurrency=MAX_CONNECTIONS,
        h11_max_incomplete_event_size=MAX_HEADER_BYTES,
        ssl_certfile=str(tls_cert) if tls_cert else None,
        ssl_keyfile=str(tls_key) if tls_key else None,
    )
    host, port = sock.getsockname()[:2]
    scheme = "https" if tls_cert else "http"
    where = endpoint_label(host, port)  # [::1]:8500, a URL's
    log.info("collector listening on %s://%s (pid %d)", scheme, where, os.getpid())
    # What start-up built lives as long as the process: out of the collector's
    # way, which decodes thousands of objects per upload.
    gc.freeze()
    if handoff is not None:
        sock.close()  # the parent accepts
    Server(config).run(sockets=[] if handoff is not None else [sock])


def _take_connections(server: Any, handoff: socket.socket) -> None:
    """Serve each connection whose descriptor arrives on ``handoff`` as uvicorn
    serves the ones it accepts itself (same protocol, limits and TLS)."""
    loop = asyncio.get_running_loop()
    config = server.config
    connecting: set[asyncio.Task[None]] = set()

    def protocol() -> asyncio.Protocol:
        made: asyncio.Protocol = config.http_protocol_class(
            config=config, server_state=server.server_state, app_state=server.lifespan.state
        )
        return made

    async def connect(conn: socket.socket) -> None:
        try:
            await loop.connect_accepted_socket(protocol, conn, ssl=config.ssl)
        except (OSError, ssl.SSLError) as exc:  # the client went away, a failed handshake
            log.debug("connection dropped before it was served: %s", exc)
            conn.close()

    def arrived() -> None:
        try:
            data, fds, _flags, _address = socket.recv_fds(handoff, 64, _HANDOFF_BATCH)
        except BlockingIOError:
            return
        except OSError:
            data, fds = b"", []
        if not data:  # the parent is gone: stop taking connections
            loop.remove_reader(handoff.fileno())
        for fd in fds:
            conn = socket.socket(fileno=fd)
            conn.setblocking(False)
            task = loop.create_task(connect(conn))
            connecting.add(task)  # a reference until it is done (asyncio keeps weak ones)
            task.add_done_callback(connecting.discard)

    handoff.setblocking(False)
    loop.add_reader(handoff.fileno(), arrived)


_HANDOFF_BATCH = 16  # descriptors taken per wake-up


class _Dispatcher:
    """The parent's accept loop: each connection to the next live worker, in turn.

    A connection handed to a worker that has not started serving yet waits in
    its Unix socket (as it would in the listen backlog); one handed to a worker
    that dies unread is closed by the kernel, and the client retries.
    """

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.channels: dict[int, socket.socket] = {}  # pid -> parent's end
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.turn = itertools.count()
        self.thread = threading.Thread(target=self._run, name="dispatch", daemon=True)

    def add(self, pid: int, channel: socket.socket) -> None:
        with self.lock:
            self.channels[pid] = channel

    def remove(self, pid: int) -> None:
        with self.lock:
            channel = self.channels.pop(pid, None)
        if channel is not None:
            channel.close()

    def _run(self) -> None:
        self.sock.settimeout(_ACCEPT_POLL_S)
        while not self.stopping.is_set():
            try:
                conn, _address = self.sock.accept()
            except TimeoutError:
                continue
            except OSError as exc:  # out of descriptors, say: not a reason to spin
                log.warning("collector: accept failed: %s", exc)
                self.stopping.wait(_ACCEPT_POLL_S)
                continue
            with conn:
                self._hand(conn)

    def _hand(self, conn: socket.socket) -> None:
        with self.lock:
            channels = list(self.channels.values())
        if not channels:
            return
        start = next(self.turn)
        for i in range(len(channels)):
            try:
                socket.send_fds(channels[(start + i) % len(channels)], [b"c"], [conn.fileno()])
                return
            except OSError:  # that worker is gone; the next one
                continue


_ACCEPT_POLL_S = 0.2  # how soon the accept loop sees that the collector stops
_HANDOFF_TIMEOUT_S = 1.0  # a worker whose queue of handed connections is full is skipped


def serve_workers(
    start: Callable[[Callable[[], None], socket.socket], None],
    workers: int,
    sock: socket.socket,
) -> None:
    """Run ``start(ready, handoff)`` (a server taking the connections that arrive on
    ``handoff``, which calls ``ready()`` once it serves) in ``workers`` forked
    processes, and hand them, in turn, the connections accepted on ``sock``.

    Returns after SIGTERM or SIGINT, passed on to every worker, once all have
    stopped. A worker that exits on its own is replaced if it had said it was
    ready; one that exits before that cannot start (its database or
    certificate, say): then all are stopped, with one line.  Readiness, not
    time since the fork, decides: a worker killed a moment after it began to
    serve is replaced however busy the machine is.
    """
    children: dict[int, int] = {}  # pid -> read end of the pipe it says "ready" on
    stopping = False
    failure: WorkerFailed | None = None

    dispatcher = _Dispatcher(sock)

    def spawn() -> None:
        said, say = os.pipe()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        pid = os.fork()
        if pid == 0:  # the worker
            status = 1
            try:
                os.close(said)
                ours.close()
                for channel in dispatcher.channels.values():  # its siblings'
                    channel.close()
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                start(lambda: _say_ready(say), theirs)
                status = 0
            except BaseException as exc:  # a worker reports, then exits with the status
                log.error("collector worker %d failed: %s", os.getpid(), exc)
                status = exc.exit_status if isinstance(exc, ProbeError) else ExitStatus.INTERNAL
            finally:
                logging.shutdown()
                os._exit(status)
        os.close(say)
        theirs.close()
        ours.settimeout(_HANDOFF_TIMEOUT_S)  # a stuck worker must not stop the others' turns
        children[pid] = said
        dispatcher.add(pid, ours)

    def stop(_signum: int = 0, _frame: FrameType | None = None) -> None:
        nonlocal stopping
        stopping = True
        for pid in list(children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        for _ in range(workers):
            spawn()
        dispatcher.thread.start()
        while children:
            pid, wait_status = os.wait()
            said = children.pop(pid, None)
            if said is None:
                continue
            dispatcher.remove(pid)
            was_ready = _was_ready(said)
            if stopping:
                continue
            code = os.waitstatus_to_exitcode(wait_status)
            if not was_ready:
                message = (
                    f"collector worker {pid} exited ({code}) right after starting; see the log"
                )
                failure = WorkerFailed(message, code)
                stop()
            else:
                log.warning("collector worker %d exited (%d): starting another", pid, code)
                spawn()
    finally:
        dispatcher.stopping.set()
        if dispatcher.thread.is_alive():
            dispatcher.thread.join()
        for number, handler in previous.items():
            signal.signal(number, handler)
        for pid, said in children.items():
            os.close(said)
            dispatcher.remove(pid)
    if failure is not None:
        raise failure


def _say_ready(say: int) -> None:
    os.write(say, b"r")
    os.close(say)
    log.info("collector worker %d is serving", os.getpid())


def _was_ready(said: int) -> bool:
    """Whether the exited worker wrote "ready" (its end is closed: no wait here)."""
    try:
        return os.read(said, 1) == b"r"
    finally:
        os.close(said)


class WorkerFailed(ProbeError):
    """A worker could not start: its exit status (e.g. storage's) is the command's."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        known = status in ExitStatus._value2member_map_
        self.exit_status = ExitStatus(status) if known else ExitStatus.INTERNAL
