"""Uploading a probe's measurements to a collector (the client side of collectors.protocol).

:func:`upload` sends every measurement of this vantage that the collector
has not confirmed, oldest first, in gzip-compressed batches of the lossless
JSONL format, and records each id as uploaded only after the collector's
answer lists it (storage.outbox); the next batch is read and compressed while
one is in flight.  It stops at the first failure with a
:class:`~probe.errors.CollectorError` whose ``retryable`` says whether
trying again later can help (unreachable, busy, database down) or not (token
refused, batch rejected): the daemon backs off on the first kind and waits
for the operator on the second.  Nothing is ever deleted from the probe.
"""

from __future__ import annotations

import gzip
import logging
import ssl
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx

from collectors import protocol
from collectors.protocol import check_token
from probe.errors import CollectorError, UsageError

if TYPE_CHECKING:
    from storage.outbox import Outgoing
    from storage.store import Store

log = logging.getLogger(__name__)

BATCH = 500  # measurements per request: ~1-2 MB of JSON, ~0.2 MB gzipped
TIMEOUT = 30.0  # seconds for any one network step (connect at most 10 s)
BUSY_RETRIES = 5  # 429 answers waited out (Retry-After, at most BUSY_WAIT_MAX each)
BUSY_WAIT_MAX = 30.0


class UploadError(CollectorError):
    """An upload that stopped; ``retryable``: the same upload may succeed later."""

    retryable = False


class Unreachable(UploadError):
    retryable = True


class Busy(UploadError):
    retryable = True


class Refused(UploadError):
    """The collector refused the token or a batch: an operator has to act."""


@dataclass(frozen=True)
class UploadResult:
    vantage: str  # the name the collector knows this probe's token by
    sent: int  # measurements sent and confirmed in this run
    added: int  # new to the collector
    duplicates: int  # it had them already (an earlier, unconfirmed try)
    others: int  # stored here for other vantages (imports): not this token's to upload


def check_url(url: str) -> str:
    try:
        parts = urlsplit(url.strip())
        parts.port  # noqa: B018 (raises ValueError for a port that is not one)
    except ValueError:  # an unclosed [ of an IPv6 address
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"collector URL must be http(s)://HOST[:PORT], not {url!r}")
    if parts.username is not None or parts.password is not None:  # never repeated: a secret
        raise UsageError(
            "collector URL must not hold a user name or password (the upload token is the "
            f"credential): give {parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}"
        )
    return url.strip().rstrip("/")


def upload(
    store: Store,
    url: str,
    token: str,
    *,
    batch_size: int = BATCH,
    progress: Callable[[int, int], None] | None = None,
    transport: httpx.BaseTransport | None = None,
    ca_bundle: str | None = None,
    stopping: threading.Event | None = None,
    timeout: float = TIMEOUT,
    vantage: str | None = None,
    resend: bool = False,
) -> UploadResult:
    """Upload the backlog for ``url``; raises UploadError (one line) when it stops.

    ``vantage`` (the daemon's own name) refuses a token registered under another
    name: the probe's measurements would otherwise never be this token's to send,
    and the backlog would grow without a word.

    ``stopping`` (set by a daemon shutting down) ends the upload after the
    batch in flight; the rest stays in the backlog.  ``ca_bundle``: CA
    certificates trusted besides the usual ones (a collector with a CA of its own).

    ``resend`` first forgets what this collector confirmed (once the collector
    has accepted the token), so everything of this vantage goes again: for a
    collector rebuilt from scratch at the same URL.  Stopped midway, the rest
    stays in the backlog for the next upload.
    """
    from storage.outbox import Outbox

    base = check_url(url)
    token = check_token(token)
    headers = {"Authorization": f"Bearer {token}", "User-Agent": "reachprobe-upload"}
    with httpx.Client(
        base_url=base,
        headers=headers,
        timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
        transport=transport,
        verify=trust(ca_bundle),
    ) as client:
        who = _json(_request(client, "GET", protocol.VANTAGE_PATH), base)
        name = who.get("name")
        if not isinstance(name, str):
            raise UploadError(f"collector at {base} answered without a vantage name")
        if vantage is not None and name != vantage:
            raise Refused(
                f"the upload token is vantage {name!r}'s but this probe measures as"
                f" {vantage!r}: nothing of it can be uploaded (register {vantage!r} at the"
                f" collector, or set [vantage] name = {name!r})"
            )
        outbox = Outbox(store.database, base, vantage=name)
        if resend:
            log.info("forgot %d confirmation(s) by %s: re-sending", outbox.forget(), base)
        total = outbox.backlog()
        sent = added = duplicates = 0
        if progress is not None:
            progress(0, total)

        def finish(flight: Future[tuple[list[str], int]]) -> None:
            """Wait for a batch's answer; record what the collector confirmed."""
            nonlocal sent, added, duplicates
            confirmed, new = flight.result()
            outbox.confirm(confirmed)
            sent += len(confirmed)
            added += new
            duplicates += len(confirmed) - new
            if progress is not None:
                progress(sent, max(total, sent))

        # One batch in flight while the next page is read and compressed here: the
        # probe's part and the collector's overlap. Only this thread uses the database.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="upload") as sender:
            in_flight: Future[tuple[list[str], int]] | None = None
            for batch in outbox.batches(batch_size):
                if stopping is not None and stopping.is_set():
                    break
                body = _body(batch)
                if in_flight is not None:
                    finish(in_flight)
                ids = {item.id for item in batch}
                in_flight = sender.submit(_send, client, base, body, ids)
            if in_flight is not None:
                finish(in_flight)
        return UploadResult(name, sent, added, duplicates, outbox.others())


