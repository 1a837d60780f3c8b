"""The upload protocol between a probe and a collector, shared by both sides.

A batch is the lossless JSON Lines of ``probe export jsonl`` (one
``probe.measurement/1`` record per line, see docs/data-format.md), optionally
gzip-compressed, POSTed with the vantage's token as a bearer token.  The
answer lists every id the collector now holds from the batch (``ids``), so
the probe marks exactly those as uploaded.  Kept free of the web stack: the
probe's daemon imports this, never Starlette.
"""

from __future__ import annotations

from probe.errors import UsageError

API = "/api/v1"
MEASUREMENTS_PATH = f"{API}/measurements"  # POST a batch
VANTAGE_PATH = f"{API}/vantage"  # GET: who the token belongs to
HEALTH_PATH = f"{API}/health"  # GET: the collector and its database answer
CONTENT_TYPE = "application/x-ndjson"
DEFAULT_PORT = 8500
MAX_BATCH = 5000  # measurements per request the collector accepts by default
MAX_BODY = 32 * 1024 * 1024  # bytes of (decompressed) body the collector accepts by default


def check_token(token: str) -> str:
    """The token without surrounding blanks; one that could not be a token (a line
    break, a space or a character beyond ASCII inside) is a usage error that does
    not repeat it (it is a secret, if a mangled one)."""
    token = token.strip()
    if not token:
        raise UsageError("the upload token is empty")
    if not (token.isascii() and token.isprintable()) or any(c.isspace() for c in token):
        raise UsageError(
            "the upload token holds a line break, space or non-ASCII character, which "
            "no token has: copy it again from `probe collector vantage add`"
        )
    return token
