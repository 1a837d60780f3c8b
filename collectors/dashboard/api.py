"""The dashboard's HTTP handlers: the page, its assets, and the JSON API.

The JSON shapes are a public contract (docs/data-format.md, "Dashboard
API"): keys are only ever added.  The database does the aggregating
(storage.dashboard); handlers only validate the query, run it in a worker
thread (the event loop keeps serving uploads) and shape the answer.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hmac
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route

from collectors.dashboard import API_PREFIX, STATIC
from probe.errors import StorageError
from probe.observations import rfc3339
from storage import dashboard as queries
from storage.records import TimelineEvent, Vantage
from storage.store import Store
from storage.timeline import event_moment

Handler = Callable[[Request], Awaitable[Response]]
log = logging.getLogger(__name__)

# Period name -> (length, bucket): about 100 buckets, so a phone draws each fast.
PERIODS = {
    "1d": (dt.timedelta(days=1), dt.timedelta(minutes=15)),
    "7d": (dt.timedelta(days=7), dt.timedelta(hours=2)),
    "30d": (dt.timedelta(days=30), dt.timedelta(hours=6)),
    "90d": (dt.timedelta(days=90), dt.timedelta(days=1)),
}
DEFAULT_PERIOD = "7d"
MAX_NAME = 200
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_PLATFORM = re.compile(r"[a-z0-9_-]{1,64}")
# The page loads nothing from elsewhere, and nothing may frame it.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
_MEDIA = {".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".md": "text/plain"}


class Refused(Exception):
    """A request answered with ``status`` and a one-line JSON error."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def build_routes(*, read_token: str | None, platform: str) -> list[BaseRoute]:
    api = _Dashboard(read_token, platform)
    return [
        Route("/", api.guard(api.index), methods=["GET", "HEAD"]),
        Route("/static/{name:path}", api.guard(api.static), methods=["GET", "HEAD"]),
        Route(f"{API_PREFIX}/latest", api.guard(api.latest), methods=["GET"]),
        Route(f"{API_PREFIX}/series", api.guard(api.series), methods=["GET"]),
        Route(f"{API_PREFIX}/measurements/{{id}}", api.guard(api.measurement), methods=["GET"]),
    ]


