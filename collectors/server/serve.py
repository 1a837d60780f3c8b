"""Running the collector app under uvicorn, on a socket we bind ourselves.

Binding first turns "address in use" or "permission denied" into one line
and exit status 2 instead of uvicorn's log-and-exit, and lets a test bind
port 0 and learn the port.  uvicorn's access log stays off (it would log
query strings; our own lines name vantages, never tokens), and its logging
config is left alone so the CLI's log format applies.

``--workers N`` forks N such servers on the one bound socket (the kernel hands
each new connection to one of them), so one address uses several cores; each
worker opens its own database connections after the fork, and a worker that
dies after it began to serve is replaced.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import signal
import socket
import ssl
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from starlette.applications import Starlette

from probe.errors import ExitStatus, ProbeError, UsageError

log = logging.getLogger("collectors.server")

KEEP_ALIVE_S = 5  # idle connections are closed after this
MAX_CONNECTIONS = 256  # beyond this uvicorn answers 503 at once
MAX_HEADER_BYTES = 16 * 1024


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
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
) -> None:
    """Serve ``app`` on the bound ``sock`` until SIGTERM or SIGINT; ``ready()`` is
    called once the server accepts connections (the app's start-up done)."""
    import uvicorn

    class Server(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets=sockets)
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
    log.info("collector listening on %s://%s:%d (pid %d)", scheme, host, port, os.getpid())
    # What start-up built lives as long as the process: out of the collector's
    # way, which decodes thousands of objects per upload.
    gc.freeze()
    Server(config).run(sockets=[sock])


def serve_workers(start: Callable[[Callable[[], None]], None], workers: int) -> None:
    """Run ``start(ready)`` (a server on an inherited socket, which calls ``ready()``
    once it serves) in ``workers`` forked processes.

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

    def spawn() -> None:
        said, say = os.pipe()
        pid = os.fork()
        if pid == 0:  # the worker
            status = 1
            try:
                os.close(said)
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                start(lambda: _say_ready(say))
                status = 0
            except BaseException as exc:  # a worker reports, then exits with the status
                log.error("collector worker %d failed: %s", os.getpid(), exc)
                status = exc.exit_status if isinstance(exc, ProbeError) else ExitStatus.INTERNAL
            finally:
                logging.shutdown()
                os._exit(status)
        os.close(say)
        children[pid] = said

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
        while children:
            pid, wait_status = os.wait()
            said = children.pop(pid, None)
            if said is None:
                continue
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
        for number, handler in previous.items():
            signal.signal(number, handler)
        for said in children.values():
            os.close(said)
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
