"""Making untrusted text safe to store and to hand to spreadsheets.

Observed text (page titles, bodies, headers) comes from whoever answered,
possibly a censor's middlebox: it may hold NUL bytes (PostgreSQL rejects them
in text and JSONB) or lone surrogates from undecodable bytes (not valid
UTF-8).  NULs are dropped and surrogates replaced before storage so every backend keeps the same
value; spreadsheet formulas are neutralised only on export.
"""

from __future__ import annotations

from typing import Any

REPLACEMENT = "\ufffd"
# First characters a spreadsheet may evaluate: OWASP's list, a line break, the
# pipe (DDE in some), and the full-width forms some spreadsheets normalise.
FORMULA_START = "=+-@\t\r\n|\uff1d\uff0b\uff0d\uff20"


def clean_text(text: str) -> str:
    """``text`` without NUL characters and with lone surrogates replaced by U+FFFD."""
    if "\x00" in text:
        text = text.replace("\x00", "")
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            text = "".join(REPLACEMENT if "\ud800" <= ch <= "\udfff" else ch for ch in text)
    return text


def clean_tree(value: Any) -> Any:
    """:func:`clean_text` applied to every string (and key) of a JSON-like tree."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, dict):
        return {clean_text(k): clean_tree(v) for k, v in value.items()}
    if isinstance(value, list):
        return [clean_tree(v) for v in value]
    return value


def spreadsheet_safe(text: str) -> str:
    """Text that a spreadsheet will show rather than evaluate (OWASP CSV injection)."""
    if text[:1] and text[0] in FORMULA_START:
        return "'" + text
    return text
