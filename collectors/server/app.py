"""The collector's ASGI application (Starlette): the upload API and room for more.

Every request is treated as hostile: bodies are size- and time-limited before
they are parsed, every refusal is a 4xx with a one-line JSON reason, a
database outage is a 503 the probe retries, and a 500 means a bug.  Tokens
are never logged: the log lines name the vantage a token belongs to, or the
client address when it belongs to none (uvicorn's own access log is turned
off by ``probe collector serve`` because it would log query strings).

The app keeps no state that matters between requests (the rate-limit buckets
only bound one process), so any number of processes may serve one
PostgreSQL database behind a load balancer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from collectors import protocol
from collectors.server.batch import Refused, decompress, parse_batch
from collectors.server.ratelimit import RateLimiter, retry_after
from probe.errors import StorageError
from storage.ingest import ForeignMeasurement, Revoked, ingest
from storage.registry import TOKEN_PREFIX, Registration, Registry
from storage.schema import SchemaError
from storage.store import Store

log = logging.getLogger("collectors.server")

MAX_TOKEN_LENGTH = 100


@dataclass(frozen=True)
class Settings:
    """Limits of one collector process (``probe collector serve`` options)."""

    max_body: int = protocol.MAX_BODY  # bytes, after decompression
    max_batch: int = protocol.MAX_BATCH  # measurements per request
    upload_rate: float = 5.0  # requests per second per vantage (0: unlimited)
    upload_burst: int = 20
    auth_failure_rate: float = 0.5  # refused tokens per second per client address
    auth_failure_burst: int = 10
    body_timeout_s: float = 120.0  # to receive a whole body (a slow uplink, not a stalled one)


def create_app(
    store: Store | str,
    settings: Settings | None = None,
    *,
    extra_routes: Sequence[BaseRoute] = (),
) -> Starlette:
    """The collector app over ``store`` (an open Store, or a database URL to open).

    Extension point: ``extra_routes`` (Starlette ``Route``/``Mount`` objects,
    e.g. the dashboard) are served beside the API.  Their handlers reach the
    database as ``request.app.state.store`` (a :class:`storage.Store`), the
    vantage registry as ``request.app.state.registry`` and the limits as
    ``request.app.state.settings``.  A store given as a URL is opened (and
    migrated) here and closed when the app shuts down.
    """
    settings = settings or Settings()
    owned = isinstance(store, str)
    opened = Store.open(store) if isinstance(store, str) else store
    api = _Api(opened, settings)

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            if owned:
                opened.close()

    app = Starlette(
        routes=[
            Route(protocol.MEASUREMENTS_PATH, api.upload, methods=["POST"]),
            Route(protocol.VANTAGE_PATH, api.whoami, methods=["GET"]),
            Route(protocol.HEALTH_PATH, api.health, methods=["GET"]),
            *extra_routes,
        ],
        exception_handlers={HTTPException: _http_error, Exception: _internal_error},
        lifespan=lifespan,
    )
    app.state.store = opened
    app.state.registry = api.registry
    app.state.settings = settings
    return app


def error(status: int, reason: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": reason}, status_code=status, headers=headers)


async def _http_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return error(exc.status_code, str(exc.detail), dict(exc.headers or {}))


async def _internal_error(request: Request, exc: Exception) -> Response:
    log.error("internal error on %s %s", request.method, request.url.path, exc_info=exc)
    return error(500, "internal error (a bug in the collector; see its log)")


class _Api:
    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.settings = settings
        self.registry = Registry(store.database)
        self.uploads = RateLimiter(settings.upload_rate, settings.upload_burst)
        self.failures = RateLimiter(settings.auth_failure_rate, settings.auth_failure_burst)

    # ---------------------------------------------------------- endpoints

    async def health(self, _request: Request) -> Response:
        try:
            await run_in_threadpool(self._ping)
        except StorageError:
            return error(503, "database unavailable")
        return JSONResponse({"status": "ok"})

    def _ping(self) -> None:
        with self.store.database.reading() as conn:
            conn.exec_driver_sql("SELECT 1")

    async def whoami(self, request: Request) -> Response:
        try:
            registration = await self._authenticate(request)
        except Refused as exc:
            return self._refusal(request, exc, None)
        vantage = registration.vantage
        return JSONResponse(
            {
                "name": vantage.name,
                "country": vantage.country,
                "asn": vantage.asn,
                "network": vantage.network,
            }
        )

    async def upload(self, request: Request) -> Response:
        registration: Registration | None = None
        try:
            registration = await self._authenticate(request)
            wait = self.uploads.acquire(registration.id)
            if wait:
                raise Refused(429, "too many uploads from this vantage; slow down", wait)
            _content_type(request)
            body = await self._body(request)
            result = await run_in_threadpool(self._store, registration, body, request)
        except Refused as exc:
            return self._refusal(request, exc, registration)
        except ClientDisconnect:
            log.info("upload from %s: client went away mid-body", _client(request))
            return error(400, "client disconnected")
        except StorageError as exc:
            log.error("upload from %s: database unavailable: %s", _who(request, registration), exc)
            return error(503, "database unavailable; retry later", {"Retry-After": "5"})
        assert registration is not None
        log.info(
            "upload from vantage %s: %d added, %d already present",
            registration.vantage.name,
            len(result.added),
            len(result.duplicates),
        )
        return JSONResponse(
            {
                "added": len(result.added),
                "duplicates": list(result.duplicates),
                "ids": sorted([*result.added, *result.duplicates]),
            }
        )

    def _store(self, registration: Registration, body: bytes, request: Request) -> Any:
        encoding = request.headers.get("content-encoding", "")
        data = decompress(body, encoding, self.settings.max_body)
        items = parse_batch(data, registration.vantage.name, max_batch=self.settings.max_batch)
        try:
            return ingest(self.store.database, registration, items)
        except Revoked as exc:
            raise Refused(403, str(exc)) from None
        except ForeignMeasurement as exc:
            raise Refused(409, str(exc)) from None
        except SchemaError as exc:  # a value too long for its column
            raise Refused(422, str(exc)) from None

    # ---------------------------------------------------------- pieces

    async def _authenticate(self, request: Request) -> Registration:
        """The registration of the request's bearer token; Refused (401/403/429) otherwise."""
        client = _client(request)
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        token = token.strip()
        registration = None
        well_formed = token.startswith(TOKEN_PREFIX) and len(token) <= MAX_TOKEN_LENGTH
        if scheme.lower() == "bearer" and well_formed:
            registration = await run_in_threadpool(self._lookup, token)
        if registration is None or registration.revoked:
            wait = self.failures.acquire(client)
            if wait:
                raise Refused(429, "too many refused tokens from this address", wait)
            if not header:
                raise Refused(401, "missing token (Authorization: Bearer TOKEN)")
            if registration is None:
                raise Refused(401, "invalid token")
            raise Refused(403, f"the token of vantage {registration.vantage.name!r} is revoked")
        return registration

    def _lookup(self, token: str) -> Registration | None:
        try:
            return self.registry.authenticate(token)
        except StorageError as exc:
            log.error("token lookup: database unavailable: %s", exc)
            raise Refused(503, "database unavailable; retry later", 5) from None

    async def _body(self, request: Request) -> bytes:
        limit = self.settings.max_body
        declared = request.headers.get("content-length")
        if declared is not None:
            if not declared.isdigit():
                raise Refused(400, "invalid Content-Length")
            if int(declared) > limit:
                raise Refused(413, f"body larger than {limit} bytes")
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(self.settings.body_timeout_s):
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > limit:
                        raise Refused(413, f"body larger than {limit} bytes")
                    chunks.append(chunk)
        except TimeoutError:
            raise Refused(408, "body not received in time") from None
        return b"".join(chunks)

    def _refusal(
        self, request: Request, exc: Refused, registration: Registration | None
    ) -> Response:
        log.warning(
            "refused %s %s from %s: %s", request.method, request.url.path,
            _who(request, registration), exc,
        )  # fmt: skip
        headers = {"Retry-After": retry_after(exc.retry_after)} if exc.retry_after else None
        return error(exc.status, exc.reason, headers)


def _content_type(request: Request) -> None:
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind not in (protocol.CONTENT_TYPE, "application/jsonl", "application/json-lines"):
        raise Refused(415, f"Content-Type must be {protocol.CONTENT_TYPE}")


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _who(request: Request, registration: Registration | None) -> str:
    where = _client(request)
    return f"vantage {registration.vantage.name} ({where})" if registration else where
