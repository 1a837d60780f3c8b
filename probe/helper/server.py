"""The helper's HTTP endpoint: ``POST /`` in OONI's test-helper protocol.

Every request is hostile until proven otherwise: an optional bearer token
(compared in constant time, never logged), a request-rate limit per client
address, a cap on concurrent measurements, a body-size cap and a read
deadline, then strict validation (:func:`probe.helper.protocol.parse_request`).
Anything refused gets a 4xx JSON ``{"error": ...}``; no traceback ever
leaves the server.  Starlette and uvicorn are imported here only, so the
probe and the daemon never load the web stack.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hmac
import json
import logging
import os
import signal
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from probe.helper.measure import HelperSettings, measure
from probe.helper.protocol import BadRequest, build_response, parse_request

if TYPE_CHECKING:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response

log = logging.getLogger("probe.helper")


@dataclass(frozen=True)
class Limits:
    max_body: int = 64 * 1024  # request bytes
    max_endpoints: int = 64  # tcp_connect entries per request
    per_client: int = 30  # requests per client address per minute
    concurrent: int = 16  # measurements at once, all clients together
    read_timeout: float = 10.0  # seconds to receive the request body


class _RateLimit:
    """A sliding one-minute window per client address."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self.seen: dict[str, collections.deque[float]] = {}

    def allow(self, client: str) -> bool:
        now = time.monotonic()
        if len(self.seen) > 10_000:  # forget idle clients; bounded memory
            self.seen = {k: v for k, v in self.seen.items() if v and v[-1] > now - 60}
        times = self.seen.setdefault(client, collections.deque())
        while times and times[0] <= now - 60:
            times.popleft()
        if len(times) >= self.per_minute:
            return False
        times.append(now)
        return True


class _Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def create_app(
    settings: HelperSettings, *, tokens: Sequence[str] = (), limits: Limits | None = None
) -> Starlette:
    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    limits = limits or Limits()
    rate = _RateLimit(limits.per_client)
    busy = asyncio.Semaphore(limits.concurrent)
    secrets = [t.encode() for t in tokens]

    def error(status: int, message: str) -> Response:
        return JSONResponse({"error": message}, status_code=status)

    async def control(request: Request) -> Response:
        start = time.monotonic()
        client = request.client.host if request.client else "?"
        try:
            status, body = await _serve(request, client)
            response: Response = JSONResponse(body, status_code=status)
        except _Refused as exc:
            response = error(exc.status, str(exc))
        log.info("%s %d %.0f ms", client, response.status_code, (time.monotonic() - start) * 1000)
        return response

    async def _serve(request: Request, client: str) -> tuple[int, object]:
        if secrets:
            given = request.headers.get("authorization", "").removeprefix("Bearer ").encode()
            if not any(hmac.compare_digest(given, s) for s in secrets):
                raise _Refused(401, "a valid bearer token is required")
        if not rate.allow(client):
            raise _Refused(429, f"at most {limits.per_client} requests per minute per client")
        data = await _read_json(request, limits)
        try:
            parsed = parse_request(data, max_endpoints=limits.max_endpoints)
        except BadRequest as exc:
            raise _Refused(400, str(exc)) from None
        if busy.locked():
            raise _Refused(503, "the helper is busy; try again later")
        async with busy:
            async with asyncio.timeout(settings.timeout + 2):
                view = await measure(parsed, settings)
        return 200, build_response(view, [a for a, _ in parsed.endpoints])

    async def http_error(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        if status >= 500:
            log.error("internal error", exc_info=exc)
            return error(500, "internal error")
        return error(status, str(getattr(exc, "detail", "bad request")).lower())

    return Starlette(
        routes=[Route("/", control, methods=["POST"])],
        exception_handlers={HTTPException: http_error, Exception: http_error},
    )


async def _read_json(request: Request, limits: Limits) -> object:
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limits.max_body):
        raise _Refused(413, f"the request body is larger than {limits.max_body} bytes")
    body = bytearray()
    try:
        async with asyncio.timeout(limits.read_timeout):
            async for chunk in request.stream():
                body += chunk
                if len(body) > limits.max_body:
                    raise _Refused(413, f"the request body is larger than {limits.max_body} bytes")
    except TimeoutError:
        raise _Refused(408, "the request body did not arrive in time") from None
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise _Refused(400, "the request body is not JSON") from None


def _server_class() -> type:
    import uvicorn

    class Server(uvicorn.Server):
        """uvicorn re-raises SIGTERM/SIGINT after its graceful shutdown, which would
        end the process by the signal; a clean stop is exit status 0 (systemd)."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            def stop(signum: int, frame: object) -> None:
                self.handle_exit(signum, None)  # graceful first, forced on a second SIGINT

            previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
            try:
                yield
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

    return Server


def serve(
    settings: HelperSettings,
    host: str,
    port: int,
    *,
    tokens: Sequence[str] = (),
    limits: Limits | None = None,
    tls_cert: str | None = None,
    tls_key: str | None = None,
) -> None:
    """Run until interrupted (SIGINT/SIGTERM stop it cleanly); raises UsageError
    when the address cannot be bound."""
    import socket

    import uvicorn

    from probe.errors import UsageError
    from probe.netaddr import endpoint_label

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror}") from None

    config = uvicorn.Config(
        create_app(settings, tokens=tokens, limits=limits),
        log_level="warning",
        access_log=False,  # our own line per request: no URL, no token
        timeout_keep_alive=5,
        h11_max_incomplete_event_size=16 * 1024,  # request line and headers
        limit_concurrency=(limits or Limits()).concurrent * 4,
        ssl_certfile=tls_cert,
        ssl_keyfile=tls_key,
        server_header=False,
    )
    scheme = "https" if tls_cert else "http"
    where = endpoint_label(host, port)  # [::1]:8080, a URL's
    log.info("helper listening on %s://%s (pid %d)", scheme, where, os.getpid())
    _server_class()(config).run(sockets=[sock])
