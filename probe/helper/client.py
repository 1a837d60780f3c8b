"""The probe's side: ask control helpers, in order, within the check's deadline.

The request leaves as soon as the vantage's DNS answers are known and runs
beside the probe's own TCP/TLS/HTTP; whatever happens (a helper blocked by
the censor, down, slow or hostile) the answer is awaited only until the
check's deadline, and a failure becomes an observation, never an exception.
The answer is read up to :data:`MAX_ANSWER` bytes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from probe.checks.errors import failure_from_exception
from probe.errors import UsageError
from probe.failures import Failure
from probe.helper.protocol import BadRequest, build_request, parse_response
from probe.observations import HelperObservation

if TYPE_CHECKING:
    import httpx

MAX_ANSWER = 1024 * 1024
TOKEN_ENV = "PROBE_HELPER_TOKEN"  # a bearer token sent to the helpers, if set


def check_url(url: str) -> None:
    """Raise UsageError unless ``url`` can name a helper (an http(s) URL with a host)."""
    try:
        parts = urlsplit(url)
        ok = parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:
        ok = False
    if not ok:
        raise UsageError(f"invalid helper {url!r}: give an http(s) URL")


async def ask(
    helpers: Sequence[str],
    url: str,
    endpoints: Sequence[tuple[str, int]],
    *,
    timeout: float,
    t0: float,
    ca_bundle: str | None = None,
) -> HelperObservation:
    """The first helper's answer that arrives whole; the next helper when one fails."""
    import httpx

    from probe.checks.tls import make_context

    start = time.monotonic()
    deadline = start + timeout
    body = json.dumps(build_request(url, endpoints)).encode()
    headers = {"content-type": "application/json"}
    token = os.environ.get(TOKEN_ENV)
    if token:
        headers["authorization"] = f"Bearer {token}"
    tried: list[str] = []
    failure = Failure.TIMEOUT
    context = make_context(ca_bundle, alpn=("http/1.1",))
    async with httpx.AsyncClient(verify=context, trust_env=False, follow_redirects=False) as client:
        for helper in helpers:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                tried.append(f"{helper}: not tried (deadline)")
                continue
            asked = time.monotonic()
            try:
                data = await _post(client, helper, body, headers, remaining)
                return _answer(data, helper, url, asked, t0, tried)
            except BadRequest as exc:
                failure = Failure.HTTP_PROTOCOL_ERROR
                tried.append(f"{helper}: {exc}")
            except Exception as exc:  # network behaviour becomes data
                failure = (
                    Failure.TIMEOUT
                    if isinstance(exc, TimeoutError)
                    else failure_from_exception(exc)
                )
                tried.append(f"{helper}: {failure}")
    return HelperObservation(
        helper=helpers[-1] if helpers else "",
        t_ms=(start - t0) * 1000,
        elapsed_ms=(time.monotonic() - start) * 1000,
        failure=failure,
        url=url,
        tried=tuple(tried),
    )


def _answer(
    data: object, helper: str, url: str, asked: float, t0: float, tried: list[str]
) -> HelperObservation:
    view = parse_response(
        data,
        helper=helper,
        url=url,
        t_ms=round((asked - t0) * 1000, 1),
        elapsed_ms=round((time.monotonic() - asked) * 1000, 1),
    )
    return dataclasses.replace(view, tried=tuple(tried))


async def _post(
    client: httpx.AsyncClient, helper: str, body: bytes, headers: dict[str, str], timeout: float
) -> object:
    async with asyncio.timeout(timeout):
        async with client.stream("POST", helper, content=body, headers=headers) as reply:
            if reply.status_code != 200:
                raise BadRequest(f"HTTP {reply.status_code}")
            data = bytearray()
            async for chunk in reply.aiter_bytes():
                data += chunk
                if len(data) > MAX_ANSWER:
                    raise BadRequest(f"answer larger than {MAX_ANSWER} bytes")
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("answer is not JSON") from None
