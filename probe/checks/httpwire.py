"""A fast reader of the common shape of an HTTP/1.x response head; h11 reads the rest.

Why a hand-written reader at all: h11 reads a response through a general
state machine (events, state transitions, a regular expression and a
dictionary per header line, header normalisation, body framing found by
comma-splitting every header), and writing the request through it costs as
much again: about three quarters of one exchange's CPU (one exchange with a
small page over an in-memory stream: 175 µs through h11, 44 µs here), and a
list run makes about seven exchanges per domain.  A
response from a real server or a middlebox's blockpage usually has one shape:
a status line ``HTTP/1.1 NNN reason`` (or 1.0), header lines of a token, a
colon and a value of visible ASCII, CRLF line ends, and a body framed by one
plain ``Content-Length`` or by the end of the connection.  :func:`read_head`
reads exactly that shape, from the first read of a response, and **declines**
(returns None) anything else: a head not complete in that read, a bare LF or
CR, an obsolete line fold, a byte h11 would refuse or one outside visible
ASCII in a header, ``Transfer-Encoding`` (chunked bodies), a second, empty,
comma-separated or over-long ``Content-Length``, an informational (1xx)
response, 204 and 304 (whose bodies h11 frames as empty whatever the headers
say), another status class or HTTP version.  A declined response is given,
byte for byte, to h11, which decides as before (its limits, its errors): so a
malformed blockpage is measured exactly as it always was.  The differential
test (``tests/probe/checks/test_httpwire.py``) holds the whole exchange
(status, headers, body pieces, errors) to h11's on generated and mutated
responses.

httptools (llhttp) was not used instead: it accepts and refuses other
malformed responses than h11 (obsolete folds, bare LFs, odd framing), so a
middlebox's malformed answer would be measured differently.

What "h11's result" means, and is mirrored here: the headers in order, names
lowercased, values without the spaces and tabs around them (text: the
accepted shape is ASCII); a body of ``Content-Length`` bytes (bytes after it
are not the body), or of everything until the peer closes when there is none.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# h11's grammar (h11/_abnf.py), narrowed: possessive quantifiers keep the
# match linear on hostile input (a long run of spaces with no line end).
_TOKEN = rb"[-!#$%&'*+.^_`|~0-9a-zA-Z]++"
_VALUE = rb"(?:[\x21-\x7e]++(?:[ \t]++[\x21-\x7e]++)*+)?+"  # visible ASCII, inner blanks
_HEAD = re.compile(
    rb"HTTP/1\.[01] (?P<status>[2-5][0-9][0-9])"
    rb"(?: [^\x00\n\r\x0b\x0c]*+)?+\r\n"  # the reason, as h11 accepts it (never recorded)
    rb"(?P<fields>(?:" + _TOKEN + rb":[ \t]*+" + _VALUE + rb"[ \t]*+\r\n)*+)\r\n"
)
_EMPTY_BODY = frozenset({204, 304})  # h11 frames these as empty, whatever the headers say
_MAX_LENGTH_DIGITS = 20  # h11's CONTENT_LENGTH_MAX_DIGITS


@dataclass(frozen=True, slots=True)
class Head:
    """A response head of the common shape, as h11 would have read it."""

    status: int
    headers: list[tuple[str, str]]  # lowercase names, in order
    length: int | None  # Content-Length; None: the body ends when the peer closes
    end: int  # the head's size in bytes: the body starts there


def read_head(data: bytes) -> Head | None:
    """The head at the start of ``data`` (the first bytes a response sent) if it is
    complete and of the common shape; None for anything else (h11 decides)."""
    match = _HEAD.match(data)
    if match is None:
        return None
    status = int(match["status"])
    if status in _EMPTY_BODY:
        return None
    headers: list[tuple[str, str]] = []
    length: int | None = None
    for line in match["fields"].decode("latin-1").split("\r\n")[:-1]:
        name, _, value = line.partition(":")
        name = name.lower()
        value = value.strip(" \t")
        if name == "content-length":
            if length is not None or not value.isdigit() or len(value) > _MAX_LENGTH_DIGITS:
                return None
            length = int(value)
        elif name == "transfer-encoding":
            return None
        headers.append((name, value))
    return Head(status, headers, length, match.end())
