"""Micro benchmark: the CPU of one HTTP exchange, as the probe reads it and through h11.

One exchange is what :func:`probe.checks.http.fetch` does per hop once it has a
connection: ``_send`` (the request written, the response head read and
recorded) and ``_read_body`` (the body read, hashed and kept), here over an
in-memory stream holding a small page as the lab's nginx sends it, so no
socket or event-loop wake-up is counted.  It is timed twice: as the probe runs
it (:mod:`probe.checks.httpwire` reads the common shape) and with the fast
reader declining everything (h11 reads every response, as before it existed).

    python -m benchmarks.bench_exchange [--exchanges 5000] [--out FILE]

Writes benchmarks/results-exchange.json (``--out``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path
from typing import Any
from unittest import mock

from probe.checks import http, httpwire
from probe.checks.url import URL
from probe.observations import BODY_READ_CAP

ROOT = Path(__file__).resolve().parent.parent
BODY = (
    b"<!DOCTYPE html>\n<html><head><title>example.test - reachprobe lab</title></head>\n"
    b"<body><p>example.test served by the reachprobe lab catch-all</p></body></html>\n"
)
WIRE = (
    b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Wed, 02 Dec 2026 23:00:00 GMT\r\n"
    b"Content-Type: text/html\r\nContent-Length: %d\r\nConnection: keep-alive\r\n\r\n" % len(BODY)
) + BODY


class _Writer:
    def write(self, data: bytes) -> None:
        pass

    async def drain(self) -> None:
        pass


class _Stream:
    """The two halves of a connection ``fetch`` uses, the reader holding one response."""

    def __init__(self) -> None:
        self.reader = asyncio.StreamReader()
        self.reader.feed_data(WIRE)
        self.writer = _Writer()

    async def close(self) -> None:
        pass


async def _exchanges(count: int) -> float:
    """Seconds per exchange over ``count`` of them (after a warm-up)."""
    url = URL.parse("http://example.test/")
    assert url is not None
    target = http._target(url, {"http": 80, "https": 443})

    async def one() -> http._Response:
        response = http._Response(cap=BODY_READ_CAP)
        deadline = time.monotonic() + 10
        stream: Any = _Stream()
        reply = await http._send(target, "192.0.2.1", None, deadline, response, stream)
        await http._read_body(reply, response)
        return response

    first = await one()
    assert first.status == 200 and first.length == len(BODY), (first.status, first.length)
    for _ in range(min(count, 200)):
        await one()
    start = time.perf_counter()
    for _ in range(count):
        await one()
    return (time.perf_counter() - start) / count


def measure(count: int, repeats: int = 5) -> float:
    """The best of ``repeats`` runs, in microseconds per exchange."""
    return min(asyncio.run(_exchanges(count)) for _ in range(repeats)) * 1e6


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exchanges", type=int, default=5000, help="exchanges per timed run")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results-exchange.json"))
    args = parser.parse_args(argv)
    fast = measure(args.exchanges)
    with mock.patch.object(httpwire, "read_head", lambda data: None):
        slow = measure(args.exchanges)
    result = {
        "exchanges": args.exchanges,
        "response_bytes": len(WIRE),
        "fast_us": round(fast, 1),
        "h11_us": round(slow, 1),
        "saved": round(1 - fast / slow, 3),
    }
    for key, value in result.items():
        print(f"{key:>15}: {value}", flush=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