class _Dashboard:
    def __init__(self, read_token: str | None, platform: str) -> None:
        from probe.targets import load_platforms

        self._token = read_token.encode() if read_token else None
        self._platform = platform
        # Read once: a broken platforms file fails the start (one line), not each request.
        self._platforms = load_platforms()
        self._timeline_loaded = False
        # The assets, listed once: a request can only name one of these files.
        self._assets = {
            str(p.relative_to(STATIC)): p
            for p in STATIC.rglob("*")
            if p.is_file() and p.suffix in _MEDIA
        }

    # ------------------------------------------------------------- plumbing

    def guard(self, handler: Handler) -> Handler:
        """Check the reader token (private mode), map refusals, add the security headers."""

        async def guarded(request: Request) -> Response:
            try:
                if self._token is not None and not self._authorised(request):
                    response: Response = _json(
                        {"error": "this dashboard is private: give the reader token"}, 401
                    )
                    response.headers["WWW-Authenticate"] = (
                        'Basic realm="reachprobe", charset="UTF-8"'
                    )
                else:
                    response = await handler(request)
            except Refused as exc:
                response = _json({"error": exc.reason}, exc.status)
            except StorageError as exc:  # the detail names the database: for the log only
                log.warning("dashboard: %s", exc)
                response = _json({"error": "database unavailable"}, 503)
            response.headers.update(SECURITY_HEADERS)
            if self._token is not None:
                response.headers["Cache-Control"] = "private, no-store"
            return response

        return guarded

    def _authorised(self, request: Request) -> bool:
        assert self._token is not None
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        given = b""
        if scheme.lower() == "bearer":
            given = value.strip().encode()
        elif scheme.lower() == "basic":
            try:
                given = base64.b64decode(value.strip(), validate=True).partition(b":")[2]
            except (binascii.Error, ValueError):
                return False
        return bool(given) and hmac.compare_digest(given, self._token)

    # ---------------------------------------------------------------- page

    async def index(self, _request: Request) -> Response:
        return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8")

    async def static(self, request: Request) -> Response:
        path = self._assets.get(request.path_params["name"])
        if path is None:
            raise Refused(404, "no such file")
        response = FileResponse(path, media_type=_MEDIA[path.suffix] + "; charset=utf-8")
        response.headers["Cache-Control"] = "public, max-age=3600"
        return response

    # ----------------------------------------------------------------- API

    async def latest(self, request: Request) -> Response:
        platform = self._platform_of(request)
        store = _store(request)
        order = self._order(platform)
        now = dt.datetime.now(dt.UTC)
        found = await run_in_threadpool(queries.latest, store, platform, order)
        shown = list(order) + sorted({x.domain for f in found for x in f.latest} - set(order))
        return _json(
            {
                "schema": "reachprobe.dashboard.latest/1",
                "generated_at": rfc3339(now),
                "platform": platform,
                "platform_title": found_title
                if (found_title := self._title(platform))
                else platform,
                "endpoints": shown,
                "vantages": [
                    {
                        **_vantage(f.vantage),
                        "last_seen": rfc3339(f.last_seen),
                        "age_s": _age(now, f.last_seen),
                        "latest": [
                            {
                                "domain": x.domain,
                                "measurement": x.measurement_id,
                                "started_at": rfc3339(x.started_at),
                                "age_s": _age(now, x.started_at),
                                "verdict": x.status,
                                "blocking": list(x.blocking),
                                "trigger": x.trigger,
                            }
                            for x in f.latest
                        ],
                    }
                    for f in found
                ],
            }
        )

    async def series(self, request: Request) -> Response:
        platform = self._platform_of(request)
        name = request.query_params.get("vantage", "")
        if not name or len(name) > MAX_NAME:
            raise Refused(400, "give ?vantage=NAME")
        period_name = request.query_params.get("period", DEFAULT_PERIOD)
        if period_name not in PERIODS:
            raise Refused(400, f"period must be one of {', '.join(PERIODS)}")
        length, bucket = PERIODS[period_name]
        store = _store(request)
        vantage = await run_in_threadpool(queries.find_vantage, store, name)
        if vantage is None:
            raise Refused(404, "no such vantage")
        until = _ceil(dt.datetime.now(dt.UTC), bucket)
        since = until - length

        def run() -> tuple[dict[str, list[queries.Bucket]], list[TimelineEvent]]:
            self._load_builtin_timeline(store)
            series = queries.status_series(store, name, since, until, bucket, platform)
            return series, queries.events(store, vantage.country, platform, since, until)

        series, events = await run_in_threadpool(run)
        order = self._order(platform)
        domains = [d for d in order if d in series] + sorted(set(series) - set(order))
        return _json(
            {
                "schema": "reachprobe.dashboard.series/1",
                "vantage": _vantage(vantage),
                "platform": platform,
                "period": period_name,
                "since": rfc3339(since),
                "until": rfc3339(until),
                "bucket_s": int(bucket.total_seconds()),
                "endpoints": [
                    {
                        "domain": d,
                        "buckets": [
                            {"start": rfc3339(b.start), "counts": b.counts} for b in series[d]
                        ],
                    }
                    for d in domains
                ],
                "events": [_event(e) for e in events],
            }
        )

    async def measurement(self, request: Request) -> Response:
        wanted = request.path_params["id"].lower()
        if not _UUID.fullmatch(wanted):
            raise Refused(404, "no such measurement")
        item = await run_in_threadpool(_store(request).get, wanted)
        if item is None:
            raise Refused(404, "no such measurement")
        from probe.render import check_table

        row, verdict = item.row, item.verdict
        return _json(
            {
                "schema": "reachprobe.dashboard.measurement/1",
                "id": row.id,
                "domain": row.domain,
                "platform": row.platform,
                "vantage": _vantage(row.vantage),
                "started_at": rfc3339(row.started_at),
                "verdict": verdict.status.value,
                "blocking": [m.value for m in verdict.blocking],
                "trigger": verdict.trigger.value if verdict.trigger else None,
                "reasons": list(verdict.reasons),
                # What `probe check` prints for it, "why" lines included (probe.render).
                "evidence": check_table(item.observations, verdict, colour=False).splitlines(),
                "classifier_version": verdict.classifier_version,
            }
        )

    def _load_builtin_timeline(self, store: Store) -> None:
        """The shipped ban timeline (as `probe report` uses it), stored once per process."""
        if not self._timeline_loaded:
            from collectors.timeline import ensure_builtin_timeline

            ensure_builtin_timeline(store)
            self._timeline_loaded = True

    def _title(self, platform: str) -> str | None:
        found = self._platforms.get(platform)
        return found.title if found is not None else None

    def _order(self, platform: str) -> tuple[str, ...]:
        """The platform's own endpoint order (x.com first for X); () if unknown here."""
        found = self._platforms.get(platform)
        return found.domains if found is not None else ()

    def _platform_of(self, request: Request) -> str:
        platform = request.query_params.get("platform", self._platform)
        if not _PLATFORM.fullmatch(platform):
            raise Refused(400, "platform must be a platform name such as x")
        return platform


def _store(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


def _vantage(v: Vantage) -> dict[str, Any]:
    """What the page may show of a vantage: never its address, notes or token."""
    return {"name": v.name, "country": v.country, "asn": v.asn, "network": v.network}


def _event(e: TimelineEvent) -> dict[str, Any]:
    return {
        "at": rfc3339(event_moment(e)),
        "date": e.date.isoformat(),
        "kind": e.kind,
        "title": e.title,
        "platform": e.platform,
        "certainty": e.certainty,
        "source": e.source,
        "url": e.url,
    }


def _age(now: dt.datetime, then: dt.datetime) -> int:
    return max(0, int((now - then).total_seconds()))


def _ceil(when: dt.datetime, step: dt.timedelta) -> dt.datetime:
    """``when`` rounded up to a multiple of ``step`` since the epoch (stable buckets)."""
    seconds = int(step.total_seconds())
    stamp = -(-int(when.timestamp()) // seconds) * seconds
    return dt.datetime.fromtimestamp(stamp, dt.UTC)


def _json(data: Any, status: int = 200) -> JSONResponse:
    response = JSONResponse(data, status_code=status)
    response.headers["Cache-Control"] = "no-store"
    return response