def trust(ca_bundle: str | None) -> ssl.SSLContext:
    """httpx's usual trust (certifi, or $SSL_CERT_FILE), plus ``ca_bundle``'s CAs;
    an unreadable bundle is a usage error, before anything is sent."""
    context = httpx.create_ssl_context()
    if ca_bundle is not None:
        try:
            context.load_verify_locations(cafile=ca_bundle)
        except OSError as exc:  # ssl.SSLError too: not PEM, or no certificate in it
            reason = getattr(exc, "reason", None)  # NO_CERTIFICATE_OR_CRL_FOUND, ...
            detail = reason.replace("_", " ").lower() if reason else exc.strerror or exc
            raise UsageError(f"cannot read CA bundle {ca_bundle}: {detail}") from None
    return context


def _body(batch: list[Outgoing]) -> bytes:
    """One batch as a request body: its JSON lines, gzipped."""
    return gzip.compress(b"".join(item.line + b"\n" for item in batch), compresslevel=6)


def _send(client: httpx.Client, base: str, body: bytes, sent: set[str]) -> tuple[list[str], int]:
    """POST one batch (``body``, the measurements ``sent``); the ids the collector
    confirmed and how many were new to it."""
    headers = {"Content-Type": protocol.CONTENT_TYPE, "Content-Encoding": "gzip"}
    answer = _json(
        _request(client, "POST", protocol.MEASUREMENTS_PATH, content=body, headers=headers), base
    )
    ids = answer.get("ids")
    added = answer.get("added")
    if not isinstance(ids, list) or not isinstance(added, int):
        raise UploadError(f"collector at {base} gave an unexpected answer to a batch")
    confirmed = [i for i in ids if i in sent]
    if len(confirmed) != len(sent):
        raise UploadError(
            f"collector at {base} confirmed {len(confirmed)} of {len(sent)} measurements"
        )
    return confirmed, added


def _request(client: httpx.Client, method: str, path: str, **kwargs: Any) -> httpx.Response:
    """One request, waiting out 429s; HTTP and network failures become UploadErrors."""
    base = str(client.base_url).rstrip("/")
    for attempt in range(BUSY_RETRIES + 1):
        try:
            response = client.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise Unreachable(f"cannot reach collector at {base}: {_reason(exc)}") from None
        if response.status_code == 429 and attempt < BUSY_RETRIES:
            time.sleep(min(_retry_after(response), BUSY_WAIT_MAX))
            continue
        break
    status = response.status_code
    if status < 300:
        return response
    location = response.headers.get("location")
    if status < 400 and location:  # never followed: the token would go along
        raise Refused(
            f"collector at {base} redirects to {_printable(location)} ({status}); if that is "
            "the collector, give its URL (an upload never follows a redirect)"
        )
    reason = _error_text(response)
    if status in (401, 403):
        raise Refused(f"collector at {base} refused the token ({status}: {reason})")
    if status == 429 or status >= 500:
        raise Busy(f"collector at {base} is unavailable ({status}: {reason})")
    raise Refused(f"collector at {base} rejected the upload ({status}: {reason})")


def _json(response: httpx.Response, base: str) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise UploadError(f"collector at {base} did not answer with JSON (is it a collector?)")
    return data


def _error_text(response: httpx.Response) -> str:
    try:
        data = response.json()
    except ValueError:
        data = None
    text = data.get("error") if isinstance(data, dict) else None
    if not isinstance(text, str):
        text = response.reason_phrase or "no reason given"
    return _printable(text)


def _printable(text: str) -> str:
    """Text from the collector, fit for one line of a terminal or a log."""
    return "".join(c if c.isprintable() else " " for c in text)[:300]


def _retry_after(response: httpx.Response) -> float:
    try:
        return max(0.1, float(response.headers.get("retry-after", "1")))
    except ValueError:
        return 1.0


def _reason(exc: httpx.TransportError) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    text = str(exc).strip() or type(exc).__name__
    text = text.splitlines()[0][:200]
    if "CERTIFICATE_VERIFY_FAILED" in text:
        text += " (a collector with a CA of its own: give it as --ca-bundle or [upload] ca_bundle)"
    return text
