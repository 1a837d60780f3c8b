"""Text from the network, made safe before it reaches a terminal.

Page titles, certificate fields, headers, blockpage names and DNS names are
chosen by whoever runs the server or the censor.  Printed raw, ESC and BEL
bytes (or C1 controls, or bidirectional overrides) would move the cursor,
rewrite earlier lines, set the window title or reorder what the reader sees.
Every non-printable character (``str.isprintable``: controls, format
characters, line separators) is shown as a Python-style escape instead, so
the text stays visible and unambiguous.  JSON keeps its meaning: the same
characters become JSON ``\\uXXXX`` escapes.
"""

from __future__ import annotations

import json
from typing import Any


def _escape(ch: str) -> str:
    return ascii(ch)[1:-1]  # \x1b, \u202e, \U000e0001, \n


def printable(text: str) -> str:
    """``text`` as one line with every non-printable character escaped."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else _escape(ch) for ch in text)


def printable_lines(text: str) -> str:
    """Like :func:`printable`, keeping the line breaks of ``text`` (our own layout)."""
    return "\n".join(printable(line) for line in text.split("\n"))


def _json_escape(ch: str) -> str:
    code = ord(ch)
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    code -= 0x10000  # a UTF-16 surrogate pair, as JSON spells characters beyond the BMP
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"


# Made once: ``json.dumps`` with options builds an encoder per call.  Our values
# are trees we build, never cyclic, so the cycle check (a dict of every
# container's id) is skipped.
_LINE = json.JSONEncoder(ensure_ascii=False, check_circular=False)
_COMPACT = json.JSONEncoder(ensure_ascii=False, check_circular=False, separators=(",", ":"))


def _plain_ascii(text: str) -> bool:
    """Nothing to escape, found a tenth as costly as ``isprintable``: ASCII
    without DEL.  ``json`` escapes every control below 0x20 inside strings; the
    only raw ones it writes are indentation's newlines, which stay anyway."""
    return text.isascii() and "\x7f" not in text


def json_text(value: Any, *, indent: int | None = None) -> str:
    """``json.dumps`` (non-ASCII kept readable) with every non-printable character
    escaped; they only ever occur inside strings, where ``\\uXXXX`` means the same."""
    encoder = _LINE if indent is None else json.JSONEncoder(ensure_ascii=False, indent=indent)
    return _printable_json(encoder.encode(value))


def json_line(value: Any) -> str:
    """:func:`json_text` without spaces after separators, encoded by msgspec in C:
    a list run prints a ~9 KB line per domain, which ``json``'s encoder took
    ~160 µs to build (pieces joined in Python objects), msgspec ~20 µs.  The
    same values (floats' shortest round-trip digits, ``1e-05`` spelt
    ``0.00001``); controls below 0x20 escaped as ``json`` does, the other
    non-printable characters after it, the same way.  A lone surrogate (a page
    title in UTF-7 can decode to one) is no UTF-8, which msgspec refuses: such a
    line is written by ``json``, which escapes it as ``\\udXXX``."""
    import msgspec.json

    try:
        return _printable_json(msgspec.json.encode(value).decode("utf-8"))
    except UnicodeEncodeError:
        return _printable_json(_COMPACT.encode(value))


def _printable_json(text: str) -> str:
    if _plain_ascii(text) or text.isprintable():
        return text
    return "".join(ch if ch.isprintable() or ch == "\n" else _json_escape(ch) for ch in text)
