"""The fast response reader agrees with h11 or declines, on hostile input too.

Each response is played to a whole :class:`probe.checks.http.Exchange` (the
request written, the head, every piece of the body, the error) twice: as the
probe reads it, and with :func:`httpwire.read_head` declining everything,
which is the h11 path exactly as it was before the fast reader."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator
from unittest import mock

import h11
import pytest

from probe.checks import httpwire
from probe.checks.http import READ_SIZE, Exchange, _request_head
from tests.probe.checks.mutants import mutated

REQUEST = [("Host", "example.test"), ("User-Agent", "test"), ("Accept", "*/*")]
STATUSES = (200, 200, 200, 301, 302, 403, 404, 451, 500, 503)
ODD_STATUSES = (204, 304, 199, 101, 600, 999, 99)
REASONS = (b" OK", b" Not Found", b"", b" ", b" \tweird\treason ", b" caf\xe9", b" a\x00b")
HEADERS = (
    (b"Server", b"nginx/1.22.1"),
    (b"Date", b"Wed, 02 Dec 2026 23:00:00 GMT"),
    (b"Content-Type", b"text/html; charset=utf-8"),
    (b"Location", b"https://example.test/blocked?x=1"),
    (b"Set-Cookie", b"a=b; Path=/; HttpOnly"),
    (b"X-Empty", b""),
    (b"Connection", b"close"),
    (b"Content-Encoding", b"identity"),
    (b"x-UPPER-lower", b"MiXeD"),
)
ODD_HEADERS = (
    (b"X-Latin", b"caf\xe9"),
    (b"X-Utf8", "caf\u00e9".encode()),
    (b"X-Control", b"a\x01b"),
    (b"X-Del", b"a\x7fb"),
)
OWS = (b"", b"", b" ", b"  ", b"\t", b" \t ")
SPECIAL = (b"\r\n", b"\n", b"\r", b" ", b"\t", b":", b",", b"\x00", b"\x0b", b"\xff", b"0")
HEAD_EDITS = (
    b"Content-Length: 5\r\n",
    b"Content-Length: 0\r\n",
    b"Transfer-Encoding: chunked\r\n",
    b" folded\r\n",
    b"HTTP/1.1 100 Continue\r\n\r\n",
)


class Reader:
    """A stream giving ``segments`` one read each (cut to the size asked for), then EOF."""

    def __init__(self, segments: list[bytes]) -> None:
        self.segments = list(segments)

    async def read(self, n: int) -> bytes:
        if not self.segments:
            return b""
        data = self.segments.pop(0)
        if len(data) > n:
            self.segments.insert(0, data[n:])
        return data[:n]


class Writer:
    def __init__(self) -> None:
        self.written = bytearray()

    def write(self, data: bytes) -> None:
        self.written += data

    async def drain(self) -> None:
        pass


class Conn:
    def __init__(self, segments: list[bytes]) -> None:
        self.reader = Reader(segments)
        self.writer = Writer()


Outcome = tuple[bytes, tuple[object, ...]]  # the request written, what was read


async def exchange(segments: list[bytes], *, body: bytes = b"") -> Outcome:
    """Everything an exchange of ``segments`` gives the probe, in order."""
    conn = Conn(segments)
    ex = Exchange(conn)  # type: ignore[arg-type]  # the stream's two methods it uses
    seen: list[object] = []
    try:
        if body:
            headers = [*REQUEST, ("Content-Length", str(len(body)))]
            await ex.request("/q", headers, method="POST", body=body)
        else:
            await ex.request("/", REQUEST)
        reply = await ex.response()
        seen += [reply.status, reply.headers]
        for _ in range(50):
            chunk = await reply.next_chunk()
            seen.append(chunk)
            if chunk is None:
                break
    except (h11.ProtocolError, EOFError) as exc:
        seen += [type(exc), str(exc)]
    return bytes(conn.writer.written), (ex.received, ex.closed, *seen)


async def both(segments: list[bytes], *, body: bytes = b"") -> tuple[Outcome, Outcome, bool]:
    """The outcome as read, as h11 alone reads it, and whether the fast reader read it."""
    fast = await exchange(segments, body=body)
    with mock.patch.object(httpwire, "read_head", lambda data: None):
        slow = await exchange(segments, body=body)
    accepted = bool(segments) and httpwire.read_head(segments[0][:READ_SIZE]) is not None
    return fast, slow, accepted


def both_now(segments: list[bytes], *, body: bytes = b"") -> tuple[Outcome, Outcome, bool]:
    return asyncio.run(both(segments, body=body))


def response(rng: random.Random) -> bytes:
    """A response of the shapes servers and middleboxes send, and some they should not."""
    odd = rng.random() < 0.3  # one of the shapes the fast reader declines, perhaps
    status = rng.choice(ODD_STATUSES if odd and rng.random() < 0.3 else STATUSES)
    version = rng.choice((b"1.1", b"1.0", b"2.0", b"0.9") if odd else (b"1.1", b"1.0"))
    lines = [b"HTTP/" + version + b" %d" % status + rng.choice(REASONS)]
    pool = HEADERS + ODD_HEADERS if odd else HEADERS
    for name, value in rng.sample(pool, rng.randrange(0, 6)):
        lines.append(name + b":" + rng.choice(OWS) + value + rng.choice(OWS))
    body = bytes(rng.randrange(256) for _ in range(rng.choice((0, 1, 40, 300))))
    framing = rng.random()
    if framing < 0.6:  # Content-Length: right, short, long
        length = len(body) + rng.choice((0, 0, 0, -1, 5)) if body else rng.choice((0, 3))
        lines.append(b"Content-Length: %d" % max(length, 0))
    elif framing < 0.7 and odd:
        lines.append(b"Transfer-Encoding: chunked")
        body = b"%x\r\n" % len(body) + body + b"\r\n0\r\n\r\n" if body else b"0\r\n\r\n"
    if odd and rng.random() < 0.2:  # interim responses first
        lines.insert(0, b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n")
    end = b"\n" if odd and rng.random() < 0.2 else b"\r\n"
    wire = end.join(lines) + end + end + body
    if rng.random() < 0.2:
        wire += b"HTTP/1.1 200 OK\r\n\r\ntrailing"  # bytes after the message
    return wire


def head_edit(rng: random.Random, data: bytearray, at: int) -> None:
    """A line end, a blank, a separator or a whole header line where anything was."""
    token = rng.choice(SPECIAL + HEAD_EDITS)
    if rng.random() < 0.5:
        data[at:at] = token
    else:
        data[at : at + len(token)] = token


def splits(rng: random.Random, wire: bytes) -> Iterator[list[bytes]]:
    """``wire`` as one read, and cut at random points (inside the head, too)."""
    yield [wire]
    cuts = sorted(rng.sample(range(1, len(wire)), min(len(wire) - 1, rng.randrange(1, 4))))
    yield [wire[a:b] for a, b in zip([0, *cuts], [*cuts, len(wire)], strict=True)]


@pytest.mark.parametrize("seed", range(3))
def test_exchange_agrees_with_h11_or_declines(seed: int) -> None:
    rng = random.Random(seed)
    read = [0, 0]  # responses as generated, mutated ones, read by the fast reader
    declined = 0

    async def play() -> None:
        nonlocal declined
        for _ in range(120):
            wire = response(rng)
            for candidate in (wire, *(mutated(rng, wire, head_edit) for _ in range(8))):
                for segments in splits(rng, candidate) if len(candidate) > 1 else [[candidate]]:
                    fast, slow, accepted = await both(segments)
                    assert fast == slow, (segments, fast, slow)
                    if accepted:
                        read[candidate is not wire] += 1
                    else:
                        declined += 1

    asyncio.run(play())
    # Both paths are exercised: the common shape (and mutants that keep it) is
    # read fast, the rest declined to h11.
    assert read[0] > 50 and read[1] > 100 and declined > 500, (read, declined)


@pytest.mark.parametrize(
    "wire",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
        b"HTTP/1.0 404 Not Found\r\nServer: x\r\n\r\nto the close",
        b"HTTP/1.1 302 Found\r\nLocation: /x\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\ncut short",
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabcdef",
        b"HTTP/1.1 200\r\nX:  a  b  \r\n\r\n",
    ],
)
def test_common_shapes_are_read_fast_as_h11_reads_them(wire: bytes) -> None:
    for segments in ([wire], [wire[: wire.index(b"\r\n\r\n") + 4], wire[-3:]]):
        fast, slow, accepted = both_now(segments)
        assert accepted and fast == slow


@pytest.mark.parametrize(
    "wire",
    [
        b"HTTP/1.1 200 OK\nContent-Length: 5\n\nhello",  # bare LF
        b"HTTP/1.1 200 OK\r\nX: a\r\n b\r\nContent-Length: 5\r\n\r\nhello",  # obs-fold
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\nhello",
        b"HTTP/1.1 200 OK\r\nContent-Length: 123456789012345678901\r\n\r\nhello",
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
        b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\nhello",
        b"HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX-Latin: caf\xe9\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX-Empty-Name\r\n\r\n",
        b"HTTP/2.0 200 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n",  # the head is not complete
    ],
)
def test_other_shapes_are_declined_to_h11(wire: bytes) -> None:
    fast, slow, accepted = both_now([wire])
    assert not accepted and fast == slow


def test_hostile_heads_are_declined_in_linear_time() -> None:
    blanks = b"HTTP/1.1 200 OK\r\nX:" + b" " * 60_000 + b"a" + b" \t" * 2000 + b"\x00\r\n\r\n"
    values = b"HTTP/1.1 200 OK\r\nX: " + b"a " * 30_000 + b"\n\r\n\r\n"
    for wire in (blanks, values):
        assert httpwire.read_head(wire) is None


def test_request_bytes_are_h11s() -> None:
    """The request heads written come from h11 (made once), bodies go through h11."""
    conn = h11.Connection(h11.CLIENT)
    expected = conn.send(h11.Request(method="GET", target="/", headers=REQUEST))
    expected += conn.send(h11.EndOfMessage())
    wire = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    fast, slow, _ = both_now([wire])
    assert fast[0] == slow[0] == expected == _request_head("GET", "/", tuple(REQUEST))[1]
    posted, slow, accepted = both_now([wire], body=b"\x00\x01")
    assert accepted and posted == slow and posted[0].endswith(b"\r\n\r\n\x00\x01")
    with pytest.raises(h11.LocalProtocolError):  # h11 still checks a body against its length
        asyncio.run(Exchange(Conn([])).request("/", REQUEST, method="POST", body=b"x"))  # type: ignore[arg-type]
