"""Reading an uploaded batch: bytes in, validated measurements out, or the reason why not.

Pure (no web stack, no database), so every refusal the collector can give
is testable on its own.  A batch is all or nothing: the first bad line
refuses the whole batch with its line number.
"""

from __future__ import annotations

import datetime as dt
import json
import zlib
from typing import Any

from storage.records import StoredMeasurement
from storage.schema import SchemaError, decode_record
from storage.wire import Received, decode_line

EARLIEST = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)  # before any probe: a clock never set
FUTURE_SLACK = dt.timedelta(days=1)  # a probe's clock may run ahead a little, not more


class Refused(Exception):
    """A request the collector refuses: HTTP status, one-line reason, when to retry."""

    def __init__(self, status: int, reason: str, retry_after: float = 0.0) -> None:
        super().__init__(f"{status} {reason}")
        self.status = status
        self.reason = reason
        self.retry_after = retry_after


def decompress(body: bytes, encoding: str, limit: int) -> bytes:
    """The body after ``Content-Encoding`` (identity or gzip), at most ``limit`` bytes."""
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding != "gzip":
        raise Refused(415, f"unsupported Content-Encoding {encoding[:20]!r} (use gzip)")
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error:
        raise Refused(400, "body is not valid gzip") from None
    if len(out) > limit or inflater.unconsumed_tail:
        raise Refused(413, f"decompressed body larger than {limit} bytes")
    if not inflater.eof:
        raise Refused(400, "gzip body is truncated")
    return out


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_batch(
    body: bytes,
    vantage: str,
    *,
    max_batch: int,
    now: dt.datetime | None = None,
) -> list[Received]:
    """Validate every line of ``body`` for the vantage named ``vantage``.

    Each line goes through storage.wire's fast decoder; a line it does not
    take is decided by storage.schema, which words the refusal.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Refused(400, f"body is not UTF-8 (byte {exc.start})") from None
    now = now or dt.datetime.now(dt.UTC)
    items: list[Received] = []
    seen: set[str] = set()
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        if len(items) >= max_batch:
            raise Refused(413, f"more than {max_batch} measurements in one batch")
        received = decode_line(line) or _strictly(line, number)
        row = received.row
        claimed = row.vantage.name
        if claimed != vantage:
            raise Refused(
                403, f"line {number}: measurement claims vantage {claimed[:100]!r}, "
                f"the token is for {vantage!r}"
            )  # fmt: skip
        started = row.started_at
        if not EARLIEST <= started <= now + FUTURE_SLACK:
            raise Refused(
                422, f"line {number}: implausible start time {started.isoformat()} "
                "(is the probe's clock set?)"
            )  # fmt: skip
        if row.id in seen:
            raise Refused(422, f"line {number}: measurement {row.id} twice in the batch")
        seen.add(row.id)
        items.append(received)
    return items


def _strictly(line: str, number: int) -> Received:
    try:
        data = json.loads(line, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        reason = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
        raise Refused(400, f"line {number}: invalid JSON ({reason})") from None
    return Received.of(_measurement(data, number))


def _measurement(data: Any, number: int) -> StoredMeasurement:
    try:
        return decode_record(data)
    except (SchemaError, ValueError) as exc:
        raise Refused(422, f"line {number}: {exc}") from None
    except (TypeError, AttributeError, KeyError, OverflowError) as exc:
        raise Refused(422, f"line {number}: malformed record ({type(exc).__name__})") from None
