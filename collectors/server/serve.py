"""Running the collector app under uvicorn, on a socket we bind ourselves.

Binding first turns "address in use" or "permission denied" into one line
and exit status 2 instead of uvicorn's log-and-exit, and lets a test bind
port 0 and learn the port.  uvicorn's access log stays off (it would log
query strings; our own lines name vantages, never tokens), and its logging
config is left alone so the CLI's log format applies.
"""

from __future__ import annotations

import logging
import socket
import ssl
from pathlib import Path

from starlette.applications import Starlette

from probe.errors import UsageError

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
) -> None:
    """Serve ``app`` on the bound ``sock`` until SIGTERM or SIGINT."""
    import uvicorn

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
    log.info("collector listening on %s://%s:%d", scheme, host, port)
    uvicorn.Server(config).run(sockets=[sock])
