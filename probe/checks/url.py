"""The few URL operations the HTTP check needs: parse, join a Location, print.

The standard library's ``urllib.parse`` does the splitting and joining; this
module adds what a browser does on top (lowercase scheme and host, IDNA for
non-ASCII names, the scheme's default port dropped, a path that is never empty,
unsafe characters percent-encoded), so recorded redirect URLs are canonical.
It replaces ``httpx.URL``, whose import (all of httpx: tens of milliseconds,
several times that on a Raspberry Pi) the check no longer needs otherwise.
"""

from __future__ import annotations

import functools
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass

DEFAULT_PORTS: Mapping[str, int] = {"http": 80, "https": 443}
# RFC 3986 reserved and unreserved characters, and "%" (kept: already encoded)
_SAFE_PATH = "/%:@!$&'()*+,;=-._~"
_SAFE_QUERY = _SAFE_PATH + "?"


@dataclass(frozen=True)
class URL:
    """An absolute http(s) URL, normalised."""

    scheme: str  # "http" or "https"
    host: str  # lowercase; IDNA (ASCII) form; an IPv6 literal without brackets
    port: int | None  # explicit and not the scheme's default, else None
    path: str  # percent-encoded, starts with "/"
    query: str  # percent-encoded, without "?"; "" when none

    @classmethod
    def parse(cls, text: str) -> URL | None:
        """``text`` as an absolute http(s) URL with a host, else None.

        Cached (a URL is frozen, so sharing one is safe): a list run fetches
        the same few URLs of a domain over and over, ``urlsplit`` and
        ``quote`` are not cheap, and the probe runs on small machines."""
        return _parse(text)

    @classmethod
    def _parse(cls, text: str) -> URL | None:
        try:
            parts = urllib.parse.urlsplit(text.strip())
            port = parts.port
            host = parts.hostname
        except ValueError:  # a bad port, an unbalanced "["
            return None
        scheme = parts.scheme.lower()
        if scheme not in DEFAULT_PORTS or not host:
            return None
        if not host.isascii():
            try:
                host = host.encode("idna").decode("ascii")
            except UnicodeError:
                return None
        if any(c.isspace() or c in "/\\@" for c in host):
            return None
        return cls(
            scheme=scheme,
            host=host,
            port=None if port == DEFAULT_PORTS[scheme] else port,
            path=urllib.parse.quote(parts.path or "/", safe=_SAFE_PATH),
            query=urllib.parse.quote(parts.query, safe=_SAFE_QUERY),
        )

    def join(self, location: str) -> URL | None:
        """Where a ``Location`` header sent from this URL points (None: nowhere usable)."""
        try:
            joined = urllib.parse.urljoin(str(self), location.strip())
        except ValueError:
            return None
        return URL.parse(joined)

    @property
    def authority(self) -> str:
        """Host (bracketed if IPv6) and the port when it is not the default."""
        name = f"[{self.host}]" if ":" in self.host else self.host
        return name if self.port is None else f"{name}:{self.port}"

    @property
    def target(self) -> str:
        """The request target: path and query."""
        return f"{self.path}?{self.query}" if self.query else self.path

    def __str__(self) -> str:
        return f"{self.scheme}://{self.authority}{self.target}"


_parse = functools.lru_cache(maxsize=1024)(URL._parse)
